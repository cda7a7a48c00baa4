"""A run against its version's baseline run: performance degradation, input and output drift,
label-prevalence shift, and the findings that become alerts.

1. Every classification run keeps a ``CaseTable``: per case a pseudonymised
   patient key, the labels, the scores and the statistics of the image as
   read. No pixels, no paths, no patient identifiers. A later run of the same
   version is compared with the table of the run marked as its baseline.
2. Metric deltas (AUROC, sensitivity, specificity at the version's
   threshold) come from one bootstrap over the union of both runs' patients:
   each resample draws patient counts once, and a patient present in both
   runs carries the same weight in both, so repeated patients are paired and
   the others are resampled as independent samples. The interval is the
   percentile interval of the delta; the two-sided p-value is twice the
   smaller share of resampled deltas on either side of zero, counted as
   ``(k + 1) / (n + 1)`` so that it is never reported as 0.
3. Degradation is called when the delta's interval lies wholly below zero and
   the point drop is at least ``degradation_margin`` (0.05 by default): a
   significant but clinically negligible drop is reported, not alerted.
4. Output drift per class score and input drift per image statistic use
   ``radtrust_engine.drift.distribution_drift`` (PSI and KS with their
   thresholds); the label prevalence uses ``prevalence_shift``.
5. Findings carry a severity: ``critical`` for a drop of at least twice the
   margin, ``warning`` for a smaller degradation or a major drift (PSI of
   0.25 or more), ``info`` for a moderate drift or a significant prevalence
   shift.

Plain NumPy (no Django).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from radtrust_engine.drift import (
    IMAGE_FEATURES,
    DriftInputError,
    DriftThresholds,
    distribution_drift,
    prevalence_shift,
)
from radtrust_engine.metrics import ScoreLayout, finite_or_none, patient_bootstrap_counts

DELTA_METRICS = ("auroc", "sensitivity", "specificity")
HISTOGRAM_BINS = 30
CASE_TABLE_FORMAT = "1"


class BaselineError(ValueError):
    """The baseline cannot be compared with this run; the message says why (the suite goes on)."""


def pseudonymise(patient_ids: Sequence[str]) -> np.ndarray:
    """A stable 16-hex key per patient id, so two runs can pair patients without storing the ids."""
    return np.asarray([hashlib.sha256(str(p).encode()).hexdigest()[:16] for p in patient_ids], dtype="<U16")


@dataclass
class CaseTable:
    """Per-case values of a run that later runs are compared with (see the module docstring)."""

    patient_keys: np.ndarray  # (N,) pseudonymised patient keys
    label_names: tuple[str, ...]
    labels: np.ndarray  # (N, labels) 0/1
    class_names: tuple[str, ...]
    scores: np.ndarray  # (N, classes) probabilities
    image_stats: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.patient_keys.size)

    def to_bytes(self) -> bytes:
        """A compressed ``.npz`` (plain arrays only: it is read back with ``allow_pickle=False``)."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            format=np.asarray(CASE_TABLE_FORMAT),
            patient_keys=self.patient_keys.astype("<U16"),
            label_names=np.asarray(self.label_names, dtype=str),
            labels=self.labels.astype(np.int8),
            class_names=np.asarray(self.class_names, dtype=str),
            scores=self.scores.astype(np.float64),
            **{f"stat_{name}": values.astype(np.float64) for name, values in self.image_stats.items()},
        )
        return buffer.getvalue()

    @classmethod
    def from_file(cls, handle: BinaryIO) -> CaseTable:
        try:
            with np.load(handle, allow_pickle=False) as data:
                if str(data["format"]) != CASE_TABLE_FORMAT:
                    raise BaselineError(f"the baseline's case table has format {data['format']}, expected {CASE_TABLE_FORMAT}")
                return cls(
                    patient_keys=data["patient_keys"],
                    label_names=tuple(data["label_names"].tolist()),
                    labels=data["labels"],
                    class_names=tuple(data["class_names"].tolist()),
                    scores=data["scores"],
                    image_stats={k[5:]: data[k] for k in data.files if k.startswith("stat_")},
                )
        except (OSError, KeyError, ValueError) as exc:
            if isinstance(exc, BaselineError):
                raise
            raise BaselineError(f"the baseline's case table cannot be read: {exc}") from None


@dataclass(frozen=True)
class MetricDelta:
    """A metric in the baseline and in this run, the change, its interval and p-value."""

    metric: str
    baseline: float | None
    current: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    degraded: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _layout(scores: np.ndarray, y: np.ndarray, threshold: float) -> ScoreLayout:
    order = np.argsort(scores, kind="stable")
    return ScoreLayout.build(order, scores[order], y[order], threshold)


