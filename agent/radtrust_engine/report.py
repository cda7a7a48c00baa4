"""The run report: what one evaluation found, as frozen dataclasses, and its one JSON form.

``pipeline.evaluate`` builds a ``RunReport``. ``RunReport.to_dict()`` is the JSON the server
stores on the run (``ValidationRun.results``), serves from the API and copies to MLflow, and
``RunReport.from_dict`` reads it back: those two are the only (de)serialiser, so every reader
uses attributes and the stored format changes in one place. ``from_dict(report.to_dict())``
equals ``report``, and ``to_dict`` of a stored report gives back the same JSON, key for key and
in the same order.

Typed: what readers rely on — the dataset, the skipped images, per label the overall and
subgroup metrics with their CIs, the fairness gaps and the ROC curve, and the comparison with
the baseline run with its findings. Kept as JSON objects (``Payload``), in report order: the
per-analysis reports (calibration, generalisation, robustness, uncertainty, explainability),
the drift comparison's tables, the suite config, preprocessing, model and inference
descriptions. Their own modules define them and they grow new fields; a reader takes what it
needs from them by key.

Keys later engines added (``output_mapping``, ``images_read``, ``images_read_per_image``,
``roc``, the analyses, ``drift``, a skipped image's ``kind``, ``dataset.conversions``) are optional: a report an older engine stored reads back and
writes out unchanged. A key every engine wrote is required; without it ``from_dict`` raises
``ReportFormatError`` naming it. Plain Python, no Django.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from radtrust_engine.stratification import FairnessGap, GroupedReport, SubgroupResult

Payload = dict[str, Any]  # an open JSON object, as the module that computes it writes it
_T = TypeVar("_T")


class ReportFormatError(ValueError):
    """Stored JSON that is not a run report: a required key is missing or holds the wrong kind of value."""


def _read(where: str, build: Callable[[Any], _T], data: Any) -> _T:
    """``build(data)``, with a missing key or a wrong type reported as a ``ReportFormatError`` naming ``where``."""
    if not isinstance(data, Mapping):
        raise ReportFormatError(f"run report: {where} must be a JSON object, not {type(data).__name__}")
    try:
        return build(data)
    except KeyError as exc:
        raise ReportFormatError(f"run report: {where} has no {exc.args[0]!r}") from None
    except (TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, ReportFormatError):
            raise
        raise ReportFormatError(f"run report: {where} is malformed ({exc})") from None


def _payload(value: Any, where: str) -> Payload:
    """A copy of an open JSON object, so the report never shares it with the caller's dict."""
    if not isinstance(value, Mapping):
        raise ReportFormatError(f"run report: {where} must be a JSON object, not {type(value).__name__}")
    return copy.deepcopy(dict(value))


