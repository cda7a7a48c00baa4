"""Datasets held in a PACS: resolve a QIDO-RS query to a frozen manifest, fetch it with WADO-RS.

A validation set in a hospital is a query (this modality, this body part, these dates), not a
folder. Resolving it once, at run creation, to the exact instances (their UIDs and a sha256 of
the sorted list) makes the run reproducible: a later retrieval fetches those instances only,
and one that vanished since is skipped with its reason rather than silently replaced.
Retrieval runs in a bounded thread pool with retries and keeps each instance in a local cache
named by its SOP Instance UID, so a re-run reads from disk.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# QIDO-RS attribute tags (DICOM PS3.18 answers them as JSON keyed by tag).
_STUDY_UID, _SERIES_UID, _SOP_UID = "0020000D", "0020000E", "00080018"
_PATIENT_ID = "00100020"
_RETRYABLE = {429, 500, 502, 503, 504}


class DicomwebError(Exception):
    """The PACS cannot answer as asked (down, refused, or the query is empty or too large)."""


@dataclass(frozen=True)
class DicomwebQuery:
    """What a dataset is in a PACS: a QIDO-RS search plus an optional accession list."""

    modality: str = ""
    body_part: str = ""
    study_dates: str = ""  # DICOM range, e.g. "20240101-20241231"
    series_description: str = ""
    accession_numbers: tuple[str, ...] = ()

    def study_filters(self) -> list[dict[str, str]]:
        """One QIDO-RS study search per accession number, or one search without any."""
        base = {"StudyDate": self.study_dates} if self.study_dates else {}
        if self.modality:
            base["ModalitiesInStudy"] = self.modality
        return [{**base, "AccessionNumber": number} for number in self.accession_numbers] or [base]

    def series_filters(self) -> dict[str, str]:
        filters = {"Modality": self.modality} if self.modality else {}
        if self.body_part:
            filters["BodyPartExamined"] = self.body_part
        if self.series_description:
            filters["SeriesDescription"] = self.series_description
        return filters


@dataclass(frozen=True)
class Instance:
    study_uid: str
    series_uid: str
    sop_uid: str
    patient_id: str


@dataclass(frozen=True)
class FrozenManifest:
    """The exact instances a query matched, sorted by UID, and the sha256 of that list."""

    instances: tuple[Instance, ...]
    sha256: str


@dataclass
class Retrieval:
    """Where each fetched instance lies on disk, and why the others were skipped."""

    paths: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    from_cache: int = 0


def credentials(prefix: str = "RADTRUST_PACS") -> tuple[str, str] | None:
    """User and password from ``<prefix>_USER`` and ``<prefix>_PASSWORD`` (or ``<prefix>_PASSWORD_FILE``)."""
    user = os.environ.get(f"{prefix}_USER", "")
    password = os.environ.get(f"{prefix}_PASSWORD", "")
    secret_file = os.environ.get(f"{prefix}_PASSWORD_FILE", "")
    if secret_file:
        password = Path(secret_file).read_text().strip()
    return (user, password) if user else None


def dicomweb_client(base_url: str, auth: tuple[str, str] | None = None, timeout: float = 30.0):
    """A dicomweb-client on ``base_url`` (imported late: only PACS datasets need it)."""
    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    session.auth = auth
    return DICOMwebClient(url=base_url, session=session, timeout=timeout)


def _value(dataset: dict, tag: str) -> str:
    values = dataset.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _call(what: str, function, *args, **kwargs):
    """Run one DICOMweb call; a refused or failed request becomes a ``DicomwebError`` that says what failed."""
    import requests

    try:
        return function(*args, **kwargs)
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        hint = {401: "the PACS refused the credentials", 403: "the PACS refused access", 404: "not found"}.get(status, "the PACS failed")
        raise DicomwebError(f"{what}: HTTP {status}, {hint}.") from exc
    except requests.ConnectionError as exc:
        raise DicomwebError(f"{what}: the PACS does not answer ({exc.__class__.__name__}).") from exc


def resolve(client, query: DicomwebQuery, *, limit: int) -> FrozenManifest:
    """The instances ``query`` matches, frozen; refuses an empty result or one above ``limit``."""
    # One request per level, no ``get_remaining``: Orthanc ignores ``offset``, and dicomweb-client's
    # paging then loops forever. A PACS that caps its answers would truncate silently (not handled).
    instances: dict[str, Instance] = {}
    for study_filter in query.study_filters():
        studies = _call("Study search", client.search_for_studies, search_filters=study_filter)
        for study in studies:
            study_uid = _value(study, _STUDY_UID)
            for series in _call("Series search", client.search_for_series, study_uid, search_filters=query.series_filters()):
                series_uid = _value(series, _SERIES_UID)
                found = _call("Instance search", client.search_for_instances, study_uid, series_uid, fields=[_PATIENT_ID])
                for item in found:
                    sop_uid = _value(item, _SOP_UID)
                    instances[sop_uid] = Instance(study_uid, series_uid, sop_uid, _value(item, _PATIENT_ID) or _value(study, _PATIENT_ID))
                if len(instances) > limit:
                    raise DicomwebError(
                        f"The query matches more than {limit} instances, the configured limit; narrow it (dates, body part, accession list)."
                    )
    if not instances:
        raise DicomwebError("The query matches no instance: check the modality, body part, dates and series description.")
    ordered = tuple(sorted(instances.values(), key=lambda i: (i.study_uid, i.series_uid, i.sop_uid)))
    digest = hashlib.sha256("\n".join(f"{i.study_uid}/{i.series_uid}/{i.sop_uid}" for i in ordered).encode()).hexdigest()
    return FrozenManifest(ordered, digest)


def _fetch_one(client, instance: Instance, cache: Path, retries: int, backoff: float) -> tuple[Path | None, str, bool]:
    import requests
    from pydicom import dcmwrite

    path = cache / f"{instance.sop_uid}.dcm"
    if path.exists():
        return path, "", True
    for attempt in range(retries + 1):
        try:
            dataset = client.retrieve_instance(instance.study_uid, instance.series_uid, instance.sop_uid)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status == 404:
                return None, "vanished from the PACS since the manifest was frozen", False
            if status not in _RETRYABLE or attempt == retries:
                return None, f"the PACS answered HTTP {status}", False
        except requests.ConnectionError:
            if attempt == retries:
                return None, "the PACS does not answer", False
        else:
            partial = path.with_suffix(".part")
            dcmwrite(partial, dataset, enforce_file_format=True)
            partial.replace(path)  # never a half-written file under the final name
            return path, "", False
        time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


def retrieve(client, manifest: FrozenManifest, cache: Path, *, workers: int = 4, retries: int = 2, backoff: float = 0.5) -> Retrieval:
    """Fetch every instance of ``manifest`` into ``cache`` (by SOP Instance UID), ``workers`` at a time."""
    cache.mkdir(parents=True, exist_ok=True)
    outcome = Retrieval()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda i: _fetch_one(client, i, cache, retries, backoff), manifest.instances)
        for instance, (path, reason, cached) in zip(manifest.instances, results):
            if path is None:
                outcome.skipped[instance.sop_uid] = reason
            else:
                outcome.paths[instance.sop_uid] = path
                outcome.from_cache += cached
    return outcome