def metric_deltas(
    reference_y: np.ndarray,
    reference_scores: np.ndarray,
    reference_keys: np.ndarray,
    current_y: np.ndarray,
    current_scores: np.ndarray,
    current_keys: np.ndarray,
    *,
    threshold: float,
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
    degradation_margin: float = 0.05,
) -> list[MetricDelta]:
    """Per metric the change from the reference run with a bootstrap over the union of patients (step 2)."""
    _, index = np.unique(np.concatenate([reference_keys, current_keys]), return_inverse=True)
    n_patients = int(index.max()) + 1
    ref_index, cur_index = index[: reference_keys.size], index[reference_keys.size :]
    ref = _layout(np.asarray(reference_scores, dtype=np.float64), np.asarray(reference_y).astype(bool), threshold)
    cur = _layout(np.asarray(current_scores, dtype=np.float64), np.asarray(current_y).astype(bool), threshold)
    ref_point = ref.metrics(np.ones((1, reference_keys.size)))
    cur_point = cur.metrics(np.ones((1, current_keys.size)))
    samples: dict[str, list[np.ndarray]] = {m: [] for m in DELTA_METRICS}
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, 64):
        counts = patient_bootstrap_counts(rng, n_patients, min(64, n_resamples - start))
        ref_values = ref.metrics(counts[:, ref_index][:, ref.positions])
        cur_values = cur.metrics(counts[:, cur_index][:, cur.positions])
        for m in DELTA_METRICS:
            samples[m].append(cur_values[m] - ref_values[m])
    alpha = (1 - confidence) / 2
    deltas = []
    for m in DELTA_METRICS:
        d = np.concatenate(samples[m]) if samples[m] else np.empty(0)
        d = d[np.isfinite(d)]
        low, high = np.quantile(d, [alpha, 1 - alpha]) if d.size else (np.nan, np.nan)
        # (k + 1) / (n + 1): a bootstrap p-value is never 0; with 1000 resamples the smallest is about 0.002
        p_value = min(1.0, 2 * (min(int((d <= 0).sum()), int((d >= 0).sum())) + 1) / (d.size + 1)) if d.size else None
        point = finite_or_none(cur_point[m][0] - ref_point[m][0])
        deltas.append(
            MetricDelta(
                metric=m,
                baseline=finite_or_none(ref_point[m][0]),
                current=finite_or_none(cur_point[m][0]),
                delta=point,
                ci_low=finite_or_none(low),
                ci_high=finite_or_none(high),
                p_value=p_value,
                degraded=bool(point is not None and d.size > 0 and high < 0 and point <= -degradation_margin),
            )
        )
    return deltas


def _histogram(reference: np.ndarray, current: np.ndarray, result: Any) -> dict[str, Any]:
    """Both samples as densities on shared edges (the 0.5th to 99.5th percentile of both), for the drift chart."""
    both = np.concatenate([reference, current])
    low, high = np.percentile(both, [0.5, 99.5])
    if not high > low:
        low, high = float(both.min()) - 0.5, float(both.max()) + 0.5
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    ref_density, _ = np.histogram(np.clip(reference, low, high), edges, density=True)
    cur_density, _ = np.histogram(np.clip(current, low, high), edges, density=True)
    return {
        "edges": edges.tolist(),
        "reference": ref_density.tolist(),
        "current": cur_density.tolist(),
        "ks": result.ks_statistic,
        "psi": result.psi,
        "drifted": result.drifted,
        "level": result.level,
    }


def _drift_section(
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    thresholds: DriftThresholds,
    histograms: dict[str, Any],
) -> dict[str, Any]:
    section: dict[str, Any] = {}
    for feature, (reference, current) in pairs.items():
        try:
            result = distribution_drift(reference, current, feature=feature, thresholds=thresholds)
        except DriftInputError as exc:
            section[feature] = {"error": str(exc)}
            continue
        section[feature] = result.to_dict()
        histograms[feature] = _histogram(np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64), result)
    return section


def _finding(kind: str, severity: str, subject: str, message: str, evidence: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "severity": severity, "subject": subject, "message": message, "evidence": evidence}


