"""``manage.py bench federated`` on quick sizes, and its pieces.

Timings are never asserted (they depend on the machine); what is asserted is that each figure
is computed from what it says: the same cases on both sides, real payloads, a real agent job.
"""

from __future__ import annotations

import json
import statistics
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from sklearn.metrics import roc_auc_score

from radtrust_demo.bench import federated as bf
from radtrust_engine.federated_pooling import pool_sites

pytestmark = pytest.mark.slow  # benchmarks at small size

KEYS = ("pooled_vs_central_auroc_abs_diff", "payload_bytes_per_site", "agent_overhead")


@pytest.fixture
def bench_var(settings, tmp_path):
    """The command's cache (the demo dataset and CNN) in this test's folder."""
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR


def test_quick_command_prints_one_json_object_whose_figures_follow_from_their_details(bench_var):
    out, err = StringIO(), StringIO()
    call_command("bench", "federated", "--json", "--quick", stdout=out, stderr=err)
    result = json.loads(out.getvalue())  # the whole of stdout is one JSON object
    assert f"bench: agent: round {bf.QUICK.rounds}/{bf.QUICK.rounds}" in err.getvalue()

    figures, details = result["figures"], result["details"]
    assert set(figures) == set(KEYS)
    for key in KEYS:
        entry = figures[key]
        assert set(entry) == {"value", "reference", "ratio", "unit", "goal", "meets_goal"}
        assert result[key] == (entry["value"] if entry["ratio"] is None else entry["ratio"])
        assert entry["goal"] == f"<= {bf.GOALS[key]:g}"
        assert entry["meets_goal"] is (result[key] <= bf.GOALS[key])

    pooling = details["pooling"]
    assert result["pooled_vs_central_auroc_abs_diff"] == pytest.approx(abs(pooling["pooled_auroc"] - pooling["central_auroc"]))
    assert figures["pooled_vs_central_auroc_abs_diff"]["reference"] == pooling["central_auroc"]
    assert result["pooled_vs_central_auroc_abs_diff"] <= 0.002  # the histograms' bins are fine enough even on small sites
    assert [s["cases"] for s in pooling["sites"].values()] == list(bf.QUICK.site_cases)
    assert len({round(s["prevalence"], 2) for s in pooling["sites"].values()}) == 3

    assert details["payload_bytes"] == {**pooling["payload_bytes"], "agent": details["agent"]["payload_bytes"]}
    assert result["payload_bytes_per_site"] == max(details["payload_bytes"].values()) > 0

    agent = details["agent"]
    runs, references = agent["agent_seconds"], agent["reference_seconds"]
    assert len(runs) == len(references) - 1 == bf.QUICK.rounds == agent["reports_received"]  # an evaluation on either side of each agent run
    ratios = [a / ((before + after) / 2) for a, before, after in zip(runs, references, references[1:])]
    assert agent["round_ratios_to_mean_of_adjacent"] == pytest.approx(ratios)
    assert result["agent_overhead"] == pytest.approx(statistics.median(ratios))
    cpu, cpu_references = agent["agent_cpu_seconds"], agent["reference_cpu_seconds"]
    assert agent["cpu_ratio"] == pytest.approx(statistics.median(a / ((b + c) / 2) for a, b, c in zip(cpu, cpu_references, cpu_references[1:])))
    assert figures["agent_overhead"]["value"] == pytest.approx(statistics.median(agent["agent_seconds"]))
    assert figures["agent_overhead"]["reference"] == pytest.approx(statistics.median(agent["reference_seconds"]))
    assert agent["same_payload_as_in_process"] is True and agent["images"] == bf.QUICK.images
    for timings, outside in zip(agent["agent_timings"], agent["agent_seconds_outside_evaluation"], strict=True):
        assert timings["download"] > 0 and timings["report"] > 0  # every round downloaded the artifact and reported over HTTP
        assert outside == pytest.approx(timings["agent"] - timings["engine"]) and outside > 0
    assert details["machine"]["cpu_count"] >= 1 and details["quick"] is True


def test_the_pooled_auroc_is_compared_with_scikit_learn_on_the_union_of_the_same_cases():
    sites = {code: bf.site_cases(code, n) for code, n in zip(sorted(bf.SITE_PROFILES), (2000, 2500, 3000))}
    measured = bf.bench_pooling(bf.Sizes(site_cases=(2000, 2500, 3000), n_resamples=0), log=lambda _: None)

    union = roc_auc_score(np.concatenate([c.labels for c in sites.values()]), np.concatenate([c.scores for c in sites.values()]))
    pooled = pool_sites({code: bf.summarise(c, n_resamples=0) for code, c in sites.items()}).stratum().labels[bf.LABEL].auroc.value
    assert measured["central_auroc"] == pytest.approx(union, abs=1e-12)
    assert measured["pooled_auroc"] == pytest.approx(pooled, abs=1e-12)
    assert measured["strata_compared"] >= 10 and measured["worst_stratum"]["abs_diff"] <= 0.005
    # the sites really differ: prevalence and the spread of their scores
    prevalences = [c.labels.mean() for c in sites.values()]
    assert prevalences == sorted(prevalences) and prevalences[-1] > 2 * prevalences[0]
    assert np.std(sites["site-c"].scores) > np.std(sites["site-a"].scores)
    # a patient keeps their label and attributes over their images
    cases = sites["site-b"]
    for attribute in ("sex", "age_band", "scanner_manufacturer"):
        pairs = set(zip(cases.patient_id, cases.attributes[attribute]))
        assert len(pairs) == len(set(cases.patient_id))
    assert len(set(zip(cases.patient_id, cases.labels))) == len(set(cases.patient_id))
