"""Datasets held in a PACS: resolve a QIDO-RS query to a frozen manifest, fetch it with WADO-RS.

A validation set in a hospital is a query (this modality, this body part, these dates), not a
folder. Resolving it once, at run creation, to the exact instances (their UIDs and a sha256 of
the sorted list) makes the run reproducible: a later retrieval fetches those instances only,
and one that vanished since is skipped with its reason rather than silently replaced.
Retrieval runs in a bounded thread pool with retries and keeps each instance in a local cache
named by its SOP Instance UID, so a re-run reads from disk.

Labels live beside the query, in a table keyed by StudyInstanceUID or SOPInstanceUID
(``labels_table``); ``label`` joins it to the frozen instances, and the hash of the labelled
manifest covers both, so a label changed later makes a different manifest, never a silent
change of a past run's evidence. ``cached_manifest`` turns the labelled manifest into the
engine's ``Manifest`` over the cache folder: the pipeline then reads the retrieved files as
it reads a folder, demographics and scanners from their headers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from radtrust_engine.failures import FailureCode
from radtrust_engine.hashing import canonical_sha256
from radtrust_engine.loading import ATTRIBUTE_COLUMNS, Manifest

# QIDO-RS attribute tags (DICOM PS3.18 answers them as JSON keyed by tag).
_STUDY_UID, _SERIES_UID, _SOP_UID = "0020000D", "0020000E", "00080018"
_PATIENT_ID = "00100020"
_SERIES_INSTANCES = "00201209"  # NumberOfSeriesRelatedInstances
PAGE_SIZE = 1000  # matches asked for per QIDO-RS request
QIDO_RETRIES, QIDO_BACKOFF = 3, 0.5  # a busy PACS is asked again after 0.5, 1 and 2 s
_QIDO_RETRYABLE = {408, 429, 503, 504}  # dicomweb-client's own choice: busy or slow, not broken (a 500 is final)
_WARNING_299 = re.compile(r"(^|,)\s*299\s")  # RFC 7234 "miscellaneous persistent warning": dcm4chee's "N additional results"
_RETRYABLE = {429, 500, 502, 503, 504}
KEY_COLUMNS = ("StudyInstanceUID", "SOPInstanceUID")  # what a labels table may be keyed by
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # DICOM PS3.5 9.1: digits and dots, at most 64 characters
_LABEL_VALUES = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}


class DicomwebProblem(StrEnum):
    """Why the PACS could not answer as asked (``DicomwebError.reason``): a code that quotes no identifier,
    so a site agent can report it where the message stays at the site."""

    UNREACHABLE = "pacs_unreachable"  # no connection, or a timeout
    REFUSED = "pacs_refused"  # HTTP 401 or 403: the credentials
    NOT_FOUND = "pacs_not_found"  # HTTP 404 on a search: a wrong DICOMweb root
    FAILED = "pacs_failed"  # another HTTP error, or an answer that cannot be read
    NO_MATCH = "query_matches_nothing"
    TOO_MANY = "query_above_limit"
    UNLABELLED = "no_labelled_instances"
    CAPPED = "search_capped"  # the PACS left matches out of its search answers


class DicomwebError(Exception):
    """The PACS cannot answer as asked (down, refused, or the query is empty or too large); ``reason`` says which."""

    reason: str = DicomwebProblem.FAILED

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class RetrievalFailed(DicomwebError):
    """More instances could not be retrieved than the suite allows a run to skip."""

    reason = FailureCode.UNREADABLE_IMAGES


class LabelsError(ValueError):
    """A labels table that cannot be used; the message names the row (from 1) or the column."""


@dataclass(frozen=True)
class DicomwebQuery:
    """What a dataset is in a PACS: a QIDO-RS search plus an optional accession list."""

    modality: str = ""
    body_part: str = ""
    study_dates: str = ""  # DICOM range, e.g. "20240101-20241231"
    series_description: str = ""
    accession_numbers: tuple[str, ...] = ()

    def instance_filters(self) -> list[dict[str, str]]:
        """One QIDO-RS instance search per accession number, or one search without any."""
        base = {"StudyDate": self.study_dates} if self.study_dates else {}
        for keyword, value in (("Modality", self.modality), ("BodyPartExamined", self.body_part), ("SeriesDescription", self.series_description)):
            if value:
                base[keyword] = value
        return [{**base, "AccessionNumber": number} for number in self.accession_numbers] or [base]

    def to_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "body_part": self.body_part,
            "study_dates": self.study_dates,
            "series_description": self.series_description,
            "accession_numbers": list(self.accession_numbers),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DicomwebQuery:
        return cls(
            modality=str(data.get("modality") or ""),
            body_part=str(data.get("body_part") or ""),
            study_dates=str(data.get("study_dates") or ""),
            series_description=str(data.get("series_description") or ""),
            accession_numbers=tuple(str(a) for a in data.get("accession_numbers") or ()),
        )


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


@dataclass(frozen=True)
class LabelsTable:
    """Labels per study or per instance: ``rows`` maps a UID of the ``key`` column to one 0/1 per label."""

    key: str
    label_names: tuple[str, ...]
    rows: Mapping[str, tuple[int, ...]]

    def of(self, instance: Instance) -> tuple[int, ...] | None:
        return self.rows.get(instance.study_uid if self.key == "StudyInstanceUID" else instance.sop_uid)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label_names": list(self.label_names), "rows": {uid: list(values) for uid, values in self.rows.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelsTable:
        return cls(str(data["key"]), tuple(data["label_names"]), {uid: tuple(values) for uid, values in data["rows"].items()})


def labels_table(rows: Sequence[Mapping[str, Any]]) -> LabelsTable:
    """Check a labels table (one mapping per row) and return it; every problem is a ``LabelsError``.

    Exactly one key column (``StudyInstanceUID`` or ``SOPInstanceUID``), at least one label column,
    each key a DICOM UID listed once, each label 0 or 1. Other columns are label columns: a table
    is made for this purpose, so a stray column is a label a run would need, not something to ignore.
    """
    if not rows:
        raise LabelsError("the labels table has no row")
    columns = list(rows[0])
    keys = [c for c in columns if c in KEY_COLUMNS]
    if len(keys) != 1:
        raise LabelsError(f"the labels table needs exactly one key column, {' or '.join(KEY_COLUMNS)}")
    key = keys[0]
    names = tuple(c for c in columns if c != key)
    if not names or any(not str(n).strip() for n in names):
        raise LabelsError("the labels table needs at least one named label column beside its key column")
    table: dict[str, tuple[int, ...]] = {}
    for number, row in enumerate(rows, start=1):
        if list(row) != columns:
            raise LabelsError(f"row {number}: its columns differ from the first row's")
        uid = str(row[key] or "").strip()
        if not _UID.match(uid) or len(uid) > 64:
            raise LabelsError(f"row {number}: {key} is not a DICOM UID (digits and dots, at most 64 characters)")
        if uid in table:
            raise LabelsError(f"row {number}: {key} {uid} is listed twice")
        values = []
        for name in names:
            value = _LABEL_VALUES.get(str(row[name]).strip().lower() if row[name] is not None else "")
            if value is None:
                raise LabelsError(f"row {number}: the label {name!r} must be 0 or 1")
            values.append(value)
        table[uid] = tuple(values)
    return LabelsTable(key, names, table)


def labels_csv(text: str) -> LabelsTable:
    """A labels table from CSV text (a header row, then one row per study or instance)."""
    try:
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
        rows = [row for row in reader if any((v or "").strip() for v in row.values() if isinstance(v, str))]
    except csv.Error as exc:
        raise LabelsError(f"the labels table is not valid CSV: {exc}") from None
    if any(None in row for row in rows):
        raise LabelsError("a row of the labels table has more cells than its header")
    return labels_table(rows)


@dataclass(frozen=True)
class LabelledManifest:
    """The frozen instances with their labels: what a run evaluates, and the hash that names it.

    ``sha256`` is the canonical hash of the instances (UIDs and patient) and their labels;
    ``unlabelled`` counts the instances the query matched that the labels table does not cover.
    """

    instances: tuple[Instance, ...]
    label_names: tuple[str, ...]
    labels: tuple[tuple[int, ...], ...]
    unlabelled: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_names": list(self.label_names),
            "instances": [[i.study_uid, i.series_uid, i.sop_uid, i.patient_id, list(v)] for i, v in zip(self.instances, self.labels)],
            "unlabelled": self.unlabelled,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelledManifest:
        rows = data["instances"]
        return cls(
            instances=tuple(Instance(*row[:4]) for row in rows),
            label_names=tuple(data["label_names"]),
            labels=tuple(tuple(row[4]) for row in rows),
            unlabelled=int(data["unlabelled"]),
            sha256=str(data["sha256"]),
        )


def _labelled_sha256(instances: Sequence[Instance], names: Sequence[str], labels: Sequence[Sequence[int]]) -> str:
    rows = [[i.study_uid, i.series_uid, i.sop_uid, i.patient_id, list(v)] for i, v in zip(instances, labels)]
    return canonical_sha256({"label_names": list(names), "instances": rows})


def label(manifest: FrozenManifest, table: LabelsTable) -> LabelledManifest:
    """Join the frozen instances to their labels; instances without a label are left out and counted."""
    kept = [(i, table.of(i)) for i in manifest.instances]
    labelled = [(i, values) for i, values in kept if values is not None]
    if not labelled:
        raise DicomwebError(
            f"None of the {len(manifest.instances)} instances the query matches has a label: the labels table is keyed by {table.key}; "
            "check that it lists the studies or instances of this query.",
            DicomwebProblem.UNLABELLED,
        )
    instances, labels = tuple(i for i, _ in labelled), tuple(v for _, v in labelled)
    return LabelledManifest(instances, table.label_names, labels, len(kept) - len(labelled), _labelled_sha256(instances, table.label_names, labels))


def verified(manifest: LabelledManifest) -> LabelledManifest:
    """``manifest`` if its instances and labels still hash to its ``sha256`` (a stored copy read back)."""
    if _labelled_sha256(manifest.instances, manifest.label_names, manifest.labels) != manifest.sha256:
        raise DicomwebError("The stored manifest does not hash to its recorded sha256: it was altered since it was frozen.")
    return manifest


def cached_manifest(manifest: LabelledManifest, cache: Path) -> Manifest:
    """The engine's ``Manifest`` over the cache folder: one ``<SOP Instance UID>.dcm`` per instance.

    Attributes and study dates are left empty for the pipeline to fill from the DICOM headers
    (``images.fill_attributes_from_headers``); an instance that was not retrieved is a missing
    file, which the pipeline skips like any other within the suite's allowance.
    """
    return Manifest(
        root=Path(cache).resolve(),
        image_paths=[f"{i.sop_uid}.dcm" for i in manifest.instances],
        label_names=manifest.label_names,
        labels=np.asarray(manifest.labels, dtype=np.int8).reshape(len(manifest.instances), len(manifest.label_names)),
        patient_ids=[i.patient_id or i.study_uid for i in manifest.instances],
        study_dates=[None] * len(manifest.instances),
        attributes={name: [None] * len(manifest.instances) for name in ATTRIBUTE_COLUMNS},
    )


@dataclass
class Retrieval:
    """Where each fetched instance lies on disk, and why the others were skipped."""

    paths: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    from_cache: int = 0

    def check(self, total: int, allowed: int) -> None:
        """Raise ``RetrievalFailed`` when more instances were skipped than ``allowed``, counting each reason."""
        if len(self.skipped) <= allowed:
            return
        reasons = "; ".join(f"{reason} ({count})" for reason, count in Counter(self.skipped.values()).most_common())
        raise RetrievalFailed(
            f"{len(self.skipped)} of {total} instances could not be retrieved from the PACS "
            f"(the suite's max_unreadable_share allows {allowed}): {reasons}"
        )


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

    logging.getLogger("dicomweb_client").setLevel(logging.WARNING)  # an INFO line per request would flood a worker's log
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
        problem = {401: DicomwebProblem.REFUSED, 403: DicomwebProblem.REFUSED, 404: DicomwebProblem.NOT_FOUND}.get(status, DicomwebProblem.FAILED)
        raise DicomwebError(f"{what}: HTTP {status}, {hint}.", problem) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise DicomwebError(f"{what}: the PACS does not answer ({exc.__class__.__name__}).", DicomwebProblem.UNREACHABLE) from exc
    except requests.RequestException as exc:  # a broken or undecodable answer, too many redirects
        raise DicomwebError(f"{what}: the PACS's answer could not be read ({exc.__class__.__name__}).", DicomwebProblem.FAILED) from exc


def resolve(client, query: DicomwebQuery, *, limit: int, page_size: int = PAGE_SIZE) -> FrozenManifest:
    """The instances ``query`` matches, frozen; refuses an empty result, one above ``limit``, and
    one the PACS may have cut short.

    1. One instance-level search across all studies per accession number (or one in all), with
       the study and series attributes as filters, paged with ``limit`` and ``offset``
       (``page_size`` at a time) until a page brings nothing new (``_search``): a PACS that caps
       each answer is paged through. A query that matches a million instances is refused once
       ``limit + 1`` are found.
    2. A PACS that says it left matches out (``Warning: 299``) is refused at once.
    3. A PACS may also cap its answers silently (Orthanc's ``LimitFindInstances`` and
       ``LimitFindResults``: the capped answer looks complete, and paging past the cap returns
       nothing). So the same filters are searched at series level, where the PACS counts each
       series' instances (NumberOfSeriesRelatedInstances): the instances found must be exactly
       those counts over exactly those series (every filter is a study or series attribute, so
       each instance of a matching series matches). Any difference refuses the query, saying
       how many instances were answered and how many the PACS counts. What no answer can show is
       a cap that cuts both searches at the same series (series of one instance each, with
       equal instance and series limits): a PACS's find limits must stay above the largest query.
    """
    instances: dict[str, Instance] = {}
    series: dict[str, dict] = {}
    for filters in query.instance_filters():
        found = _search(
            client, "instances", filters, [_PATIENT_ID, _STUDY_UID, _SERIES_UID], key=_SOP_UID, page_size=page_size, stop_after=limit - len(instances)
        )
        for sop_uid, item in found.items():
            instances[sop_uid] = Instance(*_uids(item, sop_uid), _value(item, _PATIENT_ID))
        if len(instances) > limit:
            raise DicomwebError(
                f"The query matches more than {limit} instances, the configured limit; narrow it (dates, body part, accession list).",
                DicomwebProblem.TOO_MANY,
            )
        series.update(_search(client, "series", filters, [_SERIES_INSTANCES], key=_SERIES_UID, page_size=page_size, stop_after=limit))
    if not instances:
        raise DicomwebError("The query matches no instance: check the modality, body part, dates and series description.", DicomwebProblem.NO_MATCH)
    _check_complete(instances.values(), series)
    ordered = tuple(sorted(instances.values(), key=lambda i: (i.study_uid, i.series_uid, i.sop_uid)))
    digest = hashlib.sha256("\n".join(f"{i.study_uid}/{i.series_uid}/{i.sop_uid}" for i in ordered).encode()).hexdigest()
    return FrozenManifest(ordered, digest)


def _uids(item: dict, sop_uid: str) -> tuple[str, str, str]:
    """An answer's study, series and instance UIDs, each a DICOM UID: they name cache files and WADO-RS URLs."""
    uids = (_value(item, _STUDY_UID), _value(item, _SERIES_UID), sop_uid)
    if not all(len(uid) <= 64 and _UID.match(uid) for uid in uids):
        raise DicomwebError("Instance search: the PACS answered an instance whose UIDs are not DICOM UIDs.", DicomwebProblem.FAILED)
    return uids


