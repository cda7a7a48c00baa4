from django.urls import path

from core import account_pages

urlpatterns = [path("account/two-factor/", account_pages.two_factor, name="account-two-factor")]
