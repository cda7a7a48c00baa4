"""What core connects when Django starts: the audit trail of API tokens and second-factor devices,
the audit event of a login lockout, and the revocation of a user's tokens when their password changes."""

from __future__ import annotations

from axes.signals import user_locked_out
from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_save
from django_otp.plugins.otp_totp.models import TOTPDevice

from core.audit import audit_register
from core.choices import TokenRevocation
from core.lockout import lockout_audit
from core.models import ApiToken
from core.tokens import api_token_revoke_all


def tokens_revoke_on_password_change(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    """A new password ends every API token of its user: whoever knew the old one may hold a token.

    ``set_password`` keeps the new raw password on the instance until the save is done; a hash
    upgrade at login clears it before saving, so it does not count as a change.
    """
    if created or raw or getattr(instance, "_password", None) is None:
        return
    api_token_revoke_all(user=instance, reason=TokenRevocation.PASSWORD_CHANGED)


def connect(app_config: AppConfig) -> None:
    audit_register(ApiToken, exclude=("key_hash", "last_used_at"))
    # Enrolment, confirmation and removal of a second factor; never its key, nor each code's bookkeeping.
    audit_register(TOTPDevice, exclude=("key", "drift", "last_t", "last_used_at", "throttling_failure_timestamp", "throttling_failure_count"))
    user_locked_out.connect(lockout_audit, dispatch_uid="core:lockout-audit")
    post_save.connect(tokens_revoke_on_password_change, sender=settings.AUTH_USER_MODEL, dispatch_uid="core:token-revoke-on-password")
