"""``manage.py bench statistics``: the engine's statistics held against data from known processes.

Every figure calls the shipped functions as a run, a site agent or the feedback service calls
them (``stratified_metrics``, ``baseline_comparison``, ``site_summary`` with ``pool_sites`` and
``site_meta_analysis``, ``design_cusum`` with ``cusum_update``), on data from
``radtrust_demo.simulation`` whose truth is known in closed form. Each replicate draws new
patients from ``numpy.random.default_rng([figure seed, replicate])``; the engine's own bootstrap
seed is the replicate number. A rate is reported with its Monte Carlo standard error
``sqrt(p (1 - p) / replicates)``: with 850 replicates a coverage near 0.95 is known to about
+-1.5 points (1.96 standard errors).

The figures (patients are the unit throughout; each has 1 to 4 images sharing a patient effect):

- ``ci_coverage_overall_auroc``, ``ci_coverage_subgroup_auroc_60_patients``, ``ci_coverage_gap``:
  300 patients in three groups (60, 120, 120; true AUROC 0.85, 0.90, 0.80; prevalence 0.3);
  the share of replicates whose 95% interval holds the true overall AUROC, the true AUROC of the
  60-patient group, and the true largest gap (0.10).
- ``gap_false_positive_rate``: three groups of 100 patients with the same AUROC (0.85); the share
  whose largest-gap interval excludes 0 (``FairnessGap.significant``).
- ``power_gap_0_08_n1000``: two groups of 500 patients, AUROC 0.85 and 0.77; the share whose gap
  interval excludes 0, with the right group on top.
- ``run_false_alarm_rate``: a baseline run of 250 patients and a follow-up of 250 new patients from
  the same process (scores and image statistics); the share of follow-ups whose comparison
  (``baseline_comparison``) has any finding, each of which becomes an alert.
- ``suppressed_cells_recovered``: 400 patients with a rare sex, age band and vendor value and a
  sex x age band intersection; the suppressed cells of the run's stratified report and of the
  site's federated payload whose hidden counts the reader's attack of
  ``radtrust_demo.bench.recovery`` pins down, summed over replicates.
- ``federated_ci_coverage_clustered``, ``federated_i2_mean_no_heterogeneity``: four sites (150 to
  600 patients, prevalence 0.15 to 0.4, one true AUROC 0.85); the coverage of the pooled AUROC's
  interval (``pool_sites``) and of the random-effects interval (``site_meta_analysis``, in the
  details), and the mean I^2 against its floor with exact standard errors; the details add the
  share of these studies in which ``site_heterogeneity`` calls heterogeneity.
- ``cusum_arl0_at_true_rate``, ``cusum_median_delay_or2``: streams of feedback at the in-control
  rate 0.1 and at its odds-ratio-2 rise (0.182), fed to ``cusum_update`` in batches as the service
  does, against the design's ARL0 and median delay; the details also give the process with the
  rate estimated from 100 baseline reports (``compliance.monitoring.in_control_rate``).

Plain Python; the ``bench`` command parses arguments and prints.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import integrate, stats

from compliance.monitoring import CusumState, cusum_update, design_cusum, in_control_rate
from compliance.trust.policy import rule_params
from compliance.trust.rules import Q_TEST_ALPHA, heterogeneity_shown
from radtrust_demo.bench.recovery import cells_from_payload, cells_from_report, recover_hidden_counts, true_cell_counts
from radtrust_demo.simulation import ClusteredCases, Group, clustered_cases, disagreement_streams, odds_ratio_rate, overall_auroc, separation_for
from radtrust_engine.baseline import CaseTable, baseline_comparison, pseudonymise
from radtrust_engine.federated import site_summary
from radtrust_engine.federated_payload import SiteSummary
from radtrust_engine.federated_pooling import pool_sites, site_meta_analysis
from radtrust_engine.pipeline import SuiteConfig
from radtrust_engine.stratification import StratifiedReport, stratified_metrics

Log = Callable[[str], None]
LABEL = "finding"
PREVALENCE = 0.3
SUITE = SuiteConfig()  # the run's defaults: resamples, minimum patients, confidence, degradation margin


def _groups(*spec: tuple[str, int, float], prevalence: float = PREVALENCE) -> list[Group]:
    return [Group(name, n, prevalence, separation_for(auroc)) for name, n, auroc in spec]


COVERAGE_GROUPS = _groups(("A", 60, 0.85), ("B", 120, 0.90), ("C", 120, 0.80))
NULL_GAP_GROUPS = _groups(("A", 100, 0.85), ("B", 100, 0.85), ("C", 100, 0.85))
POWER_GROUPS = _groups(("A", 500, 0.85), ("B", 500, 0.77))
FOLLOW_UP_GROUPS = _groups(("all", 250, 0.85))
DISCLOSURE_GROUPS = _groups(("Vendor A", 240, 0.85), ("Vendor B", 148, 0.80), ("Vendor C", 12, 0.90))
DISCLOSURE_ATTRIBUTES = {"sex": {"F": 0.49, "M": 0.49, "unknown": 0.02}, "age_band": {"18-39": 0.25, "40-64": 0.4, "65+": 0.33, "<18": 0.02}}
DISCLOSURE_INTERSECTIONS = [("sex", "age_band")]
SITES = {"site-a": (150, 0.15), "site-b": (250, 0.25), "site-c": (400, 0.3), "site-d": (600, 0.4)}
SITE_AUROC = 0.85
CUSUM_P0 = 0.1
CUSUM_BATCH = 500  # feedbacks per update; the state after a stream is the same whatever the batch size

COVERAGE = (0.93, 0.97)


def _coverage_target(figure: Mapping[str, Any]) -> bool:
    return COVERAGE[0] <= figure["value"] <= COVERAGE[1]


# Each figure's target as people read it and as it is checked; None: reported without a target.
TARGETS: dict[str, tuple[str, Callable[[Mapping[str, Any]], bool]] | None] = {
    "ci_coverage_overall_auroc": ("0.93-0.97", _coverage_target),
    "ci_coverage_subgroup_auroc_60_patients": ("0.93-0.97", _coverage_target),
    "ci_coverage_gap": ("0.93-0.97", _coverage_target),
    "gap_false_positive_rate": ("<= 0.05", lambda f: f["value"] <= 0.05),
    "run_false_alarm_rate": ("<= 0.05", lambda f: f["value"] <= 0.05),
    "suppressed_cells_recovered": ("0", lambda f: f["value"] == 0),
    "federated_ci_coverage_clustered": ("0.93-0.97", _coverage_target),
    "federated_i2_mean_no_heterogeneity": ("<= 0.1", lambda f: f["value"] <= 0.1),
    "cusum_arl0_at_true_rate": ("within 20% of the design's ARL0", lambda f: abs(f["ratio_to_design"] - 1) <= 0.2),
    "cusum_median_delay_or2": ("within 25% of the design's median delay", lambda f: abs(f["ratio_to_design"] - 1) <= 0.25),
    "power_gap_0_08_n1000": None,
}


@dataclass(frozen=True)
class Sizes:
    """Replicates per figure; ``QUICK`` is a smoke run for the tests, too small for the targets."""

    coverage: int = 850
    null_gap: int = 850
    power: int = 300
    follow_ups: int = 850
    disclosure: int = 40
    federated: int = 850
    streams: int = 1000
    phase_one_streams: int = 1000  # each estimated rate needs its own design (about a second each)
    n_resamples: int = SUITE.n_resamples
    site_resamples: int = 200  # pooling and meta-analysis use the sites' standard errors, not their bootstrap


QUICK = Sizes(
    coverage=6, null_gap=6, power=3, follow_ups=3, disclosure=1, federated=3, streams=10, phase_one_streams=2, n_resamples=100, site_resamples=50
)


def _rng(figure: int, replicate: int) -> np.random.Generator:
    return np.random.default_rng([figure, replicate])


def rate_figure(hits: int, replicates: int) -> dict[str, Any]:
    """A share with its Monte Carlo standard error."""
    p = hits / replicates
    return {"value": p, "mc_se": math.sqrt(p * (1 - p) / replicates), "replicates": replicates}


def mean_figure(values: Sequence[float]) -> dict[str, Any]:
    x = np.asarray(values, dtype=np.float64)
    return {"value": float(x.mean()), "mc_se": float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else None, "replicates": int(x.size)}


def _covers(low: float | None, high: float | None, truth: float) -> bool:
    return low is not None and high is not None and low <= truth <= high


def _stratified(cases: ClusteredCases, replicate: int, sizes: Sizes, **kwargs: Any) -> StratifiedReport:
    """The run's stratified metrics of simulated cases, with the run's defaults."""
    return stratified_metrics(
        cases.y,
        cases.scores,
        cases.patient_ids(),
        cases.attributes,
        n_resamples=sizes.n_resamples,
        seed=replicate,
        min_patients=SUITE.min_patients,
        confidence=SUITE.confidence,
        **kwargs,
    )


# ---------------------------------------------------------------------------
# Interval coverage, gaps and power
# ---------------------------------------------------------------------------


def bench_coverage(sizes: Sizes, log: Log) -> dict[str, dict[str, Any]]:
    """Coverage of the overall AUROC, the 60-patient group's AUROC and the largest gap."""
    truth_overall = overall_auroc(COVERAGE_GROUPS)
    small = COVERAGE_GROUPS[0]
    truth_gap = max(g.auroc for g in COVERAGE_GROUPS) - min(g.auroc for g in COVERAGE_GROUPS)
    hits = {"overall": 0, "subgroup": 0, "gap": 0}
    withheld = 0  # replicates whose small group fell under a disclosure minimum: no interval to judge
    for r in range(sizes.coverage):
        report = _stratified(clustered_cases(_rng(1, r), COVERAGE_GROUPS), r, sizes)
        overall = report.overall.metrics["auroc"]
        subgroup = report.subgroup(("group",), (small.name,))
        gap = report.gap("auroc_gap", ("group",))
        hits["overall"] += _covers(overall.ci_low, overall.ci_high, truth_overall)
        if subgroup.suppressed:
            withheld += 1
        else:
            hits["subgroup"] += _covers(subgroup.metrics["auroc"].ci_low, subgroup.metrics["auroc"].ci_high, small.auroc)
        hits["gap"] += _covers(gap.ci_low, gap.ci_high, truth_gap)
    log(f"coverage: {sizes.coverage} replicates")
    design = f"300 patients in groups of 60/120/120 (true AUROC {', '.join(f'{g.auroc:.2f}' for g in COVERAGE_GROUPS)}), prevalence {PREVALENCE}"
    return {
        "ci_coverage_overall_auroc": {**rate_figure(hits["overall"], sizes.coverage), "truth": truth_overall, "design": design},
        "ci_coverage_subgroup_auroc_60_patients": {
            **rate_figure(hits["subgroup"], sizes.coverage - withheld),
            "truth": small.auroc,
            "withheld": withheld,
            "design": design + "; among replicates where the group is published",
        },
        "ci_coverage_gap": {**rate_figure(hits["gap"], sizes.coverage), "truth": truth_gap, "design": design + "; the largest AUROC gap"},
    }


