"""The aggregate a site agent sends in a federated study: its wire format and typed form.

Plain Python and NumPy (no Django). ``radtrust_engine.federated`` builds it at the
site (``site_summary``), ``radtrust_engine.federated_check`` is the server's strict
validator, ``radtrust_engine.federated_pooling`` pools it across sites.

What a summary holds, per stratum (overall, each attribute value, each cell of a
declared intersection) and label: score histograms per class over the fixed bins of
``score_bin_edges()``, 10 calibration bins, the confusion counts at the label's
threshold, AUROC / sensitivity / specificity / prevalence with a patient-level standard
error (``se_unit``: patients are the unit, as in ``radtrust_engine.federated.patient_auroc_se``)
and a patient-level bootstrap interval, and case and patient counts. Never scores, ids, paths
or per-case rows. A stratum or label block under the minimum is replaced by
``{"suppressed": true, "reason": <code>}``.

Wire format (JSON, as ``SiteSummary.to_dict()`` writes it)::

    {"schema": "radtrust.federated.site-summary.v1", "score_bins": "mixed-1182",
     "calibration_bins": 10, "min_patients": 10, "confidence": 0.95, "n_resamples": 1000,
     "se_unit": "patient", "labels": {"effusion": {"threshold": 0.5}},
     "attributes": ["sex", "age_band"], "intersections": [["sex", "age_band"]],
     "strata": [
       {"attributes": [], "values": [], "suppressed": false, "n_cases": 812, "n_patients": 640,
        "labels": {"effusion": {"suppressed": false,
            "cases": {"positive": 120, "negative": 692},
            "patients": {"positive": 101, "negative": 560},
            "histogram": {"positive": [-500, 2, 1, ...], "negative": [...]},
            "confusion": {"tp": 97, "fp": 80, "tn": 612, "fn": 23},
            "calibration": {"count": [...10], "positives": [...10], "mean_predicted": [...10]},
            "metrics": {"auroc": {"value": 0.91, "se": 0.012, "ci_low": 0.88, "ci_high": 0.93},
                        "sensitivity": {...}, "specificity": {...}, "prevalence": {...}}}}},
       {"attributes": ["sex"], "values": ["unknown"], "suppressed": true, "reason": "too_few_patients"}]}

Histograms are run-length encoded (``rle_encode``): a positive number is a bin's count, a
negative number ``-k`` stands for ``k`` empty bins; decoded, a histogram has exactly
``len(score_bin_edges()) - 1`` bins, so no list in a payload is longer than the bin count.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from radtrust_engine.disclosure import SUPPRESSION_REASONS

SCHEMA = "radtrust.federated.site-summary.v1"
SCORE_BINS = "mixed-1182"
CALIBRATION_BINS = 10
DEFAULT_MIN_PATIENTS = 10
METRICS: tuple[str, ...] = ("auroc", "sensitivity", "specificity", "prevalence")
# What the metrics' standard errors count as independent (``SiteSummary.se_unit``). Agents
# since issue 16 send "patient"; a payload without the key is an older agent's, whose
# standard errors were image-level (DeLong, binomial).
SE_UNITS: tuple[str, ...] = ("patient", "image")
CLASSES: tuple[str, ...] = ("positive", "negative")
OVERALL: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

# Suppression reasons, stratum level and label level.
# The run report's reasons, one rule for both; a stratum carries its cases, a label block its classes.
STRATUM_REASONS: dict[str, str] = {k: SUPPRESSION_REASONS[k] for k in ("too_few_patients", "complementary")}
LABEL_REASONS: dict[str, str] = {k: SUPPRESSION_REASONS[k] for k in ("too_few_positive_patients", "too_few_negative_patients", "complementary")}

# Bounds that keep a payload aggregate: names and values are short category labels.
MAX_LABELS = 16
MAX_ATTRIBUTES = 8
MAX_INTERSECTIONS = 4
MAX_VALUES_PER_ATTRIBUTE = 32
MAX_STRATA = 300  # also bounds the disclosure check's linear algebra
MAX_RESAMPLES = 100_000
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_. -]{0,47}$")
VALUE_RE = re.compile(r"^[A-Za-z0-9<>+=][A-Za-z0-9 _.,+<>=()-]{0,39}$")
# Words that name per-case data: a key, attribute or label carrying one is refused.
IDENTIFYING_WORDS = frozenset(
    {
        "id",
        "ids",
        "uid",
        "uuid",
        "guid",
        "patient",
        "patients",
        "subject",
        "subjects",
        "mrn",
        "accession",
        "case",
        "cases",
        "path",
        "paths",
        "file",
        "files",
        "filename",
        "filepath",
        "dir",
        "folder",
        "url",
        "uri",
        "name",
        "names",
        "dob",
        "birthdate",
        "pixel",
        "pixels",
        "image",
        "images",
        "row",
        "rows",
        "record",
        "records",
        "score",
        "scores",
    }
)
FILE_SUFFIX = re.compile(r"\.(dcm|dicom|nii|gz|png|jpe?g|npz|npy|csv|json|h5|hdf5|tiff?|mha|mhd|nrrd|zip)$", re.IGNORECASE)
DIGIT_RUN = re.compile(r"\d{5,}")


def words(text: str) -> list[str]:
    """Lower-case words of a name, split at punctuation and camelCase (``patientId`` -> patient, id)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def identifying(text: str) -> bool:
    """Whether a key or name reads like per-case data (an id, a patient, a path, a case row)."""
    return any(w in IDENTIFYING_WORDS for w in words(text))


