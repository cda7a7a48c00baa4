"""Federated validation engine: the site payload, its server-side check, pooling and meta-analysis.

No database: the engine is plain Python and NumPy. Pooled figures are compared with scikit-learn
on the union of the sites' cases; the meta-analysis with a hand-computed example, a published one
and independent straightforward computations; the payload's privacy with hypothesis.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import optimize, stats
from sklearn.metrics import roc_auc_score

from radtrust_engine.calibration import calibration_report
from radtrust_engine.federated import site_summary
from radtrust_engine.federated_check import payload_check
from radtrust_engine.federated_payload import (
    SiteSummary,
    edge_index,
    n_score_bins,
    rle_decode,
    rle_encode,
    score_bin_edges,
)
from radtrust_engine.federated_pooling import PooledResult, pool_sites, site_meta_analysis
from radtrust_engine.meta_analysis import MetaAnalysis, MetaAnalysisRefused, expit, random_effects

N_BINS = n_score_bins()
PROPERTY = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
)


def _site(rng: np.random.Generator, n: int, prevalence: float, separation: float, *, prefix: str = "p", small_sex: float = 0.0):
    """One site's cases: two labels, sex / age band / scanner vendor, a few cases per patient."""
    patients = max(1, int(n * 0.7))
    pid = np.array([f"{prefix}#{i}" for i in rng.integers(0, patients, n)])
    sex = rng.choice(np.array(["F", "M", "unknown"], dtype=object), n, p=[(1 - small_sex) / 2] * 2 + [small_sex])
    age = rng.choice(["18-39", "40-64", "65+"], n, p=[0.3, 0.4, 0.3])
    vendor = rng.choice(["GE", "Siemens", "Philips"], n, p=[0.4, 0.35, 0.25])
    scores, labels = {}, {}
    for label, prev in (("effusion", prevalence), ("nodule", min(0.5, prevalence * 1.5))):
        y = (rng.random(n) < prev).astype(int)
        z = rng.normal(size=n) + separation * y - 1.5 + 0.3 * (vendor == "GE")
        scores[label] = 1.0 / (1.0 + np.exp(-z))
        labels[label] = y
    return scores, labels, pid, {"sex": sex, "age_band": age, "scanner_vendor": vendor}


def _summary(data, **kw) -> SiteSummary:
    scores, labels, pid, attrs = data
    kw.setdefault("n_resamples", 0)
    return site_summary(scores, labels, pid, attrs, [("sex", "age_band")], **kw)


def _wire(summary: SiteSummary) -> dict:
    return json.loads(json.dumps(summary.to_dict()))


# ---------------------------------------------------------------------------
# Score bins and encoding
# ---------------------------------------------------------------------------


def test_every_three_decimal_threshold_is_a_bin_edge():
    edges = score_bin_edges()
    assert N_BINS == 1182 and edges[0] == 0.0 and edges[-1] == 1.0 and np.all(np.diff(edges) > 0)
    for k in range(10, 991):
        assert edge_index(float(f"0.{k:03d}")) is not None
    assert edge_index(0.1234) is None and edge_index(1.0) is None


def test_run_length_encoding_round_trips_and_refuses_bad_runs():
    counts = np.zeros(N_BINS, dtype=int)
    counts[[0, 5, 6, 700, N_BINS - 1]] = [3, 1, 2, 9, 4]
    runs = rle_encode(counts)
    assert runs[:5] == [3, -4, 1, 2, -693] and len(runs) <= N_BINS
    assert np.array_equal(rle_decode(runs, N_BINS), counts)
    for bad in ([*runs, 1], [0, *runs], [1.5], [-N_BINS - 1]):
        with pytest.raises(ValueError):
            rle_decode(bad, N_BINS)


