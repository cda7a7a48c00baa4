"""Disclosure control: no count of a suppressed cell can be recovered from what a report, a chart
or a federated payload publishes, by subtraction, by any linear combination or by the bounds a
reader knows; the attack that recovered every small cell of the old reports recovers none now.

No database: the engine is plain Python and NumPy.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from radtrust_engine.disclosure import (
    DisclosureSystem,
    partition_equations,
    published_disclosure_audit,
    suppression_reasons,
)
from radtrust_engine.federated import site_summary
from radtrust_engine.federated_check import payload_check
from radtrust_engine.generalisation import generalisation_report
from radtrust_engine.metrics import MetricEstimate
from radtrust_engine.stratification import SubgroupResult, stratified_metrics
from validation.charts import forest_chart
from validation.report_views import report_without_cases

MINIMUM = 10
THRESHOLD = 0.5
# Patients per (sex, age band): sex "X" and age band "A4" are small, and so is every cell they meet.
DESIGN = {
    ("F", "A1"): 100,
    ("F", "A2"): 100,
    ("F", "A3"): 96,
    ("F", "A4"): 4,
    ("M", "A1"): 100,
    ("M", "A2"): 95,
    ("M", "A3"): 92,
    ("M", "A4"): 3,
    ("X", "A1"): 3,
    ("X", "A2"): 2,
    ("X", "A3"): 2,
    ("X", "A4"): 2,
}


def _cohort(seed: int, prevalence: float = 0.3):
    """599 patients with 1-2 cases each; sex, age band, site (s4: 8 patients) and vendor (v3: 7)."""
    rng = np.random.default_rng(seed)
    sex, age = (np.array([key[i] for key, n in DESIGN.items() for _ in range(n)]) for i in (0, 1))
    n_patients = sex.size
    site = rng.choice(["s1", "s2", "s3"], n_patients)
    site[rng.choice(n_patients, 8, replace=False)] = "s4"
    vendor = rng.choice(["v1", "v2"], n_patients)
    vendor[np.flatnonzero(site != "s4")[rng.choice(n_patients - 8, 7, replace=False)]] = "v3"
    pid = np.repeat(np.arange(n_patients), rng.integers(1, 3, n_patients))
    y = (rng.random(n_patients) < prevalence)[pid].astype(int)
    s = 1.0 / (1.0 + np.exp(-(rng.normal(size=pid.size) + 2.0 * y - 1.0)))
    attributes = {"sex": sex[pid], "age_band": age[pid], "site": site[pid], "scanner_manufacturer": vendor[pid]}
    return y, s, pid, attributes


def _cells(attributes, intersections):
    """Each cell's key and case mask: overall, every attribute value, every intersection cell."""
    n = next(iter(attributes.values())).size
    out = [(((), ()), np.ones(n, dtype=bool))]
    for attrs in [(a,) for a in attributes] + [tuple(i) for i in intersections]:
        combined = np.array(["\x1f".join(row) for row in zip(*(attributes[a] for a in attrs))])
        out += [((attrs, tuple(v.split("\x1f"))), combined == v) for v in np.unique(combined)]
    return out


def _truth(y, s, mask) -> dict[str, int]:
    yy, called = y[mask] == 1, s[mask] >= THRESHOLD
    return {
        "n": int(mask.sum()),
        "positive": int(yy.sum()),
        "negative": int((~yy).sum()),
        "tp": int((yy & called).sum()),
        "fn": int((yy & ~called).sum()),
        "tn": int((~yy & ~called).sum()),
        "fp": int((~yy & called).sum()),
    }


def _published_before_the_fix(y, s, pid, attributes, intersections) -> list[SubgroupResult]:
    """What reports published before complementary suppression: every cell under the minimum
    hidden (here even its counts), every other cell with its counts and rates."""
    cells = []
    for (attrs, values), mask in _cells(attributes, intersections):
        t = _truth(y, s, mask)
        if attrs and np.unique(pid[mask]).size < MINIMUM:
            cells.append(SubgroupResult(attrs, values, None, None, None, True, None, "too_few_patients"))
            continue
        rates = {"sensitivity": t["tp"] / t["positive"] if t["positive"] else None, "specificity": t["tn"] / t["negative"] if t["negative"] else None}
        metrics = {k: MetricEstimate(v, None, None, 0) for k, v in rates.items()}
        cells.append(SubgroupResult(attrs, values, t["n"], int(np.unique(pid[mask]).size), t["positive"], False, metrics))
    return cells