def bench_null_gap(sizes: Sizes, log: Log) -> dict[str, dict[str, Any]]:
    """How often the largest-gap interval excludes 0 when the three groups are the same."""
    hits = 0
    for r in range(sizes.null_gap):
        gap = _stratified(clustered_cases(_rng(2, r), NULL_GAP_GROUPS), r, sizes).gap("auroc_gap", ("group",))
        hits += gap.significant
    log(f"gap under the null: {sizes.null_gap} replicates")
    return {"gap_false_positive_rate": {**rate_figure(hits, sizes.null_gap), "design": "3 groups of 100 patients, every true AUROC 0.85"}}


def bench_power(sizes: Sizes, log: Log) -> dict[str, dict[str, Any]]:
    """How often a true AUROC gap of 0.08 between two groups of 500 patients is found, the right way round."""
    high = POWER_GROUPS[0].name
    hits = 0
    mdd = []
    for r in range(sizes.power):
        gap = _stratified(clustered_cases(_rng(3, r), POWER_GROUPS), r, sizes).gap("auroc_gap", ("group",))
        hits += gap.significant and gap.group_high == (high,)
        mdd.append(gap.mdd)
    log(f"power: {sizes.power} replicates")
    return {
        "power_gap_0_08_n1000": {
            **rate_figure(hits, sizes.power),
            "mean_minimum_detectable_gap": mean_figure([m for m in mdd if m is not None]) if any(m is not None for m in mdd) else None,
            "design": "2 groups of 500 patients, true AUROC 0.85 and 0.77; found: the interval excludes 0 with the better group on top",
        }
    }