# ---------------------------------------------------------------------------
# Pooled figures against a central computation on the same data
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("prevalence", [0.05, 0.2, 0.45])
def test_pooled_auroc_matches_central_auroc_on_the_union(seed, prevalence):
    rng = np.random.default_rng(seed)
    sites = {
        name: _site(rng, n, prevalence * f, sep, prefix=name)
        for name, n, f, sep in (("north", 1500, 1.0, 2.0), ("south", 900, 0.6, 1.2), ("east", 600, 1.3, 3.0))
    }
    summaries = {}
    for name, data in sites.items():
        payload = _wire(_summary(data))
        assert payload_check(payload) == []
        summaries[name] = SiteSummary.from_dict(payload)
    pooled = pool_sites(summaries)

    for label in ("effusion", "nodule"):
        y = np.concatenate([d[1][label] for d in sites.values()])
        s = np.concatenate([d[0][label] for d in sites.values()])
        overall = pooled.stratum().labels[label]
        assert overall.complete and overall.sites == ("north", "south", "east")
        assert abs(overall.auroc.value - roc_auc_score(y, s)) <= 0.002
        assert overall.auroc.ci_low < overall.auroc.value < overall.auroc.ci_high
        called = s >= 0.5
        assert overall.confusion.to_dict() == {
            "tp": int((called & (y == 1)).sum()),
            "fp": int((called & (y == 0)).sum()),
            "tn": int((~called & (y == 0)).sum()),
            "fn": int((~called & (y == 1)).sum()),
        }
        at = overall.operating_point(0.3)
        assert (at.tp, at.fp) == (int(((s >= 0.3) & (y == 1)).sum()), int(((s >= 0.3) & (y == 0)).sum()))
        assert overall.prevalence.value == pytest.approx(y.mean(), abs=1e-12)
        central = calibration_report(y, s, n_resamples=0)
        assert list(overall.calibration.count) == [b.count for b in central.bins]
        assert overall.calibration.ece == pytest.approx(central.ece.value, abs=1e-3)

        # A stratum shown at every site pools the same way.
        sex = np.concatenate([d[3]["sex"] for d in sites.values()])
        female = pooled.stratum(("sex",), ("F",)).labels[label]
        if female.complete:
            assert abs(female.auroc.value - roc_auc_score(y[sex == "F"], s[sex == "F"])) <= 0.002

    assert PooledResult.from_dict(json.loads(json.dumps(pooled.to_dict()))).to_dict() == pooled.to_dict()


def test_pooling_lists_sites_that_suppressed_a_stratum_instead_of_pooling_silently():
    rng = np.random.default_rng(7)
    big = SiteSummary.from_dict(_wire(_summary(_site(rng, 1200, 0.3, 2.0, prefix="a", small_sex=0.15))))
    tiny = SiteSummary.from_dict(_wire(_summary(_site(rng, 400, 0.3, 2.0, prefix="b", small_sex=0.01))))
    pooled = pool_sites({"big": big, "tiny": tiny})
    unknown = pooled.stratum(("sex",), ("unknown",))
    assert not unknown.complete and "tiny" in unknown.missing_sites and "big" in unknown.sites
    assert not unknown.labels["effusion"].complete
    assert pooled.stratum().complete


def test_pooling_refuses_sites_with_different_designs():
    rng = np.random.default_rng(3)
    a = _summary(_site(rng, 300, 0.3, 2.0))
    scores, labels, pid, attrs = _site(rng, 300, 0.3, 2.0)
    b = site_summary(scores, labels, pid, {"sex": attrs["sex"]}, n_resamples=0)
    with pytest.raises(ValueError, match="one design"):
        pool_sites({"a": a, "b": b})


# ---------------------------------------------------------------------------
# Site summary: content and suppression
# ---------------------------------------------------------------------------


def test_site_summary_metrics_match_the_central_engine():
    rng = np.random.default_rng(11)
    scores, labels, pid, attrs = _site(rng, 800, 0.3, 2.0)
    summary = site_summary(scores, labels, pid, attrs, [("sex", "age_band")], n_resamples=200, seed=4)
    block = summary.stratum().labels["effusion"]
    y, s = labels["effusion"], scores["effusion"]
    auroc = block.metrics["auroc"]
    assert auroc.value == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auroc.ci_low < auroc.value < auroc.ci_high
    assert 0.005 < auroc.se < 0.05
    prevalence = block.metrics["prevalence"]
    assert prevalence.value == pytest.approx(y.mean()) and prevalence.ci_low < y.mean() < prevalence.ci_high
    _, patient = np.unique(pid, return_inverse=True)
    positives, images = np.bincount(patient, weights=y), np.bincount(patient)
    k = images.size  # patients as the unit: the cluster-robust SE of a ratio
    assert prevalence.se == pytest.approx(math.sqrt(k / (k - 1) * ((positives - y.mean() * images) ** 2).sum()) / y.size)
    assert summary.se_unit == "patient"
    assert block.metrics["sensitivity"].value == pytest.approx(((s >= 0.5) & (y == 1)).sum() / y.sum())
    assert payload_check(summary.to_dict()) == []


