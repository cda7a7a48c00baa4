"""A run against its version's baseline run: performance degradation, input and output drift,
label-prevalence shift, and the findings that become alerts. Patients are the unit of every
test, and a run's tests are one family whose error rate is controlled.

1. Every classification run keeps a ``CaseTable``: per case a pseudonymised
   patient key, the labels, the scores and the statistics of the image as
   read. No pixels, no paths, no patient identifiers. A later run of the same
   version is compared with the table of the run marked as its baseline.
   A detection run keeps one too, with its detections' scores beside it; it is
   compared by ``radtrust_engine.detection_drift`` with the same tests and rules.
2. Metric deltas (AUROC, sensitivity, specificity at the version's
   threshold) come from a patient-cluster bootstrap stratified by run: each
   resample redraws the patients only in the baseline, those only in this
   run, and those in both (``metric_deltas``), so all of a patient's images
   move together, each run keeps its size, and a patient present in both runs
   carries the same weight in both (paired). A resample's counts are drawn once
   and serve every label (``label_metric_deltas``). The interval is the percentile
   interval of the delta. The p-values are Wald p-values from the bootstrap
   standard error (widened for small samples, ``delta_p_values``),
   ``z = delta / se``: one-sided for a drop (``p_drop``, the
   degradation test) and two-sided (``p_value``, what the change log shows).
   A Wald p-value has no floor, unlike a count of resamples (1/1001 at 1000
   resamples), which a multiplicity adjustment over tens of tests needs.
3. Output drift per class score and input drift per image statistic use
   ``radtrust_engine.drift.distribution_drift`` (KS on per-patient means, PSI
   as an effect size); the label prevalence uses ``prevalence_shift`` (a
   patient-cluster score test).
4. The run's alert tests are one family: per label the three metric drops and
   the prevalence shift, per class score and per image statistic the KS test,
   and, when both runs kept embeddings, the embedding MMD test
   (``radtrust_engine.data_efficiency.mmd_test``, patients as units, a
   permutation p-value; ``_embedding_drift``).
   Their p-values are adjusted together with Holm's step-down method
   (``alert_family``), so a run in which nothing changed raises any alert with
   probability at most ``alpha`` (0.05), whatever the tests' dependence. A
   test that cannot be computed (an undefined metric, too few patients) is
   left out of the family and says why.
5. An alert needs its adjusted p-value at or below ``alpha`` and a material
   change: a drop of at least ``degradation_margin`` (0.05); a KS statistic
   of at least 0.1 or a usable PSI of at least 0.1. Severity: ``critical``
   for a drop of at least twice the margin, ``warning`` for a smaller drop or
   a major drift (PSI of 0.25 or more), ``info`` for a moderate drift or a
   prevalence shift or an embedding drift (whose MMD has no agreed materiality
   scale, so the adjusted test alone raises it). Every finding carries its test: the raw and adjusted
   p-values, the family size and the method.

Plain NumPy (no Django).
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

import numpy as np
from scipy.stats import norm

from radtrust_engine.data_efficiency import MmdResult, mmd_test
from radtrust_engine.drift import (
    ALERT_ALPHA,
    IMAGE_FEATURES,
    DriftInputError,
    DriftResult,
    DriftThresholds,
    PrevalenceShift,
    distribution_drift,
    prevalence_shift,
)
from radtrust_engine.metrics import ScoreLayout, finite_or_none, patient_bootstrap_counts
from radtrust_engine.stats import holm_adjust

DELTA_METRICS = ("auroc", "sensitivity", "specificity")
EMBEDDING_SUBJECT = "embedding"  # the subject of the embedding MMD test in the alert family
HISTOGRAM_BINS = 30
CASE_TABLE_FORMAT = "1"


class BaselineError(ValueError):
    """The baseline cannot be compared with this run; the message says why (the suite goes on)."""


def pseudonymise(patient_ids: Sequence[str]) -> np.ndarray:
    """A stable 16-hex key per patient id, so two runs can pair patients without storing the ids."""
    return np.asarray([hashlib.sha256(str(p).encode()).hexdigest()[:16] for p in patient_ids], dtype="<U16")


@dataclass
class DetectionColumns:
    """A detection run's detections beside its case table (``radtrust_engine.detection_drift``): each
    detection's score, case (row of the table) and whether it found a lesion, and each case's lesion count."""

    scores: np.ndarray  # (M,)
    case: np.ndarray  # (M,) row of the case table
    hit: np.ndarray  # (M,) bool
    lesions: np.ndarray  # (N,)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "det_scores": self.scores.astype(np.float64),
            "det_case": self.case.astype(np.int64),
            "det_hit": self.hit.astype(bool),
            "det_lesions": self.lesions.astype(np.int64),
        }

    @classmethod
    def from_arrays(cls, data) -> DetectionColumns | None:
        if "det_scores" not in data.files:
            return None
        return cls(scores=data["det_scores"], case=data["det_case"], hit=data["det_hit"], lesions=data["det_lesions"])


@dataclass
class CaseTable:
    """Per-case values of a run that later runs are compared with (see the module docstring). A
    detection run's table holds, per class, whether the case has a lesion of it (``labels``) and its
    highest detection score (``scores``), with the detections themselves in ``detections``."""

    patient_keys: np.ndarray  # (N,) pseudonymised patient keys
    label_names: tuple[str, ...]
    labels: np.ndarray  # (N, labels) 0/1
    class_names: tuple[str, ...]
    scores: np.ndarray  # (N, classes) probabilities
    image_stats: dict[str, np.ndarray] = field(default_factory=dict)
    # (N, d) the version's embeddings and the manifest row of each case, when its graph has an
    # embedding output: embedding drift and a later run's data-efficiency comparator read them
    embeddings: np.ndarray | None = None
    case_rows: np.ndarray | None = None
    detections: DetectionColumns | None = None

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
            **({} if self.embeddings is None else {"embeddings": self.embeddings.astype(np.float32)}),
            **({} if self.case_rows is None else {"case_rows": self.case_rows.astype(np.int64)}),
            **({} if self.detections is None else self.detections.arrays()),
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
                    embeddings=data["embeddings"] if "embeddings" in data.files else None,
                    case_rows=data["case_rows"] if "case_rows" in data.files else None,
                    detections=DetectionColumns.from_arrays(data),
                )
        except (OSError, KeyError, ValueError) as exc:
            if isinstance(exc, BaselineError):
                raise
            raise BaselineError(f"the baseline's case table cannot be read: {exc}") from None


@dataclass(frozen=True)
class MetricDelta:
    """A metric in the baseline and in this run, the change, its interval, standard error and
    p-values (step 2): ``p_drop`` one-sided against a drop, ``p_value`` two-sided."""

    metric: str
    baseline: float | None
    current: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    standard_error: float | None
    p_value: float | None
    p_drop: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _layout(scores: np.ndarray, y: np.ndarray, threshold: float) -> ScoreLayout:
    order = np.argsort(scores, kind="stable")
    return ScoreLayout.build(order, scores[order], y[order], threshold)


def stratified_counts(rng: np.random.Generator, strata: list[np.ndarray], n_patients: int, n_resamples: int) -> np.ndarray:
    """Bootstrap counts over all patients, each stratum (baseline only, this run only, both) redrawn within itself."""
    counts = np.zeros((n_resamples, n_patients))
    for members in strata:
        if members.size:
            counts[:, members] = patient_bootstrap_counts(rng, members.size, n_resamples)
    return counts


def delta_p_values(point: float | None, samples: np.ndarray, units: int) -> tuple[float | None, float | None, float | None]:
    """(standard error, two-sided p, one-sided p of a drop) of a delta from its bootstrap samples (step 2).

    A bootstrap draws from the sample as if it were the population, so its spread is short by
    ``sqrt((n - 1) / n)`` at ``n`` units; at a dozen positive patients that makes the test fire
    too often. The standard error is widened by ``sqrt(n / (n - 1))``, ``n`` being the fewer, in
    either run, of the patients the metric rests on (``units``). With no spread at all (identical
    runs) the share of resamples on each side stands in, counted as ``(k + 1) / (n + 1)`` so that
    it is never 0."""
    if point is None or samples.size < 2:
        return None, None, None
    se = float(samples.std(ddof=1))
    if se > 0:
        se *= math.sqrt(units / (units - 1)) if units >= 2 else 1.0
        return se, float(2 * norm.sf(abs(point / se))), float(norm.cdf(point / se))
    above, below = int((samples >= 0).sum()), int((samples <= 0).sum())
    n = samples.size + 1
    return se, min(1.0, 2 * (min(above, below) + 1) / n), min(1.0, (above + 1) / n)


def _metric_units(reference_y: np.ndarray, reference_keys: np.ndarray, current_y: np.ndarray, current_keys: np.ndarray) -> dict[str, int]:
    """Per metric the fewer, in either run, of the patients it rests on: positive ones for
    sensitivity, negative ones for specificity, the smaller of both for AUROC."""
    counts = []
    for y, keys in ((reference_y, reference_keys), (current_y, current_keys)):
        y = np.asarray(y).astype(bool)
        counts.append((np.unique(keys[y]).size, np.unique(keys[~y]).size))
    positives, negatives = min(c[0] for c in counts), min(c[1] for c in counts)
    return {"auroc": min(positives, negatives), "sensitivity": positives, "specificity": negatives}


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
) -> list[MetricDelta]:
    """Per metric the change from the reference run with a patient bootstrap stratified by run (step 2)."""
    [deltas] = label_metric_deltas(
        np.asarray(reference_y)[:, None],
        np.asarray(reference_scores)[:, None],
        reference_keys,
        np.asarray(current_y)[:, None],
        np.asarray(current_scores)[:, None],
        current_keys,
        thresholds=[threshold],
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
    )
    return deltas


def label_metric_deltas(
    reference_y: np.ndarray,
    reference_scores: np.ndarray,
    reference_keys: np.ndarray,
    current_y: np.ndarray,
    current_scores: np.ndarray,
    current_keys: np.ndarray,
    *,
    thresholds: Sequence[float],
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
) -> list[list[MetricDelta]]:
    """``metric_deltas`` of every label (the columns of the ``(cases, labels)`` arrays) on one set of
    resamples: each resample's patient counts are drawn once and serve every label, the same
    counts each label would draw alone from ``seed``."""
    keys, index = np.unique(np.concatenate([reference_keys, current_keys]), return_inverse=True)
    index = index.ravel()
    ref_index, cur_index = index[: reference_keys.size], index[reference_keys.size :]
    in_ref, in_cur = np.zeros(keys.size, dtype=bool), np.zeros(keys.size, dtype=bool)
    in_ref[ref_index], in_cur[cur_index] = True, True
    strata = [np.flatnonzero(in_ref & in_cur), np.flatnonzero(in_ref & ~in_cur), np.flatnonzero(~in_ref & in_cur)]
    layouts = [
        (
            _layout(np.asarray(reference_scores[:, k], dtype=np.float64), np.asarray(reference_y[:, k]).astype(bool), threshold),
            _layout(np.asarray(current_scores[:, k], dtype=np.float64), np.asarray(current_y[:, k]).astype(bool), threshold),
        )
        for k, threshold in enumerate(thresholds)
    ]
    samples: list[dict[str, list[np.ndarray]]] = [{m: [] for m in DELTA_METRICS} for _ in layouts]
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, 64):
        counts = stratified_counts(rng, strata, keys.size, min(64, n_resamples - start))
        for (ref, cur), label_samples in zip(layouts, samples):
            ref_values = ref.metrics_from(counts, ref_index[ref.positions], DELTA_METRICS)
            cur_values = cur.metrics_from(counts, cur_index[cur.positions], DELTA_METRICS)
            for m in DELTA_METRICS:
                label_samples[m].append(cur_values[m] - ref_values[m])
    return [
        _deltas(ref, cur, label_samples, reference_y[:, k], reference_keys, current_y[:, k], current_keys, confidence)
        for k, ((ref, cur), label_samples) in enumerate(zip(layouts, samples))
    ]


def _deltas(
    ref: ScoreLayout,
    cur: ScoreLayout,
    samples: dict[str, list[np.ndarray]],
    reference_y: np.ndarray,
    reference_keys: np.ndarray,
    current_y: np.ndarray,
    current_keys: np.ndarray,
    confidence: float,
) -> list[MetricDelta]:
    """One label's deltas from its point values and resampled changes."""
    ref_point = ref.metrics(np.ones((1, reference_keys.size)))
    cur_point = cur.metrics(np.ones((1, current_keys.size)))
    units = _metric_units(reference_y, reference_keys, current_y, current_keys)
    alpha = (1 - confidence) / 2
    deltas = []
    for m in DELTA_METRICS:
        d = np.concatenate(samples[m]) if samples[m] else np.empty(0)
        d = d[np.isfinite(d)]
        low, high = np.quantile(d, [alpha, 1 - alpha]) if d.size else (np.nan, np.nan)
        point = finite_or_none(cur_point[m][0] - ref_point[m][0])
        se, p_value, p_drop = delta_p_values(point, d, units[m])
        deltas.append(
            MetricDelta(
                metric=m,
                baseline=finite_or_none(ref_point[m][0]),
                current=finite_or_none(cur_point[m][0]),
                delta=point,
                ci_low=finite_or_none(low),
                ci_high=finite_or_none(high),
                standard_error=se,
                p_value=p_value,
                p_drop=p_drop,
            )
        )
    return deltas


