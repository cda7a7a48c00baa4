"""Typed readers for configuration from the environment.

Every setting comes from here so that a bad value fails at start-up with
``ImproperlyConfigured`` naming the variable, not later with a confusing error.
A ``NAME_FILE`` variable, when set, is read instead of ``NAME`` (Docker and
Kubernetes secrets).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
MIN_KEY_BYTES = 32  # an HMAC-SHA256 key as long as its output


def env_str(name: str, default: str | None = None) -> str | None:
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_path!r} cannot be read: {exc}") from exc
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true or false)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = env_str(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from exc
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_float(name: str, default: float) -> float:
    raw = env_str(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    raw = env_str(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def keys_parse(name: str, raw: str) -> dict[str, bytes]:
    """``id1:base64secret,id2:base64secret`` as ``{id: secret}`` in the order given (the first is the
    current key). Errors name the entry and its id, never a secret."""
    keys: dict[str, bytes] = {}
    for number, entry in enumerate((e.strip() for e in raw.split(",") if e.strip()), start=1):
        key_id, colon, encoded = entry.partition(":")
        if not colon or not _KEY_ID.fullmatch(key_id.strip()):
            raise ImproperlyConfigured(
                f"{name}: entry {number} is not id:base64secret (the id: 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit)"
            )
        key_id = key_id.strip()
        if key_id in keys:
            raise ImproperlyConfigured(f"{name}: key id {key_id!r} is given twice")
        try:
            secret = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ImproperlyConfigured(f"{name}: the secret of key {key_id!r} is not base64") from None
        if len(secret) < MIN_KEY_BYTES:
            raise ImproperlyConfigured(f"{name}: the secret of key {key_id!r} is {len(secret)} bytes; it needs at least {MIN_KEY_BYTES}")
        keys[key_id] = secret
    if not keys:
        raise ImproperlyConfigured(f"{name} names no key")
    return keys


def env_keys(name: str) -> dict[str, bytes] | None:
    """The keys in ``name`` (``keys_parse``); None when it is unset or blank."""
    raw = env_str(name)
    if raw is None or not raw.strip():
        return None
    return keys_parse(name, raw)


def development_keys(path: Path) -> str:
    """The keys kept in ``path``, which is created on first use with one fresh random key.

    For development only: the processes of one checkout (web, workers, beat) share the file,
    so it is written whole under a temporary name and linked into place, and the first process
    to link wins. The key id is random too, so that events signed by a lost file's key are named
    as signed by an unknown key rather than as altered.
    """
    if not path.exists():
        value = f"dev-{secrets.token_hex(4)}:{base64.b64encode(secrets.token_bytes(MIN_KEY_BYTES)).decode()}\n"
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, value.encode())
        finally:
            os.close(descriptor)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process created it first: its key stands
        finally:
            temporary.unlink()
    return path.read_text()


def database_from_url(url: str) -> dict:
    """Turn ``sqlite:///path`` or ``postgres://user:pw@host:port/name`` into a DATABASES entry."""
    parsed = urlparse(url)
    options = dict(parse_qsl(parsed.query))
    if parsed.scheme == "sqlite":
        # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy reads them.
        name = unquote(parsed.path)[1:]
        if not name:
            raise ImproperlyConfigured("DATABASE_URL=sqlite:/// needs a file path")
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": name,
            # A worker and the web process share the file: wait for locks and
            # take the write lock at the start of each transaction.
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    if parsed.scheme in {"postgres", "postgresql", "pgsql"}:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": int(options.pop("conn_max_age", 60)),
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(f"DATABASE_URL scheme {parsed.scheme!r} is not supported (use sqlite:/// or postgres://)")


_LOCKOUT_FIELDS = {"username", "ip_address", "user_agent"}


def lockout_parameters(items: list[str], name: str) -> list[str | list[str]]:
    """django-axes' ``AXES_LOCKOUT_PARAMETERS`` from ``username+ip_address,ip_address``-style items.

    Each item locks on its own; ``+`` joins fields that must all match (the pair, not either one).
    """
    if not items:
        raise ImproperlyConfigured(f"{name} is empty: name at least one of {', '.join(sorted(_LOCKOUT_FIELDS))}")
    parsed: list[str | list[str]] = []
    for item in items:
        fields = [field.strip() for field in item.split("+")]
        unknown = [field for field in fields if field not in _LOCKOUT_FIELDS]
        if unknown:
            raise ImproperlyConfigured(f"{name}: {', '.join(map(repr, unknown))} is not one of {', '.join(sorted(_LOCKOUT_FIELDS))}")
        parsed.append(fields[0] if len(fields) == 1 else fields)
    return parsed