def test_small_strata_are_suppressed_with_no_counts_and_complemented():
    rng = np.random.default_rng(5)
    scores, labels, pid, attrs = _site(rng, 1000, 0.3, 2.0)
    attrs["sex"][:12] = "unknown"
    pid[:12] = ["u#1", "u#2", "u#3"] * 4  # 12 cases of 3 patients: the minimum counts patients
    attrs["sex"][12:] = np.where(attrs["sex"][12:] == "unknown", "F", attrs["sex"][12:])
    payload = _wire(site_summary(scores, labels, pid, attrs))
    assert payload_check(payload) == []
    by_name = {tuple(s["values"]): s for s in payload["strata"] if s["attributes"] == ["sex"]}
    assert by_name[("unknown",)] == {"attributes": ["sex"], "values": ["unknown"], "suppressed": True, "reason": "too_few_patients"}
    # Overall minus F minus M would give the unknown cell: one of them is withheld too.
    assert [s.get("reason") for s in by_name.values()].count("complementary") >= 1


def test_a_label_with_few_positive_patients_is_suppressed_in_that_stratum():
    rng = np.random.default_rng(9)
    scores, labels, pid, attrs = _site(rng, 1200, 0.3, 2.0)
    siemens = attrs["scanner_vendor"] == "Siemens"
    labels["nodule"][siemens] = 0
    labels["nodule"][np.flatnonzero(siemens)[:4]] = 1
    summary = site_summary(scores, labels, pid, attrs)
    stratum = summary.stratum(("scanner_vendor",), ("Siemens",))
    assert not stratum.suppressed and not stratum.labels["effusion"].suppressed
    assert stratum.labels["nodule"].to_dict() == {"suppressed": True, "reason": "too_few_positive_patients"}
    assert payload_check(summary.to_dict()) == []


def test_a_site_under_the_minimum_sends_nothing_but_suppressions():
    rng = np.random.default_rng(2)
    scores, labels, pid, attrs = _site(rng, 9, 0.3, 2.0)
    payload = _wire(site_summary(scores, labels, pid, attrs))
    assert payload_check(payload) == []
    assert all(s["suppressed"] and set(s) == {"attributes", "values", "suppressed", "reason"} for s in payload["strata"])


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({"patient_id": ["a"] * 40}, "per-case data"),
        ({"site_group": [f"g{i}" for i in range(40)]}, "distinct values"),
        ({"scanner": ["/data/scans/a.dcm"] * 40}, "category"),
        ({"scanner": ["SN1234567"] * 40}, "identifier"),
    ],
)
def test_site_summary_refuses_attributes_that_could_identify(attrs, message):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=message):
        site_summary({"effusion": rng.random(40)}, {"effusion": rng.integers(0, 2, 40)}, np.arange(40), attrs)


# ---------------------------------------------------------------------------
# The server's check
# ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _base_payload_text() -> str:
    rng = np.random.default_rng(21)
    data = _site(rng, 700, 0.3, 2.0, small_sex=0.03)
    return json.dumps(_summary(data, n_resamples=20).to_dict())


def _base() -> dict:
    return json.loads(_base_payload_text())


def _shown(payload: dict) -> dict:
    return next(s for s in payload["strata"] if not s["suppressed"] and s["attributes"] == ["sex"] and not s["labels"]["effusion"]["suppressed"])


def test_base_payload_is_accepted_and_round_trips():
    payload = _base()
    assert payload_check(payload) == []
    assert SiteSummary.from_dict(payload).to_dict() == payload
    assert len(json.dumps(payload)) < 256 * 1024