@dataclass(frozen=True)
class AlertTest:
    """One test of a run's alert family (step 4): its own p-value, the p-value after Holm's
    adjustment over the ``family_size`` tests of the run, and whether that rejects at ``alpha``."""

    kind: str  # performance_degradation | prevalence_shift | output_drift | input_drift
    subject: str  # "label:metric", a label or a feature
    alternative: str  # "drop" (one-sided) or "change" (two-sided)
    p_value: float
    p_adjusted: float
    family_size: int
    alpha: float
    method: str = "holm"

    @property
    def rejected(self) -> bool:
        return self.p_adjusted <= self.alpha

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rejected": self.rejected}


def alert_family(candidates: Sequence[tuple[str, str, str, float]], alpha: float = ALERT_ALPHA) -> dict[tuple[str, str], AlertTest]:
    """The run's tests, ``(kind, subject, alternative, p_value)`` each, adjusted together (step 4);
    keyed by ``(kind, subject)``."""
    adjusted = holm_adjust([p for *_, p in candidates])
    return {
        (kind, subject): AlertTest(kind, subject, alternative, float(p), float(q), len(candidates), alpha)
        for (kind, subject, alternative, p), q in zip(candidates, adjusted)
    }


def _histogram(reference: np.ndarray, current: np.ndarray, result: DriftResult) -> dict[str, Any]:
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


