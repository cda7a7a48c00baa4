from django.apps import AppConfig


class ValidationConfig(AppConfig):
    name = "validation"
    verbose_name = "Validation"

    def ready(self) -> None:
        from core.audit import audit_register
        from registry.guards import register_evidence_check
        from validation.models import FederatedJob, FederatedStudy, SiteReport, StudyPooling, ValidationRun
        from validation.services import passing_validation

        # Progress, heartbeats and the report body are operational or too large for an event;
        # status changes, the worker, device, hashes, errors and the summary are audited.
        audit_register(ValidationRun, exclude=("progress", "stage", "lease_until", "heartbeat_at", "results", "timings"))
        register_evidence_check("validation", passing_validation)
        audit_register(FederatedStudy)
        audit_register(FederatedJob, exclude=("updated_at",))
        audit_register(SiteReport, exclude=("payload",))  # its sha256 is in the event; the aggregates stay in the row
        audit_register(StudyPooling, exclude=("result", "charts"))  # the event records which reports were pooled
