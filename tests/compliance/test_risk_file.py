"""The risk management file (AI Act Art. 9, ISO 14971): estimates on the file's matrix, controls
verified by the version's own evidence, signals that re-open an estimate, two-officer acceptance,
approval, the approval guard, carrying forward to a child version, and the documents."""

from __future__ import annotations

import subprocess

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from compliance.choices import DocumentKind, RiskControlKind, RiskFileStatus, VerificationKind
from compliance.document_evidence import Attachments, Table, evidence_elements, residual_risk_elements
from compliance.document_render import RenderSource, document_html, html_to_pdf
from compliance.dossier_evidence import dossier_evidence
from compliance.models import Alert, HazardSignal, RiskFile
from compliance.qms import qms_standards_seed
from compliance.risk_file import (
    approval_blockers,
    hazard_acceptance_confirm,
    hazard_acceptance_propose,
    hazard_add,
    hazard_estimate,
    hazard_signal_link,
    risk_control_add,
    risk_control_verify,
    risk_file_approve,
    risk_file_check,
    risk_file_open,
    risk_file_update,
)
from compliance.risk_matrix import DEFAULT_MATRIX, MatrixError, matrix_clean
from core.errors import Conflict
from core.models import AuditEvent
from registry.choices import VersionStatus
from registry.guards import transition_refusals
from tests.factories import FoundationModelFactory, ModelVersionFactory
from validation.models import ValidationRun

pytestmark = pytest.mark.django_db
BENEFIT = "The benefit of flagging nodules early outweighs the residual risks listed here for the intended population."


@pytest.fixture
def version(institutions, personas):
    model = FoundationModelFactory(provider=institutions["vendor"])
    return ModelVersionFactory(foundation_model=model, status=VersionStatus.UNDER_REVIEW, created_by=personas["engineer"])


def _controlled(officer, risk_file, *, residual=(1, 2)):
    hazard = hazard_add(actor=officer, risk_file=risk_file, hazard="Missed nodule", situation="Unflagged study read last", harm="Delayed diagnosis")
    hazard = hazard_estimate(actor=officer, hazard=hazard, probability=3, severity=4, residual_probability=residual[0], residual_severity=residual[1])
    control = risk_control_add(actor=officer, hazard=hazard, kind=RiskControlKind.PROTECTIVE_MEASURE, description="Referral of uncertain cases.")
    return hazard, control


def test_the_default_matrix_labels_every_estimate_and_a_bad_matrix_is_refused():
    matrix = matrix_clean(DEFAULT_MATRIX)
    assert matrix.estimate_text(3, 4) == "Occasional x Critical: Unacceptable"
    assert matrix.estimate_text(1, 1) == "Improbable x Negligible: Acceptable"
    assert matrix.estimate_text(None, 3) == "not estimated"
    broken = {**DEFAULT_MATRIX, "regions": DEFAULT_MATRIX["regions"][:4]}
    with pytest.raises(MatrixError, match="one row per probability level"):
        matrix_clean(broken)


def test_only_the_providers_officers_open_the_file(version, personas):
    with pytest.raises(PermissionDenied, match="Only a compliance officer of RadVendor"):
        risk_file_open(actor=personas["engineer"], version=version)
    risk_file = risk_file_open(actor=personas["officer"], version=version)
    assert risk_file.status == RiskFileStatus.DRAFT and risk_file.matrix == DEFAULT_MATRIX
    assert risk_file_open(actor=personas["officer"], version=version) == risk_file


def test_approval_needs_controlled_verified_hazards_and_a_conclusion(version, personas):
    officer = personas["officer"]
    risk_file = risk_file_open(actor=officer, version=version)
    hazard, control = _controlled(officer, risk_file)
    with pytest.raises(Conflict) as refused:
        risk_file_approve(actor=officer, risk_file=risk_file)
    assert "H1: 1 of 1 controls not verified" in str(refused.value) and "benefit-risk conclusion" in str(refused.value)
    risk_control_verify(actor=officer, control=control, kind=VerificationKind.REFERENCE, reference="TR-014 Reader training records")
    risk_file_update(actor=officer, risk_file=risk_file, benefit_risk=BENEFIT)
    approved = risk_file_approve(actor=officer, risk_file=risk_file)
    assert approved.status == RiskFileStatus.APPROVED and approved.approved_by == officer
    assert AuditEvent.objects.filter(object_type="compliance.riskfile", action="approve").exists()
    assert AuditEvent.objects.filter(object_type="compliance.riskcontrol", action="verify").exists()


