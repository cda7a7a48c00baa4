"""What a site agent computes on its own cases and sends: ``site_summary``.

Plain Python and NumPy (no Django). The payload's format is in
``radtrust_engine.federated_payload``; the server checks it with
``radtrust_engine.federated_check.payload_check`` and pools it with
``radtrust_engine.federated_pooling``.

How a summary is built:

1. Strata: overall, every value of every attribute (missing values become
   "unknown", as in ``radtrust_engine.stratification``), every cell of every
   declared intersection that has a case. Attribute names, values and labels must
   be short category labels (``name_problem``/``value_problem``); anything that
   reads like an identifier or a path is refused here, before it could leave.
2. Suppression, stratum level: a stratum with fewer patients than the minimum is
   suppressed; further strata are suppressed until no small one can be recovered
   by subtracting published counts (``radtrust_engine.disclosure``).
3. Suppression, label level, in each shown stratum: a label block is suppressed
   where fewer patients than the minimum have a positive case, or a negative
   case; again complemented so that no small class count can be recovered.
4. Shown blocks: score histograms per class over the fixed bins, confusion counts
   at the threshold, calibration bins, AUROC, sensitivity, specificity and
   prevalence with standard errors that take patients as the unit
   (``patient_auroc_se``, ``patient_proportion_se``: the server's pooled intervals
   and meta-analysis rest on them, ``se_unit = "patient"``), and patient-level
   bootstrap percentile intervals (``stratified_metrics``; the
   prevalence resamples are drawn from the same seed, so they are the same draws).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from radtrust_engine.disclosure import (
    CLASS_SPLIT,
    KINDS,
    Disclosure,
    DisclosureSystem,
    bound_disclosures,
    count_bounds,
    disclosures,
    partition_equations,
    protect,
    reason_bounds,
    small_reasons,
)
from radtrust_engine.federated_payload import (
    CALIBRATION_BINS,
    DEFAULT_MIN_PATIENTS,
    MAX_ATTRIBUTES,
    MAX_INTERSECTIONS,
    MAX_LABELS,
    MAX_RESAMPLES,
    MAX_STRATA,
    MAX_VALUES_PER_ATTRIBUTE,
    CalibrationBins,
    Confusion,
    Estimate,
    LabelSummary,
    SiteSummary,
    StratumKey,
    StratumSummary,
    calibration_bin,
    grouped_auroc,
    n_score_bins,
    name_problem,
    score_bin,
    value_problem,
)
from radtrust_engine.metrics import DEFAULT_CHUNK_SIZE, checked_inputs, patient_bootstrap_counts
from radtrust_engine.stratification import category_labels, percentile_interval, stratified_metrics


class _Cells:
    """The strata of one site: their keys, case positions and patient counts."""

    def __init__(self, keys: list[StratumKey], positions: list[np.ndarray], patient_idx: np.ndarray):
        self.keys = keys
        self.positions = positions
        self.patient_idx = patient_idx
        self.n_patients = np.array([np.unique(patient_idx[p]).size for p in positions])

    def patients(self, cells: Sequence[int], mask: np.ndarray | None = None) -> int:
        """Distinct patients among the cases of ``cells`` (those with ``mask`` true, if given)."""
        pos = np.concatenate([self.positions[c] for c in cells])
        if mask is not None:
            pos = pos[mask[pos]]
        return int(np.unique(self.patient_idx[pos]).size)

    def order(self, cell: int) -> tuple:
        """Which cell to hide first when one more must go: the finest grouping (an intersection
        cell before an attribute value before overall), then the fewest patients."""
        attrs, values = self.keys[cell]
        return -len(attrs), int(self.n_patients[cell]), int(self.positions[cell].size), attrs, values


def _checked_inputs(
    scores: Mapping[str, Any],
    labels: Mapping[str, Any],
    thresholds: Mapping[str, float] | float,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    if set(scores) != set(labels):
        raise ValueError(f"scores name labels {sorted(scores)} but labels name {sorted(labels)}")
    if not scores or len(scores) > MAX_LABELS:
        raise ValueError(f"a summary covers 1 to {MAX_LABELS} labels, got {len(scores)}")
    y, s, t = {}, {}, {}
    for name in scores:
        if problem := name_problem(name):
            raise ValueError(f"label {problem}")
        y[name], s[name] = checked_inputs(labels[name], scores[name])
        if s[name].size and (s[name].min() < 0 or s[name].max() > 1):
            raise ValueError(f"scores of {name!r} must be probabilities in [0, 1]")
        t[name] = float(thresholds if isinstance(thresholds, (int, float)) else thresholds[name])
        if not 0.0 <= t[name] <= 1.0:
            raise ValueError(f"threshold of {name!r} must be in [0, 1], got {t[name]}")
    sizes = {v.size for v in s.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"every label needs one score per case, got sizes {sorted(sizes)}")
    return y, s, t


def _strata(
    n: int, attributes: Mapping[str, Any], intersections: Sequence[Sequence[str]]
) -> tuple[dict[str, np.ndarray], tuple[tuple[str, ...], ...], list[StratumKey], list[np.ndarray]]:
    if len(attributes) > MAX_ATTRIBUTES or len(intersections) > MAX_INTERSECTIONS:
        raise ValueError(f"at most {MAX_ATTRIBUTES} attributes and {MAX_INTERSECTIONS} intersections")
    columns: dict[str, np.ndarray] = {}
    for name, values in attributes.items():
        if problem := name_problem(name):
            raise ValueError(f"attribute {problem}")
        columns[name] = category_labels(values, n, name)
        distinct = np.unique(columns[name])
        if distinct.size > MAX_VALUES_PER_ATTRIBUTE:
            raise ValueError(
                f"attribute {name!r} has {distinct.size} distinct values; a stratification "
                f"attribute is a category with at most {MAX_VALUES_PER_ATTRIBUTE} values"
            )
        for v in distinct:
            if problem := value_problem(str(v)):
                raise ValueError(f"attribute {name!r}: {problem}; recode it as a category")
    inters = tuple(tuple(i) for i in intersections)
    for inter in inters:
        if len(inter) < 2 or len(set(inter)) != len(inter) or any(a not in columns for a in inter):
            raise ValueError(f"intersection {inter} must name two or more distinct declared attributes")
    if len(set(inters)) != len(inters):
        raise ValueError("an intersection is declared twice")

    keys: list[StratumKey] = [((), ())]
    positions = [np.arange(n)]
    for attrs in [(a,) for a in columns] + list(inters):
        combined = np.array(["\x1f".join(row) for row in zip(*(columns[a] for a in attrs))])
        for key in np.unique(combined):
            keys.append((attrs, tuple(str(key).split("\x1f"))))
            positions.append(np.flatnonzero(combined == key))
    if len(keys) > MAX_STRATA:
        raise ValueError(f"{len(keys)} strata, more than {MAX_STRATA}: declare fewer or coarser attributes or intersections")
    return columns, inters, keys, positions


def _suppress(
    cells: _Cells, groupings: list[tuple[str, ...]], y: dict[str, np.ndarray], called: dict[str, np.ndarray], min_patients: int
) -> tuple[dict[int, str], dict[str, dict[int, str]]]:
    """Suppression reasons: per stratum, and per label for the shown strata (``disclosure.protect``
    with ``disclosure.disclosures`` as the audit, on the cases and, per label, the class and
    confusion counts at the label's threshold)."""
    n_cells = len(cells.keys)
    equations = partition_equations(cells.keys, groupings)
    small_n = cells.n_patients < min_patients
    every = np.ones(n_cells, dtype=bool)

    system = DisclosureSystem.build(n_cells, equations)

    def stratum_audit(known: np.ndarray) -> list[Disclosure]:
        bounds = [count_bounds(system, known, "n", cells.n_patients, *reason_bounds({"n": small_n}, known, min_patients)["n"])]
        found = disclosures(system, known, small=small_n, union_value=lambda _, c: cells.patients(c), minimum=min_patients)
        return found or bound_disclosures(system, known, bounds)

    extra = protect(system, ~small_n, hides=("n",), hideable=every, order=cells.order, audit=stratum_audit)
    stratum_reasons = {int(c): "too_few_patients" for c in np.flatnonzero(small_n)}
    stratum_reasons.update(dict.fromkeys(extra, "complementary"))

    label_reasons: dict[str, dict[int, str]] = {}
    joint = DisclosureSystem.build(n_cells, equations, KINDS, CLASS_SPLIT)
    for name, yl in y.items():
        masks = {"positive": yl, "negative": ~yl}
        small = {k: np.array([cells.patients([c], m) < min_patients for c in range(n_cells)]) for k, m in masks.items()}
        shown = np.array([c not in stratum_reasons for c in range(n_cells)])
        block = shown & ~small["positive"] & ~small["negative"]  # a label block is shown or hidden whole
        outcomes = {"positive": (yl & called[name], yl & ~called[name]), "negative": (~yl & ~called[name], ~yl & called[name])}
        confusion = {k: [np.array([int(hit[p].sum()) for p in cells.positions]) for hit in pair] for k, pair in outcomes.items()}

        def label_audit(known: np.ndarray, masks=masks, small=small, confusion=confusion) -> list[Disclosure]:
            found = disclosures(
                joint,
                known,
                small=np.concatenate([small_n, small["positive"], small["negative"]]),
                union_value=lambda kind, chosen: cells.patients(chosen, masks.get(kind)),
                minimum=min_patients,
            )
            shown_blocks = known[joint.var("positive", 0) : joint.var("negative", 0)]  # confusion counts add up like cases: one-kind system
            for kind, pair in confusion.items():
                if found:
                    return found
                found = [
                    d.in_slot(joint, kind)
                    for d in bound_disclosures(system, shown_blocks, [count_bounds(system, shown_blocks, "n", v) for v in pair])
                ]
            return found

        extra = protect(
            joint, np.concatenate([shown, block, block]), hides=("positive", "negative"), hideable=every, order=cells.order, audit=label_audit
        )
        small_reason = small_reasons(small)
        reasons = {}
        for c in np.flatnonzero(shown):
            if reason := small_reason[c] or ("complementary" if c in extra else None):
                reasons[int(c)] = reason
        label_reasons[name] = reasons
    return stratum_reasons, label_reasons


def _prevalence_samples(cells: _Cells, blocks: list[tuple[int, np.ndarray]], n_patients: int, n_resamples: int, seed: int | None) -> np.ndarray:
    """Prevalence of each ``(cell, labels)`` block on each patient-level bootstrap resample,
    shape ``(n_resamples, blocks)``: multinomial patient counts times per-patient sums."""
    pos = np.column_stack(
        [np.bincount(cells.patient_idx[cells.positions[c]], weights=yl[cells.positions[c]], minlength=n_patients) for c, yl in blocks]
    )
    tot = np.column_stack([np.bincount(cells.patient_idx[cells.positions[c]], minlength=n_patients) for c, _ in blocks]).astype(np.float64)
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, len(blocks)))
    for start in range(0, n_resamples, DEFAULT_CHUNK_SIZE):
        stop = min(start + DEFAULT_CHUNK_SIZE, n_resamples)
        counts = patient_bootstrap_counts(rng, n_patients, stop - start)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:stop] = (counts @ pos) / (counts @ tot)
    return out