def test_the_differencing_attack_recovered_every_small_cell_before_and_recovers_none_now():
    y, s, pid, attributes = _cohort(0)
    intersections = [("sex", "age_band")]
    truth = {key: _truth(y, s, mask) for key, mask in _cells(attributes, intersections)}

    before = _published_before_the_fix(y, s, pid, attributes, intersections)
    small = [c for c in before if c.suppressed]
    recovered = {}
    for r in published_disclosure_audit(before):
        recovered.setdefault(r.subgroup, {})[r.kind] = r.value
    assert len(small) == 10  # sex X, age A4, site s4, vendor v3 and six sex x age cells
    for cell in small:  # overall minus the shown groups: the whole confusion matrix of each
        assert recovered[cell.name] == truth[(cell.attributes, cell.values)], cell.name

    report = stratified_metrics(y, s, pid, attributes, intersections, threshold=THRESHOLD, n_resamples=0, min_patients=MINIMUM)
    now = [report.overall, *report.subgroups]
    assert {c.name for c in now if c.reason == "too_few_patients"} == {c.name for c in small}
    assert any(c.reason == "complementary" for c in now)
    assert all(c.n_cases is c.n_patients is c.n_positive is c.metrics is None for c in now if c.suppressed)
    assert [r for r in published_disclosure_audit(now) if not r.implied] == []
    # Each attribute has one small value, which the overall minus the others would give: one more
    # value is withheld, and no more.
    for attribute in attributes:
        assert [g.reason for g in report.subgroups if g.attributes == (attribute,)].count("complementary") == 1


@pytest.mark.parametrize(("seed", "prevalence"), [(1, 0.02), (2, 0.1), (3, 0.3), (4, 0.6)])
def test_no_count_of_a_suppressed_cell_is_pinned_by_sums_or_bounds(seed, prevalence):
    """Rare labels leave cells with no positives or no misses: a hidden sum of 0 would pin each."""
    y, s, pid, attributes = _cohort(seed, prevalence)
    report = stratified_metrics(
        y, s, pid, attributes, [("sex", "age_band"), ("site", "scanner_manufacturer")], threshold=THRESHOLD, n_resamples=0, min_patients=MINIMUM
    )
    found = published_disclosure_audit([report.overall, *report.subgroups])
    assert [r for r in found if not r.implied] == []
    # What is left is what a shown cell says of every cell inside it: none of a count it has none of.
    assert all(r.value == 0 for r in found)


def test_no_union_of_small_cells_under_the_minimum_is_determined():
    """Every set of suppressed small cells, tried exhaustively: its sum is not in the row space of
    what the report publishes unless it holds at least the minimum."""
    y, s, pid, attributes = _cohort(5)
    intersections = [("sex", "age_band")]
    keys = [key for key, _ in _cells(attributes, intersections)]
    patients = [pid[mask] for _, mask in _cells(attributes, intersections)]
    reasons = suppression_reasons(
        keys, [(), *((a,) for a in attributes), *intersections], {"n": patients}, {"n": np.array([p.size for p in patients])}, MINIMUM
    )
    system = DisclosureSystem.build(len(keys), partition_equations(keys, [(), *((a,) for a in attributes), *intersections]))
    known = np.array([r is None for r in reasons])
    small = [i for i, r in enumerate(reasons) if r == "too_few_patients"]
    rows = system.matrix
    for size in range(2, len(small) + 1):
        for chosen in itertools.combinations(small, size):
            union = np.unique(np.concatenate([patients[i] for i in chosen])).size
            if union >= MINIMUM:
                continue
            target = np.zeros(len(keys))
            target[list(chosen)] = 1.0
            # Determined exactly when some combination of the equations equals it on the hidden cells.
            coefficients = np.linalg.lstsq(rows[:, ~known].T, target[~known], rcond=None)[0]
            assert np.abs(rows[:, ~known].T @ coefficients - target[~known]).max() > 1e-6, [keys[i] for i in chosen]