def test_a_verification_must_name_this_versions_evidence(version, personas):
    officer = personas["officer"]
    _, control = _controlled(officer, risk_file_open(actor=officer, version=version))
    with pytest.raises(ValidationError, match="succeeded validation run"):
        risk_control_verify(actor=officer, control=control, kind=VerificationKind.RUN, run=None)
    with pytest.raises(ValidationError, match="does not answer"):
        risk_control_verify(actor=officer, control=control, kind=VerificationKind.DOSSIER_FIELD, field="14_4d_override")
    with pytest.raises(ValidationError, match="dossier field an officer writes"):
        risk_control_verify(actor=officer, control=control, kind=VerificationKind.DOSSIER_FIELD, field="no_such_field")


def test_a_control_is_verified_by_an_analysis_of_a_run(evidenced, personas):
    officer = personas["officer"]
    run = ValidationRun.objects.filter(version=evidenced).first()
    _, control = _controlled(officer, risk_file_open(actor=officer, version=evidenced))
    with pytest.raises(ValidationError, match="Choose one of"):
        risk_control_verify(actor=officer, control=control, kind=VerificationKind.RUN_SECTION, run=run, section="astrology")
    verified = risk_control_verify(actor=officer, control=control, kind=VerificationKind.RUN_SECTION, run=run, section="subgroups")
    assert verified.verification_run == run and verified.verified_by == officer


def test_an_unacceptable_residual_risk_needs_two_officers(version, personas):
    officer, officer2 = personas["officer"], personas["officer2"]
    risk_file = risk_file_open(actor=officer, version=version)
    hazard, control = _controlled(officer, risk_file, residual=(3, 3))
    risk_control_verify(actor=officer, control=control, kind=VerificationKind.REFERENCE, reference="TR-014 Reader training records")
    risk_file = risk_file_update(actor=officer, risk_file=risk_file, benefit_risk=BENEFIT)
    assert approval_blockers(risk_file) == ["H1: Residual risk acceptable only after benefit-risk review: two officers must accept it."]
    hazard = hazard_acceptance_propose(actor=officer, hazard=hazard, reason="No further control is practicable; the benefit outweighs it.")
    with pytest.raises(PermissionDenied, match="Four eyes"):
        hazard_acceptance_confirm(actor=officer, hazard=hazard)
    assert approval_blockers(risk_file)  # proposed is not accepted
    hazard_acceptance_confirm(actor=officer2, hazard=hazard)
    assert approval_blockers(risk_file) == []


def test_a_linked_alert_reopens_the_estimate_and_the_approval(version, personas):
    officer = personas["officer"]
    risk_file = risk_file_open(actor=officer, version=version)
    hazard, control = _controlled(officer, risk_file)
    risk_control_verify(actor=officer, control=control, kind=VerificationKind.REFERENCE, reference="TR-014 Reader training records")
    risk_file_update(actor=officer, risk_file=risk_file, benefit_risk=BENEFIT)
    risk_file_approve(actor=officer, risk_file=risk_file)
    alert = Alert.objects.create(version=version, kind="disagreement_rise", severity="warning", subject="disagreement", message="rising")
    link = hazard_signal_link(actor=officer, hazard=hazard, alert=alert, note="Clinicians disagree more on small nodules.")
    risk_file.refresh_from_db()
    assert risk_file.status == RiskFileStatus.DRAFT
    assert approval_blockers(risk_file) == [f"H1: Estimate re-opened by alert {alert.pk}: estimate it again."]
    assert "not approved" in risk_file_check(version) and f"re-opened by alert {alert.pk}" in risk_file_check(version)
    hazard_estimate(actor=officer, hazard=hazard, probability=3, severity=4, residual_probability=1, residual_severity=2)
    assert approval_blockers(risk_file) == [] and HazardSignal.objects.get() == link
    other = ModelVersionFactory(foundation_model=version.foundation_model)
    foreign = Alert.objects.create(version=other, kind="input_drift", severity="warning", subject="x", message="y")
    with pytest.raises(ValidationError, match="Link a signal about"):
        hazard_signal_link(actor=officer, hazard=hazard, alert=foreign, note="Not this version's.")


def test_version_approval_is_refused_without_an_approved_risk_file(version, personas):
    assert any("No risk management file" in r for r in transition_refusals(version, VersionStatus.APPROVED))
    risk_file_open(actor=personas["officer"], version=version)
    assert any("risk management file of" in r and "not approved" in r for r in transition_refusals(version, VersionStatus.APPROVED))


def test_a_child_version_starts_from_a_copy_of_its_parents_file(version, personas):
    officer = personas["officer"]
    parent_file = risk_file_open(actor=officer, version=version)
    hazard, control = _controlled(officer, parent_file)
    risk_control_verify(actor=officer, control=control, kind=VerificationKind.REFERENCE, reference="TR-014 Reader training records")
    child = ModelVersionFactory(foundation_model=version.foundation_model, parent=version, created_by=personas["engineer"])
    child_file = RiskFile.objects.get(version=child)  # copied when the child was registered
    copied = child_file.hazards.get()
    assert child_file.carried_from == parent_file and copied.carried_from == hazard
    assert (copied.probability, copied.severity, copied.harm) == (3, 4, "Delayed diagnosis")
    assert copied.controls.get().verified_by is None  # evidence about the parent does not verify the child