def _search(client, level: str, filters: Mapping[str, str], fields: Sequence[str], *, key: str, page_size: int, stop_after: int) -> dict[str, dict]:
    """Every match of one QIDO-RS search at ``level``, keyed by its ``key`` UID, page after page.

    A page shorter than asked does not end the search: many PACS cap each answer below what was
    asked (dcm4chee, Google's), and the next page goes on from there. The search ends on a page
    that brings no new match (the end, or a PACS that ignores ``offset`` answering its first page
    again: the count check then decides whether that page was all), or once more than
    ``stop_after`` are found.
    """
    found: dict[str, dict] = {}
    what = {"instances": "Instance search", "series": "Series search"}[level]
    while True:
        params = {**filters, "includefield": list(fields), "limit": page_size, "offset": len(found)}
        page = _call(what, _qido_page, client, level, params, what)
        new = {_value(item, key): item for item in page if _value(item, key) not in found}
        found.update(new)
        if not new or len(found) > stop_after:
            return found


def _qido_page(client, level: str, params: Mapping[str, Any], what: str) -> list[dict]:
    """One QIDO-RS answer, read with the client's own session to see its headers (dicomweb-client
    only logs a ``Warning``); a PACS that warns it left matches out is refused."""
    for attempt in range(QIDO_RETRIES + 1):  # dicomweb-client's own retries are skipped with its session
        response = client._session.get(
            f"{client.base_url}/{level}", params=params, headers={"Accept": "application/dicom+json"}, timeout=client._timeout
        )
        if response.status_code not in _QIDO_RETRYABLE or attempt == QIDO_RETRIES:
            break
        time.sleep(QIDO_BACKOFF * 2**attempt)
    response.raise_for_status()
    warning = response.headers.get("Warning", "")
    if _WARNING_299.search(warning):
        raise DicomwebError(
            f"{what}: the PACS warns that it left matches out of its answer ({warning[:200]}); raise its limit or narrow the query.",
            DicomwebProblem.CAPPED,
        )
    if response.status_code == 204 or not response.content:
        return []
    try:
        page = response.json()
    except ValueError:
        page = None
    if not isinstance(page, list):
        raise DicomwebError(f"{what}: the PACS answered something that is not a DICOM JSON list.", DicomwebProblem.FAILED)
    return page


