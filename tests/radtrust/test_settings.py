"""Configuration from the environment: typed readers, URLs, and the production mode."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from radtrust.env import database_from_url, development_keys, env_bool, env_int, env_keys, env_str, keys_parse

ROOT = Path(__file__).resolve().parents[2]


def test_env_bool_rejects_nonsense(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env_bool("X_FLAG", False)
    monkeypatch.setenv("X_FLAG", "Yes")
    assert env_bool("X_FLAG", False) is True


def test_env_int_enforces_minimum(monkeypatch):
    monkeypatch.setenv("X_N", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int("X_N", 5, minimum=1)
    monkeypatch.setenv("X_N", "abc")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env_int("X_N", 5)


def test_file_variant_wins_for_secrets(monkeypatch, tmp_path):
    secret = tmp_path / "key"
    secret.write_text("from-file\n")
    monkeypatch.setenv("X_SECRET", "from-env")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert env_str("X_SECRET") == "from-file"


def test_database_urls():
    pg = database_from_url("postgres://u:p%40ss@db.example:5433/radtrust?sslmode=require")
    assert (pg["ENGINE"], pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == (
        "django.db.backends.postgresql",
        "radtrust",
        "u",
        "p@ss",
        "db.example",
        "5433",
    )
    assert pg["OPTIONS"] == {"sslmode": "require"}
    assert database_from_url("sqlite:////abs/db.sqlite3")["NAME"] == "/abs/db.sqlite3"
    assert database_from_url("sqlite:///rel/db.sqlite3")["NAME"] == "rel/db.sqlite3"
    with pytest.raises(ImproperlyConfigured, match="mysql"):
        database_from_url("mysql://x/y")


def _manage(*args, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "RADTRUST_ENV", "RADTRUST_AUDIT_KEYS"))}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120)


def test_production_mode_passes_the_deploy_check(tmp_path):
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        RADTRUST_ENV="production",
        DJANGO_SECRET_KEY="x" * 20 + "A-very-long-random-secret-value-0123456789",
        DJANGO_ALLOWED_HOSTS="radtrust.example",
        RADTRUST_AUDIT_KEYS=AUDIT_KEY,
        RADTRUST_VAR_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
    assert not (tmp_path / "audit-keys").exists()  # no development key is made in production


def test_production_mode_refuses_to_start_without_a_secret_key(tmp_path):
    result = _manage("check", RADTRUST_ENV="production", DJANGO_ALLOWED_HOSTS="radtrust.example", RADTRUST_VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


AUDIT_SECRET = bytes(range(32))
AUDIT_KEY = f"k1:{base64.b64encode(AUDIT_SECRET).decode()}"


def test_production_mode_refuses_to_start_without_audit_keys(tmp_path):
    result = _manage(
        "check",
        RADTRUST_ENV="production",
        DJANGO_SECRET_KEY="x" * 20 + "A-very-long-random-secret-value-0123456789",
        DJANGO_ALLOWED_HOSTS="radtrust.example",
        RADTRUST_VAR_DIR=str(tmp_path),
    )
    assert result.returncode != 0
    assert "RADTRUST_AUDIT_KEYS (or RADTRUST_AUDIT_KEYS_FILE) is required in production" in result.stderr


def test_audit_keys_are_read_in_order_from_the_variable_or_its_file(monkeypatch, tmp_path):
    other = base64.b64encode(b"\xff" * 40).decode()
    monkeypatch.setenv("X_KEYS", f" new:{other} , {AUDIT_KEY},")
    keys = env_keys("X_KEYS")
    assert list(keys) == ["new", "k1"] and keys["k1"] == AUDIT_SECRET and keys["new"] == b"\xff" * 40
    (tmp_path / "keys").write_text(AUDIT_KEY + "\n")
    monkeypatch.setenv("X_KEYS_FILE", str(tmp_path / "keys"))
    assert env_keys("X_KEYS") == {"k1": AUDIT_SECRET}
    monkeypatch.delenv("X_KEYS_FILE")
    monkeypatch.setenv("X_KEYS", " ")
    assert env_keys("X_KEYS") is None


@pytest.mark.parametrize(
    "raw, message",
    [
        (base64.b64encode(b"s" * 32).decode(), "X_KEYS: entry 1 is not id:base64secret"),
        (f"bad id:{base64.b64encode(b's' * 32).decode()}", "X_KEYS: entry 1 is not id:base64secret"),
        (f"{AUDIT_KEY},k1:{base64.b64encode(b's' * 32).decode()}", "X_KEYS: key id 'k1' is given twice"),
        ("k1:not base64!", "X_KEYS: the secret of key 'k1' is not base64"),
        (f"k1:{base64.b64encode(b's' * 16).decode()}", "X_KEYS: the secret of key 'k1' is 16 bytes; it needs at least 32"),
        (",", "X_KEYS names no key"),
    ],
)
def test_bad_audit_keys_are_refused_without_showing_a_secret(raw, message):
    with pytest.raises(ImproperlyConfigured) as refused:
        keys_parse("X_KEYS", raw)
    assert str(refused.value).startswith(message)
    assert base64.b64encode(b"s" * 32).decode() not in str(refused.value) and "not base64!" not in str(refused.value)


def test_the_development_audit_key_is_made_once_and_kept(tmp_path):
    path = tmp_path / "audit-keys"
    first = development_keys(path)
    keys = keys_parse("dev", first)
    [(key_id, secret)] = keys.items()
    assert key_id.startswith("dev-") and len(secret) == 32
    assert development_keys(path) == first and os.stat(path).st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["audit-keys"]  # no temporary file left behind


@pytest.mark.parametrize(
    "weak_key",
    [
        "x",  # what the issue found production running with
        "short-but-varied-0123456789",  # under 50 characters
        "ab" * 40,  # long, but fewer than 5 different characters
        "django-insecure-" + "k" * 20 + "0123456789abcdefghij",  # the key startproject writes
        "insecure-development-key-only-for-local-use-never-in-production-0123456789",  # the development default
    ],
)
def test_production_mode_refuses_a_weak_secret_key(tmp_path, weak_key):
    result = _manage(
        "check", RADTRUST_ENV="production", DJANGO_SECRET_KEY=weak_key, DJANGO_ALLOWED_HOSTS="radtrust.example", RADTRUST_VAR_DIR=str(tmp_path)
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is too weak for production" in result.stderr
    assert repr(weak_key) not in result.stderr and f"={weak_key}" not in result.stderr  # it names the variable, never the secret


def test_production_mode_keeps_the_api_docs_behind_a_login(tmp_path):
    show = "from django.conf import settings; print(settings.RADTRUST_PUBLIC_API_DOCS, settings.AXES_LOCKOUT_PARAMETERS)"
    strong = {
        "DJANGO_SECRET_KEY": "x" * 20 + "A-very-long-random-secret-value-0123456789",
        "DJANGO_ALLOWED_HOSTS": "radtrust.example",
        "RADTRUST_AUDIT_KEYS": AUDIT_KEY,
    }
    result = _manage("shell", "--no-imports", "-c", show, RADTRUST_ENV="production", RADTRUST_VAR_DIR=str(tmp_path), **strong)
    assert result.stdout.split("\n")[0] == "False [['username', 'ip_address']]", result.stderr
    result = _manage(
        "shell", "--no-imports", "-c", show, RADTRUST_ENV="production", RADTRUST_VAR_DIR=str(tmp_path), RADTRUST_PUBLIC_API_DOCS="true", **strong
    )
    assert result.stdout.startswith("True"), result.stderr


def test_login_lockout_settings_are_checked(tmp_path):
    result = _manage("check", RADTRUST_VAR_DIR=str(tmp_path), RADTRUST_LOGIN_LOCKOUT_BY="username+password")
    assert result.returncode != 0 and "RADTRUST_LOGIN_LOCKOUT_BY: 'password' is not one of ip_address, user_agent, username" in result.stderr
    result = _manage("check", RADTRUST_VAR_DIR=str(tmp_path), RADTRUST_API_TOKEN_DAYS="400")
    assert result.returncode != 0 and "RADTRUST_API_TOKEN_DAYS=400 must not exceed RADTRUST_API_TOKEN_MAX_DAYS=365" in result.stderr
