"""The second officer (issue 17): a version approval, a justified trust exception and a scoring
policy each take two compliance officers: one proposes, a different one of the right institution
confirms. A single officer, the proposer confirming, or an officer of another institution is
refused with a message naming who may act, nothing changes, and the refusal is audited."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import PermissionDenied

from compliance.approvals import approval_check, version_approval_confirm, version_approval_decline, version_approval_propose
from compliance.models import ScoringPolicy, TrustException, VersionApproval
from compliance.trust.policy import DEFAULT_POLICY
from compliance.trust.services import (
    policy_activate,
    policy_active,
    policy_create,
    trust_exception_confirm,
    trust_exception_decline,
    trust_exception_grant,
    trust_guard,
)
from core.errors import Conflict
from core.models import AuditEvent
from registry.choices import VersionStatus
from registry.guards import EVIDENCE
from registry.services import user_create, version_transition
from tests.factories import FoundationModelFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db
JUSTIFICATION = "Pilot at one site under close supervision; the evidence follows within the quarter."


@pytest.fixture
def under_review(institutions):
    return ModelVersionFactory(foundation_model=FoundationModelFactory(provider=institutions["vendor"]), status=VersionStatus.UNDER_REVIEW)


@pytest.fixture
def evidence_in_place(monkeypatch):
    """Every approval guard but the second officer's (and change control, real: a first version) satisfied."""
    for name in ("validation", "dossier", "trust", "risk_file"):
        monkeypatch.setitem(EVIDENCE, name, lambda version: None)


@pytest.fixture
def hospital_officer(institutions):
    return user_create(username="north-officer", role="compliance_officer", institution=institutions["north"])


def _refused(instance, action: str) -> list[str]:
    events = AuditEvent.objects.filter(object_type=instance._meta.label_lower, object_id=str(instance.pk), action=action)
    return [e.changes["refused"] for e in events]


def test_one_officer_cannot_approve_a_version_alone(personas, under_review, evidence_in_place):
    with pytest.raises(Conflict) as caught:
        version_transition(actor=personas["officer"], version=under_review, to_status=VersionStatus.APPROVED)
    assert "two compliance officers of RadVendor GmbH" in str(caught.value) and "who may: officer or officer2" in str(caught.value)
    approval = version_approval_propose(actor=personas["officer"], version=under_review)
    assert "waits for a second compliance officer" in approval_check(under_review) and "who may: officer2" in approval_check(under_review)
    with pytest.raises(PermissionDenied) as caught:
        version_approval_confirm(actor=personas["officer"], approval=approval)
    assert str(caught.value).startswith("Four eyes: officer proposed this") and "who may: officer2" in str(caught.value)
    under_review.refresh_from_db()
    approval.refresh_from_db()
    assert under_review.status == VersionStatus.UNDER_REVIEW and approval.status == "pending"
    assert len(_refused(approval, "confirm_refused")) == 1
    confirmed = version_approval_confirm(actor=personas["officer2"], approval=approval)
    under_review.refresh_from_db()
    assert confirmed.status == "confirmed" and confirmed.decided_by == personas["officer2"] and under_review.status == VersionStatus.APPROVED
    actions = set(AuditEvent.objects.filter(object_type="compliance.versionapproval", object_id=str(approval.pk)).values_list("action", flat=True))
    assert {"create", "confirm", "confirm_refused"} <= actions


def test_a_hospital_officer_can_neither_propose_nor_confirm_a_providers_approval(personas, under_review, hospital_officer):
    with pytest.raises(PermissionDenied, match="Only a compliance officer of RadVendor GmbH may propose approving"):
        version_approval_propose(actor=hospital_officer, version=under_review)
    assert _refused(under_review, "approval_refused")
    approval = version_approval_propose(actor=personas["officer"], version=under_review)
    with pytest.raises(PermissionDenied, match="who may: officer2"):
        version_approval_confirm(actor=hospital_officer, approval=approval)
    assert VersionApproval.objects.get(pk=approval.pk).status == "pending"


def test_a_confirmation_the_guards_refuse_confirms_nothing(personas, under_review):
    approval = version_approval_propose(actor=personas["officer"], version=under_review)
    with pytest.raises(Conflict, match="validation run"):
        version_approval_confirm(actor=personas["officer2"], approval=approval)  # no run, no dossier, no trust assessment
    assert VersionApproval.objects.get(pk=approval.pk).status == "pending"
    assert "validation run" in _refused(approval, "confirm_refused")[0]
    declined = version_approval_decline(actor=personas["officer"], approval=approval, note="Withdrawn until the evidence is in.")
    assert declined.status == "declined"
    with pytest.raises(Conflict, match="declined by officer already"):
        version_approval_confirm(actor=personas["officer2"], approval=approval)


