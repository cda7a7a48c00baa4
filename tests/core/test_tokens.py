"""API tokens: hashed at rest and shown once, expiring, listed and revoked by their owner (officers:
anyone's), ended by a password change or by signing out, and the old DRF tokens converted."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import ApiToken, AuditEvent
from core.tokens import api_token_issue

PASSWORD = "a-long-test-password-1"


def _with_key(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def _works(key: str) -> bool:
    return _with_key(key).get("/api/model-versions/").status_code == 200


@pytest.mark.django_db
def test_obtained_token_is_shown_once_and_stored_only_as_its_hash(personas):
    personas["auditor"].set_password(PASSWORD)
    personas["auditor"].save()
    body = APIClient().post("/api/auth/token/", {"username": "auditor", "password": PASSWORD}).json()
    key = body["token"]
    token = ApiToken.objects.get()
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest() and token.prefix == key[:8] == body["prefix"]
    stored = [str(v) for v in ApiToken.objects.values().get().values()]
    assert not any(key in value for value in stored)  # no column holds the key
    answer = _with_key(key).get("/api/model-versions/")
    assert answer.status_code == 200, answer.content
    # A list shows the token, never its key.
    listed = _with_key(key).get("/api/tokens/").json()["results"]
    assert [t["id"] for t in listed] == [token.pk] and "token" not in listed[0] and key not in str(listed)
    # The creation is in the audit trail, without the hash.
    event = AuditEvent.objects.get(object_type="core.apitoken", action="create")
    assert "key_hash" not in event.changes and event.changes["user_id"][1] == personas["auditor"].pk


@pytest.mark.django_db
def test_expired_and_revoked_tokens_are_refused_with_the_reason(personas):
    expired = api_token_issue(user=personas["engineer"], name="old script", days=1)
    ApiToken.objects.filter(pk=expired.token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    answer = _with_key(expired.key).get("/api/model-versions/")
    # 403, not 401: the session is the first authentication the API names, and it sends no challenge.
    assert answer.status_code == 403 and "expired" in answer.json()["detail"]

    revoked = api_token_issue(user=personas["engineer"], name="script")
    assert _with_key(revoked.key).post(f"/api/tokens/{revoked.token.pk}/revoke/").status_code == 200
    answer = _with_key(revoked.key).get("/api/model-versions/")
    assert answer.status_code == 403 and "revoked" in answer.json()["detail"]
    assert _with_key("not-a-token").get("/api/model-versions/").json()["detail"] == "Invalid token."
    assert AuditEvent.objects.get(object_type="core.apitoken", object_id=str(revoked.token.pk), action="revoke").changes["revoked_reason"] == [
        "",
        "revoked",
    ]


@pytest.mark.django_db
def test_a_deactivated_user_s_token_stops_working(personas):
    issued = api_token_issue(user=personas["engineer"], name="script")
    personas["engineer"].is_active = False
    personas["engineer"].save()
    assert _with_key(issued.key).get("/api/model-versions/").json()["detail"] == "The token's user is deactivated."


@pytest.mark.django_db
def test_creation_bounds_the_lifetime(personas, api_client):
    client = api_client(personas["engineer"])
    too_long = client.post("/api/tokens/", {"name": "ci", "expires_in_days": settings.RADTRUST_API_TOKEN_MAX_DAYS + 1})
    assert too_long.status_code == 400 and "at most 365 days" in too_long.json()["expires_in_days"][0]
    assert client.post("/api/tokens/", {"name": "ci", "expires_in_days": 0}).json().keys() == {"expires_in_days"}
    assert client.post("/api/tokens/", {"expires_in_days": 3}).json().keys() == {"name"}
    assert not ApiToken.objects.exists()

    made = client.post("/api/tokens/", {"name": "ci", "expires_in_days": 7})
    assert made.status_code == 201 and _works(made.json()["token"])
    token = ApiToken.objects.get()
    assert token.expires_at - token.created_at == dt.timedelta(days=7) and token.user == personas["engineer"]
    default = api_token_issue(user=personas["engineer"], name="default").token
    assert default.expires_at - default.created_at == dt.timedelta(days=settings.RADTRUST_API_TOKEN_DAYS)


@pytest.mark.django_db
def test_owners_see_and_revoke_their_own_officers_anyone_s(personas, api_client):
    engineer = api_token_issue(user=personas["engineer"], name="engineer's").token
    auditor = api_token_issue(user=personas["auditor"], name="auditor's").token
    officer = api_token_issue(user=personas["officer"], name="officer's").token

    def listed(user) -> set[int]:
        return {t["id"] for t in api_client(user).get("/api/tokens/").json()["results"]}

    assert listed(personas["engineer"]) == {engineer.pk}
    assert listed(personas["auditor"]) == {auditor.pk}  # read-everything roles still see only their own tokens
    assert listed(personas["officer"]) == {engineer.pk, auditor.pk, officer.pk}
    # Someone else's token is not found, and cannot be revoked.
    assert api_client(personas["engineer"]).get(f"/api/tokens/{auditor.pk}/").status_code == 404
    assert api_client(personas["engineer_south"]).post(f"/api/tokens/{engineer.pk}/revoke/").status_code == 404
    # An officer revokes anyone's; the auditor revokes their own.
    assert api_client(personas["officer"]).post(f"/api/tokens/{engineer.pk}/revoke/").json()["revoked_reason"] == "revoked"
    assert api_client(personas["auditor"]).post(f"/api/tokens/{auditor.pk}/revoke/").status_code == 200
    assert ApiToken.objects.filter(revoked_at__isnull=False).count() == 2
    assert AuditEvent.objects.filter(object_type="core.apitoken", action="revoke", actor_username="officer").count() == 1


@pytest.mark.django_db
def test_a_password_change_revokes_all_of_the_user_s_tokens(personas):
    first, second = (api_token_issue(user=personas["engineer"], name=n) for n in ("a", "b"))
    other = api_token_issue(user=personas["officer"], name="c")
    personas["engineer"].set_password("another-long-password-2")
    personas["engineer"].save()
    assert not _works(first.key) and not _works(second.key)
    assert set(ApiToken.objects.filter(user=personas["engineer"]).values_list("revoked_reason", flat=True)) == {"password_changed"}
    assert _works(other.key)


@pytest.mark.django_db
def test_the_password_change_page_revokes_too_and_saving_without_a_new_password_does_not(personas):
    user = personas["officer"]
    user.set_password(PASSWORD)
    user.save()
    issued = api_token_issue(user=user, name="script")
    user.first_name = "Olga"
    user.save()  # no new password: the token stays
    assert _works(issued.key)
    client = Client()
    client.force_login(user)
    changed = client.post(
        "/accounts/password_change/", {"old_password": PASSWORD, "new_password1": "brand-new-password-77", "new_password2": "brand-new-password-77"}
    )
    assert changed.status_code == 302
    assert not _works(issued.key)


@pytest.mark.django_db
def test_signing_out_with_a_token_revokes_it(personas):
    issued = api_token_issue(user=personas["clinician_north"], name="app")
    assert _with_key(issued.key).delete("/api/auth/token/").status_code == 204
    assert ApiToken.objects.get().revoked_reason == "signed_out"
    assert not _works(issued.key)
    assert APIClient().delete("/api/auth/token/").status_code == 401


@pytest.mark.django_db
def test_obtaining_refuses_a_wrong_password_with_a_field_error(personas):
    answer = APIClient().post("/api/auth/token/", {"username": "auditor", "password": "wrong"})
    assert answer.status_code == 400 and answer.json() == {"non_field_errors": ["Unable to log in with the user name and password given."]}
    assert APIClient().post("/api/auth/token/", {"username": "auditor"}).json().keys() == {"password"}
    assert APIClient().post("/api/auth/token/", {"username": "u" * 151, "password": "x"}).json().keys() == {"username"}  # never stored


@pytest.mark.django_db
def test_old_drf_tokens_are_converted_to_hashes_and_erased(personas):
    """Migration 0003: a database that used rest_framework.authtoken keeps its clients working."""
    migration = importlib.import_module("core.migrations.0003_api_token")
    key = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {migration.OLD_TABLE} (key varchar(40) PRIMARY KEY, created timestamp, user_id bigint)")
        cursor.execute(f"INSERT INTO {migration.OLD_TABLE} VALUES (%s, %s, %s)", [key, timezone.now(), personas["auditor"].pk])
    migration.convert_drf_tokens(apps, SimpleNamespace(connection=connection))  # all the function uses of a schema editor
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {migration.OLD_TABLE}")
        assert cursor.fetchone()[0] == 0  # the keys in clear are gone
    token = ApiToken.objects.get()
    assert (token.user, token.prefix, token.key_hash) == (personas["auditor"], key[:8], hashlib.sha256(key.encode()).hexdigest())
    assert token.expires_at - token.created_at == dt.timedelta(days=settings.RADTRUST_API_TOKEN_MAX_DAYS)
    answer = _with_key(key).get("/api/model-versions/")
    assert answer.status_code == 200, answer.content


@pytest.mark.django_db
def test_keys_are_hex_so_a_command_line_never_reads_one_as_an_option(personas):
    keys = [api_token_issue(user=personas["engineer"], name="script").key for _ in range(64)]
    assert all(len(key) == 64 and set(key) <= set("0123456789abcdef") for key in keys)
    assert len(set(keys)) == len(keys)
