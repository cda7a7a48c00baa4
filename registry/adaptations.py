"""Adaptations of a foundation model: recording how a version was made from its base, the lineage
tree of a base with every adaptation under it, and the base's known weaknesses that each
adaptation inherits as items its dossier must address."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from core.errors import Conflict
from registry.choices import AdaptationMethod, ProvenanceRole
from registry.models import Adaptation, Dataset, ModelVersion
from registry.services import validated_save


def adaptation_record(
    *,
    actor,
    version: ModelVersion,
    method: str,
    task: str,
    labels: list[str],
    labelled_dataset: Dataset | None = None,
    labelled_cases: int = 0,
    labelled_patients: int = 0,
    frozen_parts: str = "",
) -> Adaptation:
    """Record how ``version`` was adapted from its parent (its base). Refused, with the field to fix,
    for a version with no parent (a base is pre-trained, not adapted), a lineage that loops back on
    itself, a base another provider owns (only its provider's engineers record what was made of
    it), an unknown method and more labelled patients than cases; a Conflict for a version whose
    adaptation is recorded already (never edited). Audited as a create by the registry's receiver."""
    if version.parent_id is None:
        raise ValidationError({"version": "This version has no parent: record the base it was adapted from first (its parent version)."})
    if (loop := _lineage_loop(version)) is not None:
        raise ValidationError(
            {"version": f"The lineage of {version} loops back on itself at {loop}: correct the parent links before recording an adaptation."}
        )
    base = version.parent
    provider = base.foundation_model.provider
    if actor is not None and not getattr(actor, "is_superuser", False) and provider.pk != getattr(actor, "institution_id", None):
        raise ValidationError(
            {"version": f"The base {base} belongs to {provider.name}: only its provider's ML engineers record adaptations made from it."}
        )
    if method not in AdaptationMethod.values:
        raise ValidationError({"method": f"Unknown method {method!r}; choose one of {', '.join(AdaptationMethod.values)}."})
    if labelled_patients > labelled_cases:
        raise ValidationError(
            {
                "labelled_patients": f"There cannot be more labelled patients than labelled cases ({labelled_patients} patients, "
                f"{labelled_cases} cases): each patient has at least one case."
            }
        )
    if Adaptation.objects.filter(version=version).exists():
        raise Conflict("This version's adaptation is already recorded; a different adaptation is a new version.", code="adaptation_exists")
    adaptation = Adaptation(
        version=version,
        method=method,
        task=task,
        labels=list(labels),
        labelled_dataset=labelled_dataset,
        labelled_cases=labelled_cases,
        labelled_patients=labelled_patients,
        frozen_parts=frozen_parts,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    with transaction.atomic():
        validated_save(adaptation)
    return adaptation


def _lineage_loop(version: ModelVersion) -> ModelVersion | None:
    """The first version met twice walking up from ``version``'s parent, or None for a chain that ends."""
    seen = {version.pk}
    current = version.parent
    while current is not None:
        if current.pk in seen:
            return current
        seen.add(current.pk)
        current = current.parent
    return None


def lineage_root(version: ModelVersion, visible: set[int] | None = None) -> ModelVersion:
    """The base at the top of ``version``'s lineage (the version itself when it has no parent), or
    the highest ancestor in ``visible`` when the caller may not see the whole chain."""
    seen = {version.pk}
    while version.parent_id is not None and version.parent_id not in seen and (visible is None or version.parent_id in visible):
        version = ModelVersion.objects.select_related("parent").get(pk=version.parent_id)
        seen.add(version.pk)
    return version


@dataclass(frozen=True)
class LineageNode:
    """One version in a lineage tree, with how it was adapted from its parent (None for the base)."""

    id: int
    label: str
    model: str
    status: str
    method: str | None
    method_label: str | None
    task: str | None
    labelled_cases: int | None
    labelled_patients: int | None
    frozen_parts: str | None
    children: tuple[LineageNode, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lineage_tree(version: ModelVersion, visible: set[int] | None = None) -> LineageNode:
    """The whole tree from ``version``'s base down, every adaptation with its method and labelled data;
    one query per generation. With ``visible`` (the ids the caller may see) other versions and
    everything under them are left out."""
    root = lineage_root(version, visible)
    by_parent: dict[int, list[ModelVersion]] = {}
    level, ids = [root.pk], [root.pk]
    while level:
        children = list(ModelVersion.objects.filter(parent_id__in=level).exclude(pk__in=ids).select_related("foundation_model"))
        children = [c for c in children if visible is None or c.pk in visible]
        for child in children:
            by_parent.setdefault(child.parent_id, []).append(child)
        level = [c.pk for c in children]
        ids += level
    adaptations = {a.version_id: a for a in Adaptation.objects.filter(version_id__in=ids)}

    def node(v: ModelVersion, path: frozenset[int]) -> LineageNode:
        a = adaptations.get(v.pk)
        kids = tuple(node(c, path | {c.pk}) for c in sorted(by_parent.get(v.pk, []), key=lambda c: c.pk) if c.pk not in path)
        return LineageNode(
            id=v.pk,
            label=f"{v.foundation_model.name} {v.version}",
            model=v.foundation_model.name,
            status=v.get_status_display(),
            method=a.method if a else None,
            method_label=a.get_method_display() if a else None,
            task=a.task if a else None,
            labelled_cases=a.labelled_cases if a else None,
            labelled_patients=a.labelled_patients if a else None,
            frozen_parts=a.frozen_parts if a else None,
            children=kids,
        )

    return node(root, frozenset({root.pk}))


@dataclass(frozen=True)
class InheritedRisk:
    """A known weakness of an ancestor that the adaptation's dossier must address."""

    source: str  # the ancestor version or its training dataset, named for a reader
    item: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


_TRAINING_ROLES = (ProvenanceRole.PRETRAINING, ProvenanceRole.FINE_TUNING)


def inherited_risks(version: ModelVersion, visible: set[int] | None = None) -> list[InheritedRisk]:
    """The known limitations of every ancestor's model and of the datasets it was trained on: an
    adaptation inherits the base's data provenance and weaknesses, so each is an item to address.
    With ``visible``, only the ancestors the caller may see are read."""
    items: list[InheritedRisk] = []
    seen_models: set[int] = set()
    seen_datasets: set[int] = set()
    ancestor = version.parent
    visited = {version.pk}
    while ancestor is not None and ancestor.pk not in visited and (visible is None or ancestor.pk in visible):
        visited.add(ancestor.pk)
        model = ancestor.foundation_model
        if model.pk not in seen_models and model.known_limitations.strip():
            seen_models.add(model.pk)
            items.append(InheritedRisk(f"Base model {model.name} {ancestor.version}", model.known_limitations.strip()))
        for link in ancestor.provenance.filter(role__in=_TRAINING_ROLES).select_related("dataset"):
            dataset = link.dataset
            if dataset.pk not in seen_datasets and dataset.known_limitations.strip():
                seen_datasets.add(dataset.pk)
                items.append(
                    InheritedRisk(
                        f"{link.get_role_display()} data of {model.name} {ancestor.version}: {dataset.name}", dataset.known_limitations.strip()
                    )
                )
        ancestor = ancestor.parent
    return items