def name_problem(text: Any) -> str | None:
    """Why ``text`` cannot be an attribute or label name, or None."""
    if not isinstance(text, str) or not NAME_RE.match(text):
        return f"{text!r} is not a short name (a letter, then letters, digits, space, '_', '.' or '-'; at most 48 characters)"
    if identifying(text):
        return f"{text!r} names per-case data (identifiers, paths, case rows never leave a site)"
    return value_problem(text)


def value_problem(text: Any) -> str | None:
    """Why ``text`` cannot be a stratum value (a short category label), or None."""
    if not isinstance(text, str) or not VALUE_RE.match(text):
        return f"{text!r} is not a short category label (letters, digits, space and _ . , + < > = ( ) -; at most 40 characters)"
    if DIGIT_RUN.search(text):
        return f"{text!r} looks like an identifier (a run of five or more digits)"
    if FILE_SUFFIX.search(text):
        return f"{text!r} looks like a file name"
    if identifying(text):
        return f"{text!r} names per-case data"
    return None


# ---------------------------------------------------------------------------
# Score bins and run-length encoding
# ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _edges() -> tuple[float, ...]:
    tail = 10.0 ** np.linspace(-6.0, -2.0, 101)[:-1]  # 1e-6 .. 10^-2.04: 25 bins a decade
    middle = np.arange(10, 991) / 1000.0  # 0.010, 0.011, ..., 0.990: every 3-decimal threshold
    edges = np.concatenate([[0.0], tail, middle, 1.0 - tail[::-1], [1.0]])
    assert np.all(np.diff(edges) > 0)
    return tuple(float(e) for e in edges)


def score_bin_edges() -> np.ndarray:
    """The fixed edges of the score histograms (1,182 bins on [0, 1]).

    Bins are ``[e_i, e_i+1)``, the last one closed. A 0.001 grid on [0.01, 0.99]
    makes every threshold with three decimals an edge (so confusion counts at it are
    exact); 25 log-spaced bins a decade towards 1e-6 and 1 - 1e-6 resolve the scores
    that saturated sigmoid outputs pile up near 0 and 1. On simulated multi-site data
    (sigmoid, saturated, rounded and float16 outputs, prevalence 3-40 %) the AUROC
    rebuilt from these bins differs from the exact one by under 1e-4, and by under
    1e-3 when every score falls inside [0.48, 0.52].
    """
    return np.asarray(_edges())


def n_score_bins() -> int:
    return len(_edges()) - 1


def edge_index(threshold: float) -> int | None:
    """The index ``i`` with ``edges[i] == threshold``, for a threshold on a bin edge below 1
    (cases with ``score >= threshold`` are then exactly bins ``i..``); None otherwise."""
    edges = _edges()
    i = int(np.searchsorted(edges, threshold))
    return i if i < len(edges) - 1 and edges[i] == threshold else None


def score_bin(scores: np.ndarray) -> np.ndarray:
    """Each score's bin index."""
    return np.searchsorted(score_bin_edges()[1:-1], scores, side="right")


def calibration_bin(scores: np.ndarray) -> np.ndarray:
    """Each score's calibration bin: 10 uniform bins, right-closed ``(e_i, e_i+1]`` with the
    first holding 0, as ``radtrust_engine.calibration.calibration_report``."""
    return np.searchsorted(np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)[1:-1], scores)


def rle_encode(counts: Sequence[int] | np.ndarray) -> list[int]:
    """Counts to runs: a positive number is one bin's count, ``-k`` is ``k`` empty bins."""
    counts = np.asarray(counts, dtype=np.int64)
    out: list[int] = []
    zeros = 0
    for c in counts.tolist():
        if c == 0:
            zeros += 1
            continue
        if zeros:
            out.append(-zeros)
            zeros = 0
        out.append(c)
    if zeros:
        out.append(-zeros)
    return out