def _mutate(path_and_edit):
    payload = _base()
    path_and_edit(payload)
    return payload_check(payload)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda p: p.update(patient_ids=["p#1", "p#2"]), "patient_ids: key names per-case data"),
        (lambda p: _shown(p).update(case_scores=[0.1, 0.2]), "case_scores: key names per-case data"),
        (lambda p: _shown(p)["labels"]["effusion"].update(rows=[[0.1, 1]]), "effusion.rows: key names per-case data"),
        (lambda p: p.update(extra=1), "extra: unknown key"),
        (lambda p: _shown(p)["labels"]["effusion"]["histogram"].update(positive=[1] * (N_BINS + 1)), f"longer than the {N_BINS} score bins"),
        (lambda p: p.update(attributes=[*p["attributes"], "scores"]), "names per-case data"),
        (lambda p: _shown(p).update(values=["/srv/data/img_001.dcm"]), "looks like a path"),
        (lambda p: _shown(p).update(values=["C:\\scans"]), "looks like a path"),
        (lambda p: _shown(p).update(values=["MRN0012345"]), "looks like an identifier"),
        (lambda p: _shown(p).update(n_patients=4), "n_patients: 4 is under the minimum of 10"),
        (lambda p: _shown(p)["labels"]["effusion"]["patients"].update(positive=3), "patients.positive: 3 is under the minimum of 10"),
        (lambda p: p.update(min_patients=5), "min_patients: 5 is under the minimum of 10"),
        (lambda p: _shown(p)["labels"]["effusion"]["cases"].update(positive=-1), "cases.positive: -1 is under"),
        (lambda p: _shown(p)["labels"]["effusion"]["confusion"].update(tp=2.5), "must be an integer count"),
        (lambda p: _shown(p)["labels"]["effusion"]["histogram"].update(positive=[5, -(N_BINS - 1)]), "adding up to cases.positive"),
        (lambda p: _shown(p)["labels"]["effusion"]["metrics"]["auroc"].update(value=0.999), "auroc.value: disagrees with the histograms"),
        (lambda p: p.update(schema="other"), "schema: must be"),
    ],
)
def test_payload_check_refuses_with_the_place_and_the_reason(edit, expected):
    errors = _mutate(edit)
    assert any(expected in e for e in errors), errors


def test_payload_check_refuses_a_suppressed_cell_recoverable_by_subtraction():
    rng = np.random.default_rng(13)
    scores, labels, pid, attrs = _site(rng, 900, 0.35, 2.0)
    attrs["sex"][:6] = "unknown"
    pid[:6] = [f"u#{i}" for i in range(6)]
    attrs["sex"][6:] = np.where(attrs["sex"][6:] == "unknown", "F", attrs["sex"][6:])
    safe = _wire(site_summary(scores, labels, pid, attrs, n_resamples=0))
    assert payload_check(safe) == []
    # The same data with only the small cells hidden (no complement): overall - F - M reveals sex=unknown.
    open_payload = _wire(site_summary(scores, labels, pid, attrs, min_patients=1, n_resamples=0))
    open_payload["min_patients"] = 10
    for i, s in enumerate(open_payload["strata"]):
        if s["n_patients"] < 10:
            open_payload["strata"][i] = {"attributes": s["attributes"], "values": s["values"], "suppressed": True, "reason": "too_few_patients"}
            continue
        for name, block in s["labels"].items():
            if not block["suppressed"] and min(block["patients"].values()) < 10:
                s["labels"][name] = {"suppressed": True, "reason": "too_few_positive_patients"}
    errors = payload_check(open_payload)
    assert any("subtraction reveals them" in e and "sex=unknown" in e for e in errors), errors


# ---------------------------------------------------------------------------
# Property-based: no per-case data leaves, and none gets in
# ---------------------------------------------------------------------------

SCORE = st.one_of(st.floats(0.0, 1.0, allow_nan=False), st.sampled_from([0.0, 0.25, 0.5, 0.7, 1.0]))


