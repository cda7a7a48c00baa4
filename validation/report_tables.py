"""A stored run report as the tables and figures its page shows: every number rounded for people
(``core.readable``), every code in words, suppressed counts as the engine's disclosure rule says
("<10" or "withheld", ``radtrust_engine.stratification.suppressed_count_text``). Nothing is
recomputed: the figures are the report's, the charts the ones the run stored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.readable import metric, number, percent, title, words
from radtrust_engine.detection_drift import LESIONS
from radtrust_engine.disclosure import SUPPRESSION_REASONS
from radtrust_engine.stratification import suppressed_count_text

OVERALL_METRICS = ("auroc", "auprc", "sensitivity", "specificity", "ppv", "npv", "f1", "dice", "iou")
SUBGROUP_METRICS = ("auroc", "sensitivity", "specificity", "dice")
ANALYSIS_TITLES = {
    "calibration": "Calibration",
    "generalisation": "Generalisation across sites and scanners",
    "robustness": "Robustness to image perturbations",
    "uncertainty": "Uncertainty and referral",
    "explainability": "Explainability",
}
GAP_TITLES = {
    "auroc_gap": "AUROC gap",
    "fnr_gap": "False-negative rate gap",
    "equalized_odds_difference": "Equalized odds difference",
    "dice_gap": "Dice gap",
}
ATTRIBUTE_VALUES = {"sex": {"F": "female", "M": "male", "O": "other"}}
# Which stored charts belong to which part of the page, by file-name prefix (validation.charts.report_charts).
# Figures of the analyses whose generic title would not say what they are.
FIGURE_TITLES = {
    "n": "Cases",
    "n_positive": "Positive cases",
    "n_bins": "Bins",
    "min_bin_count": "Fewest cases in a bin",
    "mce": "MCE (largest calibration error of a bin)",
    "n_resamples": "Bootstrap resamples",
    "min_patients": "Fewest patients in a reported group",
    "n_flagged_cases": "Cases referred for a human read",
}
CHART_SECTIONS = {
    "roc-": "overall",
    "forest-": "subgroups",
    "reliability-": "calibration",
    "robustness-": "robustness",
    "drift-": "drift",
    "efficiency-": "data_efficiency",
    "froc": "detection",
}


@dataclass
class Table:
    caption: str
    head: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    """One analysis of a label: its tables, or why it could not be computed."""

    key: str
    title: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    error: str = ""


@dataclass
class LabelTables:
    label: str
    threshold: str
    overall: Table
    subgroups: Table | None
    intersections: Table | None
    gaps: Table | None
    analyses: list[Section]


def group_name(attributes: list[str], values: list[str]) -> str:
    """``sex=F, age_band=65+`` as "Sex female, age band 65+"."""
    parts = [f"{title(a).lower()} {ATTRIBUTE_VALUES.get(a, {}).get(str(v), v)}" for a, v in zip(attributes, values)]
    text = ", ".join(parts)
    return text[:1].upper() + text[1:]


def grouping_name(attributes: list[str]) -> str:
    """``["sex", "age_band"]`` as "Sex by age band"."""
    text = " by ".join(title(a).lower() for a in attributes)
    return text[:1].upper() + text[1:]


def _count(group: Mapping[str, Any], key: str, minimum: int | None) -> str:
    if group.get("suppressed"):
        return suppressed_count_text(group.get("reason"), minimum)
    return number(group.get(key))


def _subgroup_table(caption: str, groups: list[Mapping[str, Any]], metrics: list[str], minimum: int | None) -> Table | None:
    if not groups:
        return None
    rows = []
    for g in groups:
        reason = SUPPRESSION_REASONS.get(g.get("reason") or "", "") if g.get("suppressed") else ""
        figures = [metric((g.get("metrics") or {}).get(m)) if not g.get("suppressed") else "withheld" for m in metrics]
        rows.append(
            [
                group_name(g.get("attributes") or [], g.get("values") or []),
                _count(g, "n_patients", minimum),
                _count(g, "n_cases", minimum),
                *figures,
                reason,
            ]
        )
    return Table(caption, ["Group", "Patients", "Cases", *(title(m) for m in metrics), "Why withheld"], rows)


def _gap_groups(gap: Mapping[str, Any]) -> str:
    if not gap.get("group_high"):
        return "no difference between the groups"
    return f"{', '.join(gap['group_high'])} vs {', '.join(gap['group_low'] or [])}"


def _analysis(key: str, section: Any) -> Section:
    """An analysis's scalar figures in words; its lists and tables are in its charts."""
    found = Section(key, ANALYSIS_TITLES.get(key, title(key)))
    if not isinstance(section, Mapping):
        return found
    if "error" in section:
        found.error = str(section["error"])
        return found
    for name, value in section.items():
        shown = FIGURE_TITLES.get(name) or title(name)
        if isinstance(value, Mapping) and "value" in value:
            found.rows.append((shown, metric(value)))
        elif isinstance(value, (int, float, str, bool)) or value is None:
            found.rows.append((shown, words(value)))
        elif isinstance(value, Mapping) and all(not isinstance(v, (Mapping, list)) for v in value.values()):
            found.rows.append((shown, words(value)))
    return found


