from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from compliance.audit import audit_register
        from registry import models

        for model in (models.Institution, models.FoundationModel, models.ModelVersion, models.Dataset, models.Provenance, models.Deployment):
            audit_register(model)
        audit_register(models.User, exclude=("password", "last_login"))
