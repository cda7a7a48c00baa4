from django.urls import path
from rest_framework.routers import SimpleRouter

from core import token_api

router = SimpleRouter()
router.register("tokens", token_api.ApiTokenViewSet, basename="api-token")

urlpatterns = [path("auth/token/", token_api.TokenObtainView.as_view(), name="api-token"), *router.urls]
