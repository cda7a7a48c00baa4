"""A federated job as the agent reads it (``Job``) and the evaluation it runs at the site (``site_evaluate``).

``site_evaluate`` is the engine's work alone, in process: the same verified
loading, manifest reading, preprocessing, activation and thresholds as a
central run (``validation.services._evaluate`` then ``pipeline.evaluate``), then
``site_summary`` on the per-case scores and ``payload_check`` on the result. The
benchmark calls it directly as the reference the agent's run time is compared with.

Errors and what may leave the site: ``JobError`` is about the job the server sent
(its message is the server's own data, so it may be reported back);
``SiteDataError`` and the engine's errors describe the site's data (rows, paths,
identifiers that look wrong), so only their reason code is reported; so do the errors of the
site's PACS and its files for a DICOMweb query (``radtrust_agent.pacs``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from radtrust_agent.pacs import PacsOutcome, PacsProblem, PacsSite, PacsSiteError, PacsSpec, pacs_manifest
from radtrust_engine.artifacts import StoredFile, check_name, set_sha256
from radtrust_engine.federated import site_summary
from radtrust_engine.federated_check import payload_check
from radtrust_engine.federated_payload import DEFAULT_MIN_PATIENTS, MAX_RESAMPLES
from radtrust_engine.images import fill_attributes_from_headers
from radtrust_engine.loading import Manifest, manifest_file, read_manifest
from radtrust_engine.pipeline import STRATIFIABLE, SuiteConfig, evaluate
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.runner import load_verified, select_device
from radtrust_engine.stratification import attribute_values

_SHA256_HEX = frozenset("0123456789abcdef")


class JobError(ValueError):
    """The job as sent cannot be run; the message names the job's field (server data, safe to report)."""

    reason = "bad_job"


class SiteDataError(ValueError):
    """The site's data cannot be summarised as the study asks (the message may quote site data: kept local)."""

    reason = "summary_refused"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise JobError(message)


def _names(value: Any, where: str) -> tuple[str, ...]:
    _require(isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value), f"{where} must be a list of names")
    return tuple(value)


def _whole(data: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key)
    value = default if value is None else value
    _require(
        isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
        f"spec.{key} must be a whole number from {low} to {high}, got {value!r}",
    )
    return value


@dataclass(frozen=True)
class JobSpec:
    """What the study asks each site to compute."""

    labels: tuple[str, ...]
    attributes: tuple[str, ...]
    intersections: tuple[tuple[str, ...], ...]
    min_patients: int
    thresholds: Mapping[str, float]  # per label; labels not named use the version's output schema, then 0.5
    n_resamples: int
    seed: int
    manifest: str
    age_edges: tuple[float, ...] = SuiteConfig.age_edges
    dicomweb: PacsSpec | None = None  # the site's PACS in place of the manifest file


@dataclass(frozen=True)
class VersionSpec:
    """The model version to evaluate, as the registry describes it."""

    id: Any
    label: str
    artifact_sha256: str
    files: tuple[dict, ...]
    output_schema: Mapping[str, Any]
    preprocessing: Mapping[str, Any]
    task: str
    modality: str

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in self.output_schema.get("class_names", [])]