@st.composite
def site_inputs(draw):
    n = draw(st.integers(1, 90))
    n_patients = draw(st.integers(1, n))
    token = draw(st.integers(0, 10**6))
    pid = np.array([f"id#{token}#{k}" for k in draw(st.lists(st.integers(0, n_patients - 1), min_size=n, max_size=n))])
    labels = draw(st.sampled_from([("effusion",), ("effusion", "nodule")]))
    scores = {k: np.array(draw(st.lists(SCORE, min_size=n, max_size=n))) for k in labels}
    y = {k: np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))) for k in labels}
    attrs = {
        "sex": np.array(draw(st.lists(st.sampled_from(["F", "M", None]), min_size=n, max_size=n)), dtype=object),
        "age_band": np.array(draw(st.lists(st.sampled_from(["<18", "18-39", "65+"]), min_size=n, max_size=n))),
    }
    inters = draw(st.sampled_from([(), (("sex", "age_band"),)]))
    kw = {
        "thresholds": draw(st.sampled_from([0.5, 0.3, 0.123456, 0.0, 1.0])),
        "min_patients": draw(st.sampled_from([1, 2, 3, 5, 10])),
        "n_resamples": draw(st.sampled_from([0, 5])),
    }
    return scores, y, pid, attrs, inters, kw


def _leaves(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _leaves(v)
    elif isinstance(obj, list):
        yield obj
        for v in obj:
            yield from _leaves(v)
    else:
        yield obj


@PROPERTY
@given(site_inputs())
def test_any_site_summary_passes_the_check_and_carries_no_case_data(inputs):
    scores, y, pid, attrs, inters, kw = inputs
    summary = site_summary(scores, y, pid, attrs, inters, **kw)
    payload = json.loads(json.dumps(summary.to_dict()))
    assert payload_check(payload, min_patients=kw["min_patients"]) == []
    ids = set(pid.tolist())
    sequences = [sorted(s.tolist()) for s in scores.values()] + [s.tolist() for s in scores.values()]
    for leaf in _leaves(payload):
        assert not (isinstance(leaf, str) and leaf in ids)
        if isinstance(leaf, list):
            assert len(leaf) <= N_BINS
            assert len(leaf) < 2 or leaf not in sequences


PER_CASE_KEYS = [
    "patient_id",
    "case_ids",
    "per_case",
    "scores",
    "file_path",
    "image_paths",
    "accession",
    "rows",
    "PatientID",
    "caseScores",
    "filename",
    "uid",
    "extra",
    "raw",
]
PER_CASE_VALUES = st.one_of(
    st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=40),
    st.lists(st.integers(100000, 10**9).map(lambda i: f"P{i}"), min_size=1, max_size=40),
    st.sampled_from(["/data/site/case_0001.dcm", "P0012345", "scan.nii.gz"]),
)


def _nodes(obj, path=()):
    yield path, obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        if isinstance(v, (dict, list)):
            yield from _nodes(v, (*path, k))


@PROPERTY
@given(st.data())
def test_payload_check_refuses_a_per_case_field_inserted_anywhere(data):
    payload = _base()
    nodes = list(_nodes(payload))
    path, node = nodes[data.draw(st.integers(0, len(nodes) - 1), label="node")]
    value = data.draw(PER_CASE_VALUES, label="value")
    if isinstance(node, dict):
        node[data.draw(st.sampled_from(PER_CASE_KEYS), label="key")] = value
    else:
        item = data.draw(st.one_of(st.just(value), st.builds(dict, case_id=st.just(value))), label="item")
        node.append(item)
    assert payload_check(payload), path


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


@PROPERTY
@given(st.data())
def test_payload_check_answers_with_messages_whatever_it_is_sent(data):
    payload = _base()
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        nodes = [(p, n) for p, n in _nodes(payload) if n]
        _, node = nodes[data.draw(st.integers(0, len(nodes) - 1), label="node")]
        key = data.draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))), label="key")
        node[key] = data.draw(JSON_VALUES, label="value")
    errors = payload_check(payload)
    assert isinstance(errors, list) and all(isinstance(e, str) for e in errors)


# ---------------------------------------------------------------------------
# Meta-analysis
# ---------------------------------------------------------------------------


