"""One validation: a model session on a dataset manifest, from image files to the JSON report.

Plain Python (no Django): the Celery task, ``manage.py bench`` and a site
agent all call ``evaluate`` and get the same report.

Stages, each timed (``Evaluation.timings``) and reported to ``progress``:

1. ``headers``: attributes the manifest leaves empty are read from DICOM headers.
2. ``inference``: images are read and preprocessed on a producer thread while
   the model runs (``runner.run_batches``). An image that cannot be read or does
   not fit the preprocessing spec (``images.load_image``) is skipped and named in
   the report while the skipped share stays within ``max_unreadable_share``;
   beyond it the model stops, the rest are still read, and the run fails listing
   every such image. The conversions reading applied are counted in the report.
3. ``metrics``: per label (multi-label: each label alone) every metric overall
   and per subgroup with patient-level bootstrap CIs and the fairness gaps;
   segmentation: Dice and IoU against the ground-truth masks (a mask that is
   missing, unreadable or of the wrong shape is skipped and listed like an
   image, within the same allowance). The analyses the
   suite names run here too: calibration and generalisation on the scores;
   robustness, uncertainty and explainability on the tensors of a sample of
   cases kept from stage 2 (no image is read twice). Those three run the model
   once per perturbed input for all labels (its output holds every label) and
   slice each label's column; explainability explains one set of cases shared
   by the labels, each for the label it was drawn for, so no pass is run per
   label. The report's inference section counts them (``forward_passes``).
4. ``data_efficiency``: when the version's output schema names an embedding
   output, the inference stage's forward passes return it beside the scores (no
   second pass); the logistic and kNN probes' label-efficiency curves are fitted
   on it (``radtrust_engine.data_efficiency.efficiency_section``), against a
   comparator run's embeddings of the same cases when one is given.
5. ``drift``: the run's per-case table (``Evaluation.cases``: scores, labels,
   image statistics, pseudonymised patients, embeddings) against the baseline
   run's (``radtrust_engine.baseline``), the embeddings' MMD test included.

The report is a ``radtrust_engine.report.RunReport`` (``Evaluation.run_report``);
its JSON form (``Evaluation.report``) is what the server stores. A run that cannot
go on raises an exception whose ``reason`` is a ``radtrust_engine.failures.FailureCode``.

Whatever ``progress`` raises (a cancellation) stops the run between batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from radtrust_engine.baseline import Baseline, BaselineError, CaseTable, baseline_comparison, pseudonymise
from radtrust_engine.calibration import CalibrationInputError, calibration_report
from radtrust_engine.data_efficiency import DEFAULT_FRACTIONS, efficiency_section
from radtrust_engine.decoding import decoded
from radtrust_engine.detection_drift import detection_comparison
from radtrust_engine.drift import IMAGE_FEATURES
from radtrust_engine.explainability import ExplainabilityError, ExplainedCases, ExplainSettings, explain_cases, overlay_png
from radtrust_engine.failures import FailureCode, ImageProblem
from radtrust_engine.generalisation import generalisation_report
from radtrust_engine.images import ImageError, allowed_skips, fill_attributes_from_headers, load_image, skipped_message
from radtrust_engine.loading import ATTRIBUTE_COLUMNS, Manifest
from radtrust_engine.metrics import roc_points
from radtrust_engine.preprocessing import Preprocessing, check_against_signature
from radtrust_engine.readers import reader_report
from radtrust_engine.report import (
    DatasetInfo,
    DriftComparison,
    DriftReport,
    HeaderFillSummary,
    ImageConversions,
    LabelResult,
    RocCurve,
    RunReport,
    SkippedImage,
)
from radtrust_engine.robustness import perturbed_scores, robustness_report
from radtrust_engine.runner import ModelSession, RunnerError, RunOutput, run_batches
from radtrust_engine.scoring import Reading, Scored, ShardCases
from radtrust_engine.segmentation import ACTIVATIONS, fit_mask, masks_from_output, overlap_scores, stratified_segmentation
from radtrust_engine.stratification import StratifiedReport, attribute_values, stratified_metrics
from radtrust_engine.task_spec import VERSION_TASKS, TaskSpec
from radtrust_engine.uncertainty import augmented_scores, uncertainty_report

TASKS = ("binary", "multilabel", "segmentation", *VERSION_TASKS)
_OUTPUT_MAPPING = {
    "none": "the model's outputs are used as probabilities, as its output schema says",
    "sigmoid": "a sigmoid was applied to the model's outputs (logits) per class",
    "softmax": "a softmax across classes was applied to the model's outputs (logits)",
}
# Analyses beyond the stratified metrics, which every run computes.
ANALYSES = ("calibration", "data_efficiency", "drift", "explainability", "generalisation", "robustness", "uncertainty")
_SAMPLED = ("explainability", "robustness", "uncertainty")  # analyses on the cases kept in memory
STRATIFIABLE = ("age_band", *[name for name in ATTRIBUTE_COLUMNS if name != "age"])
ENGINE_VERSION = "1"

Progress = Callable[[str, float], None]


class InputError(RunnerError):
    """The images do not fit the model: wrong shape after preprocessing, or too many unreadable."""

    reason = FailureCode.BAD_INPUT


class UnreadableImages(RunnerError):
    """More images could not be read than the suite allows to skip."""

    reason = FailureCode.UNREADABLE_IMAGES


class ModelOutputError(RunnerError):
    """The model's output cannot be read as the version's output schema says."""

    reason = FailureCode.OUTPUT_SCHEMA_MISMATCH


@dataclass(frozen=True)
class SuiteConfig:
    """What a run measures and how; stored on the run and in its report."""

    attributes: tuple[str, ...] = ("sex", "age_band", "race_ethnicity", "site", "scanner_manufacturer")
    intersections: tuple[tuple[str, ...], ...] = (("sex", "age_band"),)
    age_edges: tuple[float, ...] = (18, 40, 65)
    n_resamples: int = 1000
    seed: int = 0
    min_patients: int = 10
    confidence: float = 0.95
    batch_size: int = 32
    max_unreadable_share: float = 0.0
    analyses: tuple[str, ...] = ("calibration", "generalisation", "drift")
    calibration_bins: int = 10
    sample_max_cases: int = 500
    tta_augmentations: int = 8
    target_risk: float = 0.1
    explain_cases: int = 32
    rise_masks: int = 500
    degradation_margin: float = 0.05
    label_fractions: tuple[float, ...] = DEFAULT_FRACTIONS  # data_efficiency: shares of the labelled patients
    label_repeats: int = 5  # data_efficiency: repeats per fraction
    target_auroc: float = 0.8  # data_efficiency: the AUROC whose labelled-case count is reported

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SuiteConfig:
        """A checked config; a bad key or value, or a config that is not an object, raises ``ValueError`` naming it."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ValueError(f"the suite config must be a JSON object ({{...}}) of suite options, not {type(data).__name__}")
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown suite option(s): {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        defaults = cls()
        attributes = _names(data.get("attributes", defaults.attributes), "attributes")
        intersections = data.get("intersections", defaults.intersections)
        if not isinstance(intersections, (list, tuple)):
            raise ValueError("suite option 'intersections' must be a list of attribute lists")
        intersections = tuple(_names(x, "intersections", at_least=2) for x in intersections)
        edges = data.get("age_edges", defaults.age_edges)
        if not isinstance(edges, (list, tuple)) or not edges or not all(_is_number(e) for e in edges) or list(edges) != sorted(set(edges)):
            raise ValueError("suite option 'age_edges' must be an increasing list of ages, e.g. [18, 40, 65]")
        config = cls(
            attributes=attributes,
            intersections=intersections,
            age_edges=tuple(float(e) for e in edges),
            n_resamples=_integer(data, "n_resamples", defaults.n_resamples, 0, 100_000),
            seed=_integer(data, "seed", defaults.seed, 0, 2**32 - 1),
            min_patients=_integer(data, "min_patients", defaults.min_patients, 1, 1_000_000),
            confidence=_fraction(data, "confidence", defaults.confidence, open_low=True),
            batch_size=_integer(data, "batch_size", defaults.batch_size, 1, 4096),
            max_unreadable_share=_fraction(data, "max_unreadable_share", defaults.max_unreadable_share),
            analyses=_analyses(data.get("analyses", defaults.analyses)),
            calibration_bins=_integer(data, "calibration_bins", defaults.calibration_bins, 2, 100),
            sample_max_cases=_integer(data, "sample_max_cases", defaults.sample_max_cases, 10, 100_000),
            tta_augmentations=_integer(data, "tta_augmentations", defaults.tta_augmentations, 2, 8),
            target_risk=_fraction(data, "target_risk", defaults.target_risk, open_low=True),
            explain_cases=_integer(data, "explain_cases", defaults.explain_cases, 1, 256),
            rise_masks=_integer(data, "rise_masks", defaults.rise_masks, 50, 5000),
            degradation_margin=_fraction(data, "degradation_margin", defaults.degradation_margin, open_low=True),
            label_fractions=_fractions(data.get("label_fractions", defaults.label_fractions)),
            label_repeats=_integer(data, "label_repeats", defaults.label_repeats, 2, 50),
            target_auroc=_fraction(data, "target_auroc", defaults.target_auroc, open_low=True),
        )
        if config.confidence >= 1:
            raise ValueError("suite option 'confidence' must be below 1, e.g. 0.95")
        return config

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["attributes"] = list(self.attributes)
        data["intersections"] = [list(x) for x in self.intersections]
        data["age_edges"] = list(self.age_edges)
        data["analyses"] = list(self.analyses)
        data["label_fractions"] = list(self.label_fractions)
        return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _names(value: Any, option: str, *, at_least: int = 0) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or len(value) < at_least or not all(isinstance(v, str) for v in value):
        raise ValueError(f"suite option {option!r} must list attribute names" + (f" ({at_least} or more)" if at_least else ""))
    unknown = [v for v in value if v not in STRATIFIABLE]
    if unknown:
        raise ValueError(f"suite option {option!r}: unknown attribute(s) {', '.join(unknown)}; allowed: {', '.join(STRATIFIABLE)}")
    if len(set(value)) != len(value):
        raise ValueError(f"suite option {option!r} names an attribute twice")
    return tuple(value)


def _analyses(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError("suite option 'analyses' must list analysis names")
    unknown = [v for v in value if v not in ANALYSES]
    if unknown:
        raise ValueError(f"suite option 'analyses': unknown analysis(es) {', '.join(unknown)}; available: {', '.join(ANALYSES)}")
    return tuple(dict.fromkeys(value))


def _fractions(value: Any) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(_is_number(v) and 0 < v <= 1 for v in value) or list(value) != sorted(set(value)):
        raise ValueError("suite option 'label_fractions' must be an increasing list of shares above 0 and at most 1, e.g. [0.01, 0.1, 1]")
    return tuple(float(v) for v in value)


def _integer(data: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"suite option {key!r} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _fraction(data: Mapping[str, Any], key: str, default: float, *, open_low: bool = False) -> float:
    value = data.get(key, default)
    if not _is_number(value) or not (0 < value if open_low else 0 <= value) or value > 1:
        raise ValueError(f"suite option {key!r} must be a number between 0 and 1, got {value!r}")
    return float(value)


@dataclass
class Evaluation:
    """The report, per-stage seconds, per-case values and the files beside the report."""

    run_report: RunReport
    timings: dict[str, float]
    scores: np.ndarray = field(repr=False)
    case_index: np.ndarray = field(repr=False)  # manifest row of each score row
    cases: CaseTable | None = field(default=None, repr=False)  # what a later run's drift is computed against
    files: dict[str, bytes] = field(default_factory=dict, repr=False)  # saliency overlays (PNG) by relative name

    @property
    def report(self) -> dict[str, Any]:
        """The report's JSON form, as the server stores it (a new dict on each call)."""
        return self.run_report.to_dict()


# --- Stage 2: images through the model ---------------------------------------------


def _image_batches(
    manifest: Manifest,
    preprocessing: Preprocessing,
    model: ModelSession,
    batch_size: int,
    reading: Reading,
    rows: Sequence[int] | None = None,
    loader_processes: int = 0,
    numbers: Sequence[int] | None = None,
    run_images: int | None = None,
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Read, preprocess and stack the images of ``rows`` (every row by default), decoded on this
    thread or in ``loader_processes`` processes in the same order (``radtrust_engine.decoding``);
    skip those that cannot be read or do not fit the spec up to the allowance; keep the tensors of
    the cases later analyses need, so no image is read twice. Past the allowance the model gets no
    more batches, but every image is still read, so that the failure lists every file that needs
    fixing, not the first. ``numbers`` gives each row's place in the run's manifest (of
    ``run_images`` rows) when ``manifest`` is a shard's cases alone: ids, skips and messages use it."""
    skipped, allowed_skips = reading.skipped, reading.allowed_skips
    rows = list(range(len(manifest)) if rows is None else rows)
    paths = manifest.absolute_paths(rows)
    ids: list[int] = []
    tensors: list[np.ndarray] = []
    checked = False
    for item in decoded(rows, paths, preprocessing, processes=loader_processes, chunk=batch_size):
        index = item.row
        row = index if numbers is None else numbers[index]  # the row in the run's manifest, from 0
        reading.reads += 1
        if item.problem is not None:
            reason, kind = item.problem
            skipped.append(SkippedImage(row=row + 1, image_path=manifest.image_paths[index], reason=reason, kind=kind))
            continue
        if len(skipped) > allowed_skips:
            continue  # the run will fail: only the list of skipped images is still wanted
        if item.unfit is not None:
            raise InputError(f"image {manifest.image_paths[index]!r} (row {row + 1}): {item.unfit}")
        tensor = item.tensor
        try:
            if not checked:
                check_against_signature(tensor.shape, model.input_shape)
                checked = True
        except ValueError as exc:
            raise InputError(f"image {manifest.image_paths[index]!r} (row {row + 1}): {exc}") from None
        if tensors and tensor.shape != tensors[0].shape:
            raise InputError(
                f"image {manifest.image_paths[index]!r} (row {row + 1}) gives {tensor.shape} after preprocessing "
                f"but earlier images gave {tensors[0].shape}; set 'resize' in the version's preprocessing spec"
            )
        ids.append(row)
        tensors.append(tensor)
        reading.stats.append(item.stats)
        if item.conversions:  # the report lists converted images only
            reading.conversions.append((row + 1, item.conversions))
        if index in reading.keep:
            reading.kept[index] = tensor
        if len(ids) == batch_size:
            yield ids, np.stack(tensors)
            ids, tensors = [], []
    if len(skipped) > allowed_skips:
        raise UnreadableImages(skipped_message(skipped, run_images or len(manifest), allowed_skips))
    if ids:
        yield ids, np.stack(tensors)


def score_rows(
    model: ModelSession,
    manifest: Manifest,
    *,
    preprocessing: Preprocessing,
    config: SuiteConfig,
    rows: Sequence[int] | None = None,
    keep: frozenset[int] = frozenset(),
    progress: Progress | None = None,
    loader_processes: int = 0,
) -> Scored:
    """Stage 2 on ``rows`` of the manifest (all by default): a shard of a sharded run, or a whole
    run. The skip allowance is the whole manifest's, as an unsharded run counts it."""
    return _scored(model, manifest, preprocessing, config, rows=rows, keep=keep, progress=progress, loader_processes=loader_processes)


def score_cases(
    model: ModelSession,
    cases: ShardCases,
    root: Path,
    *,
    preprocessing: Preprocessing,
    config: SuiteConfig,
    progress: Progress | None = None,
    loader_processes: int = 0,
) -> Scored:
    """Stage 2 on a shard's own cases (``scoring.ShardCases``), their images under ``root``: what
    ``score_rows`` gives on those rows of the run's manifest, without reading that manifest."""
    return _scored(
        model,
        cases.manifest(root),
        preprocessing,
        config,
        numbers=cases.rows,
        run_images=cases.run_images,
        progress=progress,
        loader_processes=loader_processes,
    )


def _scored(
    model: ModelSession,
    manifest: Manifest,
    preprocessing: Preprocessing,
    config: SuiteConfig,
    *,
    rows: Sequence[int] | None = None,
    numbers: Sequence[int] | None = None,
    run_images: int | None = None,
    keep: frozenset[int] = frozenset(),
    progress: Progress | None = None,
    loader_processes: int = 0,
) -> Scored:
    total = run_images or len(manifest)
    reading = Reading(allowed_skips=allowed_skips(config.max_unreadable_share, total), keep=keep)
    n_rows = len(manifest) if rows is None else len(rows)
    if progress:
        progress("inference", 0.0)
    output = run_batches(
        model,
        _image_batches(manifest, preprocessing, model, config.batch_size, reading, rows, loader_processes, numbers, run_images),
        on_batch=(lambda done: progress("inference", (done + len(reading.skipped)) / n_rows)) if progress else None,
    )
    return Scored(output=output, reading=reading)


def _scores(output: np.ndarray, n_classes: int, activation: str, task: str) -> np.ndarray:
    """The model's first output as an (N, classes) array of probabilities."""
    if task == "segmentation":
        return output
    x = np.asarray(output, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim > 2 and all(d == 1 for d in x.shape[2:]):
        x = x.reshape(x.shape[:2])
    if x.ndim != 2 or x.shape[1] != n_classes:
        raise ModelOutputError(
            f"the model's output has shape {list(output.shape)}, but the output schema names {n_classes} class(es); expected (batch, classes)"
        )
    if activation == "sigmoid":
        x = 1.0 / (1.0 + np.exp(-x))
    elif activation == "softmax":
        x = np.exp(x - x.max(axis=1, keepdims=True))
        x /= x.sum(axis=1, keepdims=True)
    return x


# --- Stage 3: metrics --------------------------------------------------------------


def case_strata(manifest: Manifest, rows: np.ndarray, config: SuiteConfig) -> tuple[dict[str, np.ndarray], list[str]]:
    """The attribute columns to stratify by (for the evaluated rows), and those never collected."""
    columns: dict[str, np.ndarray] = {}
    missing: list[str] = []
    for name in dict.fromkeys([*config.attributes, *(a for x in config.intersections for a in x)]):
        column = "age" if name == "age_band" else name
        source = manifest.attributes[column]
        if source.missing(rows):
            missing.append(name)
            continue
        columns[name] = source.mapped(rows, partial(_strata, name=name, column=column, age_edges=config.age_edges))
    return columns, missing


def _strata(values: list[Any], *, name: str, column: str, age_edges: Sequence[float]) -> np.ndarray:
    """An attribute's strata (``attribute_values``) as text, for each of its distinct values once."""
    found = attribute_values({column: values}, name, range(len(values)), age_edges)
    return np.array(["" if v is None else str(v) for v in found], dtype=object)


def _readers(
    manifest: Manifest, rows: np.ndarray, scores: np.ndarray, class_names: Sequence[str], thresholds: Mapping[str, float], config: SuiteConfig
) -> dict[str, Any] | None:
    """The readers' agreement and the model among them, when the manifest has reader columns."""
    if not manifest.reader_cells:
        return None
    evaluated = [manifest.image_paths[i] for i in rows]
    by_label = {name: dict(zip(evaluated, scores[:, j].tolist(), strict=True)) for j, name in enumerate(class_names)}
    return reader_report(
        manifest.reader_cells, manifest.image_paths, manifest.patient_ids, by_label, thresholds, n_resamples=config.n_resamples, seed=config.seed
    )


def classification_metrics(
    manifest: Manifest,
    rows: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    thresholds: Mapping[str, float],
    strata: dict[str, np.ndarray],
    intersections: list[tuple[str, ...]],
    config: SuiteConfig,
    progress: Progress | None,
    sampled: Callable[[int, float], dict[str, Any]] | None,
    timings: dict[str, float],
) -> dict[str, LabelResult]:
    """Per label its stratified metrics, ROC curve and the analyses the suite names (each label alone)."""
    patient_ids = manifest.patients(rows)
    per_label: dict[str, LabelResult] = {}
    for k, name in enumerate(manifest.label_names):
        column = list(class_names).index(name)
        threshold = float(thresholds.get(name, 0.5))
        y_true, y_score = manifest.labels[rows, k], scores[:, column]
        report = stratified_metrics(
            y_true,
            y_score,
            patient_ids,
            strata,
            intersections,
            threshold=threshold,
            n_resamples=config.n_resamples,
            seed=config.seed,
            min_patients=config.min_patients,
            confidence=config.confidence,
        )
        analyses: dict[str, Any] = {}
        if "calibration" in config.analyses:
            with _timed(timings, "calibration"):
                analyses["calibration"] = calibration_section(y_true, y_score, patient_ids, config)
        if "generalisation" in config.analyses:
            with _timed(timings, "generalisation"):
                analyses["generalisation"] = generalisation_report(
                    report,
                    y_true,
                    y_score,
                    patient_ids,
                    strata,
                    n_resamples=config.n_resamples,
                    seed=config.seed,
                    confidence=config.confidence,
                )
        if sampled is not None:
            analyses.update(sampled(k, threshold))
        per_label[name] = LabelResult.from_grouped(report, roc=_roc_curve(y_true, y_score, report), analyses=analyses)
        if progress:
            progress("metrics", (k + 1) / len(manifest.label_names))
    return per_label


def _roc_curve(y_true: np.ndarray, y_score: np.ndarray, report: StratifiedReport) -> RocCurve | None:
    """The label's ROC points with the overall AUROC and its CI beside them; None with one class only."""
    roc = roc_points(y_true, y_score)
    if roc is None:
        return None
    auroc = report.overall.metrics["auroc"]
    return RocCurve(fpr=tuple(roc["fpr"]), tpr=tuple(roc["tpr"]), auroc=auroc.value, ci_low=auroc.ci_low, ci_high=auroc.ci_high)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Add the block's seconds to ``timings[stage]`` (an analysis runs once per label)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - started


@contextmanager
def _measured(timings: dict[str, float], passes: dict[str, int], model: ModelSession, stage: str) -> Iterator[None]:
    """``_timed``, and the block's forward passes added to ``passes[stage]`` (what the stage cost the model)."""
    before = model.forward_passes
    try:
        with _timed(timings, stage):
            yield
    finally:
        passes[stage] = passes.get(stage, 0) + model.forward_passes - before


def kept_sample(total: int, config: SuiteConfig) -> frozenset[int]:
    """The manifest rows whose tensors are kept for the robustness and uncertainty analyses (seeded)."""
    if total <= config.sample_max_cases:
        return frozenset(range(total))
    rng = np.random.default_rng(config.seed)
    return frozenset(rng.choice(total, size=config.sample_max_cases, replace=False).tolist())


def _sampled_analyses(
    model: ModelSession,
    manifest: Manifest,
    rows: np.ndarray,
    scores: np.ndarray,
    reading: Reading,
    class_names: Sequence[str],
    activation: str,
    modality: str,
    config: SuiteConfig,
    files: dict[str, bytes],
    timings: dict[str, float],
    passes: dict[str, int],
) -> Callable[[int, float], dict[str, Any]]:
    """Run the model for robustness, uncertainty and explainability on the tensors kept during
    inference, and return a function giving label ``k``'s reports at its threshold.

    The model runs here, once per perturbed input for all labels: its output
    holds every label, so each label's report reads its column of the same
    predictions it would get alone. Explainability explains one set of cases
    shared by the labels (``radtrust_engine.explainability``), so none of the
    passes grows with the labels. Saliency overlays go to ``files``.
    """
    position = {int(row): i for i, row in enumerate(rows)}
    kept_rows = sorted(r for r in reading.kept if r in position)
    if not kept_rows:
        return lambda k, threshold: {name: {"error": "no case was kept for this analysis"} for name in _SAMPLED if name in config.analyses}
    tensors = np.stack([reading.kept[r] for r in kept_rows])
    patient_ids = manifest.patients(kept_rows)
    paths = [manifest.image_paths[r] for r in kept_rows]
    labels = manifest.labels[kept_rows]
    columns = [list(class_names).index(name) for name in manifest.label_names]
    reference = scores[np.ix_([position[r] for r in kept_rows], columns)]

    def predict(batch: np.ndarray) -> np.ndarray:
        """Every label's probabilities, in the manifest's label order, from one forward pass per image."""
        return _scores(model.forward(batch, model.output_names[:1])[0], len(class_names), activation, "binary")[:, columns]

    perturbed = augmented = None
    explained: list[dict[str, Any]] = []
    if "robustness" in config.analyses:
        with _measured(timings, passes, model, "robustness"):
            perturbed = perturbed_scores(predict, tensors, modality=modality, batch_size=config.batch_size, seed=config.seed)
    if "uncertainty" in config.analyses:
        with _measured(timings, passes, model, "uncertainty"):
            augmented = augmented_scores(predict, tensors, batch_size=config.batch_size, n_augmentations=config.tta_augmentations)
    if "explainability" in config.analyses:
        with _measured(timings, passes, model, "explainability"):
            explained = _explainability(predict, tensors, labels, kept_rows, paths, manifest.label_names, config, files)

    def run(k: int, threshold: float) -> dict[str, Any]:
        reports: dict[str, Any] = {}
        if perturbed is not None:
            with _timed(timings, "robustness"):
                reports["robustness"] = robustness_report(
                    perturbed,
                    k,
                    labels[:, k],
                    patient_ids,
                    reference[:, k],
                    threshold=threshold,
                    n_resamples=config.n_resamples,
                    seed=config.seed,
                    confidence=config.confidence,
                )
        if augmented is not None:
            with _timed(timings, "uncertainty"):
                try:
                    reports["uncertainty"] = uncertainty_report(
                        augmented, k, labels[:, k], kept_rows, paths, threshold=threshold, target_risk=config.target_risk
                    )
                except ValueError as exc:  # logits under activation "none", and the like
                    reports["uncertainty"] = {"error": str(exc)}
        if explained:
            reports["explainability"] = explained[k]
        return reports

    return run


def _explainability(
    predict: Callable[[np.ndarray], np.ndarray],
    tensors: np.ndarray,
    labels: np.ndarray,
    kept_rows: list[int],
    paths: list[str],
    label_names: Sequence[str],
    config: SuiteConfig,
    files: dict[str, bytes],
) -> list[dict[str, Any]]:
    """Each label's saliency faithfulness report, on the cases drawn for it from the set shared by the
    labels; the overlays are added to ``files`` and named in the reports."""
    settings = ExplainSettings(
        n_cases=config.explain_cases,
        seed=config.seed,
        rise_masks=config.rise_masks,
        batch_size=config.batch_size,
        confidence=config.confidence,
        n_resamples=config.n_resamples,
    )
    try:
        explained = explain_cases(predict, tensors, labels, kept_rows, paths, settings)
    except ExplainabilityError as exc:
        return [{"error": str(exc)} for _ in label_names]
    return [_label_explainability(explained, k, name, files) for k, name in enumerate(label_names)]


def _label_explainability(explained: ExplainedCases, k: int, label: str, files: dict[str, bytes]) -> dict[str, Any]:
    """Label ``k``'s report with its overlays, which are added to ``files``; its error alone if the model
    gave it non-finite probabilities."""
    try:
        result = explained.report(k)
    except ExplainabilityError as exc:
        return {"error": str(exc)}
    position = {row: i for i, row in enumerate(explained.rows)}
    overlays = []
    for method, maps in result.saliency.items():
        for row, saliency in zip(result.case_rows, maps):
            name = f"saliency/{label}/{method}/row-{row + 1}.png"
            files[name] = overlay_png(explained.tensors[position[row]], saliency)
            overlays.append({"method": method, "row": row + 1, "file": name})
    return {**result.report, "overlays": overlays}


def calibration_section(y_true: np.ndarray, y_prob: np.ndarray, patient_ids: np.ndarray, config: SuiteConfig) -> dict[str, Any]:
    """A label's (or a detector's lesion-level) calibration report, or the reason it could not be computed (the rest of the run goes on)."""
    try:
        return calibration_report(
            y_true,
            y_prob,
            n_bins=config.calibration_bins,
            patient_id=patient_ids,
            n_resamples=config.n_resamples,
            seed=config.seed,
            confidence=config.confidence,
        ).to_dict()
    except CalibrationInputError as exc:
        return {"error": str(exc)}


def _ground_truth(manifest: Manifest, rows: np.ndarray, shape: tuple[int, ...], reading: Reading) -> tuple[np.ndarray, np.ndarray]:
    """The ground-truth masks of the evaluated rows fitted to the output's ``shape``, and which rows
    have one. A mask that is missing, unreadable or of a shape that cannot be fitted is skipped like
    an unreadable image (listed with its reason, counted against ``max_unreadable_share``); past
    the allowance the run fails listing every such file, images and masks together."""
    truth = np.zeros((rows.size, *shape), dtype=bool)
    usable = np.ones(rows.size, dtype=bool)
    for j, row in enumerate(rows):
        try:
            truth[j] = fit_mask(load_image(manifest.mask_path(row)).array, shape)
        except ImageError as exc:
            problem, kind = exc.reason, exc.kind
        except ValueError as exc:  # a mask whose shape cannot be fitted to the output's
            problem, kind = str(exc), ImageProblem.SHAPE
        else:
            continue
        usable[j] = False
        reading.skipped.append(SkippedImage(row=int(row) + 1, image_path=manifest.mask_paths[row], reason=f"ground-truth mask: {problem}", kind=kind))
    if len(reading.skipped) > reading.allowed_skips or not usable.any():
        raise UnreadableImages(skipped_message(reading.skipped, len(manifest), reading.allowed_skips))
    return truth[usable], usable


def _segmentation_metrics(
    manifest: Manifest,
    rows: np.ndarray,
    predicted: np.ndarray,
    truth: np.ndarray,
    strata: dict[str, np.ndarray],
    intersections: list[tuple[str, ...]],
    config: SuiteConfig,
) -> dict[str, LabelResult]:
    overlap = overlap_scores(predicted, truth)
    report = stratified_segmentation(
        overlap.dice,
        overlap.iou,
        manifest.patients(rows),
        strata,
        intersections,
        n_resamples=config.n_resamples,
        seed=config.seed,
        min_patients=config.min_patients,
        confidence=config.confidence,
    )
    return {"foreground": LabelResult.from_grouped(report)}


# --- The whole run -----------------------------------------------------------------


def evaluate(
    model: ModelSession,
    manifest: Manifest,
    *,
    task: str,
    class_names: Sequence[str],
    thresholds: Mapping[str, float],
    preprocessing: Preprocessing,
    config: SuiteConfig,
    activation: str = "none",
    progress: Progress | None = None,
    modality: str = "",
    baseline: Baseline | None = None,
    embedding_output: str | None = None,
    comparator: Baseline | None = None,
    scored: Scored | None = None,
    loader_processes: int = 0,
    task_spec: TaskSpec | None = None,
) -> Evaluation:
    """Evaluate ``model`` on every image of ``manifest`` (see the module docstring).

    ``embedding_output`` names the graph's embedding output (the version's output schema), computed
    in the same forward passes as the scores; ``comparator`` is another version's run on the same
    manifest, read like a baseline, whose embeddings the data-efficiency curves are compared with.
    ``scored`` is stage 2 done already (a sharded run's merged shards, ``radtrust_engine.scoring``):
    the images are not read again. ``loader_processes`` decodes the images in that many processes
    (``radtrust_engine.decoding``); the report does not depend on it. ``task_spec`` (the version's
    ``task_spec.TaskSpec``) sends a detection or volume segmentation run to its own stages.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if task in VERSION_TASKS:
        if task_spec is None or task_spec.task != task:
            raise ValueError(f"a {task} run needs the version's task spec (task_spec.TaskSpec.from_schema)")
        return _version_task(model, manifest, task_spec, class_names, thresholds, preprocessing, config, activation, progress, modality, baseline)
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
    if task == "segmentation" and manifest.mask_paths is None:
        raise InputError("a segmentation run needs a manifest with a mask column")
    _check_embedding_output(model, embedding_output)
    timings: dict[str, float] = {}
    passes: dict[str, int] = {}

    started = time.perf_counter()
    if progress:
        progress("headers", 0.0)
    filled = fill_attributes_from_headers(manifest)
    manifest = filled.manifest
    timings["headers"] = time.perf_counter() - started

    started = time.perf_counter()
    total = len(manifest)
    wants_sample = task != "segmentation" and any(a in config.analyses for a in _SAMPLED)
    if scored is None:
        keep = kept_sample(total, config) if wants_sample else frozenset()
        scored = score_rows(
            model, manifest, preprocessing=preprocessing, config=config, keep=keep, progress=progress, loader_processes=loader_processes
        )
        timings["inference"] = time.perf_counter() - started
    elif wants_sample:
        raise ValueError(f"the analyses {', '.join(_SAMPLED)} need the images in memory: a run that names them is scored whole, not in shards")
    else:
        timings["inference"] = scored.output.timings.wall_seconds  # the shards' own seconds, summed
    output, reading = scored.output, scored.reading
    skipped, allowed = reading.skipped, reading.allowed_skips
    passes["inference"] = scored.forward_passes
    if len(skipped) > allowed:  # merged shards: each read on within the allowance of the whole manifest
        raise UnreadableImages(skipped_message(skipped, total, allowed))
    if not output.ids:
        raise UnreadableImages(skipped_message(skipped, total, allowed) if skipped else "the manifest lists no image")

    started = time.perf_counter()
    if progress:
        progress("metrics", 0.0)
    rows = np.asarray(output.ids, dtype=np.int64)
    files: dict[str, bytes] = {}
    cases: CaseTable | None = None
    raw = output.outputs[model.output_names[0]]
    scores = _scores(raw, len(class_names), activation, task)
    if task == "segmentation":
        threshold = float(thresholds.get(class_names[0], 0.5)) if class_names else 0.5
        predicted = masks_from_output(raw, threshold, activation=activation)
        truth, usable = _ground_truth(manifest, rows, predicted.shape[1:], reading)
        rows, predicted = rows[usable], predicted[usable]
    embeddings = _embeddings(output.outputs, embedding_output, rows.size) if task != "segmentation" else None
    strata, missing = case_strata(manifest, rows, config)
    intersections = [x for x in config.intersections if all(a in strata for a in x)]
    if task == "segmentation":
        results = _segmentation_metrics(manifest, rows, predicted, truth, strata, intersections, config)
    else:
        sampled = None
        cases = CaseTable(
            patient_keys=manifest.patient_ids.mapped(rows, pseudonymise),
            label_names=tuple(manifest.label_names),
            labels=manifest.labels[rows],
            class_names=tuple(class_names),
            scores=scores,
            image_stats={name: np.ascontiguousarray(column) for name, column in zip(IMAGE_FEATURES, reading.stats.array().T, strict=True)},
            embeddings=embeddings,
            case_rows=rows if embeddings is not None else None,
        )
        if wants_sample:
            sampled = _sampled_analyses(
                model,
                manifest,
                rows,
                scores,
                reading,
                class_names,
                activation,
                modality,
                config,
                files,
                timings,
                passes,
            )
        results = classification_metrics(
            manifest,
            rows,
            scores,
            class_names,
            thresholds,
            strata,
            intersections,
            config,
            progress,
            sampled,
            timings,
        )
    analyses_seconds = sum(timings.get(name, 0.0) for name in ANALYSES)
    timings["metrics"] = time.perf_counter() - started - analyses_seconds  # the stratified metrics alone
    efficiency = None
    if "data_efficiency" in config.analyses:
        with _timed(timings, "data_efficiency"):
            efficiency = _data_efficiency(cases, embeddings, embedding_output, comparator, config)
    drift = None
    if "drift" in config.analyses:
        with _timed(timings, "drift"):
            drift = drift_section(cases, baseline, thresholds, config)

    run_report = RunReport(
        engine_version=ENGINE_VERSION,
        task=task,
        config=config.to_dict(),
        preprocessing=preprocessing.to_dict(),
        activation=activation,
        output_mapping=_OUTPUT_MAPPING[activation],
        model=model.to_dict(),
        dataset=dataset_info(
            manifest,
            rows,
            missing,
            [x for x in config.intersections if x not in intersections],
            filled.to_dict(),
            ImageConversions.collect(reading.conversions),
        ),
        skipped=tuple(skipped),
        images_read=reading.reads,
        images_read_per_image=reading.reads / total,
        inference=_inference_section(output, passes, len(reading.kept)),
        results=results,
        drift=drift,
        readers=_readers(manifest, rows, scores, class_names, thresholds, config) if task != "segmentation" else None,
        data_efficiency=efficiency,
    )
    return Evaluation(
        run_report=run_report,
        timings=timings,
        scores=scores if task != "segmentation" else np.empty(0),
        case_index=rows,
        cases=cases,
        files=files,
    )


def _check_embedding_output(model: ModelSession, embedding_output: str | None) -> None:
    """A declared embedding output must be one of the graph's outputs, and not the first (which holds the scores)."""
    if embedding_output is None:
        return
    if embedding_output not in model.output_names:
        raise ModelOutputError(
            f"the output schema names embedding output {embedding_output!r}, but the model's outputs are "
            f"{', '.join(model.output_names)}; export the graph with that output or correct 'embedding_output'"
        )
    if embedding_output == model.output_names[0]:
        raise ModelOutputError(
            f"the embedding output {embedding_output!r} is the model's first output, which RadTrust reads as the scores; "
            "export the scores first and the embedding after them"
        )


def _embeddings(outputs: Mapping[str, np.ndarray], embedding_output: str | None, n_cases: int) -> np.ndarray | None:
    """The (cases, d) embeddings the inference stage's forward passes returned beside the scores."""
    if embedding_output is None:
        return None
    if embedding_output not in outputs:  # scores merged from shards that kept the first output alone
        raise ModelOutputError(f"the scored outputs hold no {embedding_output!r}: a run with embeddings is scored whole")
    values = np.asarray(outputs[embedding_output])
    if values.ndim < 2 or values.shape[0] != n_cases:
        raise ModelOutputError(f"the embedding output {embedding_output!r} has shape {list(values.shape)}; expected (batch, dimensions)")
    return values.reshape(n_cases, -1)


def _data_efficiency(
    cases: CaseTable | None, embeddings: np.ndarray | None, embedding_output: str | None, comparator: Baseline | None, config: SuiteConfig
) -> dict[str, Any]:
    """The data-efficiency section, or the reason there is none (the rest of the report stands)."""
    if cases is None:
        return {"error": "data efficiency is evaluated for classification runs only"}
    if embeddings is None or embedding_output is None:
        return {
            "error": "the version declares no embedding output: add 'embedding_output' (the name of a (batch, d) output of its ONNX graph) "
            "to its output schema"
        }
    other = None
    problem = comparator.problem if comparator is not None else ""
    if comparator is not None and comparator.table is not None:
        table = comparator.table
        if table.embeddings is None or table.case_rows is None:
            problem = "the comparator run kept no embeddings (its version declares no embedding output)"
        else:
            other = (table.case_rows, table.embeddings.astype(np.float64))
    return efficiency_section(
        embeddings.astype(np.float64),
        cases.labels,
        cases.label_names,
        cases.patient_keys,
        cases.case_rows,
        embedding_output=embedding_output,
        comparator=other,
        comparator_source=comparator.source if comparator is not None else None,
        comparator_problem=problem,
        fractions=config.label_fractions,
        repeats=config.label_repeats,
        target_auroc=config.target_auroc,
        seed=config.seed,
        confidence=config.confidence,
    )


def _version_task(
    model: ModelSession,
    manifest: Manifest,
    spec: TaskSpec,
    class_names: Sequence[str],
    thresholds: Mapping[str, float],
    preprocessing: Preprocessing,
    config: SuiteConfig,
    activation: str,
    progress: Progress | None,
    modality: str,
    baseline: Baseline | None,
) -> Evaluation:
    """A detection or volume segmentation run, through its own stages (``pipeline_detection``, ``pipeline_volumes``)."""
    # imported here: both modules build on this one's Evaluation and SuiteConfig
    from radtrust_engine.pipeline_detection import evaluate_detection_run
    from radtrust_engine.pipeline_volumes import evaluate_volume_segmentation

    common = {"class_names": class_names, "thresholds": thresholds, "preprocessing": preprocessing, "config": config}
    if spec.task == "detection":
        return evaluate_detection_run(
            model, manifest, spec=spec, activation=activation, progress=progress, modality=modality, baseline=baseline, **common
        )
    return evaluate_volume_segmentation(model, manifest, spec=spec.volume, activation=activation, progress=progress, **common)


def _inference_section(output: RunOutput, passes: dict[str, int], sampled_cases: int) -> dict[str, Any]:
    """The runner's summary, with the forward passes the run cost the model: in all, per stage, and
    those of the sampled analyses per kept case (None when no case was kept)."""
    sampled = sum(passes.get(name, 0) for name in _SAMPLED)
    return {
        **output.to_dict(),
        "forward_passes": sum(passes.values()),
        "forward_passes_by_stage": dict(passes),
        "forward_passes_per_sampled_case": sampled / sampled_cases if sampled_cases else None,
    }


def dataset_info(
    manifest: Manifest,
    rows: np.ndarray,
    missing: list[str],
    not_evaluated: list[tuple[str, ...]],
    header_fill: dict[str, Any],
    conversions: ImageConversions,
) -> DatasetInfo:
    """What was evaluated: counts, labels with their prevalence among the evaluated images, what could not be stratified,
    and what reading converted in the images' pixels."""
    return DatasetInfo(
        n_images=len(manifest),
        n_evaluated=int(rows.size),
        n_patients=int(np.unique(manifest.patient_ids.codes[rows]).size),
        label_names=tuple(manifest.label_names),
        prevalence={name: float(manifest.labels[rows, k].mean()) for k, name in enumerate(manifest.label_names)},
        attributes_not_collected=tuple(missing),
        intersections_not_evaluated=tuple(not_evaluated),
        header_fill=HeaderFillSummary.from_dict(header_fill),
        conversions=conversions,
    )


def drift_section(cases: CaseTable | None, baseline: Baseline | None, thresholds: Mapping[str, float], config: SuiteConfig) -> DriftReport:
    """The comparison with the baseline run, or the reason there is none (the rest of the report stands)."""
    source = baseline.source if baseline else {}
    if cases is None:
        return DriftReport(baseline=source, error="drift against a baseline is computed for classification and detection runs only")
    if baseline is None or baseline.table is None:
        return DriftReport(baseline=source, error=baseline.problem if baseline else "no baseline run was given")
    common = {
        "n_resamples": config.n_resamples,
        "seed": config.seed,
        "confidence": config.confidence,
        "degradation_margin": config.degradation_margin,
    }
    try:
        if cases.detections is not None:
            comparison = detection_comparison(baseline.table, cases, **common)
        else:
            comparison = baseline_comparison(baseline.table, cases, thresholds=thresholds, **common)
    except BaselineError as exc:
        return DriftReport(baseline=source, error=str(exc))
    return DriftReport(baseline=source, comparison=DriftComparison.from_dict(comparison))