def test_generalisation_obeys_the_same_minimum_and_rule():
    rng = np.random.default_rng(7)
    sizes = {"site-a": 200, "site-b": 150, "site-c": 6}
    site = np.concatenate([[name] * n for name, n in sizes.items()])
    pid = np.arange(site.size)
    y = (rng.random(site.size) < 0.4).astype(int)
    s = 1.0 / (1.0 + np.exp(-(rng.normal(size=site.size) + 2.0 * y - 1.0)))
    report = stratified_metrics(y, s, pid, {"site": site}, threshold=THRESHOLD, n_resamples=20, min_patients=MINIMUM)
    result = generalisation_report(report, y, s, pid, {"site": site}, n_resamples=20, seed=0, confidence=0.95)
    groups = {g["group"]: g for g in result["groupings"]["site"]["groups"]}
    small, withheld, shown = groups["site-c"], groups["site-b"], groups["site-a"]
    assert small["suppressed"] and small["reason"] == "too_few_patients"
    assert withheld["suppressed"] and withheld["reason"] == "complementary"  # pooled minus site-a and site-b would give site-c
    for g in (small, withheld):
        assert g["n_cases"] is g["n_patients"] is g["auroc"] is g["leave_one_out"] is None  # all cases but it: its counts
    assert shown["n_patients"] == 200 and shown["auroc"]["value"] is not None and shown["leave_one_out"]["n_patients"] == 156
    assert result["groupings"]["site"]["leave_one_out_spread"] is None  # one group shown: no spread


def test_a_federated_payload_protects_two_small_cells_whose_union_a_margin_gives():
    rng = np.random.default_rng(3)
    sex = np.array(["F"] * 200 + ["M"] * 180 + ["U1"] * 4 + ["U2"] * 3)
    pid = np.arange(sex.size)
    y = (rng.random(sex.size) < 0.5).astype(int)
    s = 1.0 / (1.0 + np.exp(-(rng.normal(size=sex.size) + 2.0 * y - 1.0)))
    payload = json.loads(json.dumps(site_summary({"effusion": s}, {"effusion": y}, pid, {"sex": sex}, n_resamples=0).to_dict()))
    assert payload_check(payload) == []
    strata = {tuple(x["values"]): x for x in payload["strata"]}
    assert strata[("U1",)]["suppressed"] and strata[("U2",)]["suppressed"]
    assert strata[("M",)] == {"attributes": ["sex"], "values": ["M"], "suppressed": True, "reason": "complementary"}
    # Overall minus F is U1 + U2 + M: 187 patients, and no smaller sum is published.
    keys = [(tuple(x["attributes"]), tuple(x["values"])) for x in payload["strata"]]
    system = DisclosureSystem.build(len(keys), partition_equations(keys, [(), ("sex",)]))
    known = np.array([not x["suppressed"] for x in payload["strata"]])
    null = system.null_basis(known)
    union = np.array([float(k[1] in {("U1",), ("U2",)}) for k in keys])
    assert np.abs(null @ union).max() > 1e-6


def _legacy_report() -> dict:
    """A report as an older engine stored it: its suppressed subgroup still carries counts."""
    estimate = {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9, "n_valid": 20}
    shown = {"grouping": "site", "attributes": ["site"], "suppressed": False, "metrics": {"auroc": estimate}}
    return {
        "min_patients": MINIMUM,
        "confidence": 0.95,
        "overall": {"grouping": "overall", "name": "overall", "attributes": [], "values": [], "suppressed": False, "metrics": {"auroc": estimate}},
        "subgroups": [
            {**shown, "name": "site=A", "values": ["A"], "n_cases": 240, "n_patients": 120, "n_positive": 60},
            {**shown, "name": "site=C", "values": ["C"], "n_cases": 12, "n_patients": 6, "n_positive": 3, "suppressed": True, "metrics": None},
        ],
    }