def test_dersimonian_laird_matches_a_hand_computed_example():
    # y = (0, 1, 3), SE = (1, 1, 0.5): fixed-effect weights w = (1, 1, 4), sum 6, y_FE = 13/6.
    # Q = (13/6)^2 + (7/6)^2 + 4 (5/6)^2 = 318/36 = 53/6 on 2 df; C = 6 - 18/6 = 3.
    # tau^2 = (53/6 - 2) / 3 = 41/18; I^2 = (53/6 - 2) / (53/6) = 41/53.
    # Random-effects weights 1/(1 + 41/18) = 18/59 (twice) and 1/(1/4 + 41/18) = 36/91; sum 5400/5369.
    # mu = (18/59 + 3 * 36/91) / (5400/5369) = 8010/5400 = 89/60; SE(mu) = sqrt(5369/5400).
    # Relative weights 91/300, 91/300, 59/150. Chi-squared with 2 df: p = exp(-Q/2) = exp(-53/12).
    # Prediction interval: t with 1 df, whose 97.5 % quantile is tan(0.475 pi).
    result = random_effects([0.0, 1.0, 3.0], [1.0, 1.0, 0.5], method="DL")
    se = math.sqrt(5369 / 5400)
    assert result.q == pytest.approx(53 / 6)
    assert result.q_p == pytest.approx(math.exp(-53 / 12))
    assert result.tau2 == pytest.approx(41 / 18)
    assert result.i2 == pytest.approx(41 / 53)
    assert result.estimate == pytest.approx(89 / 60)
    assert result.se_analysis == pytest.approx(se)
    assert (result.ci_low, result.ci_high) == pytest.approx((89 / 60 - 1.959963984540054 * se, 89 / 60 + 1.959963984540054 * se))
    assert [s.weight for s in result.sites] == pytest.approx([91 / 300, 91 / 300, 59 / 150])
    half = math.tan(0.475 * math.pi) * math.sqrt(41 / 18 + 5369 / 5400)
    assert (result.prediction_low, result.prediction_high) == pytest.approx((89 / 60 - half, 89 / 60 + half))
    assert result.sites[2].ci_low == pytest.approx(3 - 1.959963984540054 * 0.5)


BCG = [
    (4, 119, 11, 128),
    (6, 300, 29, 274),
    (3, 228, 11, 209),
    (62, 13536, 248, 12619),
    (33, 5036, 47, 5761),
    (180, 1361, 372, 1079),
    (8, 2537, 10, 619),
    (505, 87886, 499, 87892),
    (29, 7470, 45, 7232),
    (17, 1699, 65, 1600),
    (186, 50448, 141, 27197),
    (5, 2493, 3, 2338),
    (27, 16886, 29, 17825),
]


@pytest.mark.parametrize(
    "method, tau2, estimate, ci",
    [
        ("DL", 0.3088, -0.7141, (-1.0644, -0.3638)),
        ("REML", 0.3132, -0.7145, (-1.0669, -0.3622)),
    ],
)
def test_random_effects_reproduces_the_published_bcg_vaccine_example(method, tau2, estimate, ci):
    # The 13 BCG vaccine trials (Colditz et al. 1994; metafor's dat.bcg), log risk ratios:
    # metafor's rma() reports Q(12) = 152.2330, I^2 = 92.12 % (DL), and these tau^2 and estimates.
    y = [math.log(a / (a + b) / (c / (c + d))) for a, b, c, d in BCG]
    se = [math.sqrt(1 / a - 1 / (a + b) + 1 / c - 1 / (c + d)) for a, b, c, d in BCG]
    result = random_effects(y, se, method=method)
    assert result.q == pytest.approx(152.2330, abs=5e-5)
    assert result.tau2 == pytest.approx(tau2, abs=5e-5)
    assert result.estimate == pytest.approx(estimate, abs=5e-5)
    assert (result.ci_low, result.ci_high) == pytest.approx(ci, abs=5e-5)
    if method == "DL":
        assert result.i2 == pytest.approx(0.9212, abs=5e-5)


