"""The hospital's PACS as a site agent's data source: a DICOMweb query resolved, frozen and fetched at the site.

A federated study may name a DICOMweb query in its design (``spec.dicomweb``: modality, body
part, study dates, series description) instead of a manifest file, with the names of two files
under the site's data root: the labels table (keyed by StudyInstanceUID or SOPInstanceUID) and,
optionally, an accession list. The agent then does at the site what the server does for a PACS
dataset (``radtrust_engine.dicomweb``): QIDO-RS to find the instances, a frozen manifest (UIDs
and labels with their sha256), WADO-RS into a local cache in a bounded pool with retries.

What stays at the site: the PACS address and credentials (the agent's own configuration,
``PacsConfig``; a design cannot name a PACS), the labels table and the accession list, the frozen
manifest and each instance's skip reason (under the state folder). What may leave: the manifest's
sha256 and counts (``PacsOutcome``, in the report's agent description) and, when the job fails,
a reason code (``PacsProblem`` or ``DicomwebProblem``) with a fixed sentence (``reason_text``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from radtrust_agent.state import write_atomic
from radtrust_engine.dicomweb import (
    DicomwebError,
    DicomwebProblem,
    DicomwebQuery,
    LabelledManifest,
    LabelsError,
    LabelsTable,
    cached_manifest,
    credentials,
    dicomweb_client,
    label,
    labels_csv,
    resolve,
    retrieve,
    verified,
)
from radtrust_engine.failures import FailureCode
from radtrust_engine.images import allowed_skips
from radtrust_engine.loading import Manifest, ManifestError, manifest_file

log = logging.getLogger("radtrust_agent")

CREDENTIALS_ENV = "RADTRUST_AGENT_PACS"  # _USER, and _PASSWORD or _PASSWORD_FILE
QUERY_FIELDS = ("modality", "body_part", "study_dates", "series_description")
FILE_FIELDS = ("labels", "accessions")
_CODE = re.compile(r"^[A-Z0-9_ ]{1,16}$")  # a DICOM code string (CS): modality, body part examined
_DATES = re.compile(r"^(\d{8})?(-(\d{8})?)?$")  # a DICOM date or range, open at either end
_MAX_ACCESSION = 16  # DICOM SH


class PacsProblem(StrEnum):
    """Why the site's own PACS data cannot serve a job, beside the PACS's answers (``DicomwebProblem``)."""

    NOT_CONFIGURED = "pacs_not_configured"
    BAD_LABELS = "bad_labels_table"
    BAD_ACCESSIONS = "bad_accession_list"
    ALTERED_MANIFEST = "pacs_manifest_altered"


_REASON_TEXT = {
    PacsProblem.NOT_CONFIGURED: "The study reads a PACS, and this site's agent was started without one (--pacs-url).",
    PacsProblem.BAD_LABELS: "The site's labels table for the PACS query is missing or invalid, or lacks a label of the study.",
    PacsProblem.BAD_ACCESSIONS: "The site's accession list for the PACS query is missing or invalid.",
    PacsProblem.ALTERED_MANIFEST: "The manifest this site's agent froze for the job was altered or damaged since; nothing was evaluated.",
    DicomwebProblem.UNREACHABLE: "The site's PACS did not answer.",
    DicomwebProblem.REFUSED: "The site's PACS refused the agent's credentials.",
    DicomwebProblem.NOT_FOUND: "The site's PACS answered 'not found': check the agent's --pacs-url.",
    DicomwebProblem.FAILED: "The site's PACS answered with an error.",
    DicomwebProblem.NO_MATCH: "The study's PACS query matches no instance at this site.",
    DicomwebProblem.TOO_MANY: "The study's PACS query matches more instances than this site's agent allows (--pacs-max-instances).",
    DicomwebProblem.UNLABELLED: "None of the instances the PACS query matches at this site has a label in the site's labels table.",
    DicomwebProblem.CAPPED: "The site's PACS left matches out of its search answers (a find limit); the query was not frozen.",
    FailureCode.UNREADABLE_IMAGES: "More instances could not be retrieved from the site's PACS than the study allows to skip.",
}


def reason_text(code: str) -> str | None:
    """The sentence the server may see for a PACS reason code (None: not a PACS code)."""
    return _REASON_TEXT.get(code)


class PacsSiteError(Exception):
    """The site's files for a PACS query cannot be used; ``reason`` may leave the site, the message may not."""

    def __init__(self, reason: PacsProblem, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PacsSpec:
    """What a study's design asks of a site's PACS: the query, and the site files holding the labels and accessions."""

    query: DicomwebQuery
    labels: str
    accessions: str = ""

    def to_dict(self) -> dict[str, str]:
        query = self.query.to_dict()
        return {**{key: query[key] for key in QUERY_FIELDS}, "labels": self.labels, "accessions": self.accessions}

    @classmethod
    def from_dict(cls, data: Any) -> PacsSpec:
        """Check a design's ``dicomweb`` object; a ``ValueError`` lists every problem (the server shows them as field errors)."""
        if not isinstance(data, Mapping):
            raise ValueError("give an object with modality, body_part, study_dates, series_description, labels and accessions")
        problems = []
        if unknown := sorted(set(map(str, data)) - set(QUERY_FIELDS) - set(FILE_FIELDS)):
            problems.append(
                f"unknown keys {', '.join(unknown)}: the design names the query and the site's files; "
                "each site's agent has its own PACS address and credentials"
            )
        values = {key: data.get(key) or "" for key in (*QUERY_FIELDS, *FILE_FIELDS)}
        for key, value in values.items():
            if not isinstance(value, str):
                problems.append(f"{key}: give a text")
                values[key] = ""
        modality, body_part = values["modality"].strip().upper(), values["body_part"].strip().upper()
        for key, value in (("modality", modality), ("body_part", body_part)):
            if value and not _CODE.match(value):
                problems.append(f"{key}: {value!r} is not a DICOM code (letters, digits, spaces and _, at most 16)")
        dates = values["study_dates"].strip()
        start, _, end = dates.partition("-")
        if dates and (dates == "-" or not _DATES.match(dates)):
            problems.append(f"study_dates: {dates!r} is not a DICOM date range such as 20240101-20241231")
        elif start and end and start > end:
            problems.append("study_dates: the range must end after it starts")
        description = values["series_description"].strip()
        if len(description) > 64:
            problems.append("series_description: at most 64 characters")
        if not (modality or body_part or dates or description):
            problems.append("name at least one of modality, body_part, study_dates or series_description: a query without one matches the whole PACS")
        for key, suffixes in (("labels", (".csv",)), ("accessions", (".txt", ".csv"))):
            name = values[key].strip()
            if key == "labels" and not name:
                problems.append("labels: name the labels table (a .csv file relative to each site's data root)")
            elif name and not _site_file_name(name, suffixes):
                problems.append(f"{key}: {name!r} must be a {' or '.join(suffixes)} file relative to the site's data root, without '..'")
        if problems:
            raise ValueError("; ".join(problems))
        query = DicomwebQuery(modality=modality, body_part=body_part, study_dates=dates, series_description=description)
        return cls(query=query, labels=values["labels"].strip(), accessions=values["accessions"].strip())


def _site_file_name(name: str, suffixes: Sequence[str]) -> bool:
    pure = PurePosixPath(name.replace("\\", "/"))
    return not pure.is_absolute() and ".." not in pure.parts and name.lower().endswith(tuple(suffixes))


@dataclass(frozen=True)
class PacsConfig:
    """The site's PACS as its agent was configured: never from the server."""

    url: str
    auth: tuple[str, str] | None
    max_instances: int = 400_000
    workers: int = 4
    retries: int = 2
    timeout: float = 30.0

    @classmethod
    def from_environment(cls, url: str, **options: Any) -> PacsConfig:
        """Check ``url`` and read the credentials from ``RADTRUST_AGENT_PACS_USER`` and ``_PASSWORD`` (or ``_PASSWORD_FILE``)."""
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"--pacs-url must be the PACS's DICOMweb root, an http(s) URL such as https://pacs.local/dicom-web, got {url!r}")
        try:
            auth = credentials(CREDENTIALS_ENV)
        except OSError as exc:
            raise ValueError(f"{CREDENTIALS_ENV}_PASSWORD_FILE cannot be read ({type(exc).__name__})") from None
        return cls(url=url.rstrip("/"), auth=auth, **options)

    def cache(self, state_folder: Path) -> Path:
        """The instance cache of this PACS: a SOP Instance UID names one object in one archive, not across archives."""
        return Path(state_folder) / "pacs-cache" / hashlib.sha256(self.url.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PacsSite:
    """One job's use of the site's PACS: the configuration, the job's own folder (frozen manifest, skips) and the cache."""

    config: PacsConfig
    folder: Path
    cache: Path


@dataclass(frozen=True)
class PacsOutcome:
    """What the agent may report about the PACS data it evaluated: the frozen manifest's sha256 and counts."""

    manifest_sha256: str
    instances: int
    unlabelled: int
    retrieved: int
    from_cache: int
    skipped: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _site_file(data_root: Path, name: str, problem: PacsProblem) -> str:
    try:
        return manifest_file(data_root, name).read_text(encoding="utf-8")
    except (ManifestError, OSError, UnicodeDecodeError) as exc:
        raise PacsSiteError(problem, f"{name}: {exc}") from None


def _labels(data_root: Path, name: str, wanted: Sequence[str]) -> LabelsTable:
    """The site's labels table, narrowed to the study's labels in the study's order."""
    try:
        table = labels_csv(_site_file(data_root, name, PacsProblem.BAD_LABELS))
    except LabelsError as exc:
        raise PacsSiteError(PacsProblem.BAD_LABELS, f"{name}: {exc}") from None
    if missing := [w for w in wanted if w not in table.label_names]:
        raise PacsSiteError(PacsProblem.BAD_LABELS, f"{name} has no column for the study's labels {missing} (it has {list(table.label_names)})")
    columns = [table.label_names.index(w) for w in wanted]
    return LabelsTable(table.key, tuple(wanted), {uid: tuple(values[c] for c in columns) for uid, values in table.rows.items()})


def _accessions(data_root: Path, name: str) -> tuple[str, ...]:
    """One accession number per line (blank lines and ``#`` comments ignored), each listed once."""
    numbers = []
    for number, line in enumerate(_site_file(data_root, name, PacsProblem.BAD_ACCESSIONS).splitlines(), start=1):
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        if len(value) > _MAX_ACCESSION:
            raise PacsSiteError(PacsProblem.BAD_ACCESSIONS, f"{name} line {number}: an accession number has at most {_MAX_ACCESSION} characters")
        if value in numbers:
            raise PacsSiteError(PacsProblem.BAD_ACCESSIONS, f"{name} line {number}: {value} is listed twice")
        numbers.append(value)
    if not numbers:
        raise PacsSiteError(PacsProblem.BAD_ACCESSIONS, f"{name} lists no accession number")
    return tuple(numbers)


def _frozen(spec: PacsSpec, client, *, pacs: PacsConfig, data_root: Path, labels: Sequence[str], path: Path) -> LabelledManifest:
    """The job's frozen manifest: the one stored at ``path`` (a resumed job evaluates what it froze), else resolved now and stored."""
    if path.is_file():
        try:
            return verified(LabelledManifest.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        except (DicomwebError, ValueError, KeyError, TypeError) as exc:
            raise PacsSiteError(PacsProblem.ALTERED_MANIFEST, f"{path}: {exc}") from exc
    table = _labels(data_root, spec.labels, labels)
    accessions = _accessions(data_root, spec.accessions) if spec.accessions else ()
    query = DicomwebQuery(**{**spec.query.to_dict(), "accession_numbers": accessions})
    frozen = label(resolve(client, query, limit=pacs.max_instances), table)
    write_atomic(path, json.dumps(frozen.to_dict()).encode())
    return frozen


def pacs_manifest(
    spec: PacsSpec,
    *,
    site: PacsSite,
    data_root: Path,
    labels: Sequence[str],
    max_unreadable_share: float,
    progress: Callable[[str, float], None] | None = None,
) -> tuple[Manifest, PacsOutcome]:
    """The engine's manifest over the instances the job's query names in the site's PACS, fetched into its cache.

    1. Read the site's labels table (narrowed to ``labels``) and accession list under ``data_root``.
    2. Resolve the query with QIDO-RS (refused above ``pacs.max_instances`` or when nothing matches),
       join the labels, and store the frozen manifest at ``site.folder/manifest.json``; a job resumed after
       a stop reads that file back (verified against its sha256) instead of asking again.
    3. Retrieve with WADO-RS, ``pacs.workers`` at a time with retries, into ``site.cache`` by SOP Instance UID;
       each skipped instance's reason goes to ``site.folder/skipped.json``, and more skips than the share
       allows ends the job (``RetrievalFailed``). The pipeline skips the missing files within the share.

    Refusals raise ``DicomwebError`` or ``PacsSiteError``, each with its ``reason``.
    """
    pacs, folder = site.config, site.folder
    client = dicomweb_client(pacs.url, auth=pacs.auth, timeout=pacs.timeout)
    frozen = _frozen(spec, client, pacs=pacs, data_root=data_root, labels=labels, path=folder / "manifest.json")
    total = len(frozen.instances)
    log.info("PACS query frozen: %d instances (%d matched without a label), manifest sha256 %s", total, frozen.unlabelled, frozen.sha256)
    outcome = retrieve(
        client,
        frozen,
        site.cache,
        workers=pacs.workers,
        retries=pacs.retries,
        progress=(lambda share: progress("pacs retrieval", share)) if progress else None,
    )
    write_atomic(folder / "skipped.json", json.dumps(outcome.skipped, indent=1, sort_keys=True).encode())
    if outcome.skipped:
        log.warning("%d of %d instances could not be retrieved; the reasons are in %s", len(outcome.skipped), total, folder / "skipped.json")
    outcome.check(total, allowed_skips(max_unreadable_share, total))
    summary = PacsOutcome(
        manifest_sha256=frozen.sha256,
        instances=total,
        unlabelled=frozen.unlabelled,
        retrieved=len(outcome.paths),
        from_cache=outcome.from_cache,
        skipped=len(outcome.skipped),
    )
    return cached_manifest(frozen, site.cache), summary
