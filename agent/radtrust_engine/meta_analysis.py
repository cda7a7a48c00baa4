"""Random-effects meta-analysis of one metric across sites, with what a forest plot needs.

Plain Python with NumPy and SciPy (no Django).

``random_effects`` pools per-site estimates ``y_i`` with standard errors ``s_i``:

1. Fixed-effect weights ``w_i = 1/s_i^2``, pooled ``y_FE = sum w y / sum w``, Cochran's
   ``Q = sum w (y - y_FE)^2`` on ``k - 1`` degrees of freedom (its p-value from the
   chi-squared distribution) and ``I^2 = max(0, (Q - (k-1)) / Q)``, the share of the
   variation that is between sites rather than sampling error.
2. Between-site variance ``tau^2``: DerSimonian-Laird,
   ``max(0, (Q - (k-1)) / (sum w - sum w^2 / sum w))``; or REML by the fixed-point
   iteration ``tau^2 <- sum w*^2 ((y - mu)^2 - s^2) / sum w*^2 + 1 / sum w*`` with
   ``w* = 1/(s^2 + tau^2)``, started at the DL value and kept at or above 0
   (Viechtbauer 2005).
3. Random-effects weights ``w*_i``, pooled ``mu = sum w* y / sum w*`` with
   ``SE(mu) = sqrt(1 / sum w*)`` and a normal (Wald) interval.
4. Prediction interval for the effect at a new site (Higgins, Thompson & Spiegelhalter
   2009; Riley et al. 2011): ``mu +- t_{k-2} sqrt(tau^2 + SE(mu)^2)``, which needs
   ``k >= 3``.

Fewer than two sites: refused (``MetaAnalysisRefused``), as a between-site variance
cannot be estimated from one site ("heterogeneity not estimable (one site)"). Bounded
metrics (AUROC, sensitivity, specificity, prevalence) are pooled on the logit scale,
where their sampling distribution is closer to normal and the interval stays inside
(0, 1); ``scale="logit"`` says the inputs are logits and every figure is transformed
back with the logistic function for display (``*_analysis`` fields keep the logit-scale
values).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy import stats

from radtrust_engine.stats import z_value

METHODS = ("DL", "REML")
SCALES = ("identity", "logit")
_REML_TOLERANCE = 1e-12
_REML_MAX_ITERATIONS = 500


class MetaAnalysisRefused(ValueError):
    """The sites given cannot support a random-effects meta-analysis; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _display(x: float | None, scale: str) -> float | None:
    if x is None:
        return None
    return expit(x) if scale == "logit" else x


@dataclass(frozen=True)
class SiteEffect:
    """One site's row of a forest plot: estimate and interval on the display scale, and its
    share of the random-effects weight (0 to 1)."""

    site: str
    estimate: float
    ci_low: float
    ci_high: float
    weight: float | None
    estimate_analysis: float
    se_analysis: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SiteEffect:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ExcludedSite:
    """A site that reported but whose estimate could not enter the analysis, and why."""

    site: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"site": self.site, "reason": self.reason}


@dataclass(frozen=True)
class MetaAnalysis:
    """A pooled estimate across sites with its heterogeneity, or the reason it was refused.

    Display-scale figures (``estimate``, ``ci_*``, ``prediction_*``) are what a forest plot
    shows; ``tau2`` and the ``*_analysis`` figures are on the analysis scale.
    """

    method: str
    scale: str
    confidence: float
    sites: tuple[SiteEffect, ...]
    excluded: tuple[ExcludedSite, ...] = ()
    refused_reason: str | None = None
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    prediction_low: float | None = None
    prediction_high: float | None = None
    prediction_note: str | None = None
    tau2: float | None = None
    i2: float | None = None
    q: float | None = None
    q_df: int | None = None
    q_p: float | None = None
    estimate_analysis: float | None = None
    se_analysis: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def k(self) -> int:
        return len(self.sites)

    @property
    def refused(self) -> bool:
        return self.refused_reason is not None

    @classmethod
    def refusal(
        cls,
        reason: str,
        *,
        method: str = "DL",
        scale: str = "identity",
        confidence: float = 0.95,
        sites: Sequence[SiteEffect] = (),
        excluded: Sequence[ExcludedSite] = (),
        notes: Sequence[str] = (),
    ) -> MetaAnalysis:
        """A result that carries the per-site rows (still worth showing) but no pooled figures."""
        return cls(method, scale, confidence, tuple(sites), tuple(excluded), reason, notes=tuple(notes))

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d.update(k=self.k, sites=[s.to_dict() for s in self.sites], excluded=[e.to_dict() for e in self.excluded], notes=list(self.notes))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetaAnalysis:
        values = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        values["sites"] = tuple(SiteEffect.from_dict(s) for s in d["sites"])
        values["excluded"] = tuple(ExcludedSite(**e) for e in d.get("excluded", ()))
        values["notes"] = tuple(d.get("notes", ()))
        return cls(**values)