@dataclass(frozen=True)
class SkippedImage:
    """An image that could not be read, or did not fit the preprocessing spec, and was left out (the suite allowed it)."""

    row: int  # manifest row, from 1
    image_path: str
    reason: str
    kind: str | None = None  # failures.ImageProblem; None in reports older engines wrote

    def to_dict(self) -> dict[str, Any]:
        data = {"row": self.row, "image_path": self.image_path, "reason": self.reason}
        return data if self.kind is None else {**data, "kind": str(self.kind)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SkippedImage:
        return cls(row=data["row"], image_path=data["image_path"], reason=data["reason"], kind=data.get("kind"))


def _row_ranges(rows: Iterable[int]) -> str:
    """Manifest rows as runs: ``1-40, 42``."""
    runs: list[list[int]] = []
    for row in sorted(rows):
        if runs and row == runs[-1][1] + 1:
            runs[-1][1] = row
        else:
            runs.append([row, row])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


@dataclass(frozen=True)
class ConvertedCases:
    """The evaluated images that reading converted the same way, by manifest row (``"1-40, 42"``)."""

    applied: tuple[str, ...]
    rows: str

    def to_dict(self) -> dict[str, Any]:
        return {"applied": list(self.applied), "rows": self.rows}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConvertedCases:
        return cls(applied=tuple(data["applied"]), rows=data["rows"])


@dataclass(frozen=True)
class ImageConversions:
    """What reading did to the evaluated images' pixels (``images.LoadedImage.conversions``): how
    many images each conversion was applied to, and which rows had which set of conversions."""

    counts: dict[str, int]
    cases: tuple[ConvertedCases, ...]

    @classmethod
    def collect(cls, cases: Iterable[tuple[int, Sequence[str]]]) -> ImageConversions:
        """From (manifest row, conversions) per image; images read as stored are left out."""
        counts: Counter[str] = Counter()
        rows: dict[tuple[str, ...], list[int]] = {}
        for row, applied in cases:
            if applied:
                counts.update(applied)
                rows.setdefault(tuple(applied), []).append(row)
        return cls(counts=dict(counts), cases=tuple(ConvertedCases(applied, _row_ranges(r)) for applied, r in rows.items()))

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "cases": [c.to_dict() for c in self.cases]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageConversions:
        return cls(counts=dict(data["counts"]), cases=tuple(_read("dataset.conversions.cases[]", ConvertedCases.from_dict, c) for c in data["cases"]))


@dataclass(frozen=True)
class HeaderFillSummary:
    """How many manifest cells DICOM headers filled per attribute, and the headers that could not be read."""

    filled: dict[str, int]
    unreadable: tuple[Payload, ...]  # {"row", "reason"}

    @property
    def any_filled(self) -> bool:
        return any(self.filled.values())

    def to_dict(self) -> dict[str, Any]:
        return {"filled": dict(self.filled), "unreadable": copy.deepcopy(list(self.unreadable))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeaderFillSummary:
        return cls(filled=dict(data["filled"]), unreadable=tuple(copy.deepcopy(list(data["unreadable"]))))


@dataclass(frozen=True)
class DatasetInfo:
    """What was evaluated: images listed and evaluated, patients, labels and their prevalence, and
    the attributes and intersections the data did not allow to stratify by."""

    n_images: int
    n_evaluated: int
    n_patients: int
    label_names: tuple[str, ...]
    prevalence: dict[str, float]
    attributes_not_collected: tuple[str, ...]
    intersections_not_evaluated: tuple[tuple[str, ...], ...]
    header_fill: HeaderFillSummary
    conversions: ImageConversions | None = None  # None in reports older engines wrote

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "n_images": self.n_images,
            "n_evaluated": self.n_evaluated,
            "n_patients": self.n_patients,
            "label_names": list(self.label_names),
            "prevalence": dict(self.prevalence),
            "attributes_not_collected": list(self.attributes_not_collected),
            "intersections_not_evaluated": [list(x) for x in self.intersections_not_evaluated],
            "header_fill": self.header_fill.to_dict(),
        }
        if self.conversions is not None:
            data["conversions"] = self.conversions.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetInfo:
        return cls(
            n_images=data["n_images"],
            n_evaluated=data["n_evaluated"],
            n_patients=data["n_patients"],
            label_names=tuple(data["label_names"]),
            prevalence=dict(data["prevalence"]),
            attributes_not_collected=tuple(data["attributes_not_collected"]),
            intersections_not_evaluated=tuple(tuple(x) for x in data["intersections_not_evaluated"]),
            header_fill=_read("dataset.header_fill", HeaderFillSummary.from_dict, data["header_fill"]),
            conversions=None if data.get("conversions") is None else _read("dataset.conversions", ImageConversions.from_dict, data["conversions"]),
        )


@dataclass(frozen=True)
class RocCurve:
    """A label's ROC curve (at most a few hundred points) with the overall AUROC and its CI."""

    fpr: tuple[float, ...]
    tpr: tuple[float, ...]
    auroc: float | None
    ci_low: float | None
    ci_high: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"fpr": list(self.fpr), "tpr": list(self.tpr), "auroc": self.auroc, "ci_low": self.ci_low, "ci_high": self.ci_high}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RocCurve:
        return cls(fpr=tuple(data["fpr"]), tpr=tuple(data["tpr"]), auroc=data["auroc"], ci_low=data["ci_low"], ci_high=data["ci_high"])


@dataclass(frozen=True)
class FlaggedCase:
    """A case the uncertainty analysis refers for a human read."""

    row: int
    image_path: str
    uncertainty: float
    probability: float
    tta_std: float

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FlaggedCase:
        return cls(
            row=data["row"], image_path=data["image_path"], uncertainty=data["uncertainty"], probability=data["probability"], tta_std=data["tta_std"]
        )