def _finding(kind: str, severity: str, subject: str, message: str, evidence: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "severity": severity, "subject": subject, "message": message, "evidence": evidence}


def check_comparable(reference: CaseTable, current: CaseTable) -> None:
    """``BaselineError`` unless both runs are of one kind (detection or not) with the same labels and classes, and neither is empty."""
    if (reference.detections is None) != (current.detections is None):
        kinds = ["a detection run" if t.detections is not None else "a classification run" for t in (reference, current)]
        raise BaselineError(f"the baseline is {kinds[0]} and this run {kinds[1]}: their results cannot be compared")
    if reference.label_names != current.label_names or reference.class_names != current.class_names:
        raise BaselineError(
            f"the baseline run evaluated labels {list(reference.label_names)} with classes {list(reference.class_names)}; "
            f"this run {list(current.label_names)} with {list(current.class_names)}: their results cannot be compared"
        )
    if not len(reference) or not len(current):
        raise BaselineError(f"the baseline run has {len(reference)} case(s) and this run {len(current)}: nothing to compare")


def drift_results(
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], patients: tuple[np.ndarray, np.ndarray], thresholds: DriftThresholds
) -> dict[str, DriftResult | str]:
    """Per feature its comparison, or the reason it cannot be made; ``patients`` numbers each run's patients."""
    results: dict[str, DriftResult | str] = {}
    for feature, (ref_values, cur_values) in pairs.items():
        try:
            results[feature] = distribution_drift(
                ref_values,
                cur_values,
                feature=feature,
                reference_patients=patients[0],
                current_patients=patients[1],
                thresholds=thresholds,
            )
        except DriftInputError as exc:
            results[feature] = str(exc)
    return results


