"""The secret keys of the audit trail (``settings.RADTRUST_AUDIT_KEYS``): the first signs, every
one listed verifies what it signed.

An unkeyed hash chain proves nothing against someone who can write to the database: they can
change an event and recompute every later hash. An HMAC under a key kept outside the database
(an environment variable or a secret file) can only be recomputed by a holder of the key.
Each event and each checkpoint records the id of the key that signed it, so keys can be
rotated: put the new key first and keep the old ones listed for as long as their events exist.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from radtrust_engine.hashing import canonical_hmac_sha256


class UnknownAuditKey(LookupError):
    """A record names a key id that is not configured, so it cannot be verified."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"key id {key_id!r} is not configured (RADTRUST_AUDIT_KEYS)")
        self.key_id = key_id


def audit_signing_key_id() -> str:
    """The id of the current key, the first configured one: it signs every new event and checkpoint."""
    return next(iter(settings.RADTRUST_AUDIT_KEYS))


def audit_mac(value: Any, *, key_id: str) -> str:
    """HMAC-SHA256 of ``value``'s canonical JSON under the key ``key_id`` (``UnknownAuditKey`` if it is not configured)."""
    try:
        key = settings.RADTRUST_AUDIT_KEYS[key_id]
    except KeyError:
        raise UnknownAuditKey(key_id) from None
    return canonical_hmac_sha256(value, key=key)
