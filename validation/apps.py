from django.apps import AppConfig


class ValidationConfig(AppConfig):
    name = "validation"
    verbose_name = "Validation"

    def ready(self) -> None:
        from compliance.audit import audit_register
        from registry.guards import register_evidence_check
        from validation.models import Alert, ValidationRun
        from validation.services import passing_validation

        # Progress, heartbeats and the report body are operational or too large for an event;
        # status changes, the worker, device, hashes, errors and the summary are audited.
        audit_register(ValidationRun, exclude=("progress", "stage", "lease_until", "heartbeat_at", "results", "timings"))
        audit_register(Alert)  # raised, acknowledged, resolved; files and flags are part of the run's outcome
        register_evidence_check("validation", passing_validation)