def rle_decode(runs: Sequence[Any], n_bins: int) -> np.ndarray:
    """Runs back to ``n_bins`` counts; ValueError when they are not integers, hold a 0, or do not
    cover exactly ``n_bins`` bins."""
    out: list[int] = []
    for r in runs:
        if isinstance(r, bool) or not isinstance(r, int) or r == 0:
            raise ValueError(f"run {r!r} is not a non-zero integer")
        if r > 0:
            out.append(r)
        else:
            if len(out) - r > n_bins:
                break
            out.extend([0] * -r)
    if len(out) != n_bins:
        raise ValueError(f"the runs do not cover exactly {n_bins} bins")
    return np.asarray(out, dtype=np.int64)


# ---------------------------------------------------------------------------
# Statistics shared by the site and the server
# ---------------------------------------------------------------------------


def grouped_auroc(pos: np.ndarray, neg: np.ndarray) -> tuple[float | None, float | None]:
    """AUROC and its DeLong standard error from per-group counts in ascending score order.

    A group is a set of tied scores: the distinct scores of a site's cases (exact AUROC)
    or the bins of a histogram (cases in one bin count as tied, half a pair each). With
    ``V10_g`` the share of negatives a positive of group ``g`` beats (ties half) and
    ``V01_g`` the share of positives above a negative, AUROC is the mean of ``V10`` over
    positives, and DeLong's variance is ``var(V10)/P + var(V01)/N`` (sample variances).
    None where a class is missing; the SE is None with fewer than two cases in a class.
    """
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return None, None
    neg_below = np.cumsum(neg) - neg
    pos_above = n_pos - np.cumsum(pos)
    v10 = (neg_below + 0.5 * neg) / n_neg
    v01 = (pos_above + 0.5 * pos) / n_pos
    auc = float((pos * v10).sum() / n_pos)
    if n_pos < 2 or n_neg < 2:
        return auc, None
    s10 = float((pos * (v10 - auc) ** 2).sum() / (n_pos - 1))
    s01 = float((neg * (v01 - auc) ** 2).sum() / (n_neg - 1))
    return auc, math.sqrt(max(s10 / n_pos + s01 / n_neg, 0.0))


StratumKey = tuple[tuple[str, ...], tuple[str, ...]]


def stratum_name(attributes: Sequence[str], values: Sequence[str]) -> str:
    if not attributes:
        return "overall"
    return ", ".join(f"{a}={v}" for a, v in zip(attributes, values))


# ---------------------------------------------------------------------------
# Typed form
# ---------------------------------------------------------------------------


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