def _plain_dl(y, se):
    """DerSimonian-Laird written out term by term, as in a textbook."""
    w = [1 / s**2 for s in se]
    y_fe = sum(wi * yi for wi, yi in zip(w, y)) / sum(w)
    q = sum(wi * (yi - y_fe) ** 2 for wi, yi in zip(w, y))
    tau2 = max(0.0, (q - (len(y) - 1)) / (sum(w) - sum(wi**2 for wi in w) / sum(w)))
    w_re = [1 / (s**2 + tau2) for s in se]
    return sum(wi * yi for wi, yi in zip(w_re, y)) / sum(w_re), (1 / sum(w_re)) ** 0.5, tau2, q


@pytest.mark.parametrize("seed", range(5))
def test_random_effects_agrees_with_independent_computations(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 9))
    se = rng.uniform(0.05, 0.4, k)
    y = rng.normal(1.0, 0.3, k) + rng.normal(0, se)
    mu, mu_se, tau2, q = _plain_dl(y, se)
    dl = random_effects(y, se)
    assert (dl.estimate, dl.se_analysis, dl.tau2, dl.q) == pytest.approx((mu, mu_se, tau2, q), rel=1e-10, abs=1e-12)
    assert dl.q_p == pytest.approx(stats.chi2.sf(q, k - 1))

    # REML: maximise the restricted log-likelihood directly.
    def neg_restricted_loglik(t2):
        w = 1 / (se**2 + t2)
        m = (w * y).sum() / w.sum()
        return 0.5 * (np.log(se**2 + t2).sum() + math.log(w.sum()) + (w * (y - m) ** 2).sum())

    best = optimize.minimize_scalar(neg_restricted_loglik, bounds=(0, 10), method="bounded", options={"xatol": 1e-12})
    t2 = best.x if neg_restricted_loglik(best.x) < neg_restricted_loglik(0.0) else 0.0
    assert random_effects(y, se, method="REML").tau2 == pytest.approx(t2, abs=1e-6)


def test_meta_analysis_refuses_one_site_with_a_reason():
    with pytest.raises(MetaAnalysisRefused, match="at least 2 sites"):
        random_effects([0.8], [0.05])
    with pytest.raises(MetaAnalysisRefused):
        random_effects([], [])
    with pytest.raises(ValueError, match="positive"):
        random_effects([0.8, 0.9], [0.05, 0.0])


def test_two_sites_give_no_prediction_interval_and_say_why():
    result = random_effects([0.2, 0.6], [0.1, 0.1])
    assert result.prediction_low is None and result.prediction_high is None
    assert "at least 3 sites" in result.prediction_note
    assert result.estimate == pytest.approx(0.4)


def test_site_meta_analysis_on_the_logit_scale_and_its_refusal():
    rng = np.random.default_rng(17)
    summaries = {
        name: SiteSummary.from_dict(_wire(_summary(_site(rng, n, 0.3, sep, prefix=name))))
        for name, n, sep in (("north", 900, 2.5), ("south", 700, 1.5), ("east", 500, 2.0))
    }
    result = site_meta_analysis(summaries, label="effusion", metric="auroc", method="REML")
    assert result.k == 3 and result.scale == "logit" and not result.refused
    assert result.estimate == pytest.approx(expit(result.estimate_analysis))
    assert min(s.estimate for s in result.sites) < result.estimate < max(s.estimate for s in result.sites)
    assert result.prediction_low < result.ci_low < result.estimate < result.ci_high < result.prediction_high
    for site in result.sites:
        auc = summaries[site.site].stratum().labels["effusion"].metrics["auroc"].value
        assert site.estimate == pytest.approx(auc, abs=1e-9)
    assert sum(s.weight for s in result.sites) == pytest.approx(1.0)
    assert MetaAnalysis.from_dict(json.loads(json.dumps(result.to_dict()))).to_dict() == result.to_dict()

    sens = site_meta_analysis(summaries, label="effusion", metric="sensitivity")
    for site in sens.sites:
        c = summaries[site.site].stratum().labels["effusion"].confusion
        assert site.estimate == pytest.approx(c.tp / (c.tp + c.fn))

    alone = site_meta_analysis({"north": summaries["north"]}, label="effusion", metric="auroc")
    assert alone.refused and "at least 2 sites" in alone.refused_reason
    assert alone.estimate is None and [s.site for s in alone.sites] == ["north"]
