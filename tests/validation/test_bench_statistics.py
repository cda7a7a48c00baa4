"""``manage.py bench statistics`` on quick sizes, its known truths and the reader's attack.

The targets (coverage 0.93-0.97 and so on) are for the full bench; here every figure must be
present, computed from its replicates and in its range, the closed-form truths must match
simulation, and the attack must recover cells from a table that does not protect them.
"""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from radtrust_demo.bench import statistics as bs
from radtrust_demo.bench.recovery import cells_from_payload, cells_from_report, recover_hidden_counts, true_cell_counts
from radtrust_demo.simulation import Group, clustered_cases, overall_auroc, separation_for
from radtrust_engine.federated import site_summary
from radtrust_engine.metrics import auroc
from radtrust_engine.stratification import stratified_metrics

pytestmark = pytest.mark.slow  # a benchmark at small size

RATES = (
    "ci_coverage_overall_auroc",
    "ci_coverage_subgroup_auroc_60_patients",
    "ci_coverage_gap",
    "gap_false_positive_rate",
    "run_false_alarm_rate",
    "federated_ci_coverage_clustered",
    "power_gap_0_08_n1000",
)
KEYS = (*RATES, "suppressed_cells_recovered", "federated_i2_mean_no_heterogeneity", "cusum_arl0_at_true_rate", "cusum_median_delay_or2")


def test_quick_command_prints_every_figure_with_its_monte_carlo_error_and_replicates():
    out, err = StringIO(), StringIO()
    call_command("bench", "statistics", "--json", "--quick", stdout=out, stderr=err)
    result = json.loads(out.getvalue())  # the whole of stdout is one JSON object
    assert "bench: coverage: 6 replicates" in err.getvalue()

    figures = result["figures"]
    assert set(figures) == set(KEYS)
    for key in KEYS:
        entry = figures[key]
        assert result[key] == entry["value"]
        assert {"value", "mc_se", "replicates", "target", "meets_target", "design"} <= set(entry)
    for key in RATES:
        entry = figures[key]
        assert 0.0 <= entry["value"] <= 1.0
        assert entry["value"] * entry["replicates"] == pytest.approx(round(entry["value"] * entry["replicates"]))  # a share of replicates
        assert entry["mc_se"] == pytest.approx(np.sqrt(entry["value"] * (1 - entry["value"]) / entry["replicates"]))
    assert figures["ci_coverage_overall_auroc"]["replicates"] == bs.QUICK.coverage
    assert figures["ci_coverage_gap"]["meets_target"] is (0.93 <= result["ci_coverage_gap"] <= 0.97)
    assert figures["power_gap_0_08_n1000"]["meets_target"] is None  # reported without a target
    assert figures["run_false_alarm_rate"]["replicates"] == bs.QUICK.follow_ups

    disclosure = figures["suppressed_cells_recovered"]
    assert disclosure["value"] == sum(disclosure["by_table"].values()) >= 0
    assert all(disclosure["by_table"][t] <= disclosure["suppressed_cells"][t] for t in disclosure["by_table"])
    assert disclosure["suppressed_cells"]["site_payload"] > 0  # the design has small cells to hide
    assert disclosure["attack_values_not_true"] == 0  # what the attack claims is the truth

    assert 0.0 <= result["federated_i2_mean_no_heterogeneity"] <= 1.0
    assert 0.0 < figures["federated_i2_mean_no_heterogeneity"]["expected_with_exact_standard_errors"] < 0.2
    called = figures["federated_i2_mean_no_heterogeneity"]["heterogeneity_called"]
    assert 0.0 <= called["value"] <= 1.0 and called["replicates"] == bs.QUICK.federated
    assert called["expected_with_exact_standard_errors"] == pytest.approx(0.10)  # four sites: Q >= 6.25 implies I^2 >= 0.5
    arl0, delay = figures["cusum_arl0_at_true_rate"], figures["cusum_median_delay_or2"]
    assert arl0["ratio_to_design"] == pytest.approx(arl0["value"] / arl0["design_arl0"])
    assert 1 <= delay["value"] < arl0["value"]  # a rise is detected sooner than a false alarm comes
    assert arl0["replicates"] == delay["replicates"] == bs.QUICK.streams

    table = bs.format_table(result)  # what the command prints without --json
    assert all(key in table for key in KEYS) and "quick run" in table


def test_closed_form_truths_match_a_large_simulation():
    groups = [Group("A", 6000, 0.3, separation_for(0.9)), Group("B", 6000, 0.2, separation_for(0.75))]
    cases = clustered_cases(np.random.default_rng(11), groups)
    assert groups[0].auroc == pytest.approx(0.9)
    in_a = cases.attributes["group"] == "A"
    assert auroc(cases.y[in_a], cases.scores[in_a]) == pytest.approx(0.9, abs=0.01)
    assert auroc(cases.y, cases.scores) == pytest.approx(overall_auroc(groups), abs=0.01)
    assert 1.0 < cases.y.size / cases.n_patients < 4.0  # 1 to 4 images a patient


def _disclosure_cases():
    return clustered_cases(np.random.default_rng(5), bs.DISCLOSURE_GROUPS, group_attribute="vendor", attributes=bs.DISCLOSURE_ATTRIBUTES)


def test_attack_recovers_a_cell_hidden_without_complementary_suppression():
    cases = _disclosure_cases()
    truth = true_cell_counts(cases.y, cases.scores, cases.attributes, bs.DISCLOSURE_INTERSECTIONS, 0.5)
    report = stratified_metrics(
        cases.y, cases.scores, cases.patient_ids(), cases.attributes, bs.DISCLOSURE_INTERSECTIONS, n_resamples=0, min_patients=1
    ).to_dict()
    hidden = next(s for s in report["subgroups"] if s["attributes"] == ["vendor"] and s["values"] == ["Vendor C"])
    hidden.update(suppressed=True, metrics=None, n_cases=None, n_positive=None)  # only the small cell withheld

    found = recover_hidden_counts(cells_from_report(report))
    key = (("vendor",), ("Vendor C",))
    assert {kind: found[(key, kind)] for kind in ("n", "positive", "negative", "tp", "fn", "tn", "fp")} == truth[key]

    payload = site_summary(
        {"finding": cases.scores}, {"finding": cases.y}, cases.patient_ids(), cases.attributes, n_resamples=0, min_patients=1
    ).to_dict()
    stratum = next(s for s in payload["strata"] if s["values"] == ["unknown"])
    stratum.clear()
    stratum.update(attributes=["sex"], values=["unknown"], suppressed=True, reason="too_few_patients")
    found = recover_hidden_counts(cells_from_payload(payload, "finding"))
    key = (("sex",), ("unknown",))
    assert found[(key, "n")] == truth[key]["n"] and found[(key, "tp")] == truth[key]["tp"]


def test_attack_claims_nothing_the_equations_leave_open():
    cases = _disclosure_cases()
    only_sex = {"sex": np.where(cases.attributes["sex"] == "unknown", "F", cases.attributes["sex"])}
    report = stratified_metrics(cases.y, cases.scores, cases.patient_ids(), only_sex, n_resamples=0, min_patients=1).to_dict()
    for subgroup in report["subgroups"]:  # both values withheld: only their sums are known
        subgroup.update(suppressed=True, metrics=None, n_cases=None, n_positive=None)
    assert recover_hidden_counts(cells_from_report(report)) == {}
