"""What the registry connects when Django starts: the audit trail of its records and the role
groups kept in step with ``registry.roles`` (connected once by ``RegistryConfig.ready``)."""

from __future__ import annotations

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models.signals import post_migrate, post_save

from core.audit import audit_register
from registry import models
from registry.choices import MirrorState
from registry.roles import roles_sync


def roles_sync_after_migrate(sender, apps=None, using="default", **kwargs) -> None:
    """Keep the role groups in step with ``registry.roles`` after migrate and test flushes.

    Permissions of apps listed after this one are not created yet when it runs, so create them first.
    """
    for app_config in global_apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    roles_sync(Group, Permission)


def lifecycle_mirror_request(sender, instance, **kwargs) -> None:
    """A mirrored version, one of its deployments or its trust scores changed: once committed, queue
    the MLflow tags and ``approved`` / ``deployed-<institution>`` aliases of its foundation model."""
    version = instance if isinstance(instance, models.ModelVersion) else instance.version
    if version.mirror_state != MirrorState.MIRRORED:
        return
    foundation_model_id = version.foundation_model_id

    def queue() -> None:
        from registry.tasks import lifecycle_mirror  # the tasks module imports the services

        lifecycle_mirror.delay(foundation_model_id)

    transaction.on_commit(queue, robust=True)


def connect(app_config: AppConfig) -> None:
    for model in (
        models.Institution,
        models.FoundationModel,
        models.ModelVersion,
        models.Dataset,
        models.Provenance,
        models.DataUseGrant,
        models.Deployment,
        models.Adaptation,
    ):
        audit_register(model)
    audit_register(models.User, exclude=("password", "last_login"))
    # Large tables by their hash alone: the labels' sha256 is on the source, the frozen manifest is named by its own.
    audit_register(models.DicomwebSource, exclude=("labels",))
    audit_register(models.DicomwebManifest, exclude=("content",))
    post_migrate.connect(roles_sync_after_migrate, sender=app_config, dispatch_uid="registry:roles")
    # TrustAssessment by its label: compliance sits above the registry and is never imported here.
    for sender in (models.ModelVersion, models.Deployment, "compliance.TrustAssessment"):
        post_save.connect(lifecycle_mirror_request, sender=sender, dispatch_uid=f"registry:lifecycle_mirror:{sender}")