# ---------------------------------------------------------------------------
# No-change follow-up runs
# ---------------------------------------------------------------------------


def case_table(cases: ClusteredCases, prefix: str) -> CaseTable:
    """Simulated cases as a run keeps them for later comparisons."""
    return CaseTable(
        patient_keys=pseudonymise(cases.patient_ids(prefix)),
        label_names=(LABEL,),
        labels=cases.y[:, None],
        class_names=(LABEL,),
        scores=cases.scores[:, None],
        image_stats=dict(cases.image_stats),
    )


def bench_follow_ups(sizes: Sizes, log: Log) -> dict[str, dict[str, Any]]:
    """How often a follow-up from the unchanged process raises an alert against its baseline."""
    alarmed = 0
    kinds: dict[str, int] = {}
    for r in range(sizes.follow_ups):
        rng = _rng(4, r)
        baseline = case_table(clustered_cases(rng, FOLLOW_UP_GROUPS), "B")
        follow_up = case_table(clustered_cases(rng, FOLLOW_UP_GROUPS), "F")
        comparison = baseline_comparison(
            baseline,
            follow_up,
            thresholds={LABEL: 0.5},
            n_resamples=sizes.n_resamples,
            seed=r,
            confidence=SUITE.confidence,
            degradation_margin=SUITE.degradation_margin,
        )
        findings = comparison["findings"]
        alarmed += bool(findings)
        for kind in {f["kind"] for f in findings}:
            kinds[kind] = kinds.get(kind, 0) + 1
    log(f"follow-up runs: {sizes.follow_ups} replicates")
    return {
        "run_false_alarm_rate": {
            **rate_figure(alarmed, sizes.follow_ups),
            "runs_with_finding_by_kind": kinds,
            "design": "baseline and follow-up of 250 new patients each from one process (AUROC 0.85, 4 image statistics)",
        }
    }