def patient_proportion_se(hits: np.ndarray, trials: np.ndarray, patient: np.ndarray) -> float | None:
    """Standard error of the proportion ``sum(hits) / sum(trials)`` with patients as the unit.

    A patient's images share the patient, so their outcomes move together; the binomial
    ``sqrt(p (1 - p) / n)`` counts them as independent and is too small by the design
    effect. With ``x_k`` and ``n_k`` a patient's hits and trials, the ratio estimator's
    linearised (cluster-robust) variance is ``K/(K-1) sum_k (x_k - p n_k)^2 / (sum n)^2``
    over the ``K`` patients with a trial; with one image a patient it is the binomial
    variance times ``K/(K-1)``. None without two such patients. ``hits`` and ``trials`` are
    per image (a hit is also a trial); ``patient`` gives each image's patient as 0..K-1.
    """
    n_k = np.bincount(patient, weights=trials)
    x_k = np.bincount(patient, weights=hits & trials, minlength=n_k.size)
    keep = n_k > 0
    k = int(keep.sum())
    if k < 2:
        return None
    n = n_k.sum()
    resid = x_k[keep] - (x_k.sum() / n) * n_k[keep]
    return math.sqrt(k / (k - 1) * float(resid @ resid)) / n


def patient_auroc_se(y: np.ndarray, s: np.ndarray, patient: np.ndarray, auc: float) -> float | None:
    """DeLong's standard error of the AUROC with patients as the unit (Obuchowski 1997).

    DeLong's structural components, ``V10`` (the share of negative images a positive image
    outscores, ties half) and ``V01`` (the share of positive images above a negative one),
    are summed per patient: ``a_k = sum (V10 - A)`` over the patient's positive images and
    ``b_k = sum (V01 - A)`` over its negative ones. With ``m``, ``n`` positive and negative
    images, ``P``, ``Q`` patients with a positive and with a negative image, ``K`` patients:
    ``var = P/(P-1) sum a_k^2 / m^2 + Q/(Q-1) sum b_k^2 / n^2 + 2 K/(K-1) sum a_k b_k / (m n)``.
    It keeps the covariance of one patient's images that image-level DeLong drops, and is
    DeLong's variance when each patient has one image. None without two patients with a
    positive and two with a negative image.
    """
    p_count, q_count = np.unique(patient[y]).size, np.unique(patient[~y]).size
    if p_count < 2 or q_count < 2:
        return None
    pos, neg = s[y], s[~y]
    m, n, k = pos.size, neg.size, int(patient.max()) + 1
    neg_sorted, pos_sorted = np.sort(neg), np.sort(pos)
    below, at = np.searchsorted(neg_sorted, pos, "left"), np.searchsorted(neg_sorted, pos, "right")
    a = np.bincount(patient[y], weights=(below + 0.5 * (at - below)) / n - auc, minlength=k)
    below, at = np.searchsorted(pos_sorted, neg, "left"), np.searchsorted(pos_sorted, neg, "right")
    b = np.bincount(patient[~y], weights=(m - at + 0.5 * (at - below)) / m - auc, minlength=k)
    var = p_count / (p_count - 1) * float(a @ a) / m**2 + q_count / (q_count - 1) * float(b @ b) / n**2 + 2 * k / (k - 1) * float(a @ b) / (m * n)
    return math.sqrt(max(var, 0.0))


