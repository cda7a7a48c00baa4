"""A detection run against its version's baseline run: the detection scores' drift, the lesion
prevalence, the CPM and the inputs, with the tests and alert rules of classification drift
(``radtrust_engine.baseline``), patients as the unit and the run's tests one Holm family.

1. A detection run keeps a ``CaseTable`` (``detection_case_table``): per case the pseudonymised
   patient key, per class whether it has a lesion of the class and the highest score of a
   detection of the class (0 when it has none), the statistics of the image as read, and beside
   it every detection's score, case and hit (``DetectionColumns``). No boxes, pixels or paths.
2. Output drift (``distribution_drift``: KS on per-patient means, PSI as an effect size) of
   ``max_score_<class>`` (each case's highest score), ``candidates_per_image`` (detections per
   case after suppression) and ``candidate_score`` (every detection's score, each detection
   weighed under its case's patient); input drift of the image statistics; per class the lesion
   prevalence (share of cases with a lesion, the patient-cluster score test).
3. CPM degradation: the CPM of both runs on each resample of a patient bootstrap stratified by
   run (patients only in the baseline, only in this run, in both, each redrawn within itself, as
   ``baseline.label_metric_deltas``); the percentile interval of the change and the Wald p-value
   of a drop from its bootstrap standard error (``baseline.delta_p_values``, widened for the
   fewer patients with a lesion in either run).
4. The p-values of steps 2 and 3 are adjusted together (Holm, ``baseline.alert_family``); an
   alert needs its adjusted p-value at or below ``alpha`` and a material change (a CPM drop of
   at least ``degradation_margin``; a KS statistic of at least 0.1 or a usable PSI of at least
   0.1), with the severities of classification drift. Findings keep the classification kinds
   (``performance_degradation``, ``prevalence_shift``, ``output_drift``, ``input_drift``), so
   post-market monitoring raises them as it raises any run's.

Plain NumPy (no Django).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from radtrust_engine.baseline import (
    BaselineError,
    CaseTable,
    DetectionColumns,
    MetricDelta,
    alert_family,
    check_comparable,
    delta_p_values,
    drift_results,
    judged_comparison,
    prevalence_shifts,
    pseudonymise,
    stratified_counts,
)
from radtrust_engine.detection import FP_RATES, MatchedCase, froc_weighted, patient_order
from radtrust_engine.drift import ALERT_ALPHA, IMAGE_FEATURES, DriftResult, DriftThresholds, PrevalenceShift
from radtrust_engine.metrics import finite_or_none

LESIONS = "lesions"  # the subject of the CPM test: every lesion of every class
_CHUNK = 64  # resamples evaluated together (bounds the (resamples, detections) weights)


def detection_case_table(matched: Sequence[MatchedCase], class_names: Sequence[str], image_stats: Mapping[str, np.ndarray]) -> CaseTable:
    """The table a later detection run is compared with (module docstring, step 1); ``image_stats``
    holds per matched case, in order, each of ``IMAGE_FEATURES``."""
    n, k = len(matched), len(class_names)
    labels = np.zeros((n, k), dtype=np.int8)
    highest = np.zeros((n, k))
    for i, case in enumerate(matched):
        lesion_labels = case.lesion_labels if case.lesion_labels is not None else np.zeros(case.n_lesions, dtype=np.int64)
        labels[i, np.unique(lesion_labels)] = 1
        detection_labels = case.labels if case.labels is not None else np.zeros(case.scores.size, dtype=np.int64)
        for c in range(k):
            scores = case.scores[detection_labels == c]
            highest[i, c] = scores.max() if scores.size else 0.0
    sizes = [c.scores.size for c in matched]
    return CaseTable(
        patient_keys=pseudonymise([c.patient_id for c in matched]),
        label_names=tuple(class_names),
        labels=labels,
        class_names=tuple(class_names),
        scores=highest,
        image_stats={name: np.asarray(image_stats[name], dtype=np.float64) for name in IMAGE_FEATURES if name in image_stats},
        detections=DetectionColumns(
            scores=np.concatenate([c.scores for c in matched]) if matched else np.zeros(0),
            case=np.repeat(np.arange(n), sizes),
            hit=np.concatenate([c.lesion_of >= 0 for c in matched]) if matched else np.zeros(0, dtype=bool),
            lesions=np.asarray([c.n_lesions for c in matched], dtype=np.int64),
        ),
    )


def _matched(table: CaseTable) -> list[MatchedCase]:
    """The table's cases as the FROC takes them (a hit stands for its lesion: no size strata here)."""
    columns = table.detections
    order = np.argsort(columns.case, kind="stable")
    bounds = np.searchsorted(columns.case[order], np.arange(len(table) + 1))
    cases = []
    for i in range(len(table)):
        rows = order[bounds[i] : bounds[i + 1]]
        lesion_of = np.where(columns.hit[rows], 0, -1).astype(np.int64)
        n_lesions = int(columns.lesions[i])
        cases.append(
            MatchedCase(str(i), str(table.patient_keys[i]), columns.scores[rows].astype(np.float64), lesion_of, n_lesions, np.zeros(n_lesions))
        )
    return cases