# The keys of a label's section that are not analyses; every other key is an analysis's report.
_LABEL_KEYS = frozenset({"threshold", "n_resamples", "seed", "confidence", "min_patients", "overall", "subgroups", "gaps", "roc"})


@dataclass(frozen=True)
class LabelResult:
    """One label's results (a segmentation run has one, ``foreground``): every metric overall and per
    subgroup with its CI, the fairness gaps, the ROC curve and the reports of the suite's analyses.

    ``threshold`` is the operating point of a classification label (None for segmentation);
    ``analyses`` holds each analysis's report under its name (``calibration``, ``generalisation``,
    ``robustness``, ``uncertainty``, ``explainability``), in report order; one that could not be
    computed holds ``{"error": why}``.
    """

    n_resamples: int
    seed: int | None
    confidence: float
    min_patients: int
    overall: SubgroupResult
    subgroups: tuple[SubgroupResult, ...]
    gaps: tuple[FairnessGap, ...]
    threshold: float | None = None
    roc: RocCurve | None = None
    analyses: dict[str, Payload] = field(default_factory=dict)

    @classmethod
    def from_grouped(cls, report: GroupedReport, *, roc: RocCurve | None = None, analyses: Mapping[str, Payload] | None = None) -> LabelResult:
        """From the engine's stratified report (classification: ``StratifiedReport``, with its threshold)."""
        return cls(
            n_resamples=report.n_resamples,
            seed=report.seed,
            confidence=report.confidence,
            min_patients=report.min_patients,
            overall=report.overall,
            subgroups=tuple(report.subgroups),
            gaps=tuple(report.gaps),
            threshold=getattr(report, "threshold", None),
            roc=roc,
            analyses=dict(analyses or {}),
        )

    @property
    def calibration(self) -> Payload | None:
        return self.analyses.get("calibration")

    @property
    def generalisation(self) -> Payload | None:
        return self.analyses.get("generalisation")

    @property
    def robustness(self) -> Payload | None:
        return self.analyses.get("robustness")

    @property
    def uncertainty(self) -> Payload | None:
        return self.analyses.get("uncertainty")

    @property
    def explainability(self) -> Payload | None:
        return self.analyses.get("explainability")

    def computed(self, analysis: str) -> Payload | None:
        """The analysis's report when it ran and succeeded; None when it did not run or says why it could not."""
        section = self.analyses.get(analysis)
        return section if section and "error" not in section else None

    @property
    def flagged_cases(self) -> tuple[FlaggedCase, ...]:
        """The cases the uncertainty analysis referred for a human read (none when it did not run)."""
        cases = (self.uncertainty or {}).get("flagged_cases") or ()
        return tuple(_read("uncertainty.flagged_cases[]", FlaggedCase.from_dict, case) for case in cases)

    @property
    def referral_cutoff(self) -> float | None:
        """The uncertainty above which cases are referred; None when no cutoff meets the target risk."""
        return ((self.uncertainty or {}).get("referral") or {}).get("cutoff")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {} if self.threshold is None else {"threshold": self.threshold}
        data.update(
            {
                "n_resamples": self.n_resamples,
                "seed": self.seed,
                "confidence": self.confidence,
                "min_patients": self.min_patients,
                "overall": self.overall.to_dict(),
                "subgroups": [s.to_dict() for s in self.subgroups],
                "gaps": [g.to_dict() for g in self.gaps],
            }
        )
        if self.roc is not None:
            data["roc"] = self.roc.to_dict()
        data.update(copy.deepcopy(self.analyses))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelResult:
        return cls(
            n_resamples=data["n_resamples"],
            seed=data["seed"],
            confidence=data["confidence"],
            min_patients=data["min_patients"],
            overall=SubgroupResult.from_dict(data["overall"]),
            subgroups=tuple(SubgroupResult.from_dict(s) for s in data["subgroups"]),
            gaps=tuple(FairnessGap.from_dict(g) for g in data["gaps"]),
            threshold=data.get("threshold"),
            roc=None if data.get("roc") is None else RocCurve.from_dict(data["roc"]),
            analyses={k: _payload(v, k) for k, v in data.items() if k not in _LABEL_KEYS},
        )


