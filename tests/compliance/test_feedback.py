"""Clinician feedback through the service and the API: who may report on what, pseudonymous case
references, one row per form, the edit window, and the monitor's counts."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from compliance.feedback import case_reference_check, feedback_submit, feedback_update
from compliance.models import DeploymentMonitor, Feedback
from core.errors import Conflict
from core.models import AuditEvent
from registry.choices import DeploymentStatus, VersionStatus

GOOD = {"case_reference": "CASE-7f3a9c", "model_output": "pneumothorax 0.82 (flagged)", "agreement": "disagree", "error_type": "false_positive"}


@pytest.mark.parametrize("reference", ["CASE-7f3a9c", "acc-42-b", "7f3a9c2e41d0b8a6", "R2024_x17"])
def test_pseudonymous_references_are_accepted(reference):
    assert case_reference_check(f"  {reference} ") == reference


@pytest.mark.parametrize(
    "reference,why",
    [
        ("John Smith", "without spaces"),
        ("Maria.Gonzalez", "person's name"),
        ("1234567", "long run of digits"),
        ("NL-123456789", "long run of digits"),
        ("1980-03-14", "date"),
        ("pt19800314x", "date"),
        ("jane@example.org", "without spaces"),
        ("<script>", "without spaces"),
        ("abc", "4 to 64"),
    ],
)
def test_references_that_look_like_identifiers_are_refused_with_the_reason(reference, why):
    with pytest.raises(ValidationError) as caught:
        case_reference_check(reference)
    assert why in caught.value.message_dict["case_reference"][0]


@pytest.mark.django_db
def test_a_report_is_stored_once_counted_and_audited(personas, deployed):
    key = uuid.uuid4()
    first, created = feedback_submit(actor=personas["clinician_north"], deployment=deployed["north"], submission_key=key, **GOOD)
    again, created_again = feedback_submit(actor=personas["clinician_north"], deployment=deployed["north"], submission_key=key, **GOOD)
    assert created and not created_again and again.pk == first.pk and Feedback.objects.count() == 1
    assert (first.institution_id, first.version_id) == (deployed["north"].institution_id, deployed["version"].pk)
    monitor = DeploymentMonitor.objects.get(deployment=deployed["north"])
    assert (monitor.n_feedback, monitor.n_disagree, monitor.n_agree) == (1, 1, 0)
    assert AuditEvent.objects.filter(object_type="compliance.feedback", object_id=str(first.pk), action="create").count() == 1


@pytest.mark.django_db
def test_a_clinician_reports_only_at_their_institution_on_a_version_in_use(personas, deployed):
    with pytest.raises(PermissionDenied, match="your institution"):
        feedback_submit(actor=personas["clinician_north"], deployment=deployed["south"], **GOOD)
    deployed["version"].status = VersionStatus.RETIRED
    deployed["version"].save()
    with pytest.raises(ValidationError, match="retired"):
        feedback_submit(actor=personas["clinician_north"], deployment=deployed["north"], **GOOD)
    deployed["north"].status = DeploymentStatus.SUSPENDED
    deployed["north"].save()
    with pytest.raises(ValidationError, match="suspended"):
        feedback_submit(actor=personas["clinician_north"], deployment=deployed["north"], **GOOD)
    assert not Feedback.objects.exists()


@pytest.mark.django_db
def test_error_type_goes_with_disagreement_only(personas, deployed):
    with pytest.raises(ValidationError) as caught:
        feedback_submit(actor=personas["clinician_north"], deployment=deployed["north"], **{**GOOD, "error_type": ""})
    assert "kind of error" in caught.value.message_dict["error_type"][0]
    with pytest.raises(ValidationError) as caught:
        feedback_submit(actor=personas["clinician_north"], deployment=deployed["north"], **{**GOOD, "agreement": "agree"})
    assert "empty when you agree" in caught.value.message_dict["error_type"][0]


@pytest.mark.django_db
def test_own_feedback_is_editable_within_the_window_then_frozen(personas, deployed, report, settings):
    feedback = report("disagree")
    updated = feedback_update(
        actor=personas["clinician_north"],
        feedback=feedback,
        fields={"agreement": "agree", "error_type": "", "comment": "On a second look the flag was right."},
    )
    monitor = DeploymentMonitor.objects.get(deployment=deployed["north"])
    assert updated.agreement == "agree" and (monitor.n_agree, monitor.n_disagree, monitor.n_feedback) == (1, 0, 1)
    with pytest.raises(PermissionDenied):
        feedback_update(actor=personas["clinician_south"], feedback=feedback, fields={"comment": "not mine"})
    with pytest.raises(ValidationError):
        feedback_update(actor=personas["clinician_north"], feedback=feedback, fields={"deployment": deployed["south"]})
    Feedback.objects.filter(pk=feedback.pk).update(created_at=feedback.created_at - timedelta(hours=settings.RADTRUST_FEEDBACK_EDIT_HOURS, minutes=1))
    feedback.refresh_from_db()
    with pytest.raises(Conflict, match="frozen"):
        feedback_update(actor=personas["clinician_north"], feedback=feedback, fields={"comment": "too late"})


@pytest.mark.django_db
def test_api_submit_list_and_double_submit(personas, deployed, api_client):
    client = api_client(personas["clinician_north"])
    body = {
        **GOOD,
        "deployment": deployed["north"].pk,
        "submission_key": str(uuid.uuid4()),
        "severity": "moderate",
        "minutes_saved": -3,
        "explanation_helped": 4,
    }
    first = client.post("/api/feedback/", body, format="json")
    second = client.post("/api/feedback/", body, format="json")
    assert first.status_code == 201 and second.status_code == 200 and first.json()["id"] == second.json()["id"]
    assert first.json()["clinician"] == "clinician_north" and first.json()["editable_until"]
    api_client(personas["clinician_south"]).post("/api/feedback/", {**GOOD, "deployment": deployed["south"].pk}, format="json")
    assert [row["id"] for row in client.get("/api/feedback/").json()["results"]] == [first.json()["id"]]  # only their own
    assert len(api_client(personas["officer"]).get("/api/feedback/").json()["results"]) == 2
    assert len(api_client(personas["engineer_south"]).get("/api/feedback/").json()["results"]) == 0  # not their model


@pytest.mark.django_db
def test_api_refusals_are_specific(personas, deployed, api_client):
    client = api_client(personas["clinician_north"])
    response = client.post("/api/feedback/", {**GOOD, "deployment": deployed["south"].pk}, format="json")
    assert response.status_code == 403 and "your institution" in response.json()["detail"]
    response = client.post("/api/feedback/", {**GOOD, "deployment": deployed["north"].pk, "case_reference": "Jan Jansen"}, format="json")
    assert response.status_code == 400 and "case_reference" in response.json()
    response = client.post("/api/feedback/", {**GOOD, "deployment": deployed["north"].pk, "comment": "x" * 2001}, format="json")
    assert response.status_code == 400 and "comment" in response.json()
    response = client.post("/api/feedback/", {**GOOD, "deployment": deployed["north"].pk, "explanation_helped": 9}, format="json")
    assert response.status_code == 400 and "explanation_helped" in response.json()
    assert api_client(personas["officer"]).post("/api/feedback/", {**GOOD, "deployment": deployed["north"].pk}, format="json").status_code == 403
    assert not Feedback.objects.exists()


@pytest.mark.django_db
def test_api_edit_own_feedback(personas, deployed, report, api_client):
    feedback = report("disagree")
    response = api_client(personas["clinician_north"]).patch(f"/api/feedback/{feedback.pk}/", {"severity": "high"}, format="json")
    assert response.status_code == 200 and response.json()["severity"] == "high"
    response = api_client(personas["clinician_south"]).patch(f"/api/feedback/{feedback.pk}/", {"severity": "low"}, format="json")
    assert response.status_code == 404  # another clinician's feedback does not exist for them
