"""Reader variability: how far the readers who made the reference labels agree, and where the model
stands among them.

A model's sensitivity against one reader's labels means little without knowing how often two
readers agree with each other: a kappa of 0.5 between readers caps what any model can show
against either. For each binary label this module computes

1. the inter-reader agreement: Cohen's kappa for two readers, Fleiss' kappa for more, with a
   patient-level bootstrap interval (BCa, ``stats.bca_interval``);
2. the model against each reader and against the majority of the readers (kappa, sensitivity,
   specificity);
3. each reader's operating point (sensitivity, specificity against the majority of the *other*
   readers) and whether the model's point lies below, within or above that range;
4. for segmentation, the mean pairwise Dice between readers' masks: the ceiling a model's Dice
   against one reader can be read against.

Reader labels come as columns ``reader:<name>:<label>`` in the manifest, or as a long table of
``(case, reader, label, value)`` rows. A value that is not 0/1 (or a recognised yes/no spelling)
skips the case for that label with its reason; it never crashes the run.
Plain Python, NumPy and SciPy (no Django).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .metrics import patient_bootstrap_counts
from .stats import bca_interval

READER_PREFIX = "reader:"
LOW_AGREEMENT_KAPPA = 0.6
"""Below this kappa the readers agree only moderately (Landis and Koch: 0.41-0.60); a verdict
resting on such labels says so (docs/methods.md, reader variability)."""

_POSITIVE = {"1", "1.0", "true", "yes", "positive", "pos"}
_NEGATIVE = {"0", "0.0", "false", "no", "negative", "neg"}


@dataclass(frozen=True)
class SkippedCase:
    """A case left out of a label's reader analysis, and why (shown in the run's list)."""

    case_id: str
    label: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"case_id": self.case_id, "label": self.label, "reason": self.reason}


@dataclass
class ReaderLabels:
    """The readers' binary labels of one label: ``values`` ``(cases, readers)`` in {0, 1}."""

    label: str
    readers: list[str]
    case_ids: list[str]
    patient_ids: list[str]
    values: np.ndarray
    skipped: list[SkippedCase] = field(default_factory=list)


def parse_reader_value(raw: Any) -> int | None:
    """0 or 1 from a manifest cell (``1``, ``yes``, ``positive`` ...); ``None`` when unknown."""
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw in (0, 1):
        return int(raw)
    text = str(raw).strip().lower()
    if text in _POSITIVE:
        return 1
    if text in _NEGATIVE:
        return 0
    return None