def prevalence_shifts(
    reference: CaseTable, current: CaseTable, patients: tuple[np.ndarray, np.ndarray], *, confidence: float, alpha: float
) -> dict[str, PrevalenceShift | str]:
    """Each label's prevalence shift between the two runs, or why it could not be tested."""
    shifts: dict[str, PrevalenceShift | str] = {}
    for k, label in enumerate(current.label_names):
        try:
            shifts[label] = prevalence_shift(
                reference.labels[:, k],
                current.labels[:, k],
                label=label,
                reference_patients=patients[0],
                current_patients=patients[1],
                confidence=confidence,
                alpha=alpha,
            )
        except DriftInputError as exc:
            shifts[label] = str(exc)
    return shifts


def judged_performance(
    deltas: Mapping[str, tuple[float, list[MetricDelta]]],
    family: Mapping[tuple[str, str], AlertTest],
    confidence: float,
    margin: float,
    findings: list[dict[str, Any]],
) -> dict[str, Any]:
    """Per label its threshold and metric changes with their tests; a drop is a finding when its
    adjusted test rejects and it reaches the margin (step 5)."""
    performance: dict[str, Any] = {}
    for label, (threshold, label_deltas) in deltas.items():
        rows = []
        for d in label_deltas:
            test = family.get(("performance_degradation", f"{label}:{d.metric}"))
            degraded = bool(test and test.rejected and d.delta <= -margin)
            rows.append({**d.to_dict(), "degraded": degraded, "test": test.to_dict() if test else None})
            if degraded:
                findings.append(
                    _finding(
                        "performance_degradation",
                        "critical" if d.delta <= -2 * margin else "warning",
                        test.subject,
                        f"{label} {d.metric} fell from {d.baseline:.3f} to {d.current:.3f} "
                        f"(change {d.delta:+.3f}, {confidence:.0%} CI {d.ci_low:+.3f} to {d.ci_high:+.3f})",
                        rows[-1],
                    )
                )
        performance[label] = {"threshold": threshold, "metrics": rows}
    return performance