def site_effect(
    site: str, estimate: float, se: float, *, scale: str = "identity", confidence: float = 0.95, weight: float | None = None
) -> SiteEffect:
    """A site's row: its Wald interval on the analysis scale, shown on the display scale."""
    z = z_value(confidence)
    return SiteEffect(site, _display(estimate, scale), _display(estimate - z * se, scale), _display(estimate + z * se, scale), weight, estimate, se)


def _tau2_reml(y: Sequence[float], v: Sequence[float], start: float) -> tuple[float, bool]:
    tau2 = start
    for _ in range(_REML_MAX_ITERATIONS):
        w = [1.0 / (vi + tau2) for vi in v]
        mu = sum(wi * yi for wi, yi in zip(w, y)) / sum(w)
        new = sum(wi * wi * ((yi - mu) ** 2 - vi) for wi, yi, vi in zip(w, y, v)) / sum(wi * wi for wi in w) + 1.0 / sum(w)
        new = max(0.0, new)
        if abs(new - tau2) < _REML_TOLERANCE * max(1.0, tau2):
            return new, True
        tau2 = new
    return tau2, False


def random_effects(
    estimates: Sequence[float],
    standard_errors: Sequence[float],
    *,
    method: str = "DL",
    scale: str = "identity",
    sites: Sequence[str] | None = None,
    confidence: float = 0.95,
    excluded: Sequence[ExcludedSite] = (),
) -> MetaAnalysis:
    """Pool per-site estimates (on the analysis scale) by a random-effects model; see the module
    docstring for the formulas. Raises ``MetaAnalysisRefused`` with fewer than two sites, and
    ValueError for a standard error that is not a positive finite number."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    y = [float(e) for e in estimates]
    s = [float(e) for e in standard_errors]
    names = list(sites) if sites is not None else [f"site {i + 1}" for i in range(len(y))]
    if len(s) != len(y) or len(names) != len(y):
        raise ValueError("estimates, standard_errors and sites must have the same length")
    if not all(math.isfinite(v) for v in y) or not all(math.isfinite(v) and v > 0 for v in s):
        raise ValueError("estimates must be finite and standard errors positive and finite")
    k = len(y)
    if k == 1:
        raise MetaAnalysisRefused(
            "heterogeneity not estimable (one site): a between-site variance needs at least 2 sites with an estimate; the pooled figures are the site's own"
        )
    if k == 0:
        raise MetaAnalysisRefused("no site has an estimate; a random-effects meta-analysis needs at least 2 sites")

    v = [si * si for si in s]
    w = [1.0 / vi for vi in v]
    sw = sum(w)
    y_fe = sum(wi * yi for wi, yi in zip(w, y)) / sw
    q = sum(wi * (yi - y_fe) ** 2 for wi, yi in zip(w, y))
    df = k - 1
    c = sw - sum(wi * wi for wi in w) / sw
    tau2 = max(0.0, (q - df) / c)
    notes = []
    if method == "REML":
        tau2, converged = _tau2_reml(y, v, tau2)
        if not converged:
            notes.append(f"REML did not converge in {_REML_MAX_ITERATIONS} iterations; tau^2 is the last iterate")
    w_re = [1.0 / (vi + tau2) for vi in v]
    sw_re = sum(w_re)
    mu = sum(wi * yi for wi, yi in zip(w_re, y)) / sw_re
    se = math.sqrt(1.0 / sw_re)

    z = z_value(confidence)
    prediction_low = prediction_high = None
    prediction_note = None
    if k >= 3:
        half = float(stats.t.ppf(0.5 + confidence / 2.0, k - 2)) * math.sqrt(tau2 + se * se)
        prediction_low, prediction_high = _display(mu - half, scale), _display(mu + half, scale)
    else:
        prediction_note = f"a prediction interval for a new site needs at least 3 sites (t distribution with k - 2 degrees of freedom); {k} available"
    return MetaAnalysis(
        method=method,
        scale=scale,
        confidence=confidence,
        sites=tuple(site_effect(names[i], y[i], s[i], scale=scale, confidence=confidence, weight=w_re[i] / sw_re) for i in range(k)),
        excluded=tuple(excluded),
        estimate=_display(mu, scale),
        ci_low=_display(mu - z * se, scale),
        ci_high=_display(mu + z * se, scale),
        prediction_low=prediction_low,
        prediction_high=prediction_high,
        prediction_note=prediction_note,
        tau2=tau2,
        i2=max(0.0, (q - df) / q) if q > 0 else 0.0,
        q=q,
        q_df=df,
        q_p=float(stats.chi2.sf(q, df)),
        estimate_analysis=mu,
        se_analysis=se,
        notes=tuple(notes),
    )
