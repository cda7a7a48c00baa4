"""Version lifecycle: allowed transitions, roles, guards, and what a refusal looks like."""

from __future__ import annotations

import pytest

from core.models import AuditEvent
from registry.choices import ProvenanceRole, VersionStatus
from registry.guards import EVIDENCE, register_evidence_check
from tests.factories import DatasetFactory, DeploymentFactory, FoundationModelFactory, ModelVersionFactory, ProvenanceFactory


@pytest.fixture
def version(institutions):
    return ModelVersionFactory(foundation_model=FoundationModelFactory(provider=institutions["vendor"]))


def _move(api_client, user, version, target):
    return api_client(user).post(f"/api/model-versions/{version.pk}/transition/", {"to_status": target})


@pytest.mark.django_db
def test_draft_needs_training_provenance_before_validation(version, personas, api_client):
    response = _move(api_client, personas["engineer"], version, VersionStatus.IN_VALIDATION)
    assert response.status_code == 409
    assert "pre-trained or fine-tuned" in response.json()["detail"]
    version.refresh_from_db()
    assert version.status == VersionStatus.DRAFT


@pytest.mark.django_db
def test_internal_test_data_alone_does_not_satisfy_the_provenance_guard(version, personas, api_client):
    ProvenanceFactory(version=version, role=ProvenanceRole.INTERNAL_TEST)
    assert _move(api_client, personas["engineer"], version, VersionStatus.IN_VALIDATION).status_code == 409


@pytest.mark.django_db
def test_engineer_moves_a_linked_draft_into_validation_and_it_is_audited(version, personas, api_client):
    ProvenanceFactory(version=version, role=ProvenanceRole.FINE_TUNING)
    response = _move(api_client, personas["engineer"], version, VersionStatus.IN_VALIDATION)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == VersionStatus.IN_VALIDATION
    event = AuditEvent.objects.filter(object_type="registry.modelversion", object_id=str(version.pk), action="transition").get()
    assert event.changes["status"] == [VersionStatus.DRAFT, VersionStatus.IN_VALIDATION]
    assert event.actor_username == "engineer"


@pytest.mark.django_db
def test_review_is_refused_until_validation_evidence_exists(version, personas, api_client):
    version.status = VersionStatus.IN_VALIDATION
    version.save()
    response = _move(api_client, personas["engineer"], version, VersionStatus.UNDER_REVIEW)
    assert response.status_code == 409
    assert "validation" in response.json()["detail"]


@pytest.mark.django_db
def test_approval_names_every_missing_piece_of_evidence(version, personas, api_client):
    version.status = VersionStatus.UNDER_REVIEW
    version.save()
    detail = _move(api_client, personas["officer"], version, VersionStatus.APPROVED).json()["detail"]
    assert "validation run" in detail and "No dossier exists" in detail and "No trust assessment exists" in detail


@pytest.mark.django_db
def test_a_registered_evidence_check_replaces_the_refusal(version, personas, api_client, monkeypatch):
    monkeypatch.setitem(EVIDENCE, "validation", lambda v: None)
    monkeypatch.setitem(EVIDENCE, "dossier", lambda v: None)
    version.status = VersionStatus.UNDER_REVIEW
    version.save()
    response = _move(api_client, personas["officer"], version, VersionStatus.APPROVED)
    assert response.status_code == 409 and "No trust assessment exists" in response.json()["detail"]  # the trust guard
    monkeypatch.setitem(EVIDENCE, "trust", lambda v: None)
    response = _move(api_client, personas["officer"], version, VersionStatus.APPROVED)
    assert response.status_code == 409 and "two compliance officers" in response.json()["detail"]  # the second officer's guard
    monkeypatch.setitem(EVIDENCE, "second_officer", lambda v: None)
    monkeypatch.setitem(EVIDENCE, "risk_file", lambda v: None)
    assert _move(api_client, personas["officer"], version, VersionStatus.APPROVED).status_code == 200


def test_unknown_evidence_check_name_is_rejected():
    with pytest.raises(ValueError):
        register_evidence_check("vibes", lambda v: None)


@pytest.mark.django_db
def test_engineer_may_not_approve(version, personas, api_client):
    version.status = VersionStatus.UNDER_REVIEW
    version.save()
    response = _move(api_client, personas["engineer"], version, VersionStatus.APPROVED)
    assert response.status_code == 403
    assert "approved" in response.json()["detail"]


@pytest.mark.django_db
def test_skipping_a_step_is_refused_with_the_allowed_next_steps(version, personas, api_client):
    response = _move(api_client, personas["officer"], version, VersionStatus.DEPLOYED)
    assert response.status_code == 409
    assert "allowed next: in_validation, retired" in response.json()["detail"]