def baseline_comparison(
    reference: CaseTable,
    current: CaseTable,
    *,
    thresholds: Mapping[str, float],
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
    drift_thresholds: DriftThresholds = DriftThresholds(),
    degradation_margin: float = 0.05,
) -> dict[str, Any]:
    """This run against the baseline's cases (see the module docstring); JSON-safe, with ``findings``."""
    if reference.label_names != current.label_names or reference.class_names != current.class_names:
        raise BaselineError(
            f"the baseline run evaluated labels {list(reference.label_names)} with classes {list(reference.class_names)}; "
            f"this run {list(current.label_names)} with {list(current.class_names)}: their results cannot be compared"
        )
    if not len(reference) or not len(current):
        raise BaselineError(f"the baseline run has {len(reference)} case(s) and this run {len(current)}: nothing to compare")
    findings: list[dict[str, Any]] = []
    histograms: dict[str, Any] = {}
    performance: dict[str, Any] = {}
    prevalence: dict[str, Any] = {}
    for k, label in enumerate(current.label_names):
        column = current.class_names.index(label)
        threshold = float(thresholds.get(label, 0.5))
        deltas = metric_deltas(
            reference.labels[:, k],
            reference.scores[:, column],
            reference.patient_keys,
            current.labels[:, k],
            current.scores[:, column],
            current.patient_keys,
            threshold=threshold,
            n_resamples=n_resamples,
            seed=seed,
            confidence=confidence,
            degradation_margin=degradation_margin,
        )
        performance[label] = {"threshold": threshold, "metrics": [d.to_dict() for d in deltas]}
        for d in deltas:
            if d.degraded:
                severity = "critical" if d.delta <= -2 * degradation_margin else "warning"
                findings.append(
                    _finding(
                        "performance_degradation",
                        severity,
                        f"{label}:{d.metric}",
                        f"{label} {d.metric} fell from {d.baseline:.3f} to {d.current:.3f} "
                        f"(change {d.delta:+.3f}, {confidence:.0%} CI {d.ci_low:+.3f} to {d.ci_high:+.3f}, p={d.p_value:.3g})",
                        d.to_dict(),
                    )
                )
        shift = prevalence_shift(reference.labels[:, k], current.labels[:, k], label=label)
        prevalence[label] = shift.to_dict()
        if shift.significant:
            findings.append(
                _finding(
                    "prevalence_shift",
                    "info",
                    label,
                    f"{label} prevalence moved from {shift.reference:.1%} to {shift.current:.1%} "
                    f"(difference {shift.difference:+.1%}, 95% CI {shift.ci_low:+.1%} to {shift.ci_high:+.1%})",
                    shift.to_dict(),
                )
            )
    outputs = _drift_section(
        {f"score_{name}": (reference.scores[:, c], current.scores[:, c]) for c, name in enumerate(current.class_names)},
        drift_thresholds,
        histograms,
    )
    features = [f for f in IMAGE_FEATURES if f in reference.image_stats and f in current.image_stats]
    inputs = _drift_section(
        {f: (reference.image_stats[f], current.image_stats[f]) for f in features},
        drift_thresholds,
        histograms,
    )
    for kind, section in (("output_drift", outputs), ("input_drift", inputs)):
        for feature, result in section.items():
            if result.get("drifted"):
                findings.append(
                    _finding(
                        kind,
                        "warning" if result["level"] == "major" else "info",
                        feature,
                        f"{feature} drifted: PSI {result['psi']:.3f} ({result['level']}), KS {result['ks_statistic']:.3f} "
                        f"(p={result['ks_pvalue']:.2g}); mean {result['reference_mean']:.4g} -> {result['current_mean']:.4g}",
                        {
                            k: result[k]
                            for k in ("psi", "level", "ks_statistic", "ks_pvalue", "reference_mean", "current_mean", "n_reference", "n_current")
                        },
                    )
                )
    return {
        "n_baseline_cases": len(reference),
        "n_cases": len(current),
        "n_shared_patients": int(np.intersect1d(reference.patient_keys, current.patient_keys).size),
        "degradation_margin": degradation_margin,
        "thresholds": {
            "psi_moderate": drift_thresholds.psi_moderate,
            "psi_major": drift_thresholds.psi_major,
            "ks_alpha": drift_thresholds.ks_alpha,
            "ks_min_statistic": drift_thresholds.ks_min_statistic,
        },
        "performance": performance,
        "prevalence": prevalence,
        "outputs": outputs,
        "inputs": inputs,
        "histograms": histograms,
        "findings": findings,
    }


@dataclass(frozen=True)
class Baseline:
    """What a run is compared with: the baseline's case table, or the reason there is none
    (``problem``); ``source`` names the baseline in the report (run, dataset)."""

    table: CaseTable | None
    source: dict[str, Any] = field(default_factory=dict)
    problem: str = ""
