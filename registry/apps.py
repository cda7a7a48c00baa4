from django.apps import AppConfig
from django.db.models.signals import post_migrate


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from core.audit import audit_register
        from registry import models

        for model in (models.Institution, models.FoundationModel, models.ModelVersion, models.Dataset, models.Provenance, models.Deployment):
            audit_register(model)
        audit_register(models.User, exclude=("password", "last_login"))
        post_migrate.connect(_sync_roles, sender=self, dispatch_uid="registry:roles")


def _sync_roles(sender, apps=None, using="default", **kwargs) -> None:
    """Keep the role groups in step with ``registry.roles`` after migrate and test flushes.

    Permissions of apps listed after this one are not created yet when it runs, so create them first.
    """
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    from registry.roles import roles_sync

    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    roles_sync(Group, Permission)