def _check_complete(instances: Iterable[Instance], series: Mapping[str, dict]) -> None:
    """Refuse a search answer that does not hold every instance the PACS counts in its matching series."""
    answered = Counter(i.series_uid for i in instances)
    counted: dict[str, int] = {}
    for uid, item in series.items():
        count = _value(item, _SERIES_INSTANCES)
        if not count.isdigit():
            raise DicomwebError(
                "Series search: the PACS does not say how many instances a series holds (NumberOfSeriesRelatedInstances), "
                "so RadTrust cannot tell a complete answer from one the PACS cut short.",
                DicomwebProblem.CAPPED,
            )
        counted[uid] = int(count)
    if dict(answered) != counted:
        raise DicomwebError(
            f"The PACS answered {sum(answered.values())} instances in {len(answered)} series, but counts "
            f"{sum(counted.values())} instances in {len(counted)} series matching the query: it leaves matches out of its "
            "answers (a cap such as Orthanc's LimitFindInstances or LimitFindResults), or its content changed during the search. "
            "Raise or remove the PACS's limit, or narrow the query, then try again.",
            DicomwebProblem.CAPPED,
        )


_DICOM_PART = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


def _dicom_part(response) -> bytes:
    """The one DICOM file of a WADO-RS instance answer (``multipart/related``), as the PACS sent it."""
    found = _BOUNDARY.search(response.headers.get("Content-Type", ""))
    if not found:
        raise ValueError("the PACS answered without a multipart boundary")
    parts = response.content.split(b"--" + found.group(1).encode())
    if len(parts) < 3:
        raise ValueError("the PACS answered an empty multipart message")
    head, _, body = parts[1].partition(b"\r\n\r\n")
    body = body[:-2] if body.endswith(b"\r\n") else body
    if body[128:132] != b"DICM":
        raise ValueError("the PACS answered something that is not a DICOM file")
    return body


