"""Reads of the registry: querysets with their joins decided once, scoped by ``core.access``."""

from __future__ import annotations

from django.db.models import BooleanField, ExpressionWrapper, Prefetch, Q, QuerySet
from django.utils import timezone

from core.access import data_use_active, scope
from registry.choices import MirrorState
from registry.models import Dataset, DataUseGrant, Deployment, FoundationModel, Institution, ModelVersion, Provenance


def institution_list(*, user) -> QuerySet[Institution]:
    return scope(user, Institution.objects.all())


def foundation_model_list(*, user) -> QuerySet[FoundationModel]:
    return scope(user, FoundationModel.objects.select_related("provider"))


def version_list(*, user) -> QuerySet[ModelVersion]:
    return scope(user, ModelVersion.objects.select_related("foundation_model", "parent", "created_by"))


def dataset_list(*, user) -> QuerySet[Dataset]:
    """Datasets with the data-use grants this user may see of each (``visible_grants``), for the datasheet."""
    grants = Prefetch("use_grants", queryset=data_use_grant_list(user=user), to_attr="visible_grants")
    return scope(user, Dataset.objects.select_related("institution", "dicomweb").prefetch_related("source_institutions", grants))


def data_use_grant_list(*, user) -> QuerySet[DataUseGrant]:
    """Grants with ``is_active``: whether each opens its dataset to its grantee today (``core.access.data_use_active``)."""
    active = ExpressionWrapper(data_use_active(), output_field=BooleanField())
    return scope(user, DataUseGrant.objects.select_related("dataset__institution", "grantee", "granted_by", "revoked_by").annotate(is_active=active))


def provenance_list(*, user) -> QuerySet[Provenance]:
    return scope(user, Provenance.objects.select_related("version__foundation_model", "dataset"))


def deployment_list(*, user) -> QuerySet[Deployment]:
    return scope(user, Deployment.objects.select_related("version__foundation_model", "institution"))


def version_lineage(version: ModelVersion, *, user) -> list[ModelVersion]:
    """The chain from ``version`` up to its base, newest first, cut where the user's scope ends."""
    visible = version_list(user=user)
    chain, seen, current = [], set(), version
    while current is not None and current.pk not in seen:
        chain.append(current)
        seen.add(current.pk)
        current = visible.filter(pk=current.parent_id).first() if current.parent_id else None
    return chain


def versions_awaiting_mirror(*, older_than) -> QuerySet[ModelVersion]:
    """Versions pending or failed in MLflow, untouched since ``older_than``, that no worker holds."""
    return (
        ModelVersion.objects.filter(mirror_state__in=[MirrorState.PENDING, MirrorState.FAILED], updated_at__lt=older_than)
        .filter(Q(mirror_lease_until__isnull=True) | Q(mirror_lease_until__lt=timezone.now()))
        .order_by("pk")
    )


def version_by_reference(text: str) -> ModelVersion | None:
    """A version by id, or by ``MODEL_NAME:VERSION`` (how commands name one)."""
    queryset = ModelVersion.objects.select_related("foundation_model")
    if text.isdigit():
        return queryset.filter(pk=int(text)).first()
    name, _, number = text.rpartition(":")
    return queryset.filter(foundation_model__name=name, version=number).first() if name else None