def test_the_documents_show_the_risk_table_and_the_residual_risks(version, personas):
    officer = personas["officer"]
    risk_file = risk_file_open(actor=officer, version=version)
    _, control = _controlled(officer, risk_file)
    risk_control_verify(actor=officer, control=control, kind=VerificationKind.REFERENCE, reference="TR-014 Reader training records")
    data = dossier_evidence(version, {"risk_file"})["risk_file"]
    elements = evidence_elements("risk_file", data, Attachments())
    table = next(e for e in elements if isinstance(e, Table))
    assert table.rows[0][0] == "H1" and table.rows[0][4] == "Occasional x Critical: Unacceptable"
    assert "TR-014 Reader training records" in table.rows[0][5] and table.rows[0][6] == "Improbable x Minor: Acceptable"
    residual = residual_risk_elements(data)[0]
    assert residual.rows == [["Delayed diagnosis", "Improbable x Minor: Acceptable", "Referral of uncertain cases."]]
    assert "No residual risk" in residual_risk_elements(None)[0].text


def test_the_api_keeps_and_approves_a_file(version, personas, api_client):
    client, base = api_client(personas["officer"]), f"/api/risk-files/{version.pk}"
    assert client.get(f"{base}/").status_code == 404
    assert client.post(f"{base}/open/").status_code == 201
    hazard = client.post(f"{base}/hazards/", {"hazard": "Missed nodule", "situation": "Read last", "harm": "Delayed diagnosis"}).json()["hazards"][0]
    estimate = {"hazard": hazard["id"], "probability": 3, "severity": 4, "residual_probability": 1, "residual_severity": 2}
    assert client.post(f"{base}/estimates/", estimate, format="json").json()["hazards"][0]["initial"] == "Occasional x Critical: Unacceptable"
    body = client.post(f"{base}/controls/", {"hazard": hazard["id"], "kind": "protective_measure", "description": "Referral."}).json()
    control = body["hazards"][0]["controls"][0]["id"]
    client.post(f"{base}/verifications/", {"control": control, "kind": "reference", "reference": "TR-014 Reader training"})
    client.post(f"{base}/conclusion/", {"benefit_risk": BENEFIT})
    assert client.post(f"{base}/approve/").json()["status"] == "Approved"
    assert risk_file_check(version) is None
    refused = api_client(personas["auditor"]).post(f"{base}/hazards/", {"hazard": "x", "situation": "y", "harm": "z"})
    assert refused.status_code == 403


def test_the_page_shows_the_matrix_and_takes_the_forms(version, personas, client):
    client.force_login(personas["officer"])
    url = f"/versions/{version.pk}/risk-file/"
    assert "Open the risk file" in client.get(url).content.decode()
    client.post(url, {"step": "open"})
    client.post(url, {"step": "hazard", "hazard": "Missed nodule", "situation": "Read last", "harm": "Delayed diagnosis"})
    hazard = RiskFile.objects.get(version=version).hazards.get()
    client.post(url, {"step": "estimate", "hazard": hazard.pk, "probability": 3, "severity": 4})
    page = client.get(url).content.decode()
    assert "Occasional x Critical: Unacceptable" in page and "Risk matrix" in page and "No risk control." in page
    client.force_login(personas["auditor"])
    page = client.get(url).content.decode()
    assert "Occasional x Critical" in page and "Add a hazard" not in page


def test_the_pdfs_print_the_risk_table_and_the_residual_risks(version, personas):
    officer = personas["officer"]
    _, control = _controlled(officer, risk_file_open(actor=officer, version=version))
    risk_control_verify(actor=officer, control=control, kind=VerificationKind.REFERENCE, reference="TR-014 Reader training records")
    qms_standards_seed(actor=officer, institution=version.foundation_model.provider)
    evidence = dossier_evidence(version, {"risk_file", "qms_register"})
    signature = {"signer": "officer2", "signed_at": "2026-01-01T00:00:00+00:00", "meaning": "approval", "snapshot_sha256": "0" * 64}
    source = RenderSource(1, 1, {"version": {"label": "1.0"}, "evidence": evidence}, "0" * 64, signature)
    for kind, expected in (
        (
            DocumentKind.TECHNICAL_DOCUMENTATION,
            ("Risk table (ISO 14971:2019; AI Act Art. 9)", "Occasional", "Unacceptable", "TR-014", "Standards applied"),
        ),
        (DocumentKind.INSTRUCTIONS_FOR_USE, ("Residual risks after the risk controls", "Improbable x Minor", "Referral of uncertain")),
    ):
        pdf = html_to_pdf(document_html(kind, source), created=signature["signed_at"]).data
        text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
        flat = " ".join(text.split())
        assert all(e in flat for e in expected), (kind, [e for e in expected if e not in flat])
