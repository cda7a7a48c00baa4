"""API tokens: issue one (its key shown once), check a presented key, revoke.

Only the sha256 of a key is stored. Keys are 256 random bits, so a hash needs no salt or
slow hashing: nobody can guess a key whose hash they hold, and the lookup stays one indexed
query per request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.audit import audit_action
from core.choices import TokenRevocation
from core.models import ApiToken

KEY_BYTES = 32
PREFIX_LENGTH = 8
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class IssuedToken:
    """A new token and its key: the only moment the key exists outside the client."""

    token: ApiToken
    key: str


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_issue(*, user, name: str, days: int | None = None) -> IssuedToken:
    """A new token for ``user`` that expires after ``days`` (default ``RADTRUST_API_TOKEN_DAYS``)."""
    days = settings.RADTRUST_API_TOKEN_DAYS if days is None else days
    limit = settings.RADTRUST_API_TOKEN_MAX_DAYS
    if not 1 <= days <= limit:
        raise ValidationError({"expires_in_days": f"A token lasts from 1 to {limit} days (RADTRUST_API_TOKEN_MAX_DAYS); {days} was asked."})
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Name the token after what uses it (a script, a site agent)."})
    # Hex, not URL-safe base64: a key that starts with "-" reads as an option to a command line (the agent's --token).
    key = secrets.token_hex(KEY_BYTES)
    now = timezone.now()
    token = ApiToken.objects.create(
        user=user,
        name=name[:100],
        key_hash=key_hash(key),
        prefix=key[:PREFIX_LENGTH],
        created_at=now,
        expires_at=now + dt.timedelta(days=days),
    )
    return IssuedToken(token=token, key=key)


@dataclass(frozen=True)
class TokenCheck:
    """The token a key names, or why it is refused."""

    token: ApiToken | None
    refusal: str = ""


def api_token_check(*, key: str) -> TokenCheck:
    """The live token ``key`` names, its use noted; otherwise a refusal that says why."""
    token = ApiToken.objects.select_related("user").filter(key_hash=key_hash(key)).first()
    if token is None:
        return TokenCheck(None, "Invalid token.")
    now = timezone.now()
    if token.revoked_at is not None:
        return TokenCheck(None, "This token was revoked; create a new one.")
    if token.expires_at <= now:
        return TokenCheck(None, f"This token expired on {token.expires_at:%Y-%m-%d %H:%M} UTC; create a new one.")
    if not token.user.is_active:
        return TokenCheck(None, "The token's user is deactivated.")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        # A plain update: no audit event and no signal for a bookkeeping column.
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return TokenCheck(token)


def api_token_revoke(*, token: ApiToken, reason: TokenRevocation = TokenRevocation.REVOKED) -> ApiToken:
    """Stop ``token`` working now (audited as ``revoke``); revoking a revoked token changes nothing."""
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().get(pk=token.pk)
        if token.revoked_at is None:
            token.revoked_at, token.revoked_reason = timezone.now(), reason
            with audit_action("revoke"):
                token.save(update_fields=["revoked_at", "revoked_reason"])
    return token


def api_token_revoke_all(*, user, reason: TokenRevocation) -> int:
    """Revoke every live token of ``user`` (one audit event each); returns how many."""
    live = list(ApiToken.objects.filter(user=user, revoked_at__isnull=True, expires_at__gt=timezone.now()))
    for token in live:
        api_token_revoke(token=token, reason=reason)
    return len(live)