def judged_prevalence(
    shifts: Mapping[str, PrevalenceShift | str],
    family: Mapping[tuple[str, str], AlertTest],
    confidence: float,
    alpha: float,
    findings: list[dict[str, Any]],
) -> dict[str, Any]:
    """Per label its prevalence shift with its test, or why there is none; a shift whose adjusted test rejects is a finding."""
    prevalence: dict[str, Any] = {}
    for label, shift in shifts.items():
        if not isinstance(shift, PrevalenceShift):
            prevalence[label] = {"error": shift}
            continue
        test = family[("prevalence_shift", label)]
        shift = shift.adjusted(test.p_adjusted, alpha)
        prevalence[label] = {**shift.to_dict(), "test": test.to_dict()}
        if shift.significant:
            findings.append(
                _finding(
                    "prevalence_shift",
                    "info",
                    label,
                    f"{label} prevalence moved from {shift.reference:.1%} to {shift.current:.1%} "
                    f"(difference {shift.difference:+.1%}, {confidence:.0%} CI {shift.ci_low:+.1%} to {shift.ci_high:+.1%})",
                    prevalence[label],
                )
            )
    return prevalence


_DRIFT_EVIDENCE = (
    "psi",
    "level",
    "ks_statistic",
    "ks_pvalue",
    "ks_pvalue_adjusted",
    "reference_mean",
    "current_mean",
    "n_reference",
    "n_current",
    "n_reference_patients",
    "n_current_patients",
    "test",
)


