"""Re-authentication at the moment of signing (21 CFR 11.200(a)): the signer's own password, and
their authenticator's current code where they enrolled one or the site requires it.

A session or API token shows who is logged in, not who is at the keyboard now, so a signature asks
for the password again in the signing request itself. Each failure is an audit event on the user
(``reauthentication_failed``); ``RADTRUST_LOGIN_FAILURE_LIMIT`` failures within
``RADTRUST_LOGIN_COOLOFF_MINUTES`` refuse further signatures by that user until the window has
passed, even with the right password, as a failed login would.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from core.audit import audit_record
from core.models import AuditEvent
from core.second_factor import second_factor_check

FAILED = "reauthentication_failed"
PASSWORD = "password"
PASSWORD_AND_CODE = "password and authenticator code"


def _failures(user) -> int:
    since = timezone.now() - settings.AXES_COOLOFF_TIME
    return AuditEvent.objects.filter(object_type=user._meta.label_lower, object_id=str(user.pk), action=FAILED, occurred_at__gte=since).count()


def _refuse(user, purpose: str, field: str, message: str):
    audit_record(action=FAILED, instance=user, changes={"purpose": purpose, "refused": field})
    raise ValidationError({field: message})


def reauthenticate(*, user, password: str, otp_code: str, purpose: str) -> str:
    """How ``user`` proved who they are now (``PASSWORD`` or ``PASSWORD_AND_CODE``), or a refusal
    (400 on ``password`` or ``otp_code``) written to the audit trail.

    Call it outside any transaction that the refusal rolls back: the failure count must stay."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    if _failures(user) >= settings.AXES_FAILURE_LIMIT:
        _refuse(
            user,
            purpose,
            "password",
            f"Too many failed attempts to confirm your identity: signing is refused for up to {minutes} minutes. "
            "Wait, then sign again with your own password; an administrator can reset a forgotten one.",
        )
    if not password or not user.check_password(password):
        _refuse(
            user,
            purpose,
            "password",
            f"Give your own password again to sign: the signature is recorded under your name ({user.get_username()}), and only you may give it.",
        )
    try:
        checked = second_factor_check(user=user, code=otp_code)
    except ValidationError as refused:
        _refuse(user, purpose, "otp_code", refused.message_dict["otp_code"][0])
    return PASSWORD_AND_CODE if checked else PASSWORD