# ---------------------------------------------------------------------------
# Suppressed cells against the reader's attack
# ---------------------------------------------------------------------------


def bench_disclosure(sizes: Sizes, log: Log) -> dict[str, dict[str, Any]]:
    """Suppressed cells of the run report and of the site payload whose hidden counts the attack recovers."""
    recovered = {"run_report": 0, "site_payload": 0}
    suppressed = {"run_report": 0, "site_payload": 0}
    by_kind: dict[str, int] = {}
    wrong = 0
    for r in range(sizes.disclosure):
        cases = clustered_cases(_rng(5, r), DISCLOSURE_GROUPS, group_attribute="vendor", attributes=DISCLOSURE_ATTRIBUTES)
        truth = true_cell_counts(cases.y, cases.scores, cases.attributes, DISCLOSURE_INTERSECTIONS, 0.5)
        report = _stratified(cases, r, sizes, intersections=DISCLOSURE_INTERSECTIONS)
        payload = site_summary(
            {LABEL: cases.scores},
            {LABEL: cases.y},
            cases.patient_ids(),
            cases.attributes,
            DISCLOSURE_INTERSECTIONS,
            thresholds=0.5,
            min_patients=SUITE.min_patients,
            n_resamples=sizes.n_resamples,
            seed=r,
        )
        for table, cells in (("run_report", cells_from_report(report.to_dict())), ("site_payload", cells_from_payload(payload.to_dict(), LABEL))):
            hidden_cells = {cell.key for cell in cells if cell.suppressed}
            found = recover_hidden_counts(cells)
            wrong += sum(value != truth[key][kind] for (key, kind), value in found.items())
            suppressed[table] += len(hidden_cells)
            recovered[table] += len({key for key, _ in found} & hidden_cells)
            for key, kind in found:
                if key in hidden_cells:
                    by_kind[kind] = by_kind.get(kind, 0) + 1
    log(f"disclosure: {sizes.disclosure} replicates")
    return {
        "suppressed_cells_recovered": {
            "value": sum(recovered.values()),
            "mc_se": None,
            "replicates": sizes.disclosure,
            "by_table": recovered,
            "suppressed_cells": suppressed,
            "recovered_counts_by_kind": by_kind,
            "attack_values_not_true": wrong,
            "design": "400 patients; vendor C 12 patients, sex 'unknown' and age band '<18' 2%; sex x age band",
        }
    }


# ---------------------------------------------------------------------------
# Federated pooling
# ---------------------------------------------------------------------------