def test_a_chart_shows_below_the_minimum_and_never_a_hidden_count():
    chart = forest_chart("nodule", "auroc", _legacy_report())
    assert f"C (&lt;{MINIMUM})" in chart.svg and f"suppressed (n &lt; {MINIMUM})" in chart.svg and "A (n=120)" in chart.svg
    assert "n=6" not in chart.svg and "(6)" not in chart.svg


def test_stored_counts_of_a_suppressed_subgroup_are_read_and_served_without_them():
    legacy = _legacy_report()
    hidden = SubgroupResult.from_dict({**legacy["subgroups"][1], "name": "site=C"})
    assert hidden.n_cases is hidden.n_patients is hidden.n_positive is None and hidden.reason == "too_few_patients"
    assert hidden.to_dict()["n_patients"] is None
    served = report_without_cases(legacy)
    assert served["subgroups"][1]["n_patients"] is served["subgroups"][1]["n_cases"] is None
    assert served["subgroups"][0]["n_patients"] == 120


def test_the_server_refuses_a_payload_that_gives_two_small_cells_together():
    """An agent that only hid the small cells: the server finds their sum from the margins."""
    rng = np.random.default_rng(4)
    sex = np.array(["F"] * 60 + ["M"] * 50 + ["U1"] * 4 + ["U2"] * 3)
    pid = np.arange(sex.size)
    y = (rng.random(sex.size) < 0.5).astype(int)
    s = 1.0 / (1.0 + np.exp(-(rng.normal(size=sex.size) + 2.0 * y - 1.0)))
    payload = json.loads(json.dumps(site_summary({"effusion": s}, {"effusion": y}, pid, {"sex": sex}, n_resamples=0, min_patients=1).to_dict()))
    payload["min_patients"] = MINIMUM
    hidden = {"suppressed": True, "reason": "too_few_patients"}
    payload["strata"] = [
        {"attributes": x["attributes"], "values": x["values"], **hidden} if x["values"] in (["U1"], ["U2"]) else x for x in payload["strata"]
    ]
    errors = payload_check(payload, min_patients=MINIMUM)
    assert any("sex=U1 and sex=U2 are suppressed, but their cases together can be recovered" in e for e in errors), errors


def test_a_cell_with_one_positive_patient_publishes_no_sensitivity_and_nothing_is_pinned():
    """Sex "unknown" has 15 patients but one positive: shown, its sensitivity would tell whether
    that patient was detected, and its 0 false negatives would pin those of every cell inside it.
    It is suppressed like a federated label block with too few positive patients, and neither the
    engine's audit nor the bench's independent attack recovers any hidden count, implied or not."""
    from radtrust_demo.bench.recovery import cells_from_report, recover_hidden_counts

    rng = np.random.default_rng(11)
    sex = np.array(["F"] * 200 + ["M"] * 200 + ["unknown"] * 15)
    age = rng.choice(["A1", "A2", "A3"], sex.size)
    y = (rng.random(sex.size) < 0.3).astype(int)
    y[sex == "unknown"] = 0
    y[np.flatnonzero(sex == "unknown")[0]] = 1
    s = 1.0 / (1.0 + np.exp(-(rng.normal(size=sex.size) + 2.0 * y - 1.0)))
    s[(sex == "unknown") & (y == 1)] = 0.9  # detected: a published sensitivity of 1 would say so
    pid = np.arange(sex.size)
    report = stratified_metrics(
        y, s, pid, {"sex": sex, "age_band": age}, [("sex", "age_band")], threshold=THRESHOLD, n_resamples=0, min_patients=MINIMUM
    )

    unknown = report.subgroup(["sex"], ["unknown"])
    assert unknown.suppressed and unknown.reason == "too_few_positive_patients"
    assert unknown.metrics is None and unknown.n_positive is None
    assert all(g.suppressed for g in report.subgroups if "unknown" in g.values)
    # Overall minus the large groups would give it: one of them is withheld, the other stays shown.
    assert sorted(report.subgroup(["sex"], [v]).reason or "shown" for v in ("F", "M")) == ["complementary", "shown"]
    assert published_disclosure_audit([report.overall, *report.subgroups]) == []
    published = cells_from_report(report.to_dict())
    assert {key for key, _ in recover_hidden_counts(published)} & {c.key for c in published if c.suppressed} == set()