def test_the_approval_api_proposes_confirms_and_answers_with_who_may(personas, under_review, evidence_in_place, api_client):
    proposed = api_client(personas["officer"]).post("/api/version-approvals/", {"version": under_review.pk}, format="json")
    assert proposed.status_code == 201 and proposed.json()["status"] == "pending"
    url = f"/api/version-approvals/{proposed.json()['id']}/confirm/"
    alone = api_client(personas["officer"]).post(url)
    assert alone.status_code == 403 and "who may: officer2" in alone.json()["detail"]
    assert api_client(personas["engineer"]).post(url).status_code == 403
    confirmed = api_client(personas["officer2"]).post(url)
    assert confirmed.status_code == 200 and confirmed.json()["decided_by"] == "officer2"
    assert api_client(personas["engineer"]).get("/api/version-approvals/").json()["results"][0]["status"] == "confirmed"


def test_a_trust_exception_counts_once_a_second_officer_of_the_provider_confirms_it(personas, hospital_officer, run_setup):
    from compliance.trust.services import trust_assess

    version = run_setup["version"]
    assessment = trust_assess(version=version, trigger="manual")
    blocked = next(n for n, p in assessment.principles.items() if p["status"] == "insufficient_evidence" or p.get("below_minimum"))
    with pytest.raises(PermissionDenied, match="Only a compliance officer of RadVendor GmbH may propose"):
        trust_exception_grant(actor=hospital_officer, version=version, principle=blocked, justification=JUSTIFICATION)
    exception = trust_exception_grant(actor=personas["officer"], version=version, principle=blocked, justification=JUSTIFICATION)
    assert "waits for a second officer's confirmation" in trust_guard(version)
    with pytest.raises(PermissionDenied, match="Four eyes: officer proposed this"):
        trust_exception_confirm(actor=personas["officer"], exception=exception)
    with pytest.raises(PermissionDenied, match="who may: officer2"):
        trust_exception_confirm(actor=hospital_officer, exception=exception)
    assert TrustException.objects.get(pk=exception.pk).confirmed_by is None and len(_refused(exception, "confirm_refused")) == 2
    confirmed = trust_exception_confirm(actor=personas["officer2"], exception=exception)
    assert confirmed.confirmed_by == personas["officer2"] and blocked not in (trust_guard(version) or "")


def test_a_waiting_exception_can_be_declined_and_proposed_again(personas, under_review, api_client):
    exception = trust_exception_grant(actor=personas["officer"], version=under_review, principle="usability", justification=JUSTIFICATION)
    declined = api_client(personas["officer2"]).post(f"/api/trust-exceptions/{exception.pk}/decline/", {"note": "Not justified."}, format="json")
    assert declined.status_code == 204 and not TrustException.objects.filter(pk=exception.pk).exists()
    assert AuditEvent.objects.filter(object_type="compliance.trustexception", object_id=str(exception.pk), action="decline").exists()
    again = trust_exception_grant(actor=personas["officer"], version=under_review, principle="usability", justification=JUSTIFICATION)
    assert api_client(personas["officer2"]).post(f"/api/trust-exceptions/{again.pk}/confirm/").json()["confirmed_by"] == "officer2"
    with pytest.raises(Conflict):
        trust_exception_decline(actor=personas["officer"], exception=TrustException.objects.get(pk=again.pk), note="Too late.")


def test_a_scoring_policy_is_active_only_once_a_second_officer_of_the_proposers_institution_confirms_it(personas, hospital_officer, api_client):
    definition = json.loads(json.dumps(DEFAULT_POLICY))
    definition["principles"]["fairness"]["minimum"] = 90
    built_in = policy_active()
    created = api_client(personas["officer"]).post("/api/scoring-policies/", {"name": "Stricter fairness", "definition": definition}, format="json")
    assert created.status_code == 201 and created.json()["active"] is False
    policy = ScoringPolicy.objects.get(pk=created.json()["id"])
    assert policy_active() == built_in
    alone = api_client(personas["officer"]).post(f"/api/scoring-policies/{policy.pk}/activate/")
    assert alone.status_code == 403 and "who may: officer2" in alone.json()["detail"]
    with pytest.raises(PermissionDenied, match="Only a compliance officer of RadVendor GmbH"):
        policy_activate(actor=hospital_officer, policy=policy)
    assert policy_active() == built_in and len(_refused(policy, "activate_refused")) == 2
    activated = api_client(personas["officer2"]).post(f"/api/scoring-policies/{policy.pk}/activate/")
    assert activated.status_code == 200 and activated.json()["confirmed_by"] == "officer2" and policy_active() == policy
    with pytest.raises(Conflict, match="in force already"):
        policy_activate(actor=personas["officer2"], policy=ScoringPolicy.objects.get(pk=policy.pk))
    assert policy_create(actor=personas["officer"], name="Next", definition=definition).version == DEFAULT_POLICY["version"] + 2
