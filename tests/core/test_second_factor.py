"""The optional second factor for signing: with RADTRUST_REQUIRE_OTP_FOR_SIGNING on, a dossier is
signed (API and page) only with the signer's current TOTP code; officers enrol an authenticator."""

from __future__ import annotations

import re
from base64 import b32decode

import pytest
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from compliance.dossiers import dossier_open, dossier_save, dossier_submit
from compliance.models import Dossier
from core.models import AuditEvent
from core.second_factor import totp_enrol_confirm, totp_enrol_start
from tests.factories import SIGNING_PASSWORD, dossier_officer_values

pytestmark = pytest.mark.django_db


@pytest.fixture
def in_review(personas, evidenced, signing_password):
    dossier = dossier_open(actor=personas["officer"], version=evidenced)
    dossier = dossier_save(actor=personas["officer"], dossier=dossier, values=dossier_officer_values(), edit_count=dossier.edit_count)
    return dossier_submit(actor=personas["officer"], dossier=dossier)


def _code(device: TOTPDevice, steps: int = 0) -> str:
    """The code an authenticator app shows now, or ``steps`` periods from now (the device accepts one either side)."""
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=steps):06d}"


def _enrolled(user) -> TOTPDevice:
    """Enrolled with the previous period's code, so that the current code is still unused (a code is good once)."""
    device = totp_enrol_start(user=user)
    return totp_enrol_confirm(user=user, code=_code(device, steps=-1))


def _body(dossier, **fields) -> dict:
    return {"password": SIGNING_PASSWORD, "snapshot_sha256": dossier.snapshot_sha256, **fields}


def test_signing_via_the_api_needs_the_current_code(personas, in_review, api_client, settings):
    settings.RADTRUST_REQUIRE_OTP_FOR_SIGNING = True
    signer = api_client(personas["officer2"])
    url = f"/api/dossiers/{in_review.pk}/sign/"
    not_enrolled = signer.post(url, _body(in_review), format="json")
    assert not_enrolled.status_code == 400 and "enrol an authenticator" in not_enrolled.json()["otp_code"][0]
    device = _enrolled(personas["officer2"])
    assert signer.post(url, _body(in_review), format="json").json() == {"otp_code": ["Give the six-digit code your authenticator app shows now."]}
    wrong = f"{(int(_code(device)) + 1) % 10**6:06d}"
    assert signer.post(url, _body(in_review, otp_code=wrong), format="json").status_code == 400
    assert Dossier.objects.get(pk=in_review.pk).status == "in_review"
    # A wrong code counts towards the throttle; once the wait is over the right code signs.
    assert TOTPDevice.objects.get(pk=device.pk).throttling_failure_count == 1
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=None)
    signed = signer.post(url, _body(in_review, otp_code=_code(device)), format="json")
    assert signed.status_code == 200 and signed.json()["status"] == "signed"


def test_a_used_code_cannot_sign_again(personas, in_review, api_client, settings):
    settings.RADTRUST_REQUIRE_OTP_FOR_SIGNING = True
    device = _enrolled(personas["officer2"])
    code = _code(device)
    assert (
        api_client(personas["officer2"]).post(f"/api/dossiers/{in_review.pk}/sign/", _body(in_review, otp_code=code), format="json").status_code
        == 200
    )
    # The same code for the next revision is refused (it was used: replay).
    revision = dossier_open(actor=personas["officer"], version=in_review.version)
    revision = dossier_submit(actor=personas["officer"], dossier=revision)
    assert (
        api_client(personas["officer2"]).post(f"/api/dossiers/{revision.pk}/sign/", _body(revision, otp_code=code), format="json").status_code == 400
    )


def test_signing_on_the_page_needs_the_current_code(personas, in_review, client, settings):
    settings.RADTRUST_REQUIRE_OTP_FOR_SIGNING = True
    device = _enrolled(personas["officer2"])
    client.force_login(personas["officer2"])
    url = f"/dossiers/{in_review.pk}/sign/"
    assert 'autocomplete="one-time-code"' in client.get(url).content.decode()
    refused = client.post(url, {"meaning": "Approved", "confirm": "on", **_body(in_review)})
    assert refused.status_code == 400 and "Give the six-digit code" in refused.content.decode()
    assert client.post(url, {"meaning": "Approved", "confirm": "on", **_body(in_review, otp_code=_code(device))}).status_code == 302
    assert Dossier.objects.get(pk=in_review.pk).status == "signed"


def test_with_the_setting_off_no_code_is_asked_of_a_signer_without_an_authenticator(personas, in_review, api_client, client):
    client.force_login(personas["officer2"])
    assert "one-time-code" not in client.get(f"/dossiers/{in_review.pk}/sign/").content.decode()
    assert api_client(personas["officer2"]).post(f"/api/dossiers/{in_review.pk}/sign/", _body(in_review), format="json").status_code == 200


def test_with_the_setting_off_a_signer_who_enrolled_still_gives_the_code(personas, in_review, api_client, client):
    device = _enrolled(personas["officer2"])
    client.force_login(personas["officer2"])
    assert 'autocomplete="one-time-code"' in client.get(f"/dossiers/{in_review.pk}/sign/").content.decode()
    url = f"/api/dossiers/{in_review.pk}/sign/"
    refused = api_client(personas["officer2"]).post(url, _body(in_review), format="json")
    assert refused.status_code == 400 and "six-digit code" in refused.json()["otp_code"][0]
    assert api_client(personas["officer2"]).post(url, _body(in_review, otp_code=_code(device)), format="json").status_code == 200
    assert Dossier.objects.get(pk=in_review.pk).signature.authentication == "password and authenticator code"


def test_enrolment_shows_the_key_until_confirmed_and_is_audited_without_it(personas, client):
    client.force_login(personas["officer"])
    page = client.get("/account/two-factor/").content.decode()
    key = re.search(r'<code id="totp-key">([A-Z2-7 ]+)</code>', page).group(1).replace(" ", "")
    device = TOTPDevice.objects.get(user=personas["officer"])
    assert b32decode(key) == device.bin_key and not device.confirmed
    assert client.post("/account/two-factor/", {"code": "000000" if _code(device) != "000000" else "111111"}).status_code == 400
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=None)  # the throttle's wait is over
    assert client.post("/account/two-factor/", {"code": _code(device)}).status_code == 302
    after = client.get("/account/two-factor/").content.decode()
    assert "Enrolled" in after and key not in after.replace(" ", "") and 'id="totp-key"' not in after
    events = AuditEvent.objects.filter(object_type="otp_totp.totpdevice")
    assert list(events.values_list("action", flat=True)) == ["create", "update"]
    assert all("key" not in e.changes for e in events)
    # Only those who sign may enrol.
    client.force_login(personas["clinician_north"])
    assert client.get("/account/two-factor/").status_code == 403


def test_a_new_authenticator_replaces_the_old_one_only_once_confirmed(personas):
    old = _enrolled(personas["officer"])
    new = totp_enrol_start(user=personas["officer"])
    assert set(TOTPDevice.objects.filter(user=personas["officer"]).values_list("pk", "confirmed")) == {(old.pk, True), (new.pk, False)}
    totp_enrol_confirm(user=personas["officer"], code=_code(new))
    assert list(TOTPDevice.objects.filter(user=personas["officer"]).values_list("pk", "confirmed")) == [(new.pk, True)]
