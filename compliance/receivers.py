"""What compliance connects when Django starts: the audit trail of its records, the evidence checks
of the lifecycle guards, and what it does when something happens below it: validation's signals
(a run succeeded, a site reported) and saves of the registry records and dossiers that trust
scores read. Connected once by ``ComplianceConfig.ready``; each receiver runs inside the sender's
transaction.
"""

from __future__ import annotations

from django.db.models.signals import post_save, pre_save

from compliance import notification_rules
from compliance.alerts import alerts_raise_for_run
from compliance.approvals import approval_check
from compliance.change_control import change_control_guard
from compliance.choices import TrustTrigger
from compliance.dossiers import signed_dossier
from compliance.market import deployment_market_check
from compliance.models import (
    Alert,
    AwarenessCorrection,
    ChangePlan,
    ChangePlanApproval,
    ClinicalInvestigation,
    ConformityAssessment,
    CorrectiveAction,
    Document,
    Dossier,
    DossierSignature,
    Feedback,
    FieldSafetyNotice,
    Hazard,
    HazardSignal,
    Incident,
    IncidentDecision,
    IncidentIntake,
    IncidentReport,
    MarketPlacement,
    MarketWithdrawal,
    QmsProcedure,
    QmsStandard,
    ReleaseEvidence,
    RiskControl,
    RiskFile,
    ScoringPolicy,
    TrustAssessment,
    TrustException,
    UsageLogging,
    VersionApproval,
)
from compliance.risk_file import risk_file_carry_forward, risk_file_check
from compliance.trust.services import trust_guard, trust_request
from compliance.vigilance import lock_refusal
from core.audit import audit_register
from core.errors import Conflict
from registry.guards import register_evidence_check
from registry.models import Dataset, FoundationModel, ModelVersion, Provenance
from validation.models import FederatedJob, ValidationRun
from validation.signals import run_succeeded, site_report_received


def run_succeeded_received(sender, run, findings, **kwargs) -> None:
    """Raise the run's alerts, then rescore the version now (not debounced: one run, one rescore)."""
    alerts_raise_for_run(run=run, findings=findings)
    trust_request(version_id=run.version_id, trigger=TrustTrigger.RUN_FINISHED, debounce=False)


def site_report_saved(sender, job, **kwargs) -> None:
    """Universality reads the pooled sites and their heterogeneity; reports of one study arrive in a burst."""
    trust_request(version_id=job.study.version_id, trigger=TrustTrigger.SITE_REPORT)


def dataset_saved(sender, instance, raw=False, **kwargs) -> None:
    """A changed datasheet asks every version it is linked to for a rescore."""
    if raw:
        return
    for version_id in set(instance.provenance.values_list("version_id", flat=True)):
        trust_request(version_id=version_id, trigger=TrustTrigger.DATASHEET_CHANGED)


def provenance_saved(sender, instance, raw=False, **kwargs) -> None:
    if not raw:
        trust_request(version_id=instance.version_id, trigger=TrustTrigger.PROVENANCE_CHANGED)


def dossier_saved(sender, instance, raw=False, **kwargs) -> None:
    if not raw:
        trust_request(version_id=instance.version_id, trigger=TrustTrigger.DOSSIER_CHANGED)


def version_registered(sender, instance, created, raw=False, **kwargs) -> None:
    """A child version starts its risk file from a copy of its parent's (Art. 9: the process runs through the lifecycle)."""
    if created and not raw:
        risk_file_carry_forward(version=instance)


def investigation_lock(sender, instance, raw=False, **kwargs) -> None:
    """Refuse a change of a version's artifact, intended purpose or class while an incident on it is
    investigated and the authority is not yet informed (AI Act Art. 73(6); ``vigilance.lock_refusal``)."""
    if raw:
        return
    reason = lock_refusal(instance)
    if reason:
        raise Conflict(reason, code="investigation_lock")


def connect() -> None:
    # Feedback, incidents and their actions, signatures, stored documents, change plans and their
    # approvals, and conformity assessments are records an authority may ask for; the deployment
    # monitor is derived from feedback and not audited.
    for model in (Incident, CorrectiveAction, DossierSignature, Document, ChangePlan, ChangePlanApproval, ConformityAssessment):
        audit_register(model)
    for model in (MarketPlacement, MarketWithdrawal, ClinicalInvestigation):  # the steps on the market (compliance.market)
        audit_register(model)
    audit_register(ReleaseEvidence)  # pinned by an officer: the runs (a many-to-many event) and the operating point
    audit_register(Dossier, exclude=("snapshot",))  # its hash is audited; the frozen body stays in the row
    audit_register(Alert)  # raised, acknowledged, resolved
    audit_register(ScoringPolicy)
    audit_register(TrustAssessment, exclude=("principles", "chart_svg"))  # the scores are in the row; the event says it was made
    audit_register(TrustException)
    audit_register(VersionApproval)
    for model in (IncidentIntake, AwarenessCorrection, IncidentReport, IncidentDecision, FieldSafetyNotice):
        audit_register(model)  # vigilance: each step of an incident, as an authority would ask for it
    pre_save.connect(investigation_lock, sender=ModelVersion, dispatch_uid="vigilance:lock_version")
    pre_save.connect(investigation_lock, sender=FoundationModel, dispatch_uid="vigilance:lock_model")
    for model in (RiskFile, Hazard, RiskControl, HazardSignal, QmsStandard, QmsProcedure):  # the risk file and the QMS register
        audit_register(model)
    audit_register(Feedback, personal=True)  # a case reference and a clinician's comment: pseudonymised after their retention
    audit_register(UsageLogging)  # a deployment's logger account and the retention of its usage logs
    register_evidence_check("dossier", signed_dossier)
    register_evidence_check("trust", trust_guard)
    register_evidence_check("change_control", change_control_guard)
    register_evidence_check("second_officer", approval_check)
    register_evidence_check("market", deployment_market_check)
    register_evidence_check("risk_file", risk_file_check)
    run_succeeded.connect(run_succeeded_received, sender=ValidationRun, dispatch_uid="compliance:run_succeeded")
    site_report_received.connect(site_report_saved, sender=FederatedJob, dispatch_uid="compliance:site_report")
    post_save.connect(dataset_saved, sender=Dataset, dispatch_uid="trust:dataset")
    post_save.connect(provenance_saved, sender=Provenance, dispatch_uid="trust:provenance")
    post_save.connect(dossier_saved, sender=Dossier, dispatch_uid="trust:dossier")
    notification_rules.connect()  # who is told of what (dossiers, critical alerts, high-severity reports, suspensions)
    post_save.connect(version_registered, sender=ModelVersion, dispatch_uid="risk_file:carry_forward")
