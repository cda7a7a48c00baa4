"""Failed logins and lockouts (django-axes): the client's address, the answer a locked-out
login gets, and the audit event each lockout leaves.

django-axes counts failed logins on the login page, the admin and ``/api/auth/token/`` and
refuses the next attempt of a locked-out username and address, even with the right password,
until ``RADTRUST_LOGIN_COOLOFF_MINUTES`` have passed.
"""

from __future__ import annotations

from axes.helpers import get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

from core.audit import audit_record

LOCKED_STATUS = 429


def client_ip(request) -> str | None:
    """The client's address: the peer's, or the one the trusted proxies put in X-Forwarded-For.

    Only the last ``RADTRUST_TRUSTED_PROXY_COUNT`` entries were written by our own proxies; anything
    left of them came from the client and could be forged, so it is never read.
    """
    proxies = settings.RADTRUST_TRUSTED_PROXY_COUNT
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return (
        f"Too many failed logins for this user name from your address: logins are refused for {minutes} minutes. "
        "Wait, then try again; ask an administrator if you have forgotten your password."
    )


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    """What a locked-out login sees: 429 with the reason, as JSON for the API and a page otherwise."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": lockout_message(), "code": "login_locked"}, status=LOCKED_STATUS)
    html = render_to_string("registration/locked_out.html", {"message": lockout_message()}, request=request)
    return HttpResponse(html, status=LOCKED_STATUS)


def lockout_audit(sender, request, username: str | None, ip_address: str | None, **kwargs) -> None:
    """One audit event (``lockout``) when a username and address reach the failure limit.

    django-axes sends ``user_locked_out`` again for every refused attempt during the lockout; only
    the attempt that reached the limit has ``axes_failures_since_start`` equal to it.
    """
    credentials = getattr(request, "axes_credentials", None)
    if getattr(request, "axes_failures_since_start", None) != get_failure_limit(request, credentials):
        return
    # The database handler (AXES_HANDLER) wrote this row just before it sent the signal.
    attempt = AccessAttempt.objects.filter(username=username, ip_address=ip_address).order_by("-attempt_time").first()
    audit_record(
        action="lockout",
        instance=attempt,
        changes={
            "username": username,
            "ip_address": ip_address,
            "failures": attempt.failures_since_start,
            "path": request.META.get("PATH_INFO", ""),
            "cool_off_minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
        },
    )