def reader_columns(columns: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """``{label: [(reader, column), ...]}`` from manifest columns named ``reader:<name>:<label>``."""
    found: dict[str, list[tuple[str, str]]] = {}
    for column in columns:
        if not column.startswith(READER_PREFIX):
            continue
        parts = column[len(READER_PREFIX) :].split(":", 1)
        if len(parts) != 2 or not parts[0] or not parts[1] or not column.isprintable():
            continue  # not a reader column (a NUL or control character never reaches the report)
        found.setdefault(parts[1], []).append((parts[0], column))
    return found


def labels_from_rows(rows: Sequence[Mapping[str, Any]], *, case_key: str = "case_id", patient_key: str = "patient_id") -> dict[str, ReaderLabels]:
    """The reader labels of every label found in wide manifest rows (one column per reader)."""
    columns = reader_columns(rows[0].keys()) if rows else {}
    records = []
    for row in rows:
        case_id = str(row.get(case_key, ""))
        patient_id = str(row.get(patient_key) or case_id)
        for label, pairs in columns.items():
            for reader, column in pairs:
                records.append((case_id, patient_id, reader, label, row.get(column)))
    return _collect(records)


def labels_from_long_table(
    rows: Sequence[Mapping[str, Any]], *, case_key: str = "case_id", patient_key: str = "patient_id"
) -> dict[str, ReaderLabels]:
    """The reader labels from a long table: one row per ``(case, reader, label, value)``."""
    records = []
    for row in rows:
        case_id = str(row.get(case_key, ""))
        records.append((case_id, str(row.get(patient_key) or case_id), str(row["reader"]), str(row["label"]), row.get("value")))
    return _collect(records)


def _collect(records: list[tuple[str, str, str, str, Any]]) -> dict[str, ReaderLabels]:
    """Group ``(case, patient, reader, label, raw value)`` records into one matrix per label; a case
    with an unknown or missing value from any reader is skipped for that label with the reason."""
    by_label: dict[str, dict[str, dict[str, Any]]] = {}
    patients: dict[str, str] = {}
    readers_of: dict[str, list[str]] = {}
    for case_id, patient_id, reader, label, raw in records:
        by_label.setdefault(label, {}).setdefault(case_id, {})[reader] = raw
        patients[case_id] = patient_id
        names = readers_of.setdefault(label, [])
        if reader not in names:
            names.append(reader)
    result = {}
    for label, cases in by_label.items():
        readers = sorted(readers_of[label])
        kept_ids, kept_values, skipped = [], [], []
        for case_id, given in cases.items():
            parsed = [parse_reader_value(given[r]) if r in given else None for r in readers]
            bad = [r for r, v in zip(readers, parsed, strict=True) if v is None]
            if bad:
                shown = ", ".join(f"{r}={given.get(r)!r}" for r in bad)
                skipped.append(SkippedCase(case_id, label, f"unknown or missing reader value ({shown}); expected 0/1 or yes/no"))
                continue
            kept_ids.append(case_id)
            kept_values.append(parsed)
        values = np.array(kept_values, dtype=np.int8).reshape(len(kept_ids), len(readers))
        result[label] = ReaderLabels(label, readers, kept_ids, [patients[c] for c in kept_ids], values, skipped)
    return result


# ---------------------------------------------------------------------------
# Agreement statistics, weighted so that a patient bootstrap is a matrix product
# ---------------------------------------------------------------------------


def cohen_kappa(a: Any, b: Any, weights: Any = None) -> float:
    """Cohen's kappa of two raters' binary labels (weighted by ``weights``); NaN when the chance
    agreement is 1 (both raters gave one and the same value throughout)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    w = np.ones_like(a) if weights is None else np.asarray(weights, dtype=np.float64)
    return float(_cohen_from_sums(np.sum(w), np.sum(w * a), np.sum(w * b), np.sum(w * a * b)))


def _cohen_from_sums(total: Any, sum_a: Any, sum_b: Any, sum_ab: Any) -> np.ndarray:
    """Kappa from the weighted counts (total, a positive, b positive, both positive); arrays work."""
    with np.errstate(invalid="ignore", divide="ignore"):
        pa, pb, pab = sum_a / total, sum_b / total, sum_ab / total
        observed = 1.0 - pa - pb + 2.0 * pab  # both positive or both negative
        chance = pa * pb + (1.0 - pa) * (1.0 - pb)
        return np.where(chance < 1.0, (observed - chance) / (1.0 - chance), np.nan)


def fleiss_kappa(values: Any, weights: Any = None) -> float:
    """Fleiss' kappa of ``values`` ``(cases, raters)`` binary labels, every case rated by all raters."""
    values = np.asarray(values, dtype=np.float64)
    w = np.ones(values.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    positives = values.sum(axis=1)
    return float(_fleiss_from_sums(w @ np.ones_like(positives), w @ positives, w @ _pair_agreement(positives, values.shape[1]), values.shape[1]))


def _pair_agreement(positives: np.ndarray, n_raters: int) -> np.ndarray:
    """Per case, the share of rater pairs that agree (Fleiss' ``P_i``)."""
    negatives = n_raters - positives
    return (positives * (positives - 1) + negatives * (negatives - 1)) / (n_raters * (n_raters - 1))


def _fleiss_from_sums(total: Any, sum_pos: Any, sum_agree: Any, n_raters: int) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        p = sum_pos / (total * n_raters)
        chance = p * p + (1.0 - p) * (1.0 - p)
        observed = sum_agree / total
        return np.where(chance < 1.0, (observed - chance) / (1.0 - chance), np.nan)


def _agreement_per_patient(values: np.ndarray, patient_index: np.ndarray, n_patients: int) -> tuple[np.ndarray, int]:
    """Per-patient sums from which the kappa of any patient reweighting follows, and the rater count.

    Two raters: (cases, a positive, b positive, both); more: (cases, positives, pair agreement)."""
    n_raters = values.shape[1]
    if n_raters == 2:
        a, b = values[:, 0].astype(np.float64), values[:, 1].astype(np.float64)
        parts = [np.ones_like(a), a, b, a * b]
    else:
        positives = values.sum(axis=1).astype(np.float64)
        parts = [np.ones_like(positives), positives, _pair_agreement(positives, n_raters)]
    sums = np.stack([np.bincount(patient_index, weights=p, minlength=n_patients) for p in parts], axis=1)
    return sums, n_raters


def _kappa_from_patient_sums(sums: np.ndarray, n_raters: int) -> np.ndarray:
    """Kappa for each row of ``sums`` ``(..., parts)`` of patient-weighted sums."""
    if n_raters == 2:
        return _cohen_from_sums(sums[..., 0], sums[..., 1], sums[..., 2], sums[..., 3])
    return _fleiss_from_sums(sums[..., 0], sums[..., 1], sums[..., 2], n_raters)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its patient-bootstrap interval (``None`` where undefined)."""

    value: float | None
    low: float | None
    high: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {"value": _round(self.value), "low": _round(self.low), "high": _round(self.high)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def kappa_interval(values: np.ndarray, patient_ids: Sequence[str], *, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> Interval:
    """Cohen's (two raters) or Fleiss' (more) kappa with a BCa interval over patients resampled
    with replacement: cases of one patient travel together, as in every other interval here."""
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[1] < 2 or values.shape[0] == 0:
        return Interval(None, None, None)
    _, patient_index = np.unique(np.asarray(patient_ids), return_inverse=True)
    n_patients = int(patient_index.max()) + 1
    sums, n_raters = _agreement_per_patient(values, patient_index, n_patients)
    point = float(_kappa_from_patient_sums(sums.sum(axis=0), n_raters))
    if not np.isfinite(point):
        return Interval(None, None, None)
    if n_patients < 2:
        return Interval(point, None, None)
    counts = patient_bootstrap_counts(np.random.default_rng(seed), n_patients, n_resamples)
    samples = _kappa_from_patient_sums(counts @ sums, n_raters)
    jackknife = _kappa_from_patient_sums(sums.sum(axis=0)[None, :] - sums, n_raters)
    low, high, _ = bca_interval(point, samples, jackknife, n_patients, confidence)
    return Interval(point, low, high)


# ---------------------------------------------------------------------------
# The model among the readers
# ---------------------------------------------------------------------------


def majority(values: np.ndarray) -> np.ndarray:
    """The majority label of each case; -1 where the readers are tied (an even split)."""
    positives = values.sum(axis=1) * 2
    n = values.shape[1]
    return np.where(positives > n, 1, np.where(positives < n, 0, -1))


@dataclass(frozen=True)
class OperatingPoint:
    """Sensitivity and specificity of one rater (a reader or the model) against a reference."""

    rater: str
    reference: str
    sensitivity: float | None
    specificity: float | None
    n_cases: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "rater": self.rater,
            "reference": self.reference,
            "sensitivity": _round(self.sensitivity),
            "specificity": _round(self.specificity),
            "n_cases": self.n_cases,
        }


def operating_point(rater: str, reference_name: str, predicted: np.ndarray, reference: np.ndarray) -> OperatingPoint:
    """``predicted`` against ``reference``, leaving out cases where the reference is tied (-1)."""
    known = reference >= 0
    truth, pred = reference[known] == 1, predicted[known] == 1
    sens = float(np.mean(pred[truth])) if truth.any() else None
    spec = float(np.mean(~pred[~truth])) if (~truth).any() else None
    return OperatingPoint(rater, reference_name, sens, spec, int(known.sum()))


def position_among_readers(model: OperatingPoint, readers: Sequence[OperatingPoint]) -> str:
    """``below``, ``within`` or ``above`` the readers' range; ``unknown`` where a value is missing.

    Within: the model's sensitivity and specificity are each at least the lowest reader's (it is
    no worse than the weakest reader on either axis). Above: at least the best reader's on both.
    Below: worse than every reader on one axis."""
    points = [(r.sensitivity, r.specificity) for r in readers]
    if model.sensitivity is None or model.specificity is None or any(s is None or p is None for s, p in points):
        return "unknown"
    sens = [s for s, _ in points]
    spec = [p for _, p in points]
    if model.sensitivity >= max(sens) and model.specificity >= max(spec):
        return "above"
    if model.sensitivity >= min(sens) and model.specificity >= min(spec):
        return "within"
    return "below"


POSITION_LABELS = {
    "below": "below the readers' range",
    "within": "within the readers' range",
    "above": "above the best reader",
    "unknown": "not known (a reader or the model lacks positives or negatives)",
}


@dataclass
class ReaderAgreement:
    """The readers' agreement on one label and the model's place among them."""

    label: str
    readers: list[str]
    n_cases: int
    n_patients: int
    statistic: str
    kappa: Interval
    model_vs_reader: dict[str, Interval]
    model_vs_majority: Interval | None
    reader_points: list[OperatingPoint]
    model_point: OperatingPoint | None
    model_position: str
    skipped: list[SkippedCase]

    @property
    def low_agreement(self) -> bool:
        """The readers agree less than ``LOW_AGREEMENT_KAPPA``: verdicts on this label say so."""
        return self.kappa.value is not None and self.kappa.value < LOW_AGREEMENT_KAPPA

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "readers": self.readers,
            "n_cases": self.n_cases,
            "n_patients": self.n_patients,
            "statistic": self.statistic,
            "kappa": self.kappa.to_dict(),
            "low_agreement": self.low_agreement,
            "low_agreement_threshold": LOW_AGREEMENT_KAPPA,
            "model_vs_reader": {r: i.to_dict() for r, i in self.model_vs_reader.items()},
            "model_vs_majority": None if self.model_vs_majority is None else self.model_vs_majority.to_dict(),
            "reader_points": [p.to_dict() for p in self.reader_points],
            "model_point": None if self.model_point is None else self.model_point.to_dict(),
            "model_position": self.model_position,
            "model_position_label": POSITION_LABELS[self.model_position],
            "skipped": [s.to_dict() for s in self.skipped],
        }


def reader_agreement(
    labels: ReaderLabels,
    model_scores: Mapping[str, float] | None = None,
    *,
    threshold: float = 0.5,
    n_resamples: int = 1000,
    seed: int = 0,
) -> ReaderAgreement:
    """Agreement between the readers of ``labels`` and, given the model's score per case id, the
    model against each reader and the majority at ``threshold``. Cases without a model score are
    left out of the model comparisons (listed as skipped) but kept for the readers' agreement."""
    values, patients = labels.values, labels.patient_ids
    kappa = kappa_interval(values, patients, n_resamples=n_resamples, seed=seed)
    statistic = "Cohen's kappa" if len(labels.readers) == 2 else "Fleiss' kappa"
    reader_points = []
    for j, reader in enumerate(labels.readers):
        others = np.delete(values, j, axis=1)
        reader_points.append(operating_point(reader, "majority of the other readers", values[:, j], majority(others)))
    skipped = list(labels.skipped)
    by_reader: dict[str, Interval] = {}
    vs_majority = model_point = None
    position = "unknown"
    if model_scores is not None:
        scored = np.array([c in model_scores for c in labels.case_ids], dtype=bool)
        skipped += [SkippedCase(c, labels.label, "no model score for this case") for c, ok in zip(labels.case_ids, scored, strict=True) if not ok]
        predicted = np.array([float(model_scores[c]) >= threshold for c in np.asarray(labels.case_ids)[scored]], dtype=np.int8)
        kept, kept_patients = values[scored], [p for p, ok in zip(patients, scored, strict=True) if ok]
        for j, reader in enumerate(labels.readers):
            pair = np.stack([predicted, kept[:, j]], axis=1)
            by_reader[reader] = kappa_interval(pair, kept_patients, n_resamples=n_resamples, seed=seed)
        consensus = majority(kept)
        decided = consensus >= 0
        pair = np.stack([predicted[decided], consensus[decided]], axis=1)
        vs_majority = kappa_interval(pair, [p for p, ok in zip(kept_patients, decided, strict=True) if ok], n_resamples=n_resamples, seed=seed)
        model_point = operating_point("model", "majority of the readers", predicted, consensus)
        position = position_among_readers(model_point, reader_points)
    return ReaderAgreement(
        label=labels.label,
        readers=labels.readers,
        n_cases=len(labels.case_ids),
        n_patients=len(set(patients)),
        statistic=statistic,
        kappa=kappa,
        model_vs_reader=by_reader,
        model_vs_majority=vs_majority,
        reader_points=reader_points,
        model_point=model_point,
        model_position=position,
        skipped=skipped,
    )


def reader_report(
    cells: Mapping[str, Sequence[Any]],
    case_ids: Sequence[str],
    patient_ids: Sequence[str],
    scores: Mapping[str, Mapping[str, float]],
    thresholds: Mapping[str, float],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any] | None:
    """The run report's ``readers`` section: ``{label: ReaderAgreement.to_dict()}`` for every label
    with at least two readers in the manifest's ``reader:<name>:<label>`` columns ``cells`` (one
    value per manifest row). ``scores`` holds the model's score per case id for each label it
    outputs (the evaluated rows only); a label the model does not output gets the readers'
    agreement alone. ``None`` when the manifest has no reader columns."""
    rows = [
        {"case_id": case, "patient_id": patient, **{column: values[i] for column, values in cells.items()}}
        for i, (case, patient) in enumerate(zip(case_ids, patient_ids, strict=True))
    ]
    section = {}
    for label, labels in labels_from_rows(rows).items():
        if len(labels.readers) < 2:
            continue
        threshold = float(thresholds.get(label, 0.5))
        section[label] = reader_agreement(labels, scores.get(label), threshold=threshold, n_resamples=n_resamples, seed=seed).to_dict()
    return section or None


# ---------------------------------------------------------------------------
# Segmentation: the readers' Dice as the ceiling
# ---------------------------------------------------------------------------


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two binary masks; 1 when both are empty (they agree that nothing is there)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def inter_reader_dice(masks: Mapping[str, np.ndarray]) -> float | None:
    """Mean Dice over every pair of readers' masks of one case; ``None`` with fewer than two."""
    names = sorted(masks)
    pairs = [dice(masks[x], masks[y]) for i, x in enumerate(names) for y in names[i + 1 :]]
    return float(np.mean(pairs)) if pairs else None


def dice_ceiling(cases: Iterable[Mapping[str, np.ndarray]]) -> float | None:
    """The mean inter-reader Dice over cases: a model's Dice against one reader is read against it."""
    values = [v for v in (inter_reader_dice(m) for m in cases) if v is not None]
    return float(np.mean(values)) if values else None