def cpm_delta(reference: CaseTable, current: CaseTable, *, n_resamples: int, seed: int, confidence: float = 0.95) -> MetricDelta:
    """The CPM's change from the baseline run with its interval and tests (module docstring, step 3)."""
    runs = [_matched(reference), _matched(current)]
    keys = np.unique(np.concatenate([reference.patient_keys, current.patient_keys]))
    positions = [np.searchsorted(keys, patient_order(cases)) for cases in runs]
    in_ref, in_cur = np.zeros(keys.size, dtype=bool), np.zeros(keys.size, dtype=bool)
    in_ref[positions[0]], in_cur[positions[1]] = True, True
    strata = [np.flatnonzero(in_ref & in_cur), np.flatnonzero(in_ref & ~in_cur), np.flatnonzero(~in_ref & in_cur)]
    point = [float(np.mean(froc_weighted(cases, np.ones(len(p)))[0])) for cases, p in zip(runs, positions)]
    rng = np.random.default_rng(seed)
    samples = []
    for start in range(0, n_resamples, _CHUNK):
        counts = stratified_counts(rng, strata, keys.size, min(_CHUNK, n_resamples - start))
        cpm = [froc_weighted(cases, counts[:, p]).mean(axis=1) for cases, p in zip(runs, positions)]
        samples.append(cpm[1] - cpm[0])
    diffs = np.concatenate(samples) if samples else np.empty(0)
    diffs = diffs[np.isfinite(diffs)]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha]) if diffs.size else (np.nan, np.nan)
    units = min(np.unique(t.patient_keys[t.detections.lesions > 0]).size for t in (reference, current))
    delta = finite_or_none(point[1] - point[0])
    se, p_value, p_drop = delta_p_values(delta, diffs, units)
    return MetricDelta(
        "cpm", finite_or_none(point[0]), finite_or_none(point[1]), delta, finite_or_none(low), finite_or_none(high), se, p_value, p_drop
    )


def _score_pairs(reference: CaseTable, current: CaseTable) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """The per-case detection-score features of both runs (step 2) and the candidate scores with their patients."""
    pairs = {f"max_score_{name}": (reference.scores[:, c], current.scores[:, c]) for c, name in enumerate(current.class_names)}
    pairs["candidates_per_image"] = tuple(np.bincount(t.detections.case, minlength=len(t)).astype(np.float64) for t in (reference, current))
    return pairs, (reference.detections.scores, current.detections.scores)


def detection_comparison(
    reference: CaseTable,
    current: CaseTable,
    *,
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
    drift_thresholds: DriftThresholds = DriftThresholds(),
    degradation_margin: float = 0.05,
    alpha: float = ALERT_ALPHA,
) -> dict[str, Any]:
    """This detection run against the baseline's (module docstring); the same JSON shape as
    ``baseline.baseline_comparison``, so pages, charts and alerts read both alike."""
    check_comparable(reference, current)
    if current.detections is None:
        raise BaselineError("a detection comparison needs the detections of both runs")
    patients = tuple(np.unique(t.patient_keys, return_inverse=True)[1].ravel() for t in (reference, current))
    case_pairs, candidates = _score_pairs(reference, current)
    drifts = {"output_drift": drift_results(case_pairs, patients, drift_thresholds)}
    candidate_patients = (patients[0][reference.detections.case], patients[1][current.detections.case])
    drifts["output_drift"].update(drift_results({"candidate_score": candidates}, candidate_patients, drift_thresholds))
    features = [f for f in IMAGE_FEATURES if f in reference.image_stats and f in current.image_stats]
    input_pairs = {f: (reference.image_stats[f], current.image_stats[f]) for f in features}
    drifts["input_drift"] = drift_results(input_pairs, patients, drift_thresholds)
    shifts = prevalence_shifts(reference, current, patients, confidence=confidence, alpha=alpha)
    cpm = cpm_delta(reference, current, n_resamples=n_resamples, seed=seed, confidence=confidence)

    tests = [("performance_degradation", f"{LESIONS}:cpm", "drop", cpm.p_drop)] if cpm.p_drop is not None else []
    tests += [("prevalence_shift", label, "change", s.p_value) for label, s in shifts.items() if isinstance(s, PrevalenceShift)]
    tests += [(kind, f, "change", r.ks_pvalue) for kind, results in drifts.items() for f, r in results.items() if isinstance(r, DriftResult)]
    family = alert_family(tests, alpha)

    return judged_comparison(
        reference,
        current,
        deltas={LESIONS: (None, [cpm])},
        shifts=shifts,
        drifts=drifts,
        pairs={"output_drift": {**case_pairs, "candidate_score": candidates}, "input_drift": input_pairs},
        family=family,
        confidence=confidence,
        alpha=alpha,
        degradation_margin=degradation_margin,
        drift_thresholds=drift_thresholds,
        thresholds={"fp_rates": list(FP_RATES)},
    )
