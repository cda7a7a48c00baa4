"""What the registry connects when Django starts: the audit trail of its records and the role
groups kept in step with ``registry.roles`` (connected once by ``RegistryConfig.ready``)."""

from __future__ import annotations

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db.models.signals import post_migrate

from core.audit import audit_register
from registry import models
from registry.roles import roles_sync


def roles_sync_after_migrate(sender, apps=None, using="default", **kwargs) -> None:
    """Keep the role groups in step with ``registry.roles`` after migrate and test flushes.

    Permissions of apps listed after this one are not created yet when it runs, so create them first.
    """
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    roles_sync(Group, Permission)


def connect(app_config: AppConfig) -> None:
    for model in (
        models.Institution,
        models.FoundationModel,
        models.ModelVersion,
        models.Dataset,
        models.Provenance,
        models.DataUseGrant,
        models.Deployment,
    ):
        audit_register(model)
    audit_register(models.User, exclude=("password", "last_login"))
    post_migrate.connect(roles_sync_after_migrate, sender=app_config, dispatch_uid="registry:roles")
