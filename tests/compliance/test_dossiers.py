"""The dossier workflow: open, save with a concurrent-edit check, submit a complete dossier with its
frozen snapshot, four-eyes signing, immutability, a new revision after signing, the approval
guard, and the API."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from compliance.dossier_fields import FIELDS
from compliance.dossiers import (
    dossier_completeness,
    dossier_open,
    dossier_request_changes,
    dossier_save,
    dossier_sign,
    dossier_submit,
    signed_dossier,
    snapshot_hash,
)
from compliance.models import Dossier
from core.errors import Conflict, ImmutableRecord
from core.models import AuditEvent
from tests.factories import dossier_officer_values

pytestmark = pytest.mark.django_db


def _complete(personas, version):
    """A dossier whose officer fields are filled; evidence fields depend on the version's records."""
    dossier = dossier_open(actor=personas["officer"], version=version)
    return dossier_save(actor=personas["officer"], dossier=dossier, values=dossier_officer_values(), edit_count=dossier.edit_count)


def test_a_concurrent_save_is_refused_with_the_fields_that_differ(personas, deployed):
    dossier = dossier_open(actor=personas["officer"], version=deployed["version"])
    key = next(k for k, f in FIELDS.items() if f.source == "officer")
    dossier_save(actor=personas["officer"], dossier=dossier, values={key: "First officer's text."}, edit_count=0)
    with pytest.raises(Conflict) as caught:
        dossier_save(actor=personas["officer2"], dossier=dossier, values={key: "Second officer's text."}, edit_count=0)
    assert caught.value.code == "edit_conflict"
    assert caught.value.details["differs"][key] == {"yours": "Second officer's text.", "saved": "First officer's text."}
    assert Dossier.objects.get(pk=dossier.pk).values[key] == "First officer's text."


def test_unknown_and_evidence_fields_are_refused(personas, deployed):
    dossier = dossier_open(actor=personas["officer"], version=deployed["version"])
    evidence_key = next(k for k, f in FIELDS.items() if f.source == "evidence")
    with pytest.raises(ValidationError) as caught:
        dossier_save(actor=personas["officer"], dossier=dossier, values={"no_such_field": "x", evidence_key: "y"}, edit_count=0)
    message = " ".join(caught.value.message_dict["values"])
    assert "no_such_field" in message and evidence_key in message


def test_an_incomplete_dossier_cannot_be_submitted(personas, deployed):
    dossier = dossier_open(actor=personas["officer"], version=deployed["version"])
    with pytest.raises(ValidationError) as caught:
        dossier_submit(actor=personas["officer"], dossier=dossier)
    refusal = caught.value.message_dict["values"]
    assert refusal[0] == f"{FIELDS['1a_purpose_statement'].title} (General description of the AI system, Annex IV 1(a)) is not written yet."
    assert not any("1a_purpose_statement" in sentence for sentence in refusal)  # plain words, never the stored key


def test_four_eyes_sign_freezes_and_a_change_is_a_new_revision(personas, evidenced, signing_password):
    dossier = _complete(personas, evidenced)
    completeness = dossier_completeness(dossier)
    missing = [k for s in completeness["sections"].values() for k in s["missing"]]
    assert missing == [], missing
    submitted = dossier_submit(actor=personas["officer"], dossier=dossier)
    assert submitted.status == "in_review" and submitted.snapshot_sha256 == snapshot_hash(submitted.snapshot)
    assert submitted.snapshot["version"]["artifact_sha256"] == evidenced.artifact_sha256
    with pytest.raises(PermissionDenied, match="Four eyes"):
        dossier_sign(actor=personas["officer"], dossier=submitted, password=signing_password, snapshot_sha256=submitted.snapshot_sha256)
    signature = dossier_sign(actor=personas["officer2"], dossier=submitted, password=signing_password, snapshot_sha256=submitted.snapshot_sha256)
    assert signature.snapshot_sha256 == submitted.snapshot_sha256 and signature.dossier.status == "signed"
    assert signed_dossier(evidenced) is None
    signed = Dossier.objects.get(pk=dossier.pk)
    with pytest.raises(ImmutableRecord):
        signed.values = {}
        signed.save()
    with pytest.raises(ImmutableRecord):
        Dossier.objects.filter(pk=dossier.pk).update(values={})
    signed.refresh_from_db()
    with pytest.raises(Conflict, match="signed"):
        dossier_save(actor=personas["officer"], dossier=signed, values={}, edit_count=signed.edit_count)
    revision = dossier_open(actor=personas["officer"], version=evidenced)
    assert revision.revision == 2 and revision.status == "draft" and revision.values == signed.values
    actions = list(AuditEvent.objects.filter(object_type="compliance.dossier", object_id=str(dossier.pk)).values_list("action", flat=True))
    assert actions[0] == "create" and actions[-3:] == ["submit", "sign_refused", "sign"]  # the author's attempt, then the second officer's


def test_changes_requested_by_a_second_officer_reopen_the_draft(personas, evidenced):
    submitted = dossier_submit(actor=personas["officer"], dossier=_complete(personas, evidenced))
    with pytest.raises(PermissionDenied):
        dossier_request_changes(actor=personas["officer"], dossier=submitted, note="Looks fine to me.")
    back = dossier_request_changes(actor=personas["officer2"], dossier=submitted, note="Section 5: name the residual risks.")
    assert back.status == "changes_requested" and "residual risks" in back.review_note
    saved = dossier_save(actor=personas["officer"], dossier=back, values={}, edit_count=back.edit_count)
    assert saved.status == "changes_requested"


def test_the_approval_guard_asks_for_a_signed_dossier(personas, deployed):
    assert "No dossier exists" in signed_dossier(deployed["version"])
    dossier_open(actor=personas["officer"], version=deployed["version"])
    assert "is draft" in signed_dossier(deployed["version"])


def test_api_open_save_submit_and_sign(personas, evidenced, api_client, signing_password):
    officer, second = api_client(personas["officer"]), api_client(personas["officer2"])
    opened = officer.post("/api/dossiers/", {"version": evidenced.pk}, format="json")
    assert opened.status_code == 201
    dossier = opened.json()
    saved = officer.post(f"/api/dossiers/{dossier['id']}/save/", {"values": dossier_officer_values(), "edit_count": 0}, format="json")
    assert saved.status_code == 200 and saved.json()["edit_count"] == 1
    stale = second.post(
        f"/api/dossiers/{dossier['id']}/save/", {"values": {next(iter(dossier_officer_values())): "other"}, "edit_count": 0}, format="json"
    )
    assert stale.status_code == 409 and stale.json()["code"] == "edit_conflict" and stale.json()["differs"]
    assert officer.get(f"/api/dossiers/{dossier['id']}/completeness/").json()["overall"]["ratio"] == 1.0
    submitted = officer.post(f"/api/dossiers/{dossier['id']}/submit/")
    assert submitted.status_code == 200
    body = {"password": signing_password, "snapshot_sha256": submitted.json()["snapshot_sha256"]}
    assert officer.post(f"/api/dossiers/{dossier['id']}/sign/", body, format="json").status_code == 403
    signed = second.post(f"/api/dossiers/{dossier['id']}/sign/", body, format="json")
    assert signed.status_code == 200 and signed.json()["signature"]["signer"] == "officer2"
    assert api_client(personas["clinician_north"]).get("/api/dossiers/").status_code == 403
    assert api_client(personas["engineer"]).post("/api/dossiers/", {"version": evidenced.pk}, format="json").status_code == 403
