"""Pooling site summaries on the server: summed histograms, and a meta-analysis per metric.

Plain Python and NumPy (no Django). Input: ``SiteSummary`` objects keyed by site code
(``SiteSummary.from_dict`` of payloads that passed ``payload_check``).

``pool_sites`` adds, per stratum and label, the sites' histograms, confusion counts and
calibration bins, and computes from the sums:

- AUROC by the trapezoid over the binned ROC curve, which is the rank formula with the
  cases of one bin counted as tied (half a pair), with a Wald interval on the logit scale;
- sensitivity and specificity at the labels' threshold from the summed confusion counts
  (exact), or at any bin edge (``PooledLabel.operating_point``), and prevalence, with
  Wilson intervals;
- calibration bins and ECE.

Patients are the unit of the intervals, through the sites' patient-level standard errors
(``SiteSummary.se_unit``; the server never sees a patient):

- a pooled proportion is the sites' proportions weighted by their denominators ``n_s``, so
  its variance is ``sum_s (n_s / N)^2 SE_s^2`` exactly; its Wilson interval is taken at the
  effective size ``p (1 - p) / variance`` (Korn & Graubard 1998);
- the pooled AUROC also pairs cases across sites, which no site can see, so its DeLong
  variance on the pooled histograms (images independent) is multiplied by the sites' design
  effect, ``sum_s w_s SE_s^2 / sum_s w_s SE0_s^2`` with ``SE0_s`` the site's image-level
  DeLong SE from its own histograms and ``w_s = m_s n_s`` (its share of the pairs).

Sites treated as fixed: these intervals say how precisely the cases reported estimate the
figure over those sites; between-site heterogeneity is what ``site_meta_analysis`` (a
random-effects model over the sites' own estimates) adds. An older agent's summary
(``se_unit`` "image") enters with its image-level standard errors, which the result's
warnings and the meta-analysis's notes say. A stratum or label suppressed at a site is
not hidden in the sum: it is listed in ``missing_sites`` and the pooled figures say
``complete=False``. A site with no case in a
stratum is not missing from it (it adds zero).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from radtrust_engine.federated_payload import (
    CalibrationBins,
    Confusion,
    Estimate,
    SiteSummary,
    StratumKey,
    edge_index,
    grouped_auroc,
    n_score_bins,
    rle_decode,
    rle_encode,
    stratum_name,
)
from radtrust_engine.meta_analysis import (
    ExcludedSite,
    MetaAnalysis,
    MetaAnalysisRefused,
    logit,
    random_effects,
    site_effect,
)
from radtrust_engine.stats import wilson_interval, z_value

PROPORTIONS = {"sensitivity": ("tp", "fn"), "specificity": ("tn", "fp"), "prevalence": ("positive", "negative")}


def _pooled_proportion(metric: str, x: int, n: int, parts: Sequence[tuple[str, Any]], confidence: float) -> Estimate:
    """A proportion of summed counts with its patient-level SE and Wilson interval (module docstring)."""
    if n == 0:
        return Estimate(None)
    p = x / n
    se = math.sqrt(sum((_counts(metric, b)[1] / n * (b.metrics[metric].se or 0.0)) ** 2 for _, b in parts))
    if se == 0 or not 0 < p < 1:
        return Estimate(p, se, *wilson_interval(x, n, confidence))
    n_effective = p * (1 - p) / se**2
    return Estimate(p, se, *wilson_interval(p * n_effective, n_effective, confidence))


def _counts(metric: str, block: Any) -> tuple[int, int]:
    """A proportion's numerator and denominator in one site's label block."""
    a, b = PROPORTIONS[metric]
    source = {"positive": block.positive_cases, "negative": block.negative_cases, **block.confusion.to_dict()}
    return source[a], source[a] + source[b]


def _auroc_design_effect(parts: Sequence[tuple[str, Any]]) -> float:
    """``sum_s w_s SE_s^2 / sum_s w_s SE0_s^2``: how much the sites' patient-level AUROC variance
    exceeds their image-level one, weighted by ``w_s = m_s n_s``; 1 where it cannot be formed."""
    patient = image = 0.0
    for _, b in parts:
        _, se0 = grouped_auroc(b.histogram_positive, b.histogram_negative)
        se = b.metrics["auroc"].se
        if se0 and se is not None:
            w = b.positive_cases * b.negative_cases
            patient += w * se * se
            image += w * se0 * se0
    return patient / image if image > 0 else 1.0


def _auroc(pos: np.ndarray, neg: np.ndarray, design_effect: float, confidence: float) -> Estimate:
    auc, se = grouped_auroc(pos, neg)
    if se is not None:
        se *= math.sqrt(design_effect)
    if auc is None or se is None or not 0 < auc < 1:
        return Estimate(auc, se)
    z = z_value(confidence)
    half = z * se / (auc * (1 - auc))
    centre = logit(auc)
    return Estimate(auc, se, 1 / (1 + math.exp(-(centre - half))), 1 / (1 + math.exp(-(centre + half))))


@dataclass(frozen=True, eq=False)
class PooledLabel:
    """One label in one stratum, summed over the sites that showed it."""

    label: str
    sites: tuple[str, ...]
    missing_sites: tuple[str, ...]  # had cases here but suppressed them
    threshold: float | None  # the sites' common threshold; None when they differ
    positive_cases: int
    negative_cases: int
    histogram_positive: np.ndarray
    histogram_negative: np.ndarray
    confusion: Confusion | None  # exact, at the common threshold
    calibration: CalibrationBins | None
    auroc: Estimate
    sensitivity: Estimate
    specificity: Estimate
    prevalence: Estimate

    @property
    def complete(self) -> bool:
        return not self.missing_sites

    def operating_point(self, threshold: float) -> Confusion:
        """Summed confusion counts at ``score >= threshold`` for a threshold on a bin edge
        (every threshold with three decimals in [0.01, 0.99] is one)."""
        i = edge_index(float(threshold))
        if i is None:
            raise ValueError(
                f"threshold {threshold} is not a score bin edge; the pooled histograms "
                "give exact counts only there (any threshold with three decimals in [0.01, 0.99])"
            )
        tp, fp = int(self.histogram_positive[i:].sum()), int(self.histogram_negative[i:].sum())
        return Confusion(tp, fp, self.negative_cases - fp, self.positive_cases - tp)

    def roc_points(self) -> dict[str, list[float]] | None:
        """The binned ROC curve from the highest bin down (one point per non-empty bin)."""
        if not self.positive_cases or not self.negative_cases:
            return None
        keep = (self.histogram_positive + self.histogram_negative) > 0
        tpr = np.cumsum(self.histogram_positive[::-1][keep[::-1]]) / self.positive_cases
        fpr = np.cumsum(self.histogram_negative[::-1][keep[::-1]]) / self.negative_cases
        return {"fpr": [0.0, *fpr.tolist()], "tpr": [0.0, *tpr.tolist()]}

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "complete": self.complete,
            "sites": list(self.sites),
            "missing_sites": list(self.missing_sites),
            "threshold": self.threshold,
            "positive_cases": self.positive_cases,
            "negative_cases": self.negative_cases,
            "histogram": {"positive": rle_encode(self.histogram_positive), "negative": rle_encode(self.histogram_negative)},
            "confusion": None if self.confusion is None else self.confusion.to_dict(),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "ece": None if self.calibration is None else self.calibration.ece,
            **{m: getattr(self, m).to_dict() for m in ("auroc", "sensitivity", "specificity", "prevalence")},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PooledLabel:
        n_bins = n_score_bins()
        return cls(
            d["label"],
            tuple(d["sites"]),
            tuple(d["missing_sites"]),
            d["threshold"],
            d["positive_cases"],
            d["negative_cases"],
            rle_decode(d["histogram"]["positive"], n_bins),
            rle_decode(d["histogram"]["negative"], n_bins),
            None if d["confusion"] is None else Confusion.from_dict(d["confusion"]),
            None if d["calibration"] is None else CalibrationBins.from_dict(d["calibration"]),
            *(Estimate.from_dict(d[m]) for m in ("auroc", "sensitivity", "specificity", "prevalence")),
        )


@dataclass(frozen=True, eq=False)
class PooledStratum:
    """One stratum summed over sites; ``missing_sites`` suppressed it."""

    attributes: tuple[str, ...]
    values: tuple[str, ...]
    sites: tuple[str, ...]
    missing_sites: tuple[str, ...]
    n_cases: int
    n_patients: int  # patients are counted per site (a patient is seen at one site)
    labels: dict[str, PooledLabel]

    @property
    def key(self) -> StratumKey:
        return self.attributes, self.values

    @property
    def name(self) -> str:
        return stratum_name(self.attributes, self.values)

    @property
    def complete(self) -> bool:
        return not self.missing_sites

    def to_dict(self) -> dict[str, Any]:
        return {
            "attributes": list(self.attributes),
            "values": list(self.values),
            "name": self.name,
            "complete": self.complete,
            "sites": list(self.sites),
            "missing_sites": list(self.missing_sites),
            "n_cases": self.n_cases,
            "n_patients": self.n_patients,
            "labels": {k: v.to_dict() for k, v in self.labels.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PooledStratum:
        return cls(
            tuple(d["attributes"]),
            tuple(d["values"]),
            tuple(d["sites"]),
            tuple(d["missing_sites"]),
            d["n_cases"],
            d["n_patients"],
            {k: PooledLabel.from_dict(v) for k, v in d["labels"].items()},
        )


@dataclass(frozen=True, eq=False)
class PooledResult:
    """Every stratum and label pooled over the sites of a study."""

    sites: tuple[str, ...]
    thresholds: dict[str, float | None]
    confidence: float
    strata: tuple[PooledStratum, ...]
    warnings: tuple[str, ...] = ()

    def stratum(self, attributes: Sequence[str] = (), values: Sequence[str] = ()) -> PooledStratum:
        key = (tuple(attributes), tuple(values))
        for s in self.strata:
            if s.key == key:
                return s
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sites": list(self.sites),
            "thresholds": dict(self.thresholds),
            "confidence": self.confidence,
            "strata": [s.to_dict() for s in self.strata],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PooledResult:
        return cls(
            tuple(d["sites"]), dict(d["thresholds"]), d["confidence"], tuple(PooledStratum.from_dict(s) for s in d["strata"]), tuple(d["warnings"])
        )


def _common_design(summaries: Mapping[str, SiteSummary]) -> SiteSummary:
    if not summaries:
        raise ValueError("no site summary to pool")
    first_site, first = next(iter(summaries.items()))
    for site, s in summaries.items():
        for what in ("labels", "attributes", "intersections"):
            if getattr(s, what) != getattr(first, what):
                raise ValueError(
                    f"site {site!r} reports {what} {getattr(s, what)} but site {first_site!r} "
                    f"reports {getattr(first, what)}: a study pools one design"
                )
    return first


def _pool_label(label: str, parts: list[tuple[str, Any]], missing: list[str], thresholds: set[float], confidence: float) -> PooledLabel:
    n_bins = n_score_bins()
    hist_pos = sum((b.histogram_positive for _, b in parts), np.zeros(n_bins, dtype=np.int64))
    hist_neg = sum((b.histogram_negative for _, b in parts), np.zeros(n_bins, dtype=np.int64))
    pos = sum(b.positive_cases for _, b in parts)
    neg = sum(b.negative_cases for _, b in parts)
    threshold = next(iter(thresholds)) if len(thresholds) == 1 else None
    confusion = None
    if parts and threshold is not None:
        confusion = sum((b.confusion for _, b in parts), Confusion(0, 0, 0, 0))
    return PooledLabel(
        label=label,
        sites=tuple(site for site, _ in parts),
        missing_sites=tuple(missing),
        threshold=threshold,
        positive_cases=pos,
        negative_cases=neg,
        histogram_positive=hist_pos,
        histogram_negative=hist_neg,
        confusion=confusion,
        calibration=CalibrationBins.pooled(b.calibration for _, b in parts) if parts else None,
        auroc=_auroc(hist_pos, hist_neg, _auroc_design_effect(parts), confidence),
        sensitivity=_pooled_proportion("sensitivity", confusion.tp, confusion.tp + confusion.fn, parts, confidence) if confusion else Estimate(None),
        specificity=_pooled_proportion("specificity", confusion.tn, confusion.tn + confusion.fp, parts, confidence) if confusion else Estimate(None),
        prevalence=_pooled_proportion("prevalence", pos, pos + neg, parts, confidence),
    )


def pool_sites(summaries: Mapping[str, SiteSummary], *, confidence: float = 0.95) -> PooledResult:
    """Sum the sites' histograms and counts per stratum and label (see the module docstring).

    Raises ValueError when the sites report different labels, attributes or intersections.
    """
    design = _common_design(summaries)
    thresholds = {label: {s.thresholds[label] for s in summaries.values()} for label in design.labels}
    warnings = [
        f"sites use different thresholds for {label!r} ({sorted(ts)}): no pooled sensitivity or "
        "specificity at the threshold; use operating_point() at a common bin edge"
        for label, ts in thresholds.items()
        if len(ts) > 1
    ]
    if older := _image_level_sites(summaries):
        warnings.append(
            f"{', '.join(older)} sent image-level standard errors (an agent from before patient-level ones): "
            "their images count as independent, so the pooled intervals are too narrow where patients have several images; update the agent"
        )
    keys: list[StratumKey] = []
    for s in summaries.values():
        keys += [st.key for st in s.strata if st.key not in keys]
    order = {g: i for i, g in enumerate(design.groupings)}
    keys.sort(key=lambda k: (order[k[0]], k[1]))

    strata = []
    for key in keys:
        shown, missing = [], []
        for site, s in summaries.items():
            st = s.stratum(*key)
            if st is not None:
                (missing if st.suppressed else shown).append((site, st))
        labels = {}
        for label in design.labels:
            parts = [(site, st.labels[label]) for site, st in shown if not st.labels[label].suppressed]
            label_missing = [site for site, _ in missing] + [site for site, st in shown if st.labels[label].suppressed]
            labels[label] = _pool_label(label, parts, sorted(label_missing), thresholds[label], confidence)
        strata.append(
            PooledStratum(
                key[0],
                key[1],
                tuple(site for site, _ in shown),
                tuple(site for site, _ in missing),
                sum(st.n_cases for _, st in shown),
                sum(st.n_patients for _, st in shown),
                labels,
            )
        )
    return PooledResult(
        tuple(summaries), {k: (next(iter(v)) if len(v) == 1 else None) for k, v in thresholds.items()}, confidence, tuple(strata), tuple(warnings)
    )


# ---------------------------------------------------------------------------
# Meta-analysis across sites
# ---------------------------------------------------------------------------


def _hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def _image_level_sites(summaries: Mapping[str, SiteSummary]) -> list[str]:
    return [site for site, s in summaries.items() if s.se_unit != "patient"]


def _logit_estimate(metric: str, block: Any) -> tuple[float, float, str | None]:
    """A site's estimate and standard error on the logit scale, and a note when a boundary
    value had to be corrected.

    The delta method on the site's (patient-level) SE: ``logit(p)`` with ``SE(p) / (p(1-p))``
    (for an image-level binomial SE that is the familiar ``sqrt(1/x + 1/(n-x))``). A
    proportion of 0 or 1 has no SE (nor a logit), so 0.5 is added to both counts and the
    binomial SE taken there. An AUROC of 0 or 1 has neither, so it is moved by half a pair,
    ``(A m n + 0.5) / (m n + 1)``, with the Hanley-McNeil SE there.
    """
    if metric == "auroc":
        auc, se = block.metrics["auroc"].value, block.metrics["auroc"].se
        m, n = block.positive_cases, block.negative_cases
        note = None
        if not 0 < auc < 1 or not se:
            auc = (auc * m * n + 0.5) / (m * n + 1)
            se = _hanley_mcneil_se(auc, m, n)
            note = "AUROC at the boundary, moved by half a pair (Hanley-McNeil SE)"
        return logit(auc), se / (auc * (1 - auc)), note
    x, n = _counts(metric, block)
    se = block.metrics[metric].se
    if 0 < x < n and se:
        p = x / n
        return logit(p), se / (p * (1 - p)), None
    x, rest = x + 0.5, n - x + 0.5
    return math.log(x / rest), math.sqrt(1 / x + 1 / rest), "a proportion of 0 or 1 (or no SE): 0.5 added to both counts, binomial SE there"


def site_meta_analysis(
    summaries: Mapping[str, SiteSummary],
    *,
    label: str,
    metric: str,
    attributes: Sequence[str] = (),
    values: Sequence[str] = (),
    method: str = "DL",
    confidence: float = 0.95,
) -> MetaAnalysis:
    """Random-effects meta-analysis of one metric (auroc, sensitivity, specificity, prevalence) in
    one stratum across sites, on the logit scale (see ``_logit_estimate``), shown on the metric's
    scale. Sites with no case in the stratum or that suppressed it are listed in ``excluded``.
    With fewer than two estimates the result is a refusal (``refused_reason``: with one site,
    heterogeneity is not estimable) that still carries the per-site rows; ``pool_sites``
    states the pooled figures."""
    if metric not in ("auroc", *PROPORTIONS):
        raise ValueError(f"metric must be auroc or one of {sorted(PROPORTIONS)}, got {metric!r}")
    names, estimates, errors, excluded, notes = [], [], [], [], []
    older = _image_level_sites(summaries)
    for site, summary in summaries.items():
        st = summary.stratum(attributes, values)
        if st is None:
            excluded.append(ExcludedSite(site, "no case in this stratum"))
        elif st.suppressed or st.labels[label].suppressed:
            reason = st.reason if st.suppressed else st.labels[label].reason
            excluded.append(ExcludedSite(site, f"suppressed at the site ({reason})"))
        else:
            y, s, note = _logit_estimate(metric, st.labels[label])
            names.append(site)
            estimates.append(y)
            errors.append(s)
            if site in older:
                notes.append(
                    f"{site}: image-level standard errors (an older agent), so I² and tau² are overstated where its patients have several images"
                )
            if note:
                notes.append(f"{site}: {note}")
    try:
        result = random_effects(estimates, errors, method=method, scale="logit", sites=names, confidence=confidence, excluded=excluded)
    except MetaAnalysisRefused as refusal:
        rows = [site_effect(n, y, s, scale="logit", confidence=confidence) for n, y, s in zip(names, estimates, errors)]
        return MetaAnalysis.refusal(refusal.reason, method=method, scale="logit", confidence=confidence, sites=rows, excluded=excluded, notes=notes)
    return replace(result, notes=(*result.notes, *notes))