@dataclass(frozen=True)
class Estimate:
    """A metric with its standard error and interval; None where undefined."""

    value: float | None
    se: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {"value": _round(self.value), "se": _round(self.se), "ci_low": _round(self.ci_low), "ci_high": _round(self.ci_high)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Estimate:
        return cls(d["value"], d["se"], d["ci_low"], d["ci_high"])


@dataclass(frozen=True)
class Confusion:
    """Confusion counts at ``score >= threshold``."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def sensitivity(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def specificity(self) -> float | None:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else None

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn)

    def to_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Confusion:
        return cls(int(d["tp"]), int(d["fp"]), int(d["tn"]), int(d["fn"]))


@dataclass(frozen=True)
class CalibrationBins:
    """Reliability-diagram data over the 10 uniform calibration bins."""

    count: tuple[int, ...]
    positives: tuple[int, ...]
    mean_predicted: tuple[float | None, ...]  # rounded to 4 decimals; None for an empty bin

    @property
    def ece(self) -> float | None:
        """Expected calibration error, ``sum_b |sum p - sum y| / N``."""
        n = sum(self.count)
        if not n:
            return None
        return sum(abs(c * m - p) for c, p, m in zip(self.count, self.positives, self.mean_predicted) if c) / n

    @classmethod
    def pooled(cls, parts: Iterable[CalibrationBins]) -> CalibrationBins:
        parts = list(parts)
        count = [sum(p.count[b] for p in parts) for b in range(CALIBRATION_BINS)]
        positives = [sum(p.positives[b] for p in parts) for b in range(CALIBRATION_BINS)]
        sums = [sum(p.count[b] * p.mean_predicted[b] for p in parts if p.count[b]) for b in range(CALIBRATION_BINS)]
        return cls(tuple(count), tuple(positives), tuple(round(s / c, 4) if c else None for s, c in zip(sums, count)))

    def to_dict(self) -> dict[str, list]:
        return {"count": list(self.count), "positives": list(self.positives), "mean_predicted": list(self.mean_predicted)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CalibrationBins:
        return cls(tuple(d["count"]), tuple(d["positives"]), tuple(d["mean_predicted"]))


@dataclass(frozen=True, eq=False)
class LabelSummary:
    """One label in one stratum: the histograms and figures, or only why it was suppressed."""

    suppressed: bool
    reason: str | None = None
    positive_cases: int = 0
    negative_cases: int = 0
    positive_patients: int = 0
    negative_patients: int = 0
    histogram_positive: np.ndarray | None = None  # counts per score bin
    histogram_negative: np.ndarray | None = None
    confusion: Confusion | None = None
    calibration: CalibrationBins | None = None
    metrics: dict[str, Estimate] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        if self.suppressed:
            return {"suppressed": True, "reason": self.reason}
        return {
            "suppressed": False,
            "cases": {"positive": self.positive_cases, "negative": self.negative_cases},
            "patients": {"positive": self.positive_patients, "negative": self.negative_patients},
            "histogram": {"positive": rle_encode(self.histogram_positive), "negative": rle_encode(self.histogram_negative)},
            "confusion": self.confusion.to_dict(),
            "calibration": self.calibration.to_dict(),
            "metrics": {k: self.metrics[k].to_dict() for k in METRICS},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LabelSummary:
        if d["suppressed"]:
            return cls(True, d["reason"])
        n_bins = n_score_bins()
        return cls(
            False,
            None,
            d["cases"]["positive"],
            d["cases"]["negative"],
            d["patients"]["positive"],
            d["patients"]["negative"],
            rle_decode(d["histogram"]["positive"], n_bins),
            rle_decode(d["histogram"]["negative"], n_bins),
            Confusion.from_dict(d["confusion"]),
            CalibrationBins.from_dict(d["calibration"]),
            {k: Estimate.from_dict(d["metrics"][k]) for k in METRICS},
        )


@dataclass(frozen=True, eq=False)
class StratumSummary:
    """One stratum of a site: its counts and a block per label, or only why it was suppressed."""

    attributes: tuple[str, ...]
    values: tuple[str, ...]
    suppressed: bool
    reason: str | None = None
    n_cases: int = 0
    n_patients: int = 0
    labels: dict[str, LabelSummary] = field(default_factory=dict)

    @property
    def key(self) -> StratumKey:
        return self.attributes, self.values

    @property
    def name(self) -> str:
        return stratum_name(self.attributes, self.values)

    def to_dict(self) -> dict[str, Any]:
        head = {"attributes": list(self.attributes), "values": list(self.values)}
        if self.suppressed:
            return {**head, "suppressed": True, "reason": self.reason}
        return {
            **head,
            "suppressed": False,
            "n_cases": self.n_cases,
            "n_patients": self.n_patients,
            "labels": {k: v.to_dict() for k, v in self.labels.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StratumSummary:
        attrs, values = tuple(d["attributes"]), tuple(d["values"])
        if d["suppressed"]:
            return cls(attrs, values, True, d["reason"])
        return cls(attrs, values, False, None, d["n_cases"], d["n_patients"], {k: LabelSummary.from_dict(v) for k, v in d["labels"].items()})


@dataclass(frozen=True, eq=False)
class SiteSummary:
    """Everything one site reports for a federated study; ``to_dict()`` is the payload."""

    thresholds: dict[str, float]
    attributes: tuple[str, ...]
    intersections: tuple[tuple[str, ...], ...]
    min_patients: int
    confidence: float
    n_resamples: int
    strata: tuple[StratumSummary, ...]
    se_unit: str = "image"  # one of SE_UNITS: what the standard errors treat as independent

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.thresholds)

    @property
    def groupings(self) -> list[tuple[str, ...]]:
        return [(), *((a,) for a in self.attributes), *self.intersections]

    def stratum(self, attributes: Sequence[str] = (), values: Sequence[str] = ()) -> StratumSummary | None:
        """The stratum with these attributes and values; None where the site has no such case."""
        key = (tuple(attributes), tuple(values))
        return next((s for s in self.strata if s.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "score_bins": SCORE_BINS,
            "calibration_bins": CALIBRATION_BINS,
            "min_patients": self.min_patients,
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "se_unit": self.se_unit,
            "labels": {k: {"threshold": t} for k, t in self.thresholds.items()},
            "attributes": list(self.attributes),
            "intersections": [list(i) for i in self.intersections],
            "strata": [s.to_dict() for s in self.strata],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SiteSummary:
        """Parse a payload; run ``payload_check`` on it first (this assumes a valid structure)."""
        if d.get("schema") != SCHEMA or d.get("score_bins") != SCORE_BINS:
            raise ValueError(f"not a {SCHEMA} payload with {SCORE_BINS} score bins")
        return cls(
            thresholds={k: float(v["threshold"]) for k, v in d["labels"].items()},
            attributes=tuple(d["attributes"]),
            intersections=tuple(tuple(i) for i in d["intersections"]),
            min_patients=int(d["min_patients"]),
            confidence=float(d["confidence"]),
            n_resamples=int(d["n_resamples"]),
            strata=tuple(StratumSummary.from_dict(s) for s in d["strata"]),
            se_unit=d.get("se_unit", "image"),
        )
