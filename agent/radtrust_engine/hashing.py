"""The one hash of a JSON value: sha256 of its canonical JSON, the same after a database round trip.

Records are hashed when written and hashed again when read back (the audit chain, a dossier's
frozen snapshot, a site report's payload), and PostgreSQL's ``jsonb`` keeps a number's value,
not its spelling: it reads ``1e+16`` back as ``10000000000000000`` (an int in Python) and
``-0.0`` as ``0.0``; and ``2.0`` and ``2`` are one number to it (a client in another language
may send either). Plain ``json.dumps(sort_keys=True)`` hashes those differently, so
``canonical_json`` writes:

- objects with their keys sorted (as strings), arrays in order, no whitespace;
- strings, ``true``, ``false`` and ``null`` as ``json.dumps`` does, ASCII only;
- every number by value, as ``<digits>e<exponent>`` with no leading or trailing zero in the
  digits (``0`` alone for zero of either sign): ``1e16``, ``1e+16`` and ``10000000000000000``
  are all ``1e16``, ``2.0`` and ``2`` are both ``2e0``, ``0.1`` is ``1e-1``;
- NaN and infinities not at all: ``ValueError``, since ``jsonb`` refuses them too.

This is the format the audit chain has always hashed (it was ``core.audit._canonical``), so
existing chains verify unchanged.

Legacy hashes (decided with issue 13). Dossier snapshots and federated site payloads were
hashed before this module existed as ``sha256(json.dumps(value, sort_keys=True,
separators=(",", ":"), default=str))`` (``legacy_sha256``). New records store the canonical
hash only. Verifying a stored record (``sha256_matches``) accepts the canonical hash, or the
legacy hash of the same value, so a record written before the change still verifies and is
never rewritten (a signed snapshot is immutable, and its hash is what was signed). The legacy
form verifies whenever the value survived the round trip unchanged, which is every value
except those holding ``-0.0`` or a float of 1e16 or more: such a legacy record never verified
after a PostgreSQL round trip anyway, which is the bug the canonical form fixes.

Plain Python (no Django): the server, the site agent and the engine share it.
"""

from __future__ import annotations

import decimal
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

__all__ = ["canonical_hmac_sha256", "canonical_json", "canonical_sha256", "legacy_sha256", "sha256_matches"]


def canonical_json(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """The canonical JSON text of ``value`` (see the module docstring).

    ``value`` is made of dicts, lists, tuples, strings, ints, floats, booleans and None;
    anything else is passed once to ``default`` (``str``, say) and its result written, or
    refused with ``TypeError`` when ``default`` is None. NaN and infinities: ``ValueError``.
    """
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        return "{" + ",".join(f"{json.dumps(str(k))}:{canonical_json(v, default=default)}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical_json(v, default=default) for v in value) + "]"
    if value is None or isinstance(value, (str, bool)):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, (int, float)):
        return _number(value)
    if default is not None:
        return canonical_json(default(value))
    raise TypeError(f"{type(value).__name__} is not a JSON value; pass default= to convert it")


def _number(value: int | float) -> str:
    # float.__repr__, not repr: a NumPy float's repr is "np.float64(...)".
    number = decimal.Decimal(float.__repr__(value) if isinstance(value, float) else int(value))
    if not number.is_finite():
        raise ValueError(f"{value!r} has no JSON form (PostgreSQL's jsonb refuses NaN and infinities)")
    sign, digits, exponent = number.as_tuple()
    digits_text = "".join(map(str, digits)).lstrip("0")
    if not digits_text:
        return "0"  # zero, either sign: jsonb has no -0
    stripped = digits_text.rstrip("0")
    return f"{'-' if sign else ''}{stripped}e{exponent + len(digits_text) - len(stripped)}"


def canonical_sha256(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """sha256 (hex) of ``canonical_json(value)``: what every new record is hashed with."""
    return hashlib.sha256(canonical_json(value, default=default).encode("ascii")).hexdigest()


def canonical_hmac_sha256(value: Any, *, key: bytes) -> str:
    """HMAC-SHA256 (hex) of ``canonical_json(value)`` under ``key``: a hash that only a holder of
    the key can compute, so a record rewritten by someone with write access to its store, hash
    recomputed, no longer verifies (the audit chain and its checkpoints, ``core.audit``)."""
    return hmac.new(key, canonical_json(value).encode("ascii"), hashlib.sha256).hexdigest()


def legacy_sha256(value: Any) -> str:
    """The hash dossier snapshots and site payloads were given before canonical hashing.

    For verifying those records only (``sha256_matches``); never hash a new record with it.
    """
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def sha256_matches(value: Any, digest: str) -> bool:
    """Whether a stored record's ``digest`` is the hash of ``value``: its canonical hash, or
    its legacy hash for a record written before canonical hashing (see the module docstring)."""
    try:
        if canonical_sha256(value) == digest:
            return True
    except (TypeError, ValueError):
        pass  # no canonical form (a NaN, say): only a legacy hash can name it
    return legacy_sha256(value) == digest
