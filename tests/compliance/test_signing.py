"""Electronic signatures of dossiers (issue 17): the signer gives their password again (and their
authenticator's code where they enrolled one), signs the snapshot they reviewed, for the
institution whose document it is, and never a revision they opened, edited or submitted. Each
refusal names what is missing and who may act, changes nothing and is audited; a signature
records the printed name, time, meaning, institution, how the signer re-authenticated and the
audit chain's head."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from compliance.dossiers import dossier_open, dossier_request_changes, dossier_save, dossier_sign, dossier_submit
from compliance.models import Dossier, DossierSignature
from core.errors import Conflict
from core.models import AuditEvent, AuditHead
from registry.services import user_create
from tests.factories import SIGNING_PASSWORD, dossier_officer_values

pytestmark = pytest.mark.django_db


@pytest.fixture
def in_review(personas, evidenced, signing_password):
    """Opened and filled in by the officer, submitted by the officer: officer2 may sign it."""
    dossier = dossier_open(actor=personas["officer"], version=evidenced)
    dossier = dossier_save(actor=personas["officer"], dossier=dossier, values=dossier_officer_values(), edit_count=dossier.edit_count)
    return dossier_submit(actor=personas["officer"], dossier=dossier)


def _unchanged(dossier: Dossier) -> bool:
    fresh = Dossier.objects.get(pk=dossier.pk)
    return fresh.status == "in_review" and not DossierSignature.objects.filter(dossier=dossier).exists()


def _refusals(dossier: Dossier) -> list[dict]:
    return list(
        AuditEvent.objects.filter(object_type="compliance.dossier", object_id=str(dossier.pk), action="sign_refused").values_list(
            "changes", flat=True
        )
    )


def test_a_wrong_password_is_refused_audited_and_changes_nothing(personas, in_review):
    with pytest.raises(ValidationError) as caught:
        dossier_sign(actor=personas["officer2"], dossier=in_review, password="not-my-password", snapshot_sha256=in_review.snapshot_sha256)
    message = caught.value.message_dict["password"][0]
    assert "your own password" in message and "officer2" in message
    assert _unchanged(in_review)
    failed = AuditEvent.objects.get(action="reauthentication_failed", object_id=str(personas["officer2"].pk))
    assert failed.changes == {"purpose": f"sign dossier {in_review.pk}", "refused": "password"}


def test_repeated_wrong_passwords_lock_signing_even_with_the_right_one(personas, in_review, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        with pytest.raises(ValidationError):
            dossier_sign(actor=personas["officer2"], dossier=in_review, password="wrong", snapshot_sha256=in_review.snapshot_sha256)
    with pytest.raises(ValidationError, match="Too many failed attempts"):
        dossier_sign(actor=personas["officer2"], dossier=in_review, password=SIGNING_PASSWORD, snapshot_sha256=in_review.snapshot_sha256)
    assert _unchanged(in_review)


def test_a_revision_resubmitted_since_review_is_refused(personas, in_review):
    reviewed = in_review.snapshot_sha256
    back = dossier_request_changes(actor=personas["officer2"], dossier=in_review, note="Name the residual risks.")
    resubmitted = dossier_submit(actor=personas["officer"], dossier=back)
    assert resubmitted.snapshot_sha256 != reviewed  # frozen again, with a new submission time
    with pytest.raises(Conflict) as caught:
        dossier_sign(actor=personas["officer2"], dossier=resubmitted, password=SIGNING_PASSWORD, snapshot_sha256=reviewed)
    assert caught.value.code == "snapshot_changed_since_review" and "Review it again" in str(caught.value)
    assert "resubmitted by officer" in str(caught.value)
    assert _unchanged(resubmitted)
    assert "Review it again" in _refusals(resubmitted)[0]["refused"]


def test_an_officer_who_edited_the_revision_may_not_sign_it_and_is_told_who_may(personas, institutions, in_review):
    third = user_create(username="officer3", role="compliance_officer", institution=institutions["vendor"], password=SIGNING_PASSWORD)
    reopened = dossier_request_changes(actor=personas["officer2"], dossier=in_review, note="Reword the purpose.")
    edited = dossier_save(
        actor=personas["officer2"],
        dossier=reopened,
        values={"1a_purpose_statement": "Reworded by the second officer: what the model claims, and the evidence it rests on."},
        edit_count=reopened.edit_count,
    )
    resubmitted = dossier_submit(actor=personas["officer"], dossier=edited)
    with pytest.raises(PermissionDenied) as caught:
        dossier_sign(actor=personas["officer2"], dossier=resubmitted, password=SIGNING_PASSWORD, snapshot_sha256=resubmitted.snapshot_sha256)
    assert "you edited revision 1" in str(caught.value) and "who may: officer3" in str(caught.value)
    assert _unchanged(resubmitted) and _refusals(resubmitted)
    signature = dossier_sign(actor=third, dossier=resubmitted, password=SIGNING_PASSWORD, snapshot_sha256=resubmitted.snapshot_sha256)
    assert signature.signer == third


def test_a_hospital_officer_may_not_sign_the_providers_documentation(personas, institutions, in_review):
    hospital = user_create(username="north-officer", role="compliance_officer", institution=institutions["north"], password=SIGNING_PASSWORD)
    with pytest.raises(PermissionDenied) as caught:
        dossier_sign(actor=hospital, dossier=in_review, password=SIGNING_PASSWORD, snapshot_sha256=in_review.snapshot_sha256)
    assert str(caught.value) == (
        "Only a compliance officer of RadVendor GmbH may sign its technical documentation; who may: officer2."
    )  # the officer opened and submitted it: only officer2 is left
    assert _unchanged(in_review) and len(_refusals(in_review)) == 1


def test_a_signature_records_name_time_meaning_institution_and_the_audit_head(personas, in_review):
    officer2 = personas["officer2"]
    officer2.first_name, officer2.last_name = "Olga", "Second"
    officer2.save(update_fields=["first_name", "last_name"])
    head_before = AuditHead.objects.get(pk=1)
    signature = dossier_sign(
        actor=officer2, dossier=in_review, password=SIGNING_PASSWORD, snapshot_sha256=in_review.snapshot_sha256, meaning="Released for the pilot"
    )
    assert (signature.signer_name, signature.institution.name, signature.meaning) == ("Olga Second", "RadVendor GmbH", "Released for the pilot")
    assert signature.authentication == "password" and signature.signed_at is not None
    assert (signature.audit_seq, signature.audit_hash) == (head_before.seq, head_before.hash)
    sign_event = AuditEvent.objects.get(object_type="compliance.dossiersignature", object_id=str(signature.pk), action="create")
    assert sign_event.seq > signature.audit_seq  # the signature's own event follows the head it names


def test_the_api_asks_for_the_password_and_the_snapshot_reviewed(personas, in_review, api_client):
    signer = api_client(personas["officer2"])
    url = f"/api/dossiers/{in_review.pk}/sign/"
    missing = signer.post(url, {}, format="json")
    assert missing.status_code == 400 and set(missing.json()) >= {"password", "snapshot_sha256"}
    wrong = signer.post(url, {"password": "nope", "snapshot_sha256": in_review.snapshot_sha256}, format="json")
    assert wrong.status_code == 400 and "your own password" in wrong.json()["password"][0]
    stale = signer.post(url, {"password": SIGNING_PASSWORD, "snapshot_sha256": "0" * 64}, format="json")
    assert stale.status_code == 409 and stale.json()["code"] == "snapshot_changed_since_review"
    signed = signer.post(url, {"password": SIGNING_PASSWORD, "snapshot_sha256": in_review.snapshot_sha256}, format="json")
    assert signed.status_code == 200
    recorded = signed.json()["signature"]
    assert recorded["institution"] == "RadVendor GmbH" and recorded["authentication"] == "password" and recorded["audit_seq"] > 0
    assert "password" not in recorded


def test_the_page_shows_what_is_recorded_and_asks_for_the_password(personas, in_review, client):
    client.force_login(personas["officer2"])
    url = f"/dossiers/{in_review.pk}/sign/"
    page = client.get(url).content.decode()
    assert 'autocomplete="current-password"' in page and "for RadVendor GmbH" in page and in_review.snapshot_sha256 in page
    form = {"meaning": "Approved", "confirm": "on", "snapshot_sha256": in_review.snapshot_sha256}
    refused = client.post(url, {**form, "password": "wrong"})
    assert refused.status_code == 400 and "your own password" in refused.content.decode() and _unchanged(in_review)
    assert client.post(url, {**form, "password": SIGNING_PASSWORD}).status_code == 302
    assert Dossier.objects.get(pk=in_review.pk).signature.meaning == "Approved"
