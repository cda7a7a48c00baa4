from django.apps import AppConfig


class ValidationConfig(AppConfig):
    name = "validation"
    verbose_name = "Validation"

    def ready(self) -> None:
        from compliance.audit import audit_register
        from registry.guards import register_evidence_check
        from validation.models import Alert, FederatedJob, FederatedStudy, ScoringPolicy, SiteReport, StudyPooling, TrustAssessment, TrustException, ValidationRun
        from validation.services import passing_validation
        from validation.trust.services import trust_guard

        # Progress, heartbeats and the report body are operational or too large for an event;
        # status changes, the worker, device, hashes, errors and the summary are audited.
        audit_register(ValidationRun, exclude=("progress", "stage", "lease_until", "heartbeat_at", "results", "timings"))
        audit_register(Alert)  # raised, acknowledged, resolved; files and flags are part of the run's outcome
        register_evidence_check("validation", passing_validation)
        audit_register(ScoringPolicy)
        audit_register(TrustAssessment, exclude=("principles", "chart_svg"))  # the scores are in the row; the event says it was made
        audit_register(TrustException)
        register_evidence_check("trust", trust_guard)
        audit_register(FederatedStudy)
        audit_register(FederatedJob, exclude=("updated_at",))
        audit_register(SiteReport, exclude=("payload",))  # its sha256 is in the event; the aggregates stay in the row
        audit_register(StudyPooling, exclude=("result", "charts"))  # the event records which reports were pooled
        _connect_trust_triggers()


def _connect_trust_triggers() -> None:
    """A datasheet, a provenance link or a dossier that changes asks for the linked versions to be rescored."""
    from django.db.models.signals import post_save

    from compliance.models import Dossier
    from registry.models import Dataset, Provenance

    def dataset_saved(sender, instance, raw=False, **kwargs):
        from validation.trust.services import trust_request

        if raw:
            return
        for version_id in set(instance.provenance.values_list("version_id", flat=True)):
            trust_request(version_id=version_id, trigger="datasheet_changed")

    def provenance_saved(sender, instance, raw=False, **kwargs):
        from validation.trust.services import trust_request

        if not raw:
            trust_request(version_id=instance.version_id, trigger="provenance_changed")

    def dossier_saved(sender, instance, raw=False, **kwargs):
        from validation.trust.services import trust_request

        if not raw:
            trust_request(version_id=instance.version_id, trigger="dossier_changed")

    post_save.connect(dataset_saved, sender=Dataset, dispatch_uid="trust:dataset", weak=False)
    post_save.connect(dossier_saved, sender=Dossier, dispatch_uid="trust:dossier", weak=False)
    post_save.connect(provenance_saved, sender=Provenance, dispatch_uid="trust:provenance", weak=False)