def expected_i2_without_heterogeneity(k: int) -> float:
    """E[max(0, 1 - (k - 1)/Q)] for Q chi-squared on k - 1 degrees of freedom: the mean I^2 of k
    sites with no heterogeneity and exact standard errors."""
    df = k - 1
    value, _ = integrate.quad(lambda q: (1 - df / q) * stats.chi2.pdf(q, df), df, np.inf)
    return float(value)


def heterogeneity_called_without_heterogeneity(k: int, max_i2: float) -> float:
    """P(I^2 >= max_i2 and Cochran's Q p < Q_TEST_ALPHA) for Q chi-squared on k - 1 degrees of
    freedom: how often ``site_heterogeneity`` calls heterogeneity among k sites with none and exact
    standard errors (I^2 >= max_i2 is Q >= df / (1 - max_i2))."""
    df = k - 1
    return float(stats.chi2.sf(max(df / (1 - max_i2), stats.chi2.isf(Q_TEST_ALPHA, df)), df))


def bench_federated(sizes: Sizes, log: Log) -> dict[str, dict[str, Any]]:
    """Coverage of the pooled and meta-analysed AUROC and mean I^2, four sites of one process."""
    pooled_hits = meta_hits = called = 0
    max_i2 = rule_params("site_heterogeneity", None)["max_i2"]
    i2 = []
    for r in range(sizes.federated):
        summaries: dict[str, SiteSummary] = {}
        for s, (code, (n_patients, prevalence)) in enumerate(SITES.items()):
            cases = clustered_cases(
                _rng(6, r * len(SITES) + s), [Group(code, n_patients, prevalence, separation_for(SITE_AUROC))], group_attribute="site"
            )
            summaries[code] = site_summary(
                {LABEL: cases.scores},
                {LABEL: cases.y},
                cases.patient_ids(code),
                None,
                thresholds=0.5,
                min_patients=SUITE.min_patients,
                n_resamples=sizes.site_resamples,
                seed=r,
            )
        pooled = pool_sites(summaries).stratum().labels[LABEL].auroc
        meta = site_meta_analysis(summaries, label=LABEL, metric="auroc")
        pooled_hits += _covers(pooled.ci_low, pooled.ci_high, SITE_AUROC)
        meta_hits += _covers(meta.ci_low, meta.ci_high, SITE_AUROC)
        i2.append(meta.i2)
        called += heterogeneity_shown(meta.i2, meta.q_p, max_i2)
    log(f"federated: {sizes.federated} replicates")
    design = f"{len(SITES)} sites of {', '.join(str(n) for n, _ in SITES.values())} patients, prevalence 0.15-0.4, one true AUROC {SITE_AUROC}"
    return {
        "federated_ci_coverage_clustered": {
            **rate_figure(pooled_hits, sizes.federated),
            "meta_analysis_coverage": rate_figure(meta_hits, sizes.federated),
            "design": design + "; pooled AUROC (pool_sites); the random-effects interval (DL) in meta_analysis_coverage",
        },
        "federated_i2_mean_no_heterogeneity": {
            **mean_figure(i2),
            "expected_with_exact_standard_errors": expected_i2_without_heterogeneity(len(SITES)),
            "heterogeneity_called": {
                **rate_figure(called, sizes.federated),
                "expected_with_exact_standard_errors": heterogeneity_called_without_heterogeneity(len(SITES), max_i2),
                "rule": f"site_heterogeneity: I^2 >= {max_i2:g} and Cochran's Q p < {Q_TEST_ALPHA:g}",
            },
            "design": design,
        },
    }


# ---------------------------------------------------------------------------
# CUSUM on disagreement streams
# ---------------------------------------------------------------------------


def run_length(rng: np.random.Generator, rate: float, design: Any, *, limit: int = 200_000) -> int:
    """Feedbacks until the first alarm of a fresh test, fed in batches of ``CUSUM_BATCH``; ``limit``
    if none (never reached at the designs here)."""
    state = CusumState()
    while state.n < limit:
        state = cusum_update(state, disagreement_streams(rng, rate, 1, CUSUM_BATCH)[0], design)
        if state.alarmed:
            return state.alarm_at + 1
    return limit


def _median_figure(values: Sequence[int], rng: np.random.Generator) -> dict[str, Any]:
    x = np.asarray(values, dtype=np.float64)
    boot = np.median(x[rng.integers(0, x.size, (500, x.size))], axis=1)
    return {"value": float(np.median(x)), "mc_se": float(boot.std(ddof=1)), "replicates": int(x.size), "mean": float(x.mean())}