@dataclass(frozen=True)
class Job:
    """One site's share of a federated study: ``Job.from_dict`` checks what the server sent."""

    id: Any
    study: Any
    deadline: str | None
    spec: JobSpec
    version: VersionSpec

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        _require(isinstance(data, Mapping), "the job is not a JSON object")
        version = cls._version(data.get("version"))
        spec = data.get("spec")
        _require(isinstance(spec, Mapping), "the job has no spec")
        return cls(id=data.get("id"), study=data.get("study"), deadline=data.get("deadline"), spec=cls._spec(spec, version), version=version)

    @staticmethod
    def _version(data: Any) -> VersionSpec:
        _require(isinstance(data, Mapping), "the job has no version")
        sha = str(data.get("artifact_sha256") or "")
        _require(len(sha) == 64 and set(sha) <= _SHA256_HEX, "version.artifact_sha256 is not a sha256")
        files = data.get("files")
        _require(isinstance(files, list) and files, "version.files lists no file")
        for f in files:
            _require(
                isinstance(f, Mapping) and {"name", "sha256", "size", "role"} <= set(f), "each of version.files needs name, sha256, size and role"
            )
            try:
                check_name(str(f["name"]), field="files")
            except ValueError as exc:
                raise JobError(f"version.files: {exc}") from None
            _require(isinstance(f["size"], int) and f["size"] >= 0, f"version.files: {f['name']} has no valid size")
        _require(sum(f["role"] == "model" for f in files) == 1, "version.files must name exactly one model file")
        stored = [StoredFile(str(f["name"]), str(f["sha256"]), int(f["size"]), str(f["role"])) for f in files]
        _require(set_sha256(stored) == sha, "version.files do not hash to version.artifact_sha256: the file list was altered")
        schema = data.get("output_schema") or {}
        _require(isinstance(schema, Mapping) and schema.get("class_names"), "version.output_schema names no class")
        task = str(data.get("task") or "")
        _require(task in ("binary", "multilabel"), f"federated studies evaluate classifiers; the version's task is {task!r}")
        return VersionSpec(
            id=data.get("id"),
            label=str(data.get("label") or ""),
            artifact_sha256=sha,
            files=tuple(dict(f) for f in files),
            output_schema=dict(schema),
            preprocessing=dict(data.get("preprocessing") or {}),
            task=task,
            modality=str(data.get("modality") or ""),
        )

    @staticmethod
    def _spec(data: Mapping[str, Any], version: VersionSpec) -> JobSpec:
        classes = version.class_names
        labels = _names(data.get("labels") or classes, "spec.labels")
        unknown = [label for label in labels if label not in classes]
        _require(not unknown, f"spec.labels {unknown} are not among the version's classes {classes}")
        attributes = _names(data.get("attributes") or [], "spec.attributes")
        bad = [a for a in attributes if a not in STRATIFIABLE]
        _require(not bad, f"spec.attributes {bad} are not attributes a manifest records ({', '.join(STRATIFIABLE)})")
        raw = data.get("intersections") or []
        _require(isinstance(raw, list), "spec.intersections must be a list of attribute lists")
        intersections = tuple(_names(i, "spec.intersections") for i in raw)
        _require(all(set(i) <= set(attributes) for i in intersections), "spec.intersections may only combine spec.attributes")
        manifest = str(data.get("manifest") or "")
        pure = PurePosixPath(manifest.replace("\\", "/"))
        _require(
            bool(manifest) and not pure.is_absolute() and ".." not in pure.parts and manifest.lower().endswith((".csv", ".parquet")),
            f"spec.manifest {manifest!r} must be a .csv or .parquet path relative to the site's data root, without '..'",
        )
        schema_thresholds = version.output_schema.get("thresholds") or {}
        given = data.get("thresholds")
        thresholds = {}
        for label in labels:
            value = given.get(label) if isinstance(given, Mapping) else given
            value = schema_thresholds.get(label, 0.5) if value is None else value
            _require(
                isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1,
                f"the threshold of {label!r} must be a number in [0, 1], got {value!r}",
            )
            thresholds[label] = float(value)
        edges = data.get("age_edges") or SuiteConfig.age_edges
        _require(
            isinstance(edges, (list, tuple))
            and all(isinstance(e, (int, float)) and math.isfinite(e) for e in edges)
            and list(edges) == sorted(set(edges)),
            "spec.age_edges must be increasing ages",
        )
        dicomweb = None
        if data.get("dicomweb") is not None:
            try:
                dicomweb = PacsSpec.from_dict(data["dicomweb"])
            except ValueError as exc:
                raise JobError(f"spec.dicomweb: {exc}") from None
        return JobSpec(
            labels=labels,
            attributes=attributes,
            intersections=intersections,
            min_patients=_whole(data, "min_patients", DEFAULT_MIN_PATIENTS, 1, 1_000_000),
            thresholds=thresholds,
            n_resamples=_whole(data, "n_resamples", 1000, 0, MAX_RESAMPLES),
            seed=_whole(data, "seed", 0, 0, 2**32 - 1),
            manifest=manifest,
            age_edges=tuple(float(e) for e in edges),
            dicomweb=dicomweb,
        )


@dataclass
class SiteEvaluation:
    """The payload, the local check's messages (empty: it may leave), seconds per stage and the device;
    ``pacs``, for a job that read the site's PACS, the frozen manifest's hash and counts."""

    payload: dict[str, Any]
    problems: list[str]
    timings: dict[str, float]
    device: dict[str, Any]
    n_cases: int
    n_patients: int
    pacs: PacsOutcome | None = None


def _attribute_columns(manifest: Manifest, rows: np.ndarray, spec: JobSpec) -> dict[str, list]:
    """Each asked-for attribute for the evaluated rows (age as bands); missing values become "unknown" downstream."""
    return {name: attribute_values(manifest.attributes, name, rows, spec.age_edges) for name in spec.attributes}


