"""SVG charts of a validation report, rendered once and reused by the API, the pages and the PDF dossier.

Plain matplotlib (object API, no pyplot, no Django), so a site agent can draw
the same charts. Each chart is deterministic: the same report gives the same
bytes (fixed SVG id salt, no date in the metadata), so its sha256 can be
recorded next to the report it was drawn from.

1. Every figure is 6.5 inches wide (the text width of an A4 page) and drawn
   inside ``matplotlib.rc_context`` with the house style: text stays text
   (``svg.fonttype: none``, searchable and readable by assistive tools),
   Okabe-Ito colours (told apart under the common colour-vision
   deficiencies), no mathtext (a ``$`` in a label name stays a ``$``).
2. ``report_charts`` draws every chart a report supports and skips the
   sections that are missing or carry an ``error``; a malformed section is
   logged and skipped, so a partial report never fails the page that shows it.
"""

from __future__ import annotations

import io
import logging
import math
import re
import textwrap
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from radtrust_engine.disclosure import SUPPRESSION_REASONS
from radtrust_engine.stratification import suppressed_count_text

logger = logging.getLogger(__name__)

WIDTH = 6.5  # inches: the text width of an A4 page
HEIGHT = 4.0
# Okabe & Ito (2008), without yellow, which is too pale on white.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P")
GREY = "#6E6E6E"
FOREST_METRICS = ("auroc", "sensitivity", "dice")
METRIC_TITLES = {
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV",
    "npv": "NPV",
    "f1": "F1",
    "fnr": "FNR",
    "fpr": "FPR",
    "dice": "Dice",
    "iou": "IoU",
}
_STYLE = {
    "svg.hashsalt": "radtrust",
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Verdana", "Arial"],  # metrics are DejaVu's; the others are close in width
    "font.size": 8.5,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8.5,
    "figure.titlesize": 10.5,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@dataclass(frozen=True)
class Chart:
    """One rendered chart: a slug for its file name, its title, the SVG text and a one-sentence text alternative."""

    name: str
    title: str
    svg: str
    alt: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def slug(text: str) -> str:
    """A file-name-safe, lower-case ASCII form of a label or feature name ("Pneumothorax (left)" -> "pneumothorax-left")."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-") or "unnamed"


# --- Drawing helpers ---------------------------------------------------------------


@contextmanager
def _figure(height: float = HEIGHT) -> Iterator[Figure]:
    """A figure in the house style; ``_chart`` must be called inside the block, where the style holds."""
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(WIDTH, height), layout="constrained")
        FigureCanvasSVG(figure)
        yield figure


def _chart(figure: Figure, name: str, title: str, alt: str) -> Chart:
    figure.suptitle(title, fontweight="bold")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Title": title, "Description": alt})
    return Chart(name=name, title=title, svg=buffer.getvalue().decode("utf-8"), alt=alt)


def _num(value: Any) -> float:
    """A finite float, or NaN for None and undefined values (matplotlib leaves NaN points out)."""
    if value is None:
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def _has(value: Any) -> bool:
    return not math.isnan(_num(value))


def _level(confidence: Any) -> str:
    """ "95% CI" from a confidence of 0.95; plain "CI" when the report does not say."""
    return f"{float(confidence):.0%} CI" if _has(confidence) else "CI"


def _estimate(value: Any, low: Any, high: Any, *, digits: int = 3, signed: bool = False) -> str:
    """ "0.873 (0.810 to 0.921)", the value alone without an interval, or "undefined"."""
    if not _has(value):
        return "undefined"
    form = f"{{:{'+' if signed else ''}.{digits}f}}"
    text = form.format(float(value))
    if _has(low) and _has(high):
        text += f" ({form.format(float(low))} to {form.format(float(high))})"
    return text


def _style(index: int) -> dict[str, Any]:
    """Colour, marker and line style of the index-th series: 7 colours x 6 markers, dashed after the first 7."""
    return {
        "color": PALETTE[index % len(PALETTE)],
        "marker": MARKERS[index % len(MARKERS)],
        "linestyle": "-" if index < len(PALETTE) else "--",
    }


# --- The charts ----------------------------------------------------------------------


def roc_chart(label: str, roc: Mapping[str, Any]) -> Chart:
    """The ROC curve of one label against the chance diagonal, with the AUROC and its CI in the legend.

    ``roc``: ``{"fpr": [...], "tpr": [...], "auroc", "ci_low", "ci_high"}`` and optionally ``"confidence"``.
    """
    fpr = np.asarray(roc["fpr"], dtype=np.float64)
    tpr = np.asarray(roc["tpr"], dtype=np.float64)
    if fpr.shape != tpr.shape or fpr.ndim != 1 or fpr.size < 2:
        raise ValueError(f"roc of {label!r}: fpr and tpr must be lists of the same length (2 or more)")
    level = _level(roc.get("confidence"))
    auroc = _estimate(roc.get("auroc"), roc.get("ci_low"), roc.get("ci_high"))
    if _has(roc.get("auroc")) and _has(roc.get("ci_low")) and _has(roc.get("ci_high")):
        auroc += f", {level}"
    title = f"ROC curve: {label}"
    with _figure() as figure:
        ax = figure.add_subplot()
        ax.plot([0, 1], [0, 1], color=GREY, linestyle=":", linewidth=1, label="chance (AUROC 0.5)")
        ax.plot(fpr, tpr, color=PALETTE[0], linewidth=1.8, label=f"AUROC {auroc}")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal", xlabel="1 - specificity (false positive rate)", ylabel="Sensitivity (true positive rate)")
        ax.grid(color="#E5E5E5", linewidth=0.6)
        ax.legend(loc="lower right")
        alt = f"ROC curve of the model for {label} against the chance diagonal: AUROC {auroc}."
        return _chart(figure, f"roc-{slug(label)}", title, alt)


def reliability_chart(label: str, calibration: Mapping[str, Any]) -> Chart:
    """Observed frequency against mean predicted probability per non-empty bin (Wilson CIs), the
    diagonal of perfect calibration, and the bin counts in a panel below.

    ``calibration``: ``CalibrationReport.to_dict()``.
    """
    bins = [b for b in calibration["bins"] if b["count"]]
    if not bins:
        raise ValueError(f"calibration of {label!r} has no non-empty bin")
    level = _level(calibration.get("confidence"))
    ece = calibration["ece"]
    ece_text = _estimate(ece.get("value"), ece.get("ci_low"), ece.get("ci_high"))
    if _has(ece.get("value")) and _has(ece.get("ci_low")) and _has(ece.get("ci_high")):
        ece_text += f", {level}"
    binning = f"{calibration['n_bins']} {calibration['strategy']} bins"
    title = f"Reliability diagram: {label}"
    with _figure(4.6) as figure:
        top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
        top.plot([0, 1], [0, 1], color=GREY, linestyle=":", linewidth=1, label="perfect calibration")
        x = np.array([_num(b["mean_predicted"]) for b in bins])
        y = np.array([_num(b["observed_frequency"]) for b in bins])
        low = np.array([_num(b["ci_low"]) for b in bins])
        high = np.array([_num(b["ci_high"]) for b in bins])
        yerr = np.nan_to_num(np.vstack([y - low, high - y]), nan=0.0).clip(min=0)
        sparse = np.array([bool(b.get("sparse")) for b in bins])
        top.plot(x, y, color=PALETTE[0], linewidth=1, alpha=0.6)
        top.errorbar(x, y, yerr=yerr, fmt="none", ecolor=PALETTE[0], elinewidth=1, capsize=2)
        top.plot(x[~sparse], y[~sparse], "o", color=PALETTE[0], label=f"observed frequency (Wilson {level})")
        if sparse.any():
            top.plot(
                x[sparse],
                y[sparse],
                "o",
                markerfacecolor="white",
                color=PALETTE[0],
                label=f"sparse bin (< {calibration.get('min_bin_count', '?')} cases)",
            )
        top.plot([], [], " ", label=f"ECE {ece_text}")
        brier = calibration.get("brier") or {}
        if _has(brier.get("value")):
            top.plot([], [], " ", label=f"Brier {_estimate(brier.get('value'), brier.get('ci_low'), brier.get('ci_high'))}")
        top.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="Observed frequency")
        top.set_title(f"{binning}, {calibration.get('n', sum(b['count'] for b in bins))} cases; ECE {ece_text}", loc="left")
        top.grid(color="#E5E5E5", linewidth=0.6)
        top.legend(loc="upper left")
        lower = np.array([float(b["lower"]) for b in bins])
        widths = np.array([float(b["upper"]) for b in bins]) - lower
        counts = np.array([int(b["count"]) for b in bins])
        bars = bottom.bar(lower, counts, width=widths, align="edge", color=PALETTE[5], edgecolor="white", linewidth=0.6)
        bottom.bar_label(bars, fontsize=7, padding=1)
        bottom.set(ylabel="Cases", xlabel="Mean predicted probability", ylim=(0, counts.max() * 1.3))
        alt = (
            f"Reliability diagram for {label}: observed frequency against mean predicted probability in "
            f"{len(bins)} non-empty of {binning}, with case counts per bin; ECE {ece_text}."
        )
        return _chart(figure, f"reliability-{slug(label)}", title, alt)


def forest_chart(label: str, metric: str, stratified: Mapping[str, Any]) -> Chart:
    """One metric per subgroup of every grouping with its CI, against the overall value; a suppressed
    subgroup is listed without a point and without its count ("<10" or "withheld",
    ``stratification.suppressed_count_text``), whatever the stored report holds.

    ``stratified``: a ``GroupedReport.to_dict()`` (classification or segmentation).
    """
    overall = (stratified["overall"]["metrics"] or {}).get(metric)
    if overall is None or not _has(overall["value"]) or not stratified["subgroups"]:
        raise ValueError(f"the report of {label!r} has no overall {metric!r} or no subgroup")
    minimum = stratified.get("min_patients", "?")
    blocks: dict[str, list[Mapping[str, Any]]] = {}
    for subgroup in stratified["subgroups"]:
        blocks.setdefault(subgroup["grouping"], []).append(subgroup)
    rows: list[tuple[str, Mapping[str, Any] | None]] = []  # (grouping, None) heads the grouping's block
    for grouping, subgroups in blocks.items():
        rows += [(grouping, None), *((grouping, s) for s in subgroups)]
    level = _level(stratified.get("confidence"))
    name = METRIC_TITLES.get(metric, metric)
    title = f"{name} by subgroup: {label}"
    height = min(9.5, max(3.0, 1.3 + 0.19 * (len(rows) + 1)))
    with _figure(height) as figure:
        ax = figure.add_subplot()
        y_positions = -np.arange(len(rows), dtype=float)
        low, high = _num(overall.get("ci_low")), _num(overall.get("ci_high"))
        if _has(low) and _has(high):
            ax.axvspan(low, high, color="#D9D9D9", alpha=0.6, linewidth=0, label=f"overall {level}")
        ax.axvline(_num(overall["value"]), color="black", linestyle="--", linewidth=1, label=f"overall {_estimate(overall['value'], low, high)}")
        ticks: list[str] = []
        for y, (grouping, subgroup) in zip(y_positions, rows):
            if subgroup is None:
                ticks.append(grouping)
                continue
            value_text = ", ".join(subgroup["values"]) or subgroup["name"]
            if subgroup["suppressed"]:
                reason = subgroup.get("reason")
                ticks.append(f"{value_text} ({suppressed_count_text(reason, stratified.get('min_patients'))})")
                note = "withheld so that a smaller group cannot be recovered" if reason == "complementary" else f"suppressed (n < {minimum})"
                if reason in ("too_few_positive_patients", "too_few_negative_patients"):
                    note = f"suppressed: {SUPPRESSION_REASONS[reason]}"
                ax.text(0.01, y, note, va="center", fontsize=7.5, color=GREY, fontstyle="italic")
                continue
            ticks.append(f"{value_text} (n={subgroup['n_patients']})")
            estimate = (subgroup["metrics"] or {}).get(metric)
            if estimate is None or not _has(estimate.get("value")):
                ax.text(0.01, y, "undefined", va="center", fontsize=7.5, color=GREY, fontstyle="italic")
                continue
            value = _num(estimate["value"])
            err_low, err_high = _num(estimate.get("ci_low")), _num(estimate.get("ci_high"))
            if _has(err_low) and _has(err_high):
                ax.errorbar(
                    value,
                    y,
                    xerr=[[max(value - err_low, 0)], [max(err_high - value, 0)]],
                    fmt="o",
                    color=PALETTE[0],
                    markersize=4,
                    elinewidth=1.2,
                    capsize=2,
                )
            else:
                ax.plot(value, y, "o", color=PALETTE[0], markersize=4)
            ax.text(1.02, y, _estimate(value, err_low, err_high), transform=ax.get_yaxis_transform(), va="center", fontsize=7.5)
        ax.set_yticks(y_positions, ticks)
        for tick, (_, subgroup) in zip(ax.get_yticklabels(), rows):
            if subgroup is None:
                tick.set_fontweight("bold")
        ax.set(xlim=(0, 1), ylim=(y_positions[-1] - 0.7, 0.7), xlabel=f"{name} with {level} (n: patients in the subgroup)")
        ax.grid(axis="x", color="#E5E5E5", linewidth=0.6)
        ax.tick_params(axis="y", length=0)
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2)
        suppressed = sum(1 for _, s in rows if s is not None and s["suppressed"])
        alt = (
            f"Forest plot of {name} for {label} per subgroup of {', '.join(blocks)}, "
            f"each with its {level}, against the overall value {_estimate(overall['value'], low, high)}"
            f"{f'; {suppressed} subgroup(s) suppressed (below {minimum} patients, or withheld to protect one)' if suppressed else ''}."
        )
        return _chart(figure, f"forest-{slug(metric)}-{slug(label)}", title, alt)


def study_forest_chart(label: str, metric: str, meta: Mapping[str, Any]) -> Chart:
    """One metric across the sites of a federated study: each site's estimate and CI (marker area
    by its random-effects weight), the pooled diamond, the prediction interval for a new site,
    and the sites left out with why; the title carries I² and tau². A refused meta-analysis
    (one site) still shows the site rows, with the reason instead of the diamond.

    ``meta``: ``radtrust_engine.meta_analysis.MetaAnalysis.to_dict()``.
    """
    if not meta["sites"]:
        raise ValueError(f"the meta-analysis of {metric!r} for {label!r} has no site estimate")
    name = METRIC_TITLES.get(metric, metric)
    level = _level(meta.get("confidence"))
    refused = meta.get("refused_reason")
    excluded = list(meta.get("excluded") or [])
    rows = len(meta["sites"]) + len(excluded) + (1 if refused else 1 + _has(meta.get("prediction_low")))
    lows = [_num(s["ci_low"]) for s in meta["sites"]] + [_num(meta.get("prediction_low"))]
    highs = [_num(s["ci_high"]) for s in meta["sites"]] + [_num(meta.get("prediction_high"))]
    x_low = max(0.0, math.floor((np.nanmin(lows) - 0.02) * 20) / 20)
    x_high = min(1.0, math.ceil((np.nanmax(highs) + 0.02) * 20) / 20)
    if refused:
        heterogeneity = f"meta-analysis refused: {refused}"
    else:
        heterogeneity = (
            f"I² = {float(meta['i2']):.0%}, tau² = {float(meta['tau2']):.3g} (logit scale), "
            f"Q = {float(meta['q']):.2f} on {meta['q_df']} df; {meta['method']} random effects"
        )
    title = f"{name} across sites: {label}"
    with _figure(min(9.5, max(2.6, 1.5 + 0.3 * rows))) as figure:
        ax = figure.add_subplot()
        ax.set_title(textwrap.fill(heterogeneity, 110), loc="left", fontsize=7.5, color=GREY)
        ticks: list[str] = []
        y = 0.0
        for site in meta["sites"]:
            value, low, high = _num(site["estimate"]), _num(site["ci_low"]), _num(site["ci_high"])
            size = 4 + 10 * math.sqrt(float(site["weight"])) if _has(site.get("weight")) else 5
            ax.errorbar(
                value, y, xerr=[[max(value - low, 0)], [max(high - value, 0)]], fmt="s", color=PALETTE[0], markersize=size, elinewidth=1.2, capsize=2
            )
            weight = f", weight {float(site['weight']):.0%}" if _has(site.get("weight")) else ""
            ax.text(1.02, y, f"{_estimate(value, low, high)}{weight}", transform=ax.get_yaxis_transform(), va="center", fontsize=7.5)
            ticks.append(site["site"])
            y -= 1
        for left_out in excluded:
            ax.text(
                x_low + 0.01 * (x_high - x_low),
                y,
                f"left out: {left_out['reason']}",
                va="center",
                fontsize=7.5,
                color=GREY,
                fontstyle="italic",
                in_layout=False,
            )
            ticks.append(left_out["site"])
            y -= 1
        if refused:
            ax.text(
                x_low + 0.01 * (x_high - x_low),
                y,
                "no pooled estimate (meta-analysis refused, see above)",
                va="center",
                fontsize=7.5,
                color=PALETTE[1],
                fontstyle="italic",
                in_layout=False,
            )
            ticks.append("Pooled")
        else:
            estimate, low, high = _num(meta["estimate"]), _num(meta["ci_low"]), _num(meta["ci_high"])
            ax.fill([low, estimate, high, estimate], [y, y + 0.3, y, y - 0.3], color=PALETTE[1], label=f"pooled, {level}")
            ax.axvline(estimate, color=PALETTE[1], linestyle=":", linewidth=0.8)
            ax.text(1.02, y, _estimate(estimate, low, high), transform=ax.get_yaxis_transform(), va="center", fontsize=7.5, fontweight="bold")
            ticks.append("Pooled")
            if _has(meta.get("prediction_low")):
                y -= 1
                p_low, p_high = _num(meta["prediction_low"]), _num(meta["prediction_high"])
                ax.plot([p_low, p_high], [y, y], color=PALETTE[1], linewidth=2, solid_capstyle="butt", label="prediction interval")
                ax.text(1.02, y, f"{p_low:.3f} to {p_high:.3f}", transform=ax.get_yaxis_transform(), va="center", fontsize=7.5)
                ticks.append("New site")
            ax.legend(loc="lower left", bbox_to_anchor=(0, 1.08), ncols=2)
        y_positions = -np.arange(len(ticks), dtype=float)
        ax.set_yticks(y_positions, ticks)
        ax.set(xlim=(x_low, x_high), ylim=(y_positions[-1] - 0.7, 0.7), xlabel=f"{name} with {level} (marker area: weight)")
        ax.grid(axis="x", color="#E5E5E5", linewidth=0.6)
        ax.tick_params(axis="y", length=0)
        per_site = "; ".join(f"{s['site']} {_estimate(s['estimate'], s['ci_low'], s['ci_high'])}" for s in meta["sites"])
        if refused:
            pooled_text = f"no pooled estimate ({refused})"
        else:
            pooled_text = f"pooled {_estimate(meta['estimate'], meta['ci_low'], meta['ci_high'])}, {heterogeneity}"
            if _has(meta.get("prediction_low")):
                pooled_text += f", prediction interval for a new site {float(meta['prediction_low']):.3f} to {float(meta['prediction_high']):.3f}"
        left_out_text = f"; left out: {', '.join(e['site'] for e in excluded)}" if excluded else ""
        alt = f"Forest plot of {name} for {label} across {len(meta['sites'])} site(s) with {level}: {per_site}; {pooled_text}{left_out_text}."
        return _chart(figure, f"study-forest-{slug(metric)}-{slug(label)}", title, alt)


def robustness_chart(label: str, robustness: Mapping[str, Any]) -> Chart:
    """AUROC change against severity, one line per perturbation with its paired-bootstrap CI,
    the zero line, and the worst condition annotated.

    ``robustness``: ``radtrust_engine.robustness.robustness_report``.
    """
    series: dict[str, dict[int, Mapping[str, Any]]] = {}
    for condition in robustness["conditions"]:
        series.setdefault(condition["perturbation"], {})[int(condition["severity"])] = condition["metrics"]["auroc"]
    if not series:
        raise ValueError(f"the robustness report of {label!r} has no condition")
    worst = robustness.get("worst_case")
    title = f"Robustness to acquisition shift: {label}"
    with _figure() as figure:
        ax = figure.add_subplot()
        ax.axhline(0, color="black", linewidth=0.8)
        spread = 0.36 / max(len(series) - 1, 1)
        for index, (perturbation, by_severity) in enumerate(series.items()):
            severities = sorted(by_severity)
            x = np.array(severities, dtype=float) + (index - (len(series) - 1) / 2) * spread
            change = np.array([_num(by_severity[s]["change"]) for s in severities])
            low = np.array([_num(by_severity[s]["ci_low"]) for s in severities])
            high = np.array([_num(by_severity[s]["ci_high"]) for s in severities])
            yerr = np.nan_to_num(np.vstack([change - low, high - change]), nan=0.0).clip(min=0)
            bars = ax.errorbar(x, change, yerr=yerr, **_style(index), markersize=3.5, linewidth=1.1, elinewidth=0.7, capsize=1.5, label=perturbation)
            for lines in bars.lines[2]:
                lines.set_alpha(0.45)  # the intervals overlap; the lines carry the pattern
            if worst and worst.get("perturbation") == perturbation and worst.get("severity") in by_severity:
                at = severities.index(worst["severity"])
                ax.plot(x[at], change[at], "o", markersize=10, markerfacecolor="none", markeredgecolor="black")
                below = change[at] <= 0
                ax.annotate(
                    f"worst: {worst['condition']}\n{_estimate(change[at], low[at], high[at], signed=True)}",
                    xy=(x[at], change[at]),
                    xytext=(18, -30 if below else 30),
                    textcoords="offset points",
                    ha="left",
                    va="top" if below else "bottom",
                    fontsize=7.5,
                    arrowprops={"arrowstyle": "->", "color": "black", "linewidth": 0.8, "shrinkB": 6},
                )
        ax.set_xticks([1, 2, 3], ["1 (mild)", "2 (moderate)", "3 (severe)"])
        ax.set(xlim=(0.5, 3.5), xlabel="Severity", ylabel="Change in AUROC (paired bootstrap CI)")
        ax.margins(y=0.25)
        ax.grid(axis="y", color="#E5E5E5", linewidth=0.6)
        failed = [f["condition"] for f in robustness.get("failed") or []]
        subtitle = f"{robustness.get('n_cases', '?')} cases, change from the unperturbed AUROC"
        ax.set_title(subtitle + (f"; failed: {', '.join(failed)}" if failed else ""), loc="left", wrap=True)
        figure.legend(loc="outside right upper", title="Perturbation", title_fontsize=7.5)
        worst_text = ""
        if worst:
            metric = worst["metrics"]["auroc"]
            worst_text = (
                f"; the largest drop is {worst['condition']} ({_estimate(metric['change'], metric['ci_low'], metric['ci_high'], signed=True)})"
            )
        alt = (
            f"Line chart of the AUROC change for {label} under {len(series)} acquisition perturbations "
            f"at severities 1 to 3, with confidence intervals and the zero line{worst_text}."
        )
        return _chart(figure, f"robustness-{slug(label)}", title, alt)


def drift_chart(feature: str, histogram: Mapping[str, Any]) -> Chart:
    """The reference and current distributions of one feature as densities on shared bin edges, with KS and PSI.

    ``histogram``: ``{"edges": [...], "reference": [...], "current": [...], "ks", "psi", "drifted"}``
    (``level`` optional); per-bin counts or densities, both are drawn as densities.
    """
    edges = np.asarray(histogram["edges"], dtype=np.float64)
    widths = np.diff(edges)
    if edges.ndim != 1 or edges.size < 2 or not np.isfinite(edges).all() or (widths <= 0).any():
        raise ValueError(f"drift histogram of {feature!r}: edges must be finite and increasing")

    def density(key: str) -> np.ndarray:
        values = np.asarray(histogram[key], dtype=np.float64)
        if values.shape != widths.shape:
            raise ValueError(f"drift histogram of {feature!r}: {values.size} {key} values for {widths.size} bins")
        area = float((values * widths).sum())
        return values / area if area > 0 else values

    verdict = "drifted" if histogram.get("drifted") else "no drift"
    if histogram.get("level") and histogram["level"] != "none":
        verdict += f", PSI {histogram['level']}"
    statistics = f"KS {_estimate(histogram.get('ks'), None, None)}, PSI {_estimate(histogram.get('psi'), None, None)} ({verdict})"
    title = f"Drift of {feature}: {statistics}"
    with _figure() as figure:
        ax = figure.add_subplot()
        ax.stairs(density("reference"), edges, fill=True, color=PALETTE[0], alpha=0.35, label="reference (baseline run)")
        ax.stairs(density("reference"), edges, color=PALETTE[0], linewidth=1)
        ax.stairs(density("current"), edges, color=PALETTE[1], linewidth=1.8, label="current run")
        ax.set(xlim=(edges[0], edges[-1]), xlabel=feature, ylabel="Density")
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper right")
        alt = f"Overlaid histograms of {feature} in the reference and the current run, as densities on {widths.size} shared bins; {statistics}."
        return _chart(figure, f"drift-{slug(feature)}", title, alt)


def radar_chart(label: str, scores: Mapping[str, float | None], *, others: Mapping[str, Mapping[str, float | None]] | None = None) -> Chart:
    """The six trustworthiness scores (0-100) on six axes; a principle without enough evidence is
    marked "insufficient evidence" on its axis and drawn at no value, never as a number.
    ``others`` adds more versions on the same axes (the demo compares base and fine-tuned)."""
    names = list(scores)
    angles = np.linspace(0, 2 * np.pi, len(names), endpoint=False)
    series = {label: scores, **(others or {})}
    with _figure(height=4.6) as figure:
        ax = figure.add_subplot(projection="polar")
        ax.set_theta_offset(np.pi / 2)
        ax.set_theta_direction(-1)
        ax.set_ylim(0, 100)
        ax.set_yticks([25, 50, 75, 100])
        ax.set_xticks(angles)
        ax.set_xticklabels([f"{n}\n(insufficient evidence)" if scores[n] is None else f"{n}\n{scores[n]:.0f}" for n in names])
        for i, (name, values) in enumerate(series.items()):
            style = _style(i)
            radii = np.array([np.nan if values.get(n) is None else float(values[n]) for n in names])
            closed_angles, closed = np.r_[angles, angles[:1]], np.r_[radii, radii[:1]]
            ax.plot(closed_angles, closed, color=style["color"], marker=style["marker"], linestyle=style["linestyle"], label=name)
            if not np.isnan(radii).any():
                ax.fill(closed_angles, closed, color=style["color"], alpha=0.12)
        if len(series) > 1:
            ax.legend(loc="upper right", bbox_to_anchor=(1.35, 1.1))
        shown = ", ".join(f"{n} {'insufficient evidence' if scores[n] is None else f'{scores[n]:.0f}'}" for n in names)
        alt = f"Radar chart of the six FUTURE-AI trustworthiness scores of {label} on a 0-100 scale: {shown}."
        return _chart(figure, f"trust-{slug(label)}", f"Trustworthiness of {label}", alt)


def froc_chart(detection: Mapping[str, Any], *, confidence: Any = None) -> Chart:
    """The FROC curve of a detection run: sensitivity against false positives per image (log scale),
    with the sensitivity at 1/8 to 8 FP per image and its interval, and the CPM in the legend.

    ``detection``: the report's ``detection`` section (``overall`` with ``curve``, ``fp_per_image``,
    ``sensitivity``, ``low``, ``high`` and ``cpm``).
    """
    overall = detection["overall"]
    fp = np.asarray(overall["curve"]["fp_per_image"], dtype=np.float64)
    sens = np.asarray(overall["curve"]["sensitivity"], dtype=np.float64)
    if fp.shape != sens.shape or fp.ndim != 1 or fp.size < 2:
        raise ValueError("froc: the curve's fp_per_image and sensitivity must be lists of the same length (2 or more)")
    rates = np.asarray(overall["fp_per_image"], dtype=np.float64)
    at = np.asarray([_num(v) for v in overall["sensitivity"]])
    low = np.asarray([_num(v) for v in overall["low"]])
    high = np.asarray([_num(v) for v in overall["high"]])
    cpm = overall.get("cpm") or {}
    level = _level(confidence)
    cpm_text = _estimate(cpm.get("value"), cpm.get("low"), cpm.get("high"))
    if _has(cpm.get("low")) and _has(cpm.get("high")):
        cpm_text += f", {level}"
    lesions, cases = overall.get("n_lesions"), overall.get("n_cases")
    title = "FROC curve: lesion-level detection"
    with _figure() as figure:
        ax = figure.add_subplot()
        shown = fp > 0
        reach = max(float(rates.max()), float(fp.max()) if fp.size else 0.0)
        ax.step(fp[shown], sens[shown], where="post", color=PALETTE[0], linewidth=1.8, label="FROC curve")
        ax.errorbar(
            rates,
            at,
            yerr=[np.where(np.isnan(low), 0, at - low), np.where(np.isnan(high), 0, high - at)],
            fmt="o",
            color=PALETTE[1],
            capsize=3,
            markersize=4,
            label=f"sensitivity at 1/8 to 8 FP per image ({level}); CPM {cpm_text}",
        )
        ax.set_xscale("log", base=2)
        ax.set(xlim=(min(rates.min(), 0.125) / 1.5, reach * 1.5), ylim=(0, 1.02))
        ax.set(xlabel="False positives per image (log scale)", ylabel="Sensitivity (share of lesions found)")
        ax.set_xticks(rates, [f"{r:g}" if r >= 1 else f"1/{round(1 / r)}" for r in rates])
        ax.grid(color="#E5E5E5", linewidth=0.6)
        ax.legend(loc="lower right")
        alt = f"FROC curve of the model on {lesions} lesions in {cases} images or volumes: CPM {cpm_text}."
        return _chart(figure, "froc", title, alt)


def efficiency_chart(label: str, curves: Mapping[str, Any]) -> Chart:
    """Probe AUROC against labelled cases (log scale) with the CI across repeats as a band: the
    logistic probe, the kNN probe, the comparator's logistic probe when there is one, and the target.

    ``curves``: a label of the report's ``data_efficiency`` section, ``{"logistic": ..., "knn": ...}``
    (``radtrust_engine.data_efficiency.LabelEfficiency.to_dict()`` each).
    """
    logistic = curves["logistic"]
    series = [("logistic-regression probe", logistic["curve"]), ("kNN probe", (curves.get("knn") or {}).get("curve") or [])]
    if logistic.get("comparator"):
        series.append(("comparator, logistic probe", logistic["comparator"]))
    level = _level(logistic.get("confidence"))
    title = f"Data efficiency: {label}"
    with _figure() as figure:
        ax = figure.add_subplot()
        for index, (name, points) in enumerate(series):
            usable = [p for p in points if _has(p.get("auroc"))]
            if not usable:
                continue
            x = np.asarray([max(float(p["n_labelled"]), 1.0) for p in usable])
            y = np.asarray([float(p["auroc"]) for p in usable])
            style = _style(index)
            ax.plot(x, y, color=style["color"], marker=style["marker"], linewidth=1.6, label=name)
            banded = [p for p in usable if _has(p.get("ci_low")) and _has(p.get("ci_high"))]
            if banded:
                bx = np.asarray([max(float(p["n_labelled"]), 1.0) for p in banded])
                ax.fill_between(
                    bx, [float(p["ci_low"]) for p in banded], [float(p["ci_high"]) for p in banded], color=style["color"], alpha=0.15, linewidth=0
                )
        target = logistic.get("target_auroc")
        if _has(target):
            ax.axhline(float(target), color=GREY, linestyle=":", linewidth=1, label=f"target AUROC {_estimate(target, None, None)}")
        ax.axhline(0.5, color=GREY, linestyle="--", linewidth=0.8, label="chance")
        ax.set_xscale("log")
        ax.set(xlabel="Labelled training cases (log scale)", ylabel=f"Cross-validated AUROC ({level} band)", ylim=(0.4, 1.01))
        ax.grid(color="#E5E5E5", linewidth=0.6)
        ax.legend(loc="lower right")
        reached = logistic.get("labelled_to_target")
        if _has(reached):
            outcome = f"the logistic probe reaches the target at about {round(float(reached))} cases."
        else:
            outcome = "the logistic probe does not reach the target."
        alt = (
            f"Label-efficiency curves for {label}: AUROC of probes on the model's embeddings against the number of labelled training cases; {outcome}"
        )
        return _chart(figure, f"efficiency-{slug(label)}", title, alt)


# --- Every chart of a report ---------------------------------------------------------


def _usable(section: Any) -> bool:
    return isinstance(section, Mapping) and "error" not in section


def report_charts(report: Mapping[str, Any]) -> list[Chart]:
    """Every chart ``report`` supports, in a stable order: per label the ROC curve, the reliability
    diagram, the forest plots and the robustness chart; a detection run's FROC curve and its scores'
    reliability diagram; per label its data-efficiency curves; then one drift chart per feature.

    Missing sections and those with an ``error`` are skipped; a chart whose data is malformed is
    logged and skipped, never raised: the report's tables stand without it.
    """
    plans: list[tuple[str, Callable[[], Chart]]] = []
    results = report.get("results")
    for label, result in results.items() if isinstance(results, Mapping) else ():
        if not _usable(result):
            continue
        if _usable(result.get("roc")):
            roc = {"confidence": result.get("confidence"), **result["roc"]}
            plans.append((f"roc-{label}", lambda label=label, roc=roc: roc_chart(label, roc)))
        if _usable(result.get("calibration")):
            plans.append((f"reliability-{label}", lambda label=label, r=result: reliability_chart(label, r["calibration"])))
        overall = result.get("overall")
        if isinstance(overall, Mapping) and isinstance(overall.get("metrics"), Mapping) and result.get("subgroups"):
            for metric in FOREST_METRICS:
                if _has((overall["metrics"].get(metric) or {}).get("value")):  # undefined: one class only
                    plans.append((f"forest-{metric}-{label}", lambda label=label, m=metric, r=result: forest_chart(label, m, r)))
        if _usable(result.get("robustness")):
            plans.append((f"robustness-{label}", lambda label=label, r=result: robustness_chart(label, r["robustness"])))
    detection = report.get("detection")
    if _usable(detection):
        confidence = (report.get("config") or {}).get("confidence")
        plans.append(("froc", lambda: froc_chart(detection, confidence=confidence)))
        if _usable(detection.get("calibration")):
            plans.append(("reliability-detection", lambda: reliability_chart("detection scores", detection["calibration"])))
    efficiency = report.get("data_efficiency")
    for label, curves in (efficiency.get("labels") or {}).items() if _usable(efficiency) else ():
        if _usable(curves):
            plans.append((f"efficiency-{label}", lambda label=label, c=curves: efficiency_chart(label, c)))
    drift = report.get("drift")
    histograms = drift.get("histograms") if _usable(drift) else None
    for feature, histogram in histograms.items() if isinstance(histograms, Mapping) else ():
        if _usable(histogram):
            plans.append((f"drift-{feature}", lambda f=feature, h=histogram: drift_chart(f, h)))

    charts: list[Chart] = []
    taken: set[str] = set()
    for what, draw in plans:
        try:
            chart = draw()
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            logger.warning("chart %s skipped: its section of the report is malformed", what, exc_info=True)
            continue
        name, n = chart.name, 2
        while chart.name in taken:  # two labels with the same slug
            chart = Chart(f"{name}-{n}", chart.title, chart.svg, chart.alt)
            n += 1
        taken.add(chart.name)
        charts.append(chart)
    return charts
