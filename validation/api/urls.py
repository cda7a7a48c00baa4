from rest_framework.routers import SimpleRouter

from validation.api.views import ValidationRunViewSet

router = SimpleRouter()
router.register("validation-runs", ValidationRunViewSet, basename="validation-run")

urlpatterns = router.urls
