"""Reads of the registry: querysets with their joins decided once, scoped by ``registry.access``."""

from __future__ import annotations

from django.db.models import QuerySet

from registry.access import scope
from registry.models import Dataset, Deployment, FoundationModel, Institution, ModelVersion, Provenance


def institution_list(*, user) -> QuerySet[Institution]:
    return scope(user, Institution.objects.all())


def foundation_model_list(*, user) -> QuerySet[FoundationModel]:
    return scope(user, FoundationModel.objects.select_related("provider"))


def version_list(*, user) -> QuerySet[ModelVersion]:
    return scope(user, ModelVersion.objects.select_related("foundation_model", "parent", "created_by"))


def dataset_list(*, user) -> QuerySet[Dataset]:
    return scope(user, Dataset.objects.select_related("institution").prefetch_related("source_institutions"))


def provenance_list(*, user) -> QuerySet[Provenance]:
    return scope(user, Provenance.objects.select_related("version__foundation_model", "dataset"))


def deployment_list(*, user) -> QuerySet[Deployment]:
    return scope(user, Deployment.objects.select_related("version__foundation_model", "institution"))


def version_lineage(version: ModelVersion) -> list[ModelVersion]:
    """The chain from ``version`` up to its root (the base), newest first; cycles cannot exist."""
    chain, seen, current = [], set(), version
    while current is not None and current.pk not in seen:
        chain.append(current)
        seen.add(current.pk)
        current = ModelVersion.objects.select_related("foundation_model", "parent").filter(pk=current.parent_id).first() if current.parent_id else None
    return chain


def versions_awaiting_mirror(*, older_than) -> QuerySet[ModelVersion]:
    """Versions not yet in MLflow whose last change is older than ``older_than`` (a datetime)."""
    from registry.choices import MirrorState

    return ModelVersion.objects.exclude(mirror_state=MirrorState.MIRRORED).filter(updated_at__lt=older_than).order_by("pk")