def judged_drift(
    kind: str,
    results: Mapping[str, DriftResult | str],
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    family: Mapping[tuple[str, str], AlertTest],
    alpha: float,
    histograms: dict[str, Any],
    findings: list[dict[str, Any]],
) -> dict[str, Any]:
    """Per feature its drift judged on the adjusted test, with its histogram, or why there is none."""
    section: dict[str, Any] = {}
    for feature, result in results.items():
        if not isinstance(result, DriftResult):
            section[feature] = {"error": result}
            continue
        test = family[(kind, feature)]
        result = result.adjusted(test.p_adjusted, alpha)
        section[feature] = {**result.to_dict(), "test": test.to_dict()}
        ref_values, cur_values = pairs[feature]
        histograms[feature] = _histogram(np.asarray(ref_values, dtype=np.float64), np.asarray(cur_values, dtype=np.float64), result)
        if result.drifted:
            psi = (
                f"PSI {result.psi:.3f} ({result.level})"
                if result.psi_used
                else f"PSI {result.psi:.3f} (not graded: at these patient counts PSI reaches about {result.psi_expected_without_drift:.2f} by chance)"
            )
            findings.append(
                _finding(
                    kind,
                    "warning" if result.level == "major" else "info",
                    feature,
                    f"{feature} drifted: mean {result.reference_mean:.4g} -> {result.current_mean:.4g}, KS {result.ks_statistic:.3f} "
                    f"over {result.n_reference_patients} and {result.n_current_patients} patients, {psi}",
                    {k: section[feature][k] for k in _DRIFT_EVIDENCE},
                )
            )
    return section


EMBEDDING_PERMUTATIONS = 1000  # the MMD p-value's floor, 1/1001, is below Holm's bar for a family of up to ~50 tests


def _embedding_drift(reference: CaseTable, current: CaseTable, seed: int) -> MmdResult | str | None:
    """The MMD test between the two runs' embeddings; None when neither kept any, a reason when they cannot be compared."""
    if reference.embeddings is None and current.embeddings is None:
        return None
    if reference.embeddings is None or current.embeddings is None:
        which = "the baseline run" if reference.embeddings is None else "this run"
        return f"{which} kept no embeddings (its version declares no embedding output, or the run predates them)"
    if reference.embeddings.shape[1] != current.embeddings.shape[1]:
        return f"the embeddings have {reference.embeddings.shape[1]} and {current.embeddings.shape[1]} dimensions: they cannot be compared"
    try:
        return mmd_test(
            reference.embeddings,
            current.embeddings,
            reference_patients=reference.patient_keys,
            current_patients=current.patient_keys,
            n_permutations=EMBEDDING_PERMUTATIONS,
            seed=seed,
        )
    except ValueError as exc:
        return str(exc)