def bench_cusum(sizes: Sizes, log: Log) -> dict[str, dict[str, Any]]:
    """Run lengths at the in-control rate and at the odds-ratio-2 rise, with the design known and with
    the rate estimated from 100 baseline reports as the service does."""
    design = design_cusum(CUSUM_P0)
    p1 = odds_ratio_rate(CUSUM_P0, 2.0)
    in_control = [run_length(_rng(7, r), CUSUM_P0, design) for r in range(sizes.streams)]
    delays = [run_length(_rng(8, r), p1, design) for r in range(sizes.streams)]
    phase_one_in_control, phase_one_delays = [], []
    for r in range(sizes.phase_one_streams):
        rng = _rng(9, r)
        baseline = disagreement_streams(rng, CUSUM_P0, 1, 100)[0]
        estimated = design_cusum(in_control_rate(float(baseline.sum()), baseline.size))
        phase_one_in_control.append(run_length(rng, CUSUM_P0, estimated))
        phase_one_delays.append(run_length(rng, p1, estimated))
    log(f"cusum: {sizes.streams} streams per setting")
    arl0 = mean_figure(in_control)
    delay = _median_figure(delays, _rng(10, 0))
    return {
        "cusum_arl0_at_true_rate": {
            **arl0,
            "design_arl0": design.arl0,
            "ratio_to_design": arl0["value"] / design.arl0,
            "with_rate_from_100_baseline_reports": {**mean_figure(phase_one_in_control), "median": float(np.median(phase_one_in_control))},
            "design": f"p0 {CUSUM_P0}, target ARL0 {design.target_arl0}, h {design.h:.4f}; feedback in batches of {CUSUM_BATCH}",
        },
        "cusum_median_delay_or2": {
            **delay,
            "design_median_delay": design.median_delay,
            "design_arl1": design.arl1,
            "ratio_to_design": delay["value"] / design.median_delay,
            "with_rate_from_100_baseline_reports": _median_figure(phase_one_delays, _rng(10, 1)),
            "design": f"rate {p1:.4f} (odds ratio 2) from the first feedback",
        },
    }


# ---------------------------------------------------------------------------
# The whole bench
# ---------------------------------------------------------------------------


BENCHES = (bench_coverage, bench_null_gap, bench_power, bench_follow_ups, bench_disclosure, bench_federated, bench_cusum)


def run_statistics_bench(*, quick: bool = False, log: Log = print) -> dict[str, Any]:
    """Every figure (keys a script reads) with ``figures`` (each with its Monte Carlo error,
    replicate count, target and whether it is met) and ``details``."""
    sizes = QUICK if quick else Sizes()
    figures: dict[str, dict[str, Any]] = {}
    seconds = {}
    for bench in BENCHES:
        start = time.perf_counter()
        figures.update(bench(sizes, log))
        seconds[bench.__name__] = round(time.perf_counter() - start, 2)
    for name, figure in figures.items():
        target = TARGETS[name]
        figure.update(target="" if target is None else target[0], meets_target=None if target is None else target[1](figure))
    details = {
        "quick": quick,
        "sizes": asdict(sizes),
        "seconds": seconds,
        "machine": {
            "cpu_count": os.cpu_count(),
            "numpy": np.__version__,
            "python": platform.python_version(),
            "load_average_1min_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
    }
    return {**{name: figure["value"] for name, figure in figures.items()}, "figures": figures, "details": details}


def format_table(result: Mapping[str, Any]) -> str:
    """The figures as a small text table for people."""
    width = max(len(name) for name in result["figures"])
    lines = [f"{'figure':<{width}} {'value':>9} {'MC s.e.':>8} {'reps':>5}  target"]
    for name, entry in result["figures"].items():
        se = "" if entry["mc_se"] is None else f"{entry['mc_se']:.4f}"
        met = {True: "met", False: "NOT met", None: ""}[entry["meets_target"]]
        lines.append(f"{name:<{width}} {entry['value']:>9.4g} {se:>8} {entry['replicates']:>5}  {entry['target']} {met}".rstrip())
    if result["details"]["quick"]:
        lines.append("quick run: replicate counts for a smoke test, far too few for the targets")
    return "\n".join(lines)