@dataclass(frozen=True)
class DriftFinding:
    """Something the comparison with the baseline run found that deserves an alert."""

    kind: str  # performance_degradation | prevalence_shift | output_drift | input_drift
    severity: str  # critical | warning | info
    subject: str  # "label:metric", a label or a feature
    message: str
    evidence: Payload

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "subject": self.subject,
            "message": self.message,
            "evidence": copy.deepcopy(self.evidence),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftFinding:
        return cls(
            kind=data["kind"],
            severity=data["severity"],
            subject=data["subject"],
            message=data["message"],
            evidence=_payload(data["evidence"], "drift finding evidence"),
        )


_DRIFT_TABLES = ("thresholds", "performance", "prevalence", "outputs", "inputs", "histograms")  # DriftComparison's open tables


@dataclass(frozen=True)
class DriftComparison:
    """This run against the baseline run's cases (``radtrust_engine.baseline.baseline_comparison``):
    metric changes per label, prevalence shifts, output and input drift per feature with their
    histograms, and the findings."""

    n_baseline_cases: int
    n_cases: int
    n_shared_patients: int
    degradation_margin: float
    thresholds: Payload  # the drift thresholds applied
    performance: Payload  # per label: threshold and metric deltas
    prevalence: Payload  # per label
    outputs: Payload  # per score column
    inputs: Payload  # per image statistic
    histograms: Payload  # per feature
    findings: tuple[DriftFinding, ...]
    embedding: Payload | None = None  # the embedding MMD test, when either run kept embeddings

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_baseline_cases": self.n_baseline_cases,
            "n_cases": self.n_cases,
            "n_shared_patients": self.n_shared_patients,
            "degradation_margin": self.degradation_margin,
            **{name: copy.deepcopy(getattr(self, name)) for name in _DRIFT_TABLES},
            **({} if self.embedding is None else {"embedding": copy.deepcopy(self.embedding)}),
            "findings": [f.to_dict() for f in self.findings],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftComparison:
        return cls(
            n_baseline_cases=data["n_baseline_cases"],
            n_cases=data["n_cases"],
            n_shared_patients=data["n_shared_patients"],
            degradation_margin=data["degradation_margin"],
            **{name: _payload(data[name], f"drift.{name}") for name in _DRIFT_TABLES},
            findings=tuple(_read("drift.findings[]", DriftFinding.from_dict, f) for f in data["findings"]),
            embedding=None if data.get("embedding") is None else _payload(data["embedding"], "drift.embedding"),
        )


@dataclass(frozen=True)
class DriftReport:
    """The comparison with the baseline run named by ``baseline`` (run, dataset), or the reason
    there is none (``error``; the rest of the report stands)."""

    baseline: Payload
    error: str | None = None
    comparison: DriftComparison | None = None

    @property
    def findings(self) -> tuple[DriftFinding, ...]:
        return self.comparison.findings if self.comparison else ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"baseline": copy.deepcopy(self.baseline)}
        if self.error is not None:
            data["error"] = self.error
        if self.comparison is not None:
            data.update(self.comparison.to_dict())
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        baseline = _payload(data["baseline"], "drift.baseline")
        if "error" in data:
            return cls(baseline=baseline, error=data["error"])
        return cls(baseline=baseline, comparison=DriftComparison.from_dict(data))


