from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = "Compliance"

    def ready(self) -> None:
        from compliance.audit import audit_register
        from compliance.dossiers import signed_dossier
        from compliance.models import ChangePlan, CorrectiveAction, Document, Dossier, DossierSignature, Feedback, Incident
        from registry.guards import register_evidence_check

        # Feedback, incidents and their actions, signatures, stored documents and change plans are
        # records an authority may ask for; the deployment monitor is derived from feedback and not audited.
        for model in (Feedback, Incident, CorrectiveAction, DossierSignature, Document, ChangePlan):
            audit_register(model)
        audit_register(Dossier, exclude=("snapshot",))  # its hash is audited; the frozen body stays in the row
        register_evidence_check("dossier", signed_dossier)
