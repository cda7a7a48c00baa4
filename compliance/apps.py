from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = "Compliance"

    def ready(self) -> None:
        from compliance import receivers
        from compliance.dossiers import signed_dossier
        from compliance.models import (
            Alert,
            ChangePlan,
            CorrectiveAction,
            Document,
            Dossier,
            DossierSignature,
            Feedback,
            Incident,
            ScoringPolicy,
            TrustAssessment,
            TrustException,
        )
        from compliance.trust.services import trust_guard
        from core.audit import audit_register
        from registry.guards import register_evidence_check

        # Feedback, incidents and their actions, signatures, stored documents and change plans are
        # records an authority may ask for; the deployment monitor is derived from feedback and not audited.
        for model in (Feedback, Incident, CorrectiveAction, DossierSignature, Document, ChangePlan):
            audit_register(model)
        audit_register(Dossier, exclude=("snapshot",))  # its hash is audited; the frozen body stays in the row
        audit_register(Alert)  # raised, acknowledged, resolved
        audit_register(ScoringPolicy)
        audit_register(TrustAssessment, exclude=("principles", "chart_svg"))  # the scores are in the row; the event says it was made
        audit_register(TrustException)
        register_evidence_check("dossier", signed_dossier)
        register_evidence_check("trust", trust_guard)
        receivers.connect()
