"""What validation connects when Django starts: the audit trail of its records, the evidence check
of the lifecycle guards, and its own receivers of its signals (connected once by ``ValidationConfig.ready``)."""

from __future__ import annotations

from django.db.models.signals import post_save

from core.audit import audit_register
from registry.guards import register_evidence_check
from registry.models import Adaptation
from validation.forgetting import adaptation_recorded
from validation.models import FederatedJob, FederatedStudy, SiteReport, StudyPooling, ValidationRun
from validation.raters import dataset_raters_record
from validation.revalidation import revalidation_record_outcome, revalidation_record_site_report
from validation.services import passing_validation
from validation.signals import run_finished, site_report_received


def connect() -> None:
    # Progress, heartbeats, sends, leases and the report body are operational or too large for an
    # event; status changes, the worker, device, hashes, errors and the summary are audited.
    audit_register(
        ValidationRun,
        exclude=("progress", "stage", "lease_until", "heartbeat_at", "sent_at", "mlflow_sent_at", "mlflow_lease_until", "results", "timings"),
    )
    register_evidence_check("validation", passing_validation)
    audit_register(FederatedStudy)
    audit_register(FederatedJob, exclude=("updated_at",))
    audit_register(SiteReport, exclude=("payload",))  # its sha256 is in the event; the aggregates stay in the row
    audit_register(StudyPooling, exclude=("result", "charts"))  # the event records which reports were pooled
    # A deployment's revalidation answers to its run or its site's report.
    run_finished.connect(revalidation_record_outcome, sender=ValidationRun, dispatch_uid="validation:revalidation_outcome")
    # A run that measured its readers' agreement fills the datasheet's blank rater fields.
    run_finished.connect(dataset_raters_record, sender=ValidationRun, dispatch_uid="validation:dataset_raters")
    site_report_received.connect(revalidation_record_site_report, sender=FederatedJob, dispatch_uid="validation:revalidation_report")
    # A recorded adaptation is re-evaluated on every task of its base and parent (forgetting across tasks).
    post_save.connect(adaptation_recorded, sender=Adaptation, dispatch_uid="validation:adaptation_forgetting")