def _label_block(
    yl: np.ndarray,
    sl: np.ndarray,
    patient: np.ndarray,
    threshold: float,
    n_patients_pos: int,
    n_patients_neg: int,
    boot: Mapping[str, Any] | None,
    prevalence_ci: tuple[float | None, float | None],
) -> LabelSummary:
    n_bins = n_score_bins()
    bins = score_bin(sl)
    called = sl >= threshold
    confusion = Confusion(int((called & yl).sum()), int((called & ~yl).sum()), int((~called & ~yl).sum()), int((~called & yl).sum()))
    cal = calibration_bin(sl)
    count = np.bincount(cal, minlength=CALIBRATION_BINS)
    sum_p = np.bincount(cal, weights=sl, minlength=CALIBRATION_BINS)
    calibration = CalibrationBins(
        tuple(int(c) for c in count),
        tuple(int(c) for c in np.bincount(cal, weights=yl, minlength=CALIBRATION_BINS)),
        tuple(round(float(p / c), 4) if c else None for p, c in zip(sum_p, count)),
    )
    _, tie = np.unique(sl, return_inverse=True)
    auc, _ = grouped_auroc(np.bincount(tie, weights=yl), np.bincount(tie, weights=~yl))
    _, patient = np.unique(patient, return_inverse=True)
    patient = patient.ravel()

    def ci(name: str) -> tuple[float | None, float | None]:
        if boot is None or boot[name] is None:
            return None, None
        return boot[name]["ci_low"], boot[name]["ci_high"]

    n = int(sl.size)
    n_pos = int(yl.sum())
    sens, spec, prev = confusion.sensitivity, confusion.specificity, n_pos / n
    return LabelSummary(
        suppressed=False,
        positive_cases=n_pos,
        negative_cases=n - n_pos,
        positive_patients=n_patients_pos,
        negative_patients=n_patients_neg,
        histogram_positive=np.bincount(bins[yl], minlength=n_bins),
        histogram_negative=np.bincount(bins[~yl], minlength=n_bins),
        confusion=confusion,
        calibration=calibration,
        metrics={
            "auroc": Estimate(auc, None if auc is None else patient_auroc_se(yl, sl, patient, auc), *ci("auroc")),
            "sensitivity": Estimate(sens, patient_proportion_se(called, yl, patient), *ci("sensitivity")),
            "specificity": Estimate(spec, patient_proportion_se(~called, ~yl, patient), *ci("specificity")),
            "prevalence": Estimate(prev, patient_proportion_se(yl, np.ones_like(yl), patient), *prevalence_ci),
        },
    )


