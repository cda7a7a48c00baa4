"""The optional second factor (a TOTP authenticator app, django-otp) for signing.

A signer who enrolled an authenticator gives its current six-digit code with every signature;
with ``RADTRUST_REQUIRE_OTP_FOR_SIGNING`` on, every signer must have one. The code is checked when
the signature is asked for (in the request itself, so the API and the pages need no second-factor
session). A wrong code counts towards django-otp's throttle, which grows the wait after each failure.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django_otp import verify_token
from django_otp.plugins.otp_totp.models import TOTPDevice

DEVICE_NAME = "authenticator app"


def confirmed_device(user) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def second_factor_required(user) -> bool:
    return settings.RADTRUST_REQUIRE_OTP_FOR_SIGNING or confirmed_device(user) is not None


def second_factor_check(*, user, code: str) -> bool:
    """Whether a code was checked: refuse (400 on ``otp_code``) unless the user has no authenticator
    and none is required, or ``code`` is the user's current one.

    Call it outside any transaction that the refusal rolls back: the throttle must keep its count.
    """
    device = confirmed_device(user)
    if device is None:
        if not settings.RADTRUST_REQUIRE_OTP_FOR_SIGNING:
            return False
        raise ValidationError(
            {"otp_code": "Signing needs a second factor: enrol an authenticator app on the two-factor page (/account/two-factor/) first."}
        )
    if not code.strip():
        raise ValidationError({"otp_code": "Give the six-digit code your authenticator app shows now."})
    if verify_token(user, device.persistent_id, code.strip()) is None:
        raise ValidationError(
            {"otp_code": "The code is wrong, already used or too old, or too many wrong codes were tried: wait, then give the current one."}
        )
    return True


def totp_enrol_start(*, user) -> TOTPDevice:
    """The user's unconfirmed authenticator, made on first call: its key is shown until it is confirmed."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    return device or TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)


def totp_enrol_confirm(*, user, code: str) -> TOTPDevice:
    """Confirm the unconfirmed authenticator with its first code; it replaces any earlier one."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        raise ValidationError({"code": "There is no authenticator waiting to be confirmed: open the two-factor page again."})
    if verify_token(user, device.persistent_id, code.strip()) is None:
        raise ValidationError(
            {"code": "The code does not match: check the key you entered and the clock of your phone, wait a few seconds, then try the current code."}
        )
    TOTPDevice.objects.filter(user=user, confirmed=True).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return device