def _fetch_one(client, instance: Instance, cache: Path, retries: int, backoff: float) -> tuple[Path | None, str, bool]:
    """One instance into the cache: (its path, "", from cache) or (None, why not, False).

    The file is written as the PACS sent it, with the client's own session: dicomweb-client's
    ``retrieve_instance`` parses every instance and the cache would re-encode it (about 8 ms of
    CPU per small instance, four times the request itself on a local archive).
    """
    import requests

    path = cache / f"{instance.sop_uid}.dcm"
    if path.exists():
        return path, "", True
    url = f"{client.base_url}/studies/{instance.study_uid}/series/{instance.series_uid}/instances/{instance.sop_uid}"
    for attempt in range(retries + 1):
        try:
            response = client._session.get(url, headers={"Accept": _DICOM_PART}, timeout=client._timeout)
            response.raise_for_status()
            body = _dicom_part(response)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status == 404:
                return None, "vanished from the PACS since the manifest was frozen", False
            if status not in _RETRYABLE or attempt == retries:
                return None, f"the PACS answered HTTP {status}", False
        except (requests.ConnectionError, requests.Timeout):
            if attempt == retries:
                return None, "the PACS does not answer", False
        except ValueError as exc:
            return None, str(exc), False
        else:
            partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
            partial.write_bytes(body)
            partial.replace(path)  # never a half-written file under the final name
            return path, "", False
        time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


def retrieve(
    client,
    manifest: FrozenManifest | LabelledManifest,
    cache: Path,
    *,
    workers: int = 4,
    retries: int = 2,
    backoff: float = 0.5,
    progress: Callable[[float], None] | None = None,
) -> Retrieval:
    """Fetch every instance of ``manifest`` into ``cache`` (by SOP Instance UID), ``workers`` at a time;
    ``progress`` hears the share done every 50 instances (what it raises, a cancellation, stops the fetch)."""
    cache.mkdir(parents=True, exist_ok=True)
    outcome = Retrieval()
    total = len(manifest.instances)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        results = pool.map(lambda i: _fetch_one(client, i, cache, retries, backoff), manifest.instances)
        for done, (instance, (path, reason, cached)) in enumerate(zip(manifest.instances, results), start=1):
            if path is None:
                outcome.skipped[instance.sop_uid] = reason
            else:
                outcome.paths[instance.sop_uid] = path
                outcome.from_cache += cached
            if progress and (done % 50 == 0 or done == total):
                progress(done / total)
    finally:
        pool.shutdown(cancel_futures=True)  # a stop (cancel, lost lease) drops the fetches not yet started
    return outcome
