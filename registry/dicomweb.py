"""Datasets held in a PACS: their DICOMweb source, the manifest a run freezes, and the files a worker fetches.

A DICOMweb dataset is a query, not a folder (``DicomwebSource``). At run creation the query is
resolved against the PACS and joined to the labels table; the exact instances and their labels
are stored once, named by their sha256 (``DicomwebManifest``), and the run records that hash.
The worker fetches those instances with WADO-RS into a local cache by SOP Instance UID and the
pipeline reads them as files. The engine does the DICOMweb work (``radtrust_engine.dicomweb``);
this module keeps the rows and turns the engine's refusals into field errors.

Credentials never reach the database: the source names an environment prefix that the web
process and the workers read (``<prefix>_USER``, ``<prefix>_PASSWORD`` or ``_PASSWORD_FILE``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from radtrust_engine.dicomweb import (
    DicomwebError,
    DicomwebQuery,
    FrozenManifest,
    Instance,
    LabelledManifest,
    LabelsTable,
    RetrievalFailed,
    cached_manifest,
    credentials,
    dicomweb_client,
    label,
    resolve,
    retrieve,
    verified,
)
from radtrust_engine.hashing import canonical_sha256
from radtrust_engine.images import allowed_skips
from radtrust_engine.loading import Manifest
from registry.models import Dataset, DicomwebManifest, DicomwebSource
from registry.services import validated_save

DEFAULT_CREDENTIALS_ENV = "RADTRUST_PACS"
# ``ValidationRun.manifest`` of a run that reads a frozen DICOMweb manifest (named by the run's ``manifest_sha256``).
DICOMWEB_MANIFEST = "dicomweb"


def dicomweb_source_set(
    *,
    actor,
    dataset: Dataset,
    base_url: str,
    labels: LabelsTable,
    credentials_env: str = "",
    modality: str = "",
    body_part: str = "",
    study_dates: str = "",
    series_description: str = "",
    accession_numbers: list[str] | tuple[str, ...] = (),
) -> DicomwebSource:
    """Define (or redefine) where ``dataset`` lives in a PACS; the runs already frozen keep their manifests.

    A dataset is either a folder or a query: one with a ``location`` is refused. Every field is
    validated (``DicomwebSource.clean``) before anything is written.
    """
    if (dataset.location or "").strip():
        raise ValidationError({"location": "The dataset reads a folder (its location); clear the location to read it from a PACS instead."})
    source = DicomwebSource.objects.filter(dataset=dataset).first() or DicomwebSource(dataset=dataset, created_by=actor)
    source.base_url = base_url.rstrip("/")
    source.credentials_env = credentials_env
    source.modality = modality.upper()
    source.body_part = body_part.upper()
    source.study_dates = study_dates
    source.series_description = series_description
    source.accession_numbers = list(accession_numbers)
    source.labels = labels.to_dict()
    source.labels_sha256 = canonical_sha256(source.labels)
    with transaction.atomic():
        validated_save(source)
    return source


def source_query(source: DicomwebSource) -> DicomwebQuery:
    return DicomwebQuery(
        modality=source.modality,
        body_part=source.body_part,
        study_dates=source.study_dates,
        series_description=source.series_description,
        accession_numbers=tuple(source.accession_numbers),
    )


def pacs_client(base_url: str, credentials_env: str):
    """A DICOMweb client with the credentials this process's environment holds under ``credentials_env``."""
    prefix = credentials_env or DEFAULT_CREDENTIALS_ENV
    try:
        auth = credentials(prefix)
    except OSError as exc:
        raise DicomwebError(f"{prefix}_PASSWORD_FILE cannot be read ({type(exc).__name__}).") from None
    if credentials_env and auth is None:
        raise DicomwebError(f"The environment has no {prefix}_USER: set it (and {prefix}_PASSWORD or {prefix}_PASSWORD_FILE) where RadTrust runs.")
    return dicomweb_client(base_url, auth=auth, timeout=settings.RADTRUST_DICOMWEB_TIMEOUT_SECONDS)


def dicomweb_manifest_freeze(*, dataset: Dataset) -> DicomwebManifest:
    """Resolve the dataset's query now and store the labelled instances, once per distinct content.

    Refused with a field error on ``dataset`` (nothing stored) when the PACS is down or refuses,
    the query matches nothing or more than ``RADTRUST_DICOMWEB_MAX_INSTANCES``, or no match has a label.
    """
    source = dataset.dicomweb
    try:
        found = resolve(pacs_client(source.base_url, source.credentials_env), source_query(source), limit=settings.RADTRUST_DICOMWEB_MAX_INSTANCES)
        labelled = label(found, LabelsTable.from_dict(source.labels))
    except DicomwebError as exc:
        raise ValidationError({"dataset": f"{dataset.name} could not be resolved in its PACS: {exc}"}) from None
    manifest, _ = DicomwebManifest.objects.get_or_create(
        dataset=dataset,
        sha256=labelled.sha256,
        defaults={
            "base_url": source.base_url,
            "query": source_query(source).to_dict(),
            "content": labelled.to_dict(),
            "n_instances": len(labelled.instances),
            "unlabelled": labelled.unlabelled,
        },
    )
    return manifest


def cache_folder(base_url: str) -> Path:
    """The cache of one PACS: a SOP Instance UID names one object in one archive, not across archives."""
    return Path(settings.RADTRUST_DICOMWEB_CACHE) / hashlib.sha256(base_url.encode()).hexdigest()[:16]


def dicomweb_manifest_read(*, frozen: DicomwebManifest) -> tuple[Manifest, tuple[Instance, ...]]:
    """A frozen manifest, verified against its hash: the engine's manifest over this PACS's cache
    (its files fetched by ``dicomweb_fetch``, or a shard's by ``instances_fetch``), and its instances, one per row."""
    labelled = verified(LabelledManifest.from_dict(frozen.content))
    return cached_manifest(labelled, cache_folder(frozen.base_url)), labelled.instances


def dicomweb_fetch(
    *, frozen: DicomwebManifest, instances: tuple[Instance, ...], max_unreadable_share: float, progress: Callable[[float], None] | None = None
) -> None:
    """Fetch a frozen manifest's ``instances`` into the cache (those already there are not fetched again).

    Instances that vanished or failed after the retries are left out of the cache, so the pipeline
    skips them as missing files; more of them than the suite allows ends the run here with every
    reason counted (``RetrievalFailed``).
    """
    instances_fetch(
        dataset_id=frozen.dataset_id,
        base_url=frozen.base_url,
        instances=FrozenManifest(instances, frozen.sha256),
        allowed=allowed_skips(max_unreadable_share, len(instances)),
        progress=progress,
    )


def instances_fetch(
    *, dataset_id: int, base_url: str, instances: FrozenManifest, allowed: int, progress: Callable[[float], None] | None = None
) -> Path:
    """Fetch ``instances`` (a whole frozen manifest, or one shard's share of it) into the PACS's
    cache; the cache folder. More failures than ``allowed`` raise ``RetrievalFailed``, each reason counted."""
    source = DicomwebSource.objects.filter(dataset_id=dataset_id).first()
    try:
        client = pacs_client(base_url, source.credentials_env if source else "")
    except DicomwebError as exc:
        raise RetrievalFailed(str(exc)) from None
    cache = cache_folder(base_url)
    outcome = retrieve(client, instances, cache, workers=settings.RADTRUST_DICOMWEB_WORKERS, progress=progress)
    outcome.check(len(instances.instances), allowed)
    return cache