def label_tables(label: str, result: Mapping[str, Any], *, summary_only: bool = False) -> LabelTables:
    """One label's overall metrics, subgroup and intersection tables, gaps and analyses."""
    minimum = result.get("min_patients")
    overall_metrics = result.get("overall", {}).get("metrics") or {}
    shown = [m for m in OVERALL_METRICS if m in overall_metrics]
    overall = Table(
        f"{label}: overall, {percent(float(result.get('confidence') or 0.95))} confidence intervals",
        ["Metric", "Estimate (interval)"],
        [[title(m), metric(overall_metrics[m])] for m in shown],
    )
    threshold = number(result.get("threshold")) if result.get("threshold") is not None else ""
    if summary_only:
        return LabelTables(label, threshold, overall, None, None, None, [])
    groups = result.get("subgroups") or []
    metrics = [m for m in SUBGROUP_METRICS if m in overall_metrics]
    single = [g for g in groups if len(g.get("attributes") or []) == 1]
    crossed = [g for g in groups if len(g.get("attributes") or []) > 1]
    gaps = result.get("gaps") or []
    gap_table = None
    if gaps:
        gap_table = Table(
            f"{label}: largest gap between the groups of each grouping",
            ["Gap", "Grouping", "Size (interval)", "Between", "Beyond chance"],
            [
                [
                    GAP_TITLES.get(g.get("kind"), title(g.get("kind", ""))),
                    grouping_name(g.get("attributes") or []),
                    metric(g),
                    _gap_groups(g),
                    "yes" if (g.get("ci_low") or 0) > 0 else "no",
                ]
                for g in gaps
            ],
        )
    analyses = [_analysis(key, result[key]) for key in ANALYSIS_TITLES if key in result]
    return LabelTables(
        label,
        threshold,
        overall,
        _subgroup_table(f"{label}: subgroups", single, metrics, minimum),
        _subgroup_table(f"{label}: intersections of subgroups", crossed, metrics, minimum),
        gap_table,
        analyses,
    )


def report_tables(results: Mapping[str, Any] | None, *, summary_only: bool = False) -> list[LabelTables]:
    """Every label of a stored report (``ValidationRun.results``), in report order."""
    labels = (results or {}).get("results") or {}
    return [label_tables(label, result, summary_only=summary_only) for label, result in labels.items() if isinstance(result, Mapping)]


def drift_rows(results: Mapping[str, Any] | None) -> tuple[str, list[list[str]]]:
    """The comparison with the baseline run: why there is none, or its findings (severity, what moved, in words)."""
    drift = (results or {}).get("drift")
    if not isinstance(drift, Mapping):
        return "This run was not compared with a baseline run.", []
    if "error" in drift:
        return f"No comparison with the baseline run: {drift['error']}", []
    findings = [
        [title(f.get("severity", "")), title(f.get("kind", "")), str(f.get("subject", "")), str(f.get("message", ""))]
        for f in drift.get("findings") or []
    ]
    note = f"Compared with baseline run {drift.get('baseline', {}).get('run', '')}: {number(drift.get('n_cases'))} cases against {number(drift.get('n_baseline_cases'))}."
    embedding = drift.get("embedding")
    if isinstance(embedding, Mapping) and "error" in embedding:
        note += f" No embedding drift test: {embedding['error']}."
    elif isinstance(embedding, Mapping):
        test = embedding.get("test") or {}
        note += (
            f" Embedding drift (maximum mean discrepancy over {number(embedding.get('n_reference'))} and {number(embedding.get('n_current'))} "
            f"patients): MMD² {number(embedding.get('mmd2'))}, permutation p {number(embedding.get('p_value'))}, "
            f"{number(test.get('p_adjusted'))} after Holm's adjustment over the run's {number(test.get('family_size'))} tests: "
            f"{'drifted' if embedding.get('drifted') else 'no drift shown'}."
        )
    return note + _detection_drift_note(drift), findings


def _detection_drift_note(drift: Mapping[str, Any]) -> str:
    """A detection run's CPM change from its baseline in words (``detection_drift``); empty for other runs."""
    lesions = (drift.get("performance") or {}).get(LESIONS)
    rows = lesions.get("metrics") if isinstance(lesions, Mapping) else None
    cpm = next((m for m in rows or [] if isinstance(m, Mapping) and m.get("metric") == "cpm"), None)
    if cpm is None:
        return ""
    change = metric({"value": cpm.get("delta"), "ci_low": cpm.get("ci_low"), "ci_high": cpm.get("ci_high")})
    verdict = "a drop past the margin" if cpm.get("degraded") else "no degradation shown"
    return (
        f" Lesion detection: CPM {number(cpm.get('baseline'))} in the baseline run and {number(cpm.get('current'))} in this one, "
        f"a change of {change}: {verdict}. Each case's highest detection score, the detections per case and every detection's "
        "score were tested for drift with the image statistics, in the same family of tests."
    )


