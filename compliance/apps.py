from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = "Compliance"

    def ready(self) -> None:
        from compliance.audit import audit_register
        from compliance.models import CorrectiveAction, Feedback, Incident

        # Feedback, incidents and their actions are records an authority may ask for; the
        # deployment monitor is derived from feedback and not audited.
        for model in (Feedback, Incident, CorrectiveAction):
            audit_register(model)
