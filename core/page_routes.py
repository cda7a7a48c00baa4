from django.urls import path, re_path

from core import account_pages, audit_pages, notification_pages

urlpatterns = [
    path("account/two-factor/", account_pages.two_factor, name="account-two-factor"),
    path("audit/", audit_pages.audit_list, name="audit-list"),
    re_path(r"^audit/export\.(?P<fmt>csv|json)$", audit_pages.audit_export, name="audit-export"),
    path("audit/verify/", audit_pages.audit_verify, name="audit-verify"),
    path("notifications/", notification_pages.notification_list, name="notifications"),
    path("notifications/read/", notification_pages.notification_read, name="notifications-read"),
]