def site_evaluate(
    job: Job,
    *,
    data_root: Path,
    artifact_root: Path,
    prefer_gpu: bool = True,
    batch_size: int = 32,
    progress: Callable[[str, float], None] | None = None,
    pacs: PacsSite | None = None,
) -> SiteEvaluation:
    """Evaluate the job's version on the site's data and build the payload (see the module docstring).

    1. Open the artifact under ``artifact_root`` (content-addressed) only if every file re-hashes to the registry's sha256.
    2. Read the manifest ``data_root/<spec.manifest>`` (images relative to ``data_root``, as a dataset's location
       centrally) or, when the spec names a DICOMweb query, resolve, freeze and fetch it from the site's PACS
       (``pacs.pacs_manifest``); fill empty attributes from DICOM headers.
    3. ``pipeline.evaluate`` streams the images through the model in batches; only the overall metrics are
       computed there (the bootstrap runs once, in ``site_summary``).
    4. ``site_summary`` with the spec's strata, minimum, thresholds and resamples; ``payload_check`` on its JSON.
    """
    timings: dict[str, float] = {}
    spec, version = job.spec, job.version
    started = time.perf_counter()
    device = select_device(prefer_gpu=prefer_gpu)
    model = load_verified(Path(artifact_root), version.artifact_sha256, list(version.files), device)
    timings["verify_and_load"] = time.perf_counter() - started

    step = time.perf_counter()
    try:
        preprocessing = Preprocessing.from_spec(version.preprocessing)
    except ValueError as exc:
        raise JobError(f"version.preprocessing: {exc}") from None
    root = Path(data_root).resolve()
    classes = version.class_names
    config = SuiteConfig(
        attributes=(), intersections=(), analyses=(), n_resamples=0, seed=spec.seed, min_patients=spec.min_patients, batch_size=batch_size
    )
    pacs_outcome = None
    if spec.dicomweb is None:
        manifest = read_manifest(manifest_file(root, spec.manifest), root, label_columns=list(spec.labels), class_names=classes)
    elif pacs is None:
        raise PacsSiteError(PacsProblem.NOT_CONFIGURED, "the study reads the site's PACS; start the agent with --pacs-url")
    else:
        manifest, pacs_outcome = pacs_manifest(
            spec.dicomweb, site=pacs, data_root=root, labels=spec.labels, max_unreadable_share=config.max_unreadable_share, progress=progress
        )
    manifest = fill_attributes_from_headers(manifest).manifest
    timings["manifest"] = time.perf_counter() - step

    evaluation = evaluate(
        model,
        manifest,
        task=version.task,
        class_names=classes,
        thresholds=spec.thresholds,
        preprocessing=preprocessing,
        config=config,
        activation=version.output_schema.get("activation", "none"),
        progress=progress,
        modality=version.modality,
    )
    timings.update(evaluation.timings)

    step = time.perf_counter()
    rows = evaluation.case_index
    scores = {label: evaluation.scores[:, classes.index(label)] for label in spec.labels}
    labels = {label: manifest.labels[rows, k] for k, label in enumerate(spec.labels)}
    patients = np.asarray([manifest.patient_ids[i] for i in rows])
    try:
        summary = site_summary(
            scores,
            labels,
            patients,
            _attribute_columns(manifest, rows, spec),
            spec.intersections,
            thresholds=dict(spec.thresholds),
            min_patients=spec.min_patients,
            n_resamples=spec.n_resamples,
            seed=spec.seed,
        )
    except ValueError as exc:
        raise SiteDataError(str(exc)) from None
    payload = summary.to_dict()
    timings["summary"] = time.perf_counter() - step
    step = time.perf_counter()
    problems = payload_check(payload, min_patients=spec.min_patients)
    timings["check"] = time.perf_counter() - step
    timings["engine"] = time.perf_counter() - started
    return SiteEvaluation(
        payload=payload,
        problems=problems,
        timings=timings,
        device=model.device.to_dict(),
        n_cases=int(rows.size),
        n_patients=int(np.unique(patients).size),
        pacs=pacs_outcome,
    )


def stage_logger(log: Callable[[str], None]) -> Callable[[str, float], None]:
    """A ``progress`` callback that logs each stage once, when it starts."""
    seen: set[str] = set()

    def progress(stage: str, fraction: float) -> None:
        if stage not in seen:
            seen.add(stage)
            log(stage)

    return progress