def site_summary(
    scores: Mapping[str, Any],
    labels: Mapping[str, Any],
    patient_id: Any,
    attributes: Mapping[str, Any] | None = None,
    intersections: Sequence[Sequence[str]] = (),
    *,
    thresholds: Mapping[str, float] | float = 0.5,
    min_patients: int = DEFAULT_MIN_PATIENTS,
    n_resamples: int = 1000,
    seed: int | None = 0,
    confidence: float = 0.95,
) -> SiteSummary:
    """The aggregate one site may send: see the module docstring for how it is built.

    ``scores`` and ``labels`` map each label name to one probability and one 0/1 label
    per case; ``patient_id`` gives each case's patient (bootstrap resamples patients, and
    the minimum counts patients); ``attributes`` maps attribute names to one category per
    case; ``thresholds`` is one threshold for all labels or one per label.
    """
    y, s, t = _checked_inputs(scores, labels, thresholds)
    n = next(iter(s.values())).size
    pid = np.asarray(patient_id)
    if pid.shape != (n,):
        raise ValueError(f"patient_id has shape {pid.shape}, expected ({n},)")
    if min_patients < 1 or not 0 <= n_resamples <= MAX_RESAMPLES or not 0 < confidence < 1:
        raise ValueError(f"min_patients must be >= 1, n_resamples in [0, {MAX_RESAMPLES}], confidence in (0, 1)")
    columns, inters, keys, positions = _strata(n, dict(attributes or {}), intersections)
    _, patient_idx = np.unique(pid, return_inverse=True)
    patient_idx = patient_idx.ravel()
    n_patients = int(patient_idx.max()) + 1
    cells = _Cells(keys, positions, patient_idx)
    groupings = [(), *((a,) for a in columns), *inters]
    called = {name: s[name] >= t[name] for name in y}
    stratum_reasons, label_reasons = _suppress(cells, groupings, y, called, int(min_patients))

    shown = [c for c in range(len(keys)) if c not in stratum_reasons]
    blocks = [(c, name) for name in y for c in shown if c not in label_reasons[name]]
    prevalence = {}
    boot: dict[tuple[int, str], Any] = {}
    if n_resamples and blocks:
        samples = _prevalence_samples(cells, [(c, y[name]) for c, name in blocks], n_patients, n_resamples, seed)
        prevalence = {b: percentile_interval(samples[:, i], confidence)[:2] for i, b in enumerate(blocks)}
        for name in {name for _, name in blocks}:
            # min_patients=0: nothing suppressed here, the payload's own rule decides what is sent
            report = stratified_metrics(
                y[name], s[name], pid, columns, inters, threshold=t[name], n_resamples=n_resamples, seed=seed, min_patients=0, confidence=confidence
            )
            by_key = {((), ()): report.overall, **{(g.attributes, g.values): g for g in report.subgroups}}
            for c in shown:
                metrics = by_key[keys[c]].metrics
                boot[(c, name)] = {k: None if v.value is None else v.to_dict() for k, v in metrics.items()}

    strata = []
    for c, (attrs, values) in enumerate(keys):
        if c in stratum_reasons:
            strata.append(StratumSummary(attrs, values, True, stratum_reasons[c]))
            continue
        idx = positions[c]
        label_blocks = {}
        for name in y:
            if c in label_reasons[name]:
                label_blocks[name] = LabelSummary(True, label_reasons[name][c])
                continue
            yl = y[name][idx]
            label_blocks[name] = _label_block(
                yl,
                s[name][idx],
                patient_idx[idx],
                t[name],
                cells.patients([c], y[name]),
                cells.patients([c], ~y[name]),
                boot.get((c, name)),
                prevalence.get((c, name), (None, None)),
            )
        strata.append(StratumSummary(attrs, values, False, None, int(idx.size), int(cells.n_patients[c]), label_blocks))
    return SiteSummary(
        thresholds=t,
        attributes=tuple(columns),
        intersections=inters,
        min_patients=int(min_patients),
        confidence=float(confidence),
        n_resamples=int(n_resamples),
        strata=tuple(strata),
        se_unit="patient",
    )
