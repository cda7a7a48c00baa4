"""Login throttling: after RADTRUST_LOGIN_FAILURE_LIMIT wrong passwords from one address, the login
page, the admin and the token endpoint refuse that user name from that address, even with the right
password, answer 429 with the reason, and leave one audit event."""

from __future__ import annotations

import datetime as dt

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client

from core.lockout import client_ip
from core.models import ApiToken, AuditEvent

PASSWORD = "a-long-test-password-1"
ENTRY_POINTS = ["/accounts/login/", "/admin/login/", "/api/auth/token/"]


@pytest.fixture
def officer(personas):
    user = personas["officer"]
    user.set_password(PASSWORD)
    user.is_staff = True  # the admin lets only staff in
    user.save()
    return user


def _login(path: str, password: str, address: str = "10.0.0.1"):
    return Client(REMOTE_ADDR=address).post(path, {"username": "officer", "password": password})


def _logged_in(path: str, response) -> bool:
    if path.startswith("/api/"):
        return response.status_code == 200 and "token" in response.json()
    return response.status_code == 302 and "_auth_user_id" in response.client.session


@pytest.mark.django_db
@pytest.mark.parametrize("path", ENTRY_POINTS)
def test_the_limit_locks_the_user_name_out_even_with_the_right_password(officer, path):
    limit = settings.AXES_FAILURE_LIMIT
    answers = [_login(path, "wrong-password") for _ in range(limit)]
    assert all(a.status_code in {200, 400} for a in answers[:-1])  # the form again, or the API's 400
    assert answers[-1].status_code == 429  # the attempt that reaches the limit is told at once

    locked = _login(path, PASSWORD)
    assert locked.status_code == 429 and not _logged_in(path, locked)
    assert "Too many failed logins" in locked.content.decode() and "15 minutes" in locked.content.decode()
    if path.startswith("/api/"):
        assert locked.json()["code"] == "login_locked"
        assert not ApiToken.objects.exists()

    events = AuditEvent.objects.filter(action="lockout")
    assert events.count() == 1  # the refused attempt after the lockout adds none
    assert events.get().changes == {
        "username": "officer",
        "ip_address": "10.0.0.1",
        "failures": limit,
        "path": path,
        "cool_off_minutes": 15,
    }


@pytest.mark.django_db
def test_another_address_and_a_later_login_are_not_locked(officer):
    """The pair is locked, not the account: the user logs in from elsewhere, and after the cool-off."""
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login("/accounts/login/", "wrong-password")
    assert _login("/accounts/login/", PASSWORD).status_code == 429
    assert _logged_in("/accounts/login/", _login("/accounts/login/", PASSWORD, address="10.0.0.2"))

    # The cool-off has passed for the locked pair (its attempts are older than the cool-off).
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time - settings.AXES_COOLOFF_TIME - dt.timedelta(seconds=1))
    assert _logged_in("/accounts/login/", _login("/accounts/login/", PASSWORD))


@pytest.mark.django_db
def test_a_success_resets_the_count(officer):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login("/accounts/login/", "wrong-password")
    assert _logged_in("/accounts/login/", _login("/accounts/login/", PASSWORD))
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login("/accounts/login/", "wrong-password").status_code == 200
    assert not AuditEvent.objects.filter(action="lockout").exists()


@pytest.mark.django_db
def test_the_limit_comes_from_the_settings(officer, settings):
    settings.AXES_FAILURE_LIMIT = 2
    assert _login("/api/auth/token/", "wrong-password").status_code == 400
    assert _login("/api/auth/token/", "wrong-password").status_code == 429


def test_client_address_behind_trusted_proxies(rf, settings):
    forged_and_real = {"REMOTE_ADDR": "10.9.9.9", "HTTP_X_FORWARDED_FOR": "1.2.3.4, 203.0.113.7"}
    settings.RADTRUST_TRUSTED_PROXY_COUNT = 0
    assert client_ip(rf.get("/", **forged_and_real)) == "10.9.9.9"  # no proxy trusted: the header is the client's
    settings.RADTRUST_TRUSTED_PROXY_COUNT = 1
    assert client_ip(rf.get("/", **forged_and_real)) == "203.0.113.7"  # the entry our proxy wrote, not the forged one
    assert client_ip(rf.get("/", REMOTE_ADDR="10.9.9.9")) == "10.9.9.9"