def _embedding_section(
    result: MmdResult | str | None, family: Mapping[tuple[str, str], AlertTest], findings: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The embedding MMD judged on its adjusted test (an ``input_drift`` finding when rejected), or why there is none."""
    if result is None:
        return None
    if isinstance(result, str):
        return {"error": result}
    test = family[("input_drift", EMBEDDING_SUBJECT)]
    section = {**result.to_dict(), "drifted": test.rejected, "test": test.to_dict()}
    if test.rejected:
        findings.append(
            _finding(
                "input_drift",
                "info",
                EMBEDDING_SUBJECT,
                f"the model's embeddings drifted: MMD² {result.mmd2:.4g} over {result.n_reference} and {result.n_current} patients, "
                f"adjusted p {test.p_adjusted:.3g}",
                {
                    "mmd2": result.mmd2,
                    "p_value": result.p_value,
                    "n_reference_patients": result.n_reference,
                    "n_current_patients": result.n_current,
                    "test": test.to_dict(),
                },
            )
        )
    return section


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
    alpha: float = ALERT_ALPHA,
) -> dict[str, Any]:
    """This run against the baseline's cases (see the module docstring); JSON-safe, with ``findings``
    (the alerts) and, on every test it made, its ``test`` (raw and adjusted p-value, family size)."""
    check_comparable(reference, current)
    patients = tuple(np.unique(table.patient_keys, return_inverse=True)[1].ravel() for table in (reference, current))  # keyed once, not per test
    columns = [current.class_names.index(label) for label in current.label_names]
    label_thresholds = [float(thresholds.get(label, 0.5)) for label in current.label_names]
    by_label = label_metric_deltas(
        reference.labels,
        reference.scores[:, columns],
        reference.patient_keys,
        current.labels,
        current.scores[:, columns],
        current.patient_keys,
        thresholds=label_thresholds,
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
    )
    deltas: dict[str, tuple[float, list[MetricDelta]]] = dict(zip(current.label_names, zip(label_thresholds, by_label)))
    shifts = prevalence_shifts(reference, current, patients, confidence=confidence, alpha=alpha)
    features = [f for f in IMAGE_FEATURES if f in reference.image_stats and f in current.image_stats]
    pairs = {
        "output_drift": {f"score_{name}": (reference.scores[:, c], current.scores[:, c]) for c, name in enumerate(current.class_names)},
        "input_drift": {f: (reference.image_stats[f], current.image_stats[f]) for f in features},
    }
    drifts = {kind: drift_results(kind_pairs, patients, drift_thresholds) for kind, kind_pairs in pairs.items()}

    candidates = [
        ("performance_degradation", f"{label}:{d.metric}", "drop", d.p_drop) for label, (_, ds) in deltas.items() for d in ds if d.p_drop is not None
    ]
    candidates += [("prevalence_shift", label, "change", s.p_value) for label, s in shifts.items() if isinstance(s, PrevalenceShift)]
    candidates += [(kind, f, "change", r.ks_pvalue) for kind, results in drifts.items() for f, r in results.items() if isinstance(r, DriftResult)]
    embedding = _embedding_drift(reference, current, seed)
    if isinstance(embedding, MmdResult):
        candidates.append(("input_drift", EMBEDDING_SUBJECT, "change", embedding.p_value))
    family = alert_family(candidates, alpha)

    report = judged_comparison(
        reference,
        current,
        deltas=deltas,
        shifts=shifts,
        drifts=drifts,
        pairs=pairs,
        family=family,
        confidence=confidence,
        alpha=alpha,
        degradation_margin=degradation_margin,
        drift_thresholds=drift_thresholds,
    )
    if embedding is not None:  # after the drift sections, so its finding comes last, as its key does
        findings = report.pop("findings")
        report["embedding"] = _embedding_section(embedding, family, findings)
        report["findings"] = findings
    return report


def judged_comparison(
    reference: CaseTable,
    current: CaseTable,
    *,
    deltas: Mapping[str, tuple[float | None, list[MetricDelta]]],
    shifts: Mapping[str, PrevalenceShift | str],
    drifts: Mapping[str, Mapping[str, DriftResult | str]],
    pairs: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    family: Mapping[tuple[str, str], AlertTest],
    confidence: float,
    alpha: float,
    degradation_margin: float,
    drift_thresholds: DriftThresholds,
    thresholds: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The comparison report from its tests, judged against one alert family: the one JSON shape
    that classification and detection comparisons share, so pages, charts and alerts read both
    alike. ``thresholds`` adds to the report's thresholds (a detector's false-positive rates)."""
    findings: list[dict[str, Any]] = []
    performance = judged_performance(deltas, family, confidence, degradation_margin, findings)
    prevalence = judged_prevalence(shifts, family, confidence, alpha, findings)
    histograms: dict[str, Any] = {}
    sections = {kind: judged_drift(kind, results, pairs[kind], family, alpha, histograms, findings) for kind, results in drifts.items()}
    return {
        "n_baseline_cases": len(reference),
        "n_cases": len(current),
        "n_shared_patients": int(np.intersect1d(reference.patient_keys, current.patient_keys).size),
        "degradation_margin": degradation_margin,
        "thresholds": {
            "psi_moderate": drift_thresholds.psi_moderate,
            "psi_major": drift_thresholds.psi_major,
            "ks_min_statistic": drift_thresholds.ks_min_statistic,
            "alpha": alpha,
            "multiplicity": "holm",
            "family_size": len(family),
            **(thresholds or {}),
        },
        "performance": performance,
        "prevalence": prevalence,
        "outputs": sections["output_drift"],
        "inputs": sections["input_drift"],
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
