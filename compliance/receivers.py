"""What compliance connects when Django starts: the audit trail of its records, the evidence checks
of the lifecycle guards, and what it does when something happens below it: validation's signals
(a run succeeded, a site reported) and saves of the registry records and dossiers that trust
scores read. Connected once by ``ComplianceConfig.ready``; each receiver runs inside the sender's
transaction.
"""

from __future__ import annotations

from django.db.models.signals import post_save

from compliance.alerts import alerts_raise_for_run
from compliance.approvals import approval_check
from compliance.change_control import change_control_guard
from compliance.dossiers import signed_dossier
from compliance.models import (
    Alert,
    ChangePlan,
    ChangePlanApproval,
    ConformityAssessment,
    CorrectiveAction,
    Document,
    Dossier,
    DossierSignature,
    Feedback,
    Incident,
    ReleaseEvidence,
    ScoringPolicy,
    TrustAssessment,
    TrustException,
    VersionApproval,
)
from compliance.trust.services import trust_guard, trust_request
from core.audit import audit_register
from registry.guards import register_evidence_check
from registry.models import Dataset, Provenance
from validation.models import FederatedJob, ValidationRun
from validation.signals import run_succeeded, site_report_received


def run_succeeded_received(sender, run, findings, **kwargs) -> None:
    """Raise the run's alerts, then rescore the version now (not debounced: one run, one rescore)."""
    alerts_raise_for_run(run=run, findings=findings)
    trust_request(version_id=run.version_id, trigger="run_finished", debounce=False)


def site_report_saved(sender, job, **kwargs) -> None:
    """Universality reads the pooled sites and their heterogeneity; reports of one study arrive in a burst."""
    trust_request(version_id=job.study.version_id, trigger="site_report")


def dataset_saved(sender, instance, raw=False, **kwargs) -> None:
    """A changed datasheet asks every version it is linked to for a rescore."""
    if raw:
        return
    for version_id in set(instance.provenance.values_list("version_id", flat=True)):
        trust_request(version_id=version_id, trigger="datasheet_changed")


def provenance_saved(sender, instance, raw=False, **kwargs) -> None:
    if not raw:
        trust_request(version_id=instance.version_id, trigger="provenance_changed")


def dossier_saved(sender, instance, raw=False, **kwargs) -> None:
    if not raw:
        trust_request(version_id=instance.version_id, trigger="dossier_changed")


def connect() -> None:
    # Feedback, incidents and their actions, signatures, stored documents, change plans and their
    # approvals, and conformity assessments are records an authority may ask for; the deployment
    # monitor is derived from feedback and not audited.
    for model in (Feedback, Incident, CorrectiveAction, DossierSignature, Document, ChangePlan, ChangePlanApproval, ConformityAssessment):
        audit_register(model)
    audit_register(ReleaseEvidence)  # pinned by an officer: the runs (a many-to-many event) and the operating point
    audit_register(Dossier, exclude=("snapshot",))  # its hash is audited; the frozen body stays in the row
    audit_register(Alert)  # raised, acknowledged, resolved
    audit_register(ScoringPolicy)
    audit_register(TrustAssessment, exclude=("principles", "chart_svg"))  # the scores are in the row; the event says it was made
    audit_register(TrustException)
    audit_register(VersionApproval)
    register_evidence_check("dossier", signed_dossier)
    register_evidence_check("trust", trust_guard)
    register_evidence_check("change_control", change_control_guard)
    register_evidence_check("second_officer", approval_check)
    run_succeeded.connect(run_succeeded_received, sender=ValidationRun, dispatch_uid="compliance:run_succeeded")
    site_report_received.connect(site_report_saved, sender=FederatedJob, dispatch_uid="compliance:site_report")
    post_save.connect(dataset_saved, sender=Dataset, dispatch_uid="trust:dataset")
    post_save.connect(provenance_saved, sender=Provenance, dispatch_uid="trust:provenance")
    post_save.connect(dossier_saved, sender=Dossier, dispatch_uid="trust:dossier")