@dataclass
class EfficiencyTables:
    """The data-efficiency section: what was fitted (``note``), per label its curves, or why there are none."""

    note: str = ""
    error: str = ""
    tables: list[Table] = field(default_factory=list)
    targets: list[tuple[str, str]] = field(default_factory=list)  # (label, labelled cases to reach the target AUROC)


def _curve_metric(point: Mapping[str, Any] | None) -> str:
    if not isinstance(point, Mapping):
        return "—"
    return metric({"value": point.get("auroc"), "ci_low": point.get("ci_low"), "ci_high": point.get("ci_high")})


def _to_target(value: Any, target: Any) -> str:
    return "not reached at 100% of the labels" if value is None else f"{number(round(value))} labelled cases for AUROC {number(target)}"


def efficiency_tables(results: Mapping[str, Any] | None) -> EfficiencyTables | None:
    """The report's data-efficiency section as tables (``radtrust_engine.data_efficiency.efficiency_section``), None without one."""
    section = (results or {}).get("data_efficiency")
    if not isinstance(section, Mapping):
        return None
    if "error" in section:
        return EfficiencyTables(error=str(section["error"]))
    comparator = section.get("comparator")
    note = (
        f"Embeddings from the model's output {section.get('embedding_output')!r} ({number(section.get('dimensions'))} dimensions) of "
        f"{number(section.get('n_cases'))} cases from {number(section.get('n_patients'))} patients. A logistic-regression probe and a "
        f"k-nearest-neighbour probe were fitted on each share of the labelled patients, {number(section.get('repeats'))} times, "
        f"scored by {number(section.get('folds'))}-fold cross-validation with each patient's images in one fold."
    )
    if isinstance(comparator, Mapping):
        note += f" Comparator: run {comparator.get('run')} ({comparator.get('version')}), fitted on the same patients and folds."
    if section.get("comparator_problem"):
        note += f" No comparator: {section['comparator_problem']}."
    out = EfficiencyTables(note=note)
    for label, curves in (section.get("labels") or {}).items():
        if not isinstance(curves, Mapping) or "error" in curves:
            out.tables.append(Table(f"{label}: not computed ({(curves or {}).get('error', 'no curve')})", [], []))
            continue
        logistic, knn = curves.get("logistic") or {}, curves.get("knn") or {}
        others = logistic.get("comparator") or []
        differences = logistic.get("difference") or []
        head = ["Labelled share", "Labelled cases (mean per fit)", "AUROC, logistic probe", "AUROC, kNN probe"]
        if others:
            head += ["AUROC, comparator", "Difference"]
        rows = []
        for i, point in enumerate(logistic.get("curve") or []):
            knn_point = (knn.get("curve") or [None] * (i + 1))[i]
            row = [percent(point.get("fraction")), number(round(point.get("n_labelled") or 0)), _curve_metric(point), _curve_metric(knn_point)]
            if others:
                row += [_curve_metric(others[i]), _curve_metric(differences[i])]
            rows.append(row)
        out.tables.append(Table(f"{label}: probe AUROC by labelled cases ({percent(logistic.get('confidence'))} CIs across repeats)", head, rows))
        target = logistic.get("target_auroc")
        if target is not None:
            text = _to_target(logistic.get("labelled_to_target"), target)
            if others:
                text += f"; the comparator: {_to_target(logistic.get('comparator_labelled_to_target'), target)}"
            out.targets.append((label, text))
    return out


def chart_section(name: str) -> str:
    """Where a stored chart (``charts/<prefix>...svg``) goes on the page."""
    stem = name.removeprefix("charts/")
    return next((section for prefix, section in CHART_SECTIONS.items() if stem.startswith(prefix)), "other")


def compare_rows(first: Mapping[str, Any] | None, second: Mapping[str, Any] | None) -> list[list[str]]:
    """Overall metrics of two runs side by side, per label, with the difference of the estimates."""
    a, b = (first or {}).get("results") or {}, (second or {}).get("results") or {}
    rows = []
    for label in [*a, *(k for k in b if k not in a)]:
        ma, mb = (a.get(label) or {}).get("overall", {}).get("metrics") or {}, (b.get(label) or {}).get("overall", {}).get("metrics") or {}
        for m in OVERALL_METRICS:
            if m not in ma and m not in mb:
                continue
            va, vb = (ma.get(m) or {}).get("value"), (mb.get(m) or {}).get("value")
            diff = f"{vb - va:+.3f}" if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else "—"
            rows.append([label, title(m), metric(ma.get(m)), metric(mb.get(m)), diff])
    return rows