@pytest.mark.django_db
def test_retired_is_final(version, personas, api_client):
    assert _move(api_client, personas["officer"], version, VersionStatus.RETIRED).status_code == 200
    response = _move(api_client, personas["engineer"], version, VersionStatus.DRAFT)
    assert response.status_code == 409
    assert "final" in response.json()["detail"]


@pytest.mark.django_db
def test_deployed_needs_an_open_deployment(version, institutions, personas, api_client):
    version.status = VersionStatus.APPROVED
    version.save()
    assert _move(api_client, personas["officer"], version, VersionStatus.DEPLOYED).status_code == 409
    DeploymentFactory(version=version, institution=institutions["north"], status="planned")
    assert _move(api_client, personas["officer"], version, VersionStatus.DEPLOYED).status_code == 200


@pytest.mark.django_db
def test_unknown_status_is_a_field_error(version, personas, api_client):
    response = _move(api_client, personas["engineer"], version, "shipped")
    assert response.status_code == 400
    assert "to_status" in response.json()


@pytest.mark.django_db
def test_deploying_an_unapproved_version_is_refused(version, institutions, personas, api_client):
    response = api_client(personas["officer"]).post("/api/deployments/", {"version": version.pk, "institution": institutions["north"].pk})
    assert response.status_code == 409
    assert "approved" in response.json()["detail"]


@pytest.mark.django_db
def test_second_open_deployment_at_the_same_site_is_a_conflict(version, institutions, personas, api_client):
    from tests.factories import within_clinical_investigation

    version.status = VersionStatus.APPROVED
    version.save()
    # not placed on the market: deployable within a clinical investigation (tests/compliance/test_market_steps.py)
    within_clinical_investigation(version, institutions["north"], personas["officer"])
    client = api_client(personas["officer"])
    body = {"version": version.pk, "institution": institutions["north"].pk, "revalidation_cadence_days": 30}
    assert client.post("/api/deployments/", body).status_code == 201
    assert client.post("/api/deployments/", body).status_code == 409


@pytest.mark.django_db
def test_provenance_freezes_once_the_version_is_under_review(version, institutions, personas, api_client):
    version.status = VersionStatus.UNDER_REVIEW
    version.save()
    dataset = DatasetFactory(institution=institutions["vendor"])
    response = api_client(personas["engineer"]).post("/api/provenance/", {"version": version.pk, "dataset": dataset.pk, "role": "fine_tuning"})
    assert response.status_code == 409
    assert "new version" in response.json()["detail"]


@pytest.mark.django_db
def test_engineer_cannot_link_a_dataset_they_cannot_see(version, institutions, personas, api_client):
    hidden = DatasetFactory(institution=institutions["south"])
    response = api_client(personas["engineer"]).post("/api/provenance/", {"version": version.pk, "dataset": hidden.pk, "role": "fine_tuning"})
    assert response.status_code == 400
    assert "dataset" in response.json()


@pytest.mark.django_db
def test_duplicate_provenance_is_a_conflict(version, personas, api_client, institutions):
    dataset = DatasetFactory(institution=institutions["vendor"])
    client = api_client(personas["engineer"])
    body = {"version": version.pk, "dataset": dataset.pk, "role": "fine_tuning"}
    assert client.post("/api/provenance/", body).status_code == 201
    assert client.post("/api/provenance/", body).status_code == 409


@pytest.mark.django_db
def test_artifact_fields_cannot_be_changed_through_the_api(version, personas, api_client):
    response = api_client(personas["engineer"]).patch(
        f"/api/model-versions/{version.pk}/", {"artifact_sha256": "0" * 64, "release_notes": "Better notes"}
    )
    assert response.status_code == 200
    version.refresh_from_db()
    assert version.artifact_sha256 != "0" * 64
    assert version.release_notes == "Better notes"


@pytest.mark.django_db
def test_officer_may_send_a_version_under_review_back_to_validation(version, personas, api_client):
    ProvenanceFactory(version=version, role=ProvenanceRole.FINE_TUNING)
    version.status = VersionStatus.UNDER_REVIEW
    version.save()
    response = _move(api_client, personas["officer"], version, VersionStatus.IN_VALIDATION)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == VersionStatus.IN_VALIDATION


@pytest.mark.django_db
def test_officer_may_not_start_validation_of_a_draft(version, personas, api_client):
    ProvenanceFactory(version=version, role=ProvenanceRole.FINE_TUNING)
    response = _move(api_client, personas["officer"], version, VersionStatus.IN_VALIDATION)
    assert response.status_code == 403
    assert "from 'draft'" in response.json()["detail"]


@pytest.mark.django_db
def test_release_notes_freeze_once_the_version_is_under_review(version, personas, api_client):
    version.status = VersionStatus.UNDER_REVIEW
    version.save()
    response = api_client(personas["engineer"]).patch(f"/api/model-versions/{version.pk}/", {"release_notes": "rewritten"})
    assert response.status_code == 409
    assert "frozen" in response.json()["detail"]