@dataclass(frozen=True)
class RunReport:
    """Everything one evaluation found (see the module docstring); ``results`` is keyed by label."""

    engine_version: str
    task: str  # binary | multilabel | segmentation | detection | volume_segmentation
    config: Payload  # pipeline.SuiteConfig.to_dict()
    preprocessing: Payload  # preprocessing.Preprocessing.to_dict()
    activation: str
    model: Payload  # runner.ModelSession.to_dict()
    dataset: DatasetInfo
    skipped: tuple[SkippedImage, ...]
    inference: Payload  # runner.RunOutput.to_dict() and the run's forward passes (pipeline._inference_section)
    results: dict[str, LabelResult]
    output_mapping: str | None = None
    images_read: int | None = None
    images_read_per_image: float | None = None
    drift: DriftReport | None = None
    readers: Payload | None = None  # {label: readers.ReaderAgreement.to_dict()} when the manifest has several readers
    detection: Payload | None = None  # detection runs: FROC, CPM, size strata, subgroups (pipeline_detection)
    volumes: Payload | None = None  # volume segmentation runs: per-volume and per-structure scores (pipeline_volumes)
    data_efficiency: Payload | None = None  # data_efficiency.efficiency_section(), when the suite asked for it
    report_generation: Payload | None = None  # report_evaluation.ReportEvaluation.to_dict(): generated reports, not images, were evaluated

    @property
    def confidence(self) -> float:
        """The confidence level of every interval in the report (the suite's, 0.95 unless set)."""
        return float(self.config.get("confidence", 0.95))

    @property
    def attributes(self) -> tuple[str, ...]:
        """The attributes the suite asked to stratify by (some may not have been collected)."""
        return tuple(self.config.get("attributes") or ())

    @property
    def attributes_collected(self) -> frozenset[str]:
        return frozenset(self.attributes) - frozenset(self.dataset.attributes_not_collected)

    @property
    def n_resamples(self) -> int:
        return int(self.config.get("n_resamples", 1000))

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def drift_compared(self) -> bool:
        """Whether the run was compared with a baseline run (drift asked for and computed)."""
        return self.drift is not None and self.drift.comparison is not None

    def to_dict(self) -> dict[str, Any]:
        """The stored JSON form, key for key as the engine has always written it."""
        data: dict[str, Any] = {
            "engine_version": self.engine_version,
            "task": self.task,
            "config": copy.deepcopy(self.config),
            "preprocessing": copy.deepcopy(self.preprocessing),
            "activation": self.activation,
        }
        if self.output_mapping is not None:
            data["output_mapping"] = self.output_mapping
        data.update({"model": copy.deepcopy(self.model), "dataset": self.dataset.to_dict(), "skipped": [s.to_dict() for s in self.skipped]})
        if self.images_read is not None:
            data["images_read"] = self.images_read
        if self.images_read_per_image is not None:
            data["images_read_per_image"] = self.images_read_per_image
        data["inference"] = copy.deepcopy(self.inference)
        data["results"] = {label: result.to_dict() for label, result in self.results.items()}
        if self.drift is not None:
            data["drift"] = self.drift.to_dict()
        if self.readers is not None:
            data["readers"] = copy.deepcopy(self.readers)
        for section in ("detection", "volumes"):
            if getattr(self, section) is not None:
                data[section] = copy.deepcopy(getattr(self, section))
        if self.data_efficiency is not None:
            data["data_efficiency"] = copy.deepcopy(self.data_efficiency)
        if self.report_generation is not None:
            data["report_generation"] = copy.deepcopy(self.report_generation)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunReport:
        """The report stored as ``data`` (``to_dict``'s output, or an older engine's); ``ReportFormatError`` if it is not one."""
        return _read("the report", cls._from_mapping, data)

    @classmethod
    def _from_mapping(cls, data: Mapping[str, Any]) -> RunReport:
        results = data["results"]
        if not isinstance(results, Mapping):
            raise ReportFormatError(f"run report: results must be a JSON object, not {type(results).__name__}")
        return cls(
            engine_version=data["engine_version"],
            task=data["task"],
            config=_payload(data["config"], "config"),
            preprocessing=_payload(data["preprocessing"], "preprocessing"),
            activation=data["activation"],
            model=_payload(data["model"], "model"),
            dataset=_read("dataset", DatasetInfo.from_dict, data["dataset"]),
            skipped=tuple(_read("skipped[]", SkippedImage.from_dict, s) for s in data["skipped"]),
            inference=_payload(data["inference"], "inference"),
            results={label: _read(f"results[{label!r}]", LabelResult.from_dict, r) for label, r in results.items()},
            output_mapping=data.get("output_mapping"),
            images_read=data.get("images_read"),
            images_read_per_image=data.get("images_read_per_image"),
            drift=None if data.get("drift") is None else _read("drift", DriftReport.from_dict, data["drift"]),
            readers=None if data.get("readers") is None else _payload(data["readers"], "readers"),
            detection=None if data.get("detection") is None else _payload(data["detection"], "detection"),
            volumes=None if data.get("volumes") is None else _payload(data["volumes"], "volumes"),
            data_efficiency=None if data.get("data_efficiency") is None else _payload(data["data_efficiency"], "data_efficiency"),
            report_generation=None if data.get("report_generation") is None else _payload(data["report_generation"], "report_generation"),
        )
