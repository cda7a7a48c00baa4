"""The trust scoring rules, policy checks and assessment arithmetic on hand-made evidence (no database):
each rule with and without evidence, the CI-aware threshold, principle scores and their
insufficient-evidence status, policy refusals, diffs and the JSON form."""

from __future__ import annotations

import ast
import copy
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from compliance.trust import rules
from compliance.trust.assess import assess, assessment_diff, assessment_to_dict, evidence_strength
from compliance.trust.evidence import (
    DatasetEvidence,
    DeploymentEvidence,
    DossierEvidence,
    FederatedStudyEvidence,
    FeedbackEvidence,
    Link,
    RatingEvidence,
    RunEvidence,
    VersionEvidence,
)
from compliance.trust.policy import DEFAULT_POLICY, PRINCIPLES, RULES, PolicyError, rule_params, validate_policy
from radtrust_engine.report import RunReport

ROOT = Path(__file__).parents[2]
SHA = "a" * 64


# --- Evidence builders (the real report shape, small) ----------------------------------


def subgroup(attribute: str, value: str, n: int = 120, suppressed: bool = False) -> dict:
    return {
        "grouping": attribute,
        "name": f"{attribute}={value}",
        "attributes": [attribute],
        "values": [value],
        "n_cases": 2 * n,
        "n_patients": n,
        "n_positive": n // 3,
        "suppressed": suppressed,
        "metrics": None if suppressed else {},
    }


def gap(kind: str, attribute: str, value: float, low: float, high: float, groups=("M", "F"), component=None, mdd=None, mdd_patients=None) -> dict:
    return {
        "kind": kind,
        "attributes": [attribute],
        "component": component,
        "group_high": None if groups is None else [groups[0]],
        "group_low": None if groups is None else [groups[1]],
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "n_valid": 1000,
        "n_groups_compared": 2,
        "components": {},
        "grouping": attribute,
        "critical_value": None if mdd is None else 1.96,
        "mdd": mdd,
        "mdd_patients": mdd_patients,
    }


def label(gaps=(), subgroups=None, **sections) -> dict:
    groups = (
        [subgroup("sex", "F"), subgroup("sex", "M"), subgroup("age_band", "18-39"), subgroup("age_band", "65+")] if subgroups is None else subgroups
    )
    overall = {
        "grouping": "overall",
        "name": "overall",
        "attributes": [],
        "values": [],
        "n_cases": 800,
        "n_patients": 400,
        "n_positive": 133,
        "suppressed": False,
        "metrics": {},
    }
    return {
        "threshold": 0.5,
        "n_resamples": 1000,
        "seed": 0,
        "confidence": 0.95,
        "min_patients": 10,
        "overall": overall,
        "subgroups": groups,
        "gaps": list(gaps),
        **sections,
    }


def drift_section(error: str | None = None) -> dict:
    """The comparison with a baseline run: the reason there is none, or one that found nothing."""
    if error is not None:
        return {"baseline": {"run": 1}, "error": error}
    return {
        "baseline": {"run": 1},
        "n_baseline_cases": 800,
        "n_cases": 800,
        "n_shared_patients": 0,
        "degradation_margin": 0.05,
        "thresholds": {},
        "performance": {},
        "prevalence": {},
        "outputs": {},
        "inputs": {},
        "histograms": {},
        "findings": [],
    }


def report(labels: dict, attributes=("sex", "age_band"), not_collected=(), drift=None, header_filled=0) -> dict:
    result = {
        "engine_version": "1",
        "task": "binary",
        "config": {"attributes": list(attributes), "confidence": 0.95},
        "preprocessing": {},
        "activation": "sigmoid",
        "model": {},
        "dataset": {
            "n_images": 800,
            "n_evaluated": 800,
            "n_patients": 400,
            "label_names": list(labels),
            "prevalence": {},
            "attributes_not_collected": list(not_collected),
            "intersections_not_evaluated": [],
            "header_fill": {"filled": {"scanner_manufacturer": header_filled}, "unreadable": []},
        },
        "skipped": [],
        "inference": {},
        "results": labels,
    }
    if drift is not None:
        result["drift"] = drift
    return result


def run(run_id: int, rep: dict, roles=("internal_test",), institution="north", dataset_id=1, sha=SHA) -> RunEvidence:
    return RunEvidence(
        id=run_id,
        dataset_id=dataset_id,
        dataset_name=f"Set {dataset_id}",
        roles=roles,
        institution=institution,
        finished_at=f"2026-01-{run_id:02d}T00:00:00",
        artifact_sha256=sha,
        report=RunReport.from_dict(rep),
    )


def dataset(
    dataset_id=1,
    roles=("internal_test",),
    demographics=None,
    scanners=({"manufacturer": "A", "model": "x", "count": 5},),
    protocols=None,
    completeness=1.0,
    missing=(),
) -> DatasetEvidence:
    return DatasetEvidence(
        id=dataset_id,
        name=f"Set {dataset_id}",
        roles=roles,
        institution="north",
        completeness=completeness,
        missing_items=missing,
        demographics={"sex": {"F": 5, "M": 5}, "age_band": {"65+": 3}} if demographics is None else demographics,
        scanners=scanners,
        protocols={"PA": 10} if protocols is None else protocols,
    )


def deployment(dep_id=1, status="active", local_run=1, before=True, overdue=False, recent=2) -> DeploymentEvidence:
    return DeploymentEvidence(
        id=dep_id,
        institution=f"site{dep_id}",
        status=status,
        since="2026-02-01",
        local_run_id=local_run,
        local_run_before_go_live=before,
        revalidation_overdue=overdue,
        recent_feedback=recent,
    )


def rating(n: int, mean: float, sd: float = 1.0) -> RatingEvidence:
    return RatingEvidence(n=n, mean=mean, mean_sq=sd * sd * (n - 1) / n + mean * mean)


MODEL = {
    "intended_purpose": "Flag nodules",
    "intended_users": "Radiologists",
    "instructions_for_use": "Read the IFU",
    "known_limitations": "No children",
    "explainability_needs": "Saliency on request",
    "body_region": "chest",
    "modality": "CR",
    "output_schema": {"class_names": ["nodule"], "thresholds": {"nodule": 0.5}},
}


def version(**changes) -> VersionEvidence:
    base = VersionEvidence(
        version_id=7,
        label="ChestFM 1.1.0",
        artifact_sha256=SHA,
        artifact_format="onnx",
        model=dict(MODEL),
        lineage=({"version_id": 7, "label": "ChestFM 1.1.0", "training_provenance": True},),
        audit_chain_ok=True,
        audit_events_checked=50,
        audit_broken_reason="",
        datasets=(dataset(),),
        runs=(run(1, report({"nodule": label()})),),
        deployments=(),
        feedback=FeedbackEvidence(),
        baseline_run_id=None,
        today="2026-03-01",
    )
    return replace(base, **changes)


EMPTY = VersionEvidence(
    version_id=1,
    label="Bare 0.1",
    artifact_sha256="",
    artifact_format="onnx",
    model={},
    lineage=(),
    audit_chain_ok=True,
    audit_events_checked=0,
    audit_broken_reason="",
    datasets=(),
    runs=(),
    deployments=(),
    feedback=FeedbackEvidence(),
    baseline_run_id=None,
    today="2026-03-01",
)


def apply(rule: str, evidence: VersionEvidence, **params) -> rules.Outcome:
    return RULES[rule].function(evidence, {**rule_params(rule, None), **params})


# --- The CI-aware threshold ------------------------------------------------------------


def test_a_gap_whose_ci_spans_the_threshold_is_uncertain_not_a_pass():
    assert rules.threshold_verdict(0.04, 0.01, 0.09, 0.05) == (0.5, "uncertain")
    assert rules.threshold_verdict(0.02, 0.0, 0.04, 0.05) == (1.0, "met")
    failed, status = rules.threshold_verdict(0.08, 0.06, 0.10, 0.05)
    worse, _ = rules.threshold_verdict(0.20, 0.15, 0.25, 0.05)
    assert status == "not_met" and 0 < worse < failed < 0.5
    assert rules.threshold_verdict(0.06, None, None, 0.05)[1] == "not_met"  # no CI: the point decides


def test_auroc_gap_uncertain_case_through_the_rule():
    evidence = version(runs=(run(3, report({"nodule": label([gap("auroc_gap", "sex", 0.04, 0.01, 0.09)])})),))
    outcome = apply("largest_auroc_gap", evidence)
    assert (outcome.value, outcome.status) == (0.5, "uncertain")
    assert outcome.inputs["observed"] == 0.04 and outcome.inputs["threshold"] == 0.05
    assert "spans 0.05" in outcome.explanation and outcome.links == (Link("run", 3, "Run 3 on Set 1"),)
    assert outcome.n == 120 and outcome.ci_width == pytest.approx(0.08)


def test_auroc_gap_takes_the_worst_label_and_attribute_and_names_them():
    labels = {
        "nodule": label([gap("auroc_gap", "sex", 0.02, 0.0, 0.04), gap("auroc_gap", "age_band", 0.208, 0.159, 0.255, ("40-64", "65+"))]),
        "effusion": label([gap("auroc_gap", "sex", 0.04, 0.01, 0.09)]),
        "mass": label([gap("auroc_gap", "site", 0.5, 0.4, 0.6, ("site-a", "site-b"))]),  # site is universality's, not fairness's
    }
    outcome = apply("largest_auroc_gap", version(runs=(run(1, report(labels)),)))
    assert outcome.status == "not_met" and outcome.value == pytest.approx(0.5 * 0.05 / 0.208, abs=1e-4)
    assert outcome.inputs["label"] == "nodule" and outcome.inputs["attributes"] == ["age_band"]
    assert "0.208 (95% CI 0.159-0.255) by age_band (65+ lowest)" in outcome.explanation
    assert "for nodule" in outcome.explanation and "exceeds 0.05" in outcome.explanation


def test_gaps_come_from_the_newest_run_that_has_them():
    newer = run(5, report({"nodule": label(gaps=[])}))
    older = run(2, report({"nodule": label([gap("fnr_gap", "sex", 0.03, 0.01, 0.05)])}))
    outcome = apply("largest_fnr_gap", version(runs=(newer, older)))
    assert outcome.status == "met" and outcome.value == 1.0 and outcome.inputs["run"] == 2


def test_fnr_gap_and_equalized_odds_use_their_own_thresholds():
    section = label(
        [gap("fnr_gap", "sex", 0.42, 0.34, 0.50, ("65+", "40-64")), gap("equalized_odds_difference", "sex", 0.08, 0.02, 0.09, component="fpr")]
    )
    evidence = version(runs=(run(1, report({"nodule": section})),))
    fnr = apply("largest_fnr_gap", evidence)
    assert fnr.status == "not_met" and "65+ most underdiagnosed" in fnr.explanation
    odds = apply("equalized_odds_difference", evidence)
    assert odds.status == "met" and "false-positive rate higher for M" in odds.explanation
    assert apply("equalized_odds_difference", evidence, threshold=0.05).status == "uncertain"


def test_a_gap_the_run_could_not_have_seen_is_insufficient_evidence_with_the_patients_needed():
    # The CI is below 0.05, but the run would detect a gap only from 0.09: a 0.05 gap could hide in it.
    blind = gap("auroc_gap", "sex", 0.01, 0.0, 0.04, mdd=0.09, mdd_patients=150)
    outcome = apply("largest_auroc_gap", version(runs=(run(3, report({"nodule": label([blind])})),)))
    assert outcome.value is None and outcome.status == "no_evidence"
    assert outcome.inputs["patients_needed"] == math.ceil(150 * (0.09 / 0.05) ** 2) == 486 and outcome.inputs["mdd"] == 0.09
    assert "could only detect a gap of 0.090 or more with 80% power" in outcome.explanation
    assert "about 486 patients per group" in outcome.explanation and outcome.links == (Link("run", 3, "Run 3 on Set 1"),)
    # The same run with more patients per group would have seen it: met, and the power is stated.
    seen = gap("auroc_gap", "sex", 0.01, 0.0, 0.04, mdd=0.045, mdd_patients=600)
    met = apply("largest_auroc_gap", version(runs=(run(3, report({"nodule": label([seen])})),)))
    assert met.status == "met" and met.inputs["patients_needed"] is None
    assert "a gap of 0.045 or more would have been detected with 80% power" in met.explanation


def test_a_gap_found_above_the_threshold_is_not_met_even_beside_one_that_could_be_missed():
    found = gap("auroc_gap", "age_band", 0.2, 0.12, 0.28, ("40-64", "65+"), mdd=0.11, mdd_patients=90)
    blind = gap("auroc_gap", "sex", 0.01, 0.0, 0.04, mdd=0.09, mdd_patients=150)
    outcome = apply("largest_auroc_gap", version(runs=(run(1, report({"nodule": label([found, blind])})),)))
    assert outcome.status == "not_met" and outcome.inputs["attributes"] == ["age_band"]


def test_site_gap_uses_the_same_power_rule_and_a_tie_names_no_pair():
    blind = gap("auroc_gap", "site", 0.0, 0.0, 0.07, groups=None, mdd=0.12, mdd_patients=80)
    outcome = apply("site_auroc_gap", version(runs=(run(1, report({"nodule": label([blind])})),)))
    assert outcome.status == "no_evidence" and outcome.inputs["patients_needed"] == math.ceil(80 * (0.12 / 0.05) ** 2)
    assert "no difference between the groups" in outcome.explanation
    tie = gap("auroc_gap", "sex", 0.0, 0.0, 0.03, groups=None, mdd=0.04, mdd_patients=500)
    met = apply("largest_auroc_gap", version(runs=(run(1, report({"nodule": label([tie])})),)))
    assert met.status == "met" and "(no difference between the groups)" in met.explanation


def test_intersections_count_only_when_asked():
    inter = {**gap("auroc_gap", "sex", 0.3, 0.2, 0.4), "attributes": ["sex", "age_band"], "group_high": ["M", "18-39"], "group_low": ["F", "65+"]}
    evidence = version(runs=(run(1, report({"nodule": label([gap("auroc_gap", "sex", 0.01, 0.0, 0.02), inter])})),))
    assert apply("largest_auroc_gap", evidence).status == "met"
    assert apply("largest_auroc_gap", evidence, include_intersections=1).status == "not_met"


# --- Every rule without evidence --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(RULES) - {"community_standards"}))
def test_every_rule_gives_no_value_without_evidence(name):
    outcome = apply(name, EMPTY)
    assert outcome.value is None and outcome.status == "no_evidence" and outcome.explanation


def test_community_standards_leaves_an_unknown_check_out():
    outcome = apply("community_standards", EMPTY)
    assert outcome.inputs["dicom_input"] is None and outcome.value == 0.5  # ONNX yes, no output schema
    dicom = version(runs=(run(1, report({"nodule": label()}, header_filled=3)),))
    assert apply("community_standards", dicom).value == 1.0


def test_dossier_completeness_reads_the_newest_revision():
    assert apply("dossier_completeness", version()).status == "no_evidence"
    draft = DossierEvidence(id=4, revision=2, status="draft", ratio=0.75, missing=("1_purpose",), frozen=False)
    outcome = apply("dossier_completeness", version(dossier=draft))
    assert (outcome.value, outcome.status) == (0.75, "partly")
    assert "officer-written fields only" in outcome.explanation and "1_purpose" in outcome.explanation and "not signed" in outcome.explanation
    assert outcome.links[0].type == "dossier" and outcome.links[0].id == 4
    signed = DossierEvidence(id=5, revision=3, status="signed", ratio=1.0, missing=(), frozen=True)
    outcome = apply("dossier_completeness", version(dossier=signed))
    assert (outcome.value, outcome.status) == (1.0, "met") and "frozen at submission" in outcome.explanation
    in_review = DossierEvidence(id=5, revision=3, status="in_review", ratio=1.0, missing=(), frozen=True)
    assert apply("dossier_completeness", version(dossier=in_review)).status == "partly"  # complete, but nobody signed it yet


# --- Fairness -------------------------------------------------------------------------


def test_subgroup_coverage_is_the_share_of_collected_attributes_evaluated():
    datasets = (dataset(demographics={"sex": {"F": 1, "M": 1}, "ethnicity": {"A": 1, "B": 1}}),)
    evidence = version(datasets=datasets, runs=(run(1, report({"nodule": label()}, attributes=("sex", "age_band", "site"))),))
    outcome = apply("subgroup_coverage", evidence)
    assert outcome.inputs["collected"] == ["age_band", "race_ethnicity", "sex"]  # site is an acquisition attribute
    assert outcome.inputs["not_evaluated"] == ["race_ethnicity"] and outcome.value == pytest.approx(2 / 3, abs=1e-4)
    one_group = label(subgroups=[subgroup("sex", "F"), subgroup("sex", "M", suppressed=True)])
    single = version(runs=(run(1, report({"nodule": one_group}, attributes=("sex",))),), datasets=(dataset(demographics={}),))
    assert apply("subgroup_coverage", single).value == 0.0


def test_runs_without_subgroups_leave_fairness_insufficient():
    evidence = version(runs=(run(1, report({"nodule": label(subgroups=[])})),))
    assert apply("subgroup_coverage", evidence).value is None
    fairness = assess(evidence, DEFAULT_POLICY)["fairness"]
    assert fairness.status == "insufficient_evidence" and fairness.score is None and fairness.below_minimum is None
    assert "Subgroup evaluation" in fairness.summary
    assert assess(EMPTY, DEFAULT_POLICY)["fairness"].status == "insufficient_evidence"


def test_demographic_completeness_names_what_datasheets_lack():
    evidence = version(
        datasets=(dataset(1, demographics={"sex": {"F": 1}}), dataset(2, demographics={"sex": {"F": 1}, "age_band": {"x": 1}, "ethnicity": {"y": 1}}))
    )
    outcome = apply("demographic_completeness", evidence)
    assert outcome.value == pytest.approx((1 / 3 + 1) / 2, abs=1e-4) and "Set 1 lacks age_band, ethnicity" in outcome.explanation


# --- Universality ---------------------------------------------------------------------


def test_external_sites_vendors_and_site_gap():
    external = label(
        subgroups=[subgroup("site", "a"), subgroup("site", "b"), subgroup("scanner_manufacturer", "GE"), subgroup("scanner_manufacturer", "unknown")],
        gaps=[gap("auroc_gap", "site", 0.03, 0.0, 0.07, ("a", "b"))],
    )
    evidence = version(
        runs=(run(2, report({"nodule": external}), roles=("external_validation",), institution="south"), run(1, report({"nodule": label()})))
    )
    sites = apply("external_sites", evidence)
    assert sites.inputs["sites"] == 2 and sites.value == pytest.approx(2 / 3, abs=1e-4) and sites.status == "partly"
    vendors = apply("scanner_vendors", evidence)
    assert vendors.inputs["vendors"] == ["GE"] and vendors.value == 0.5
    spread = apply("site_auroc_gap", evidence)
    assert spread.status == "uncertain" and "between sites" in spread.explanation
    assert apply("external_sites", version()).value is None  # internal test data only


def meta(k=3, estimate=0.82, ci=(0.78, 0.86), prediction=(0.74, 0.89), i2=0.2, q_p=0.5, refused=None) -> dict:
    """One label's AUROC meta-analysis in ``MetaAnalysis.to_dict`` form (k = 2: no prediction interval)."""
    if refused:
        return {
            "k": k,
            "estimate": None,
            "ci_low": None,
            "ci_high": None,
            "prediction_low": None,
            "prediction_high": None,
            "prediction_note": None,
            "i2": None,
            "tau2": None,
            "refused_reason": refused,
        }
    low, high = prediction if k >= 3 else (None, None)
    return {
        "k": k,
        "estimate": estimate,
        "ci_low": ci[0],
        "ci_high": ci[1],
        "prediction_low": low,
        "prediction_high": high,
        "prediction_note": None if k >= 3 else "a prediction interval for a new site needs at least 3 sites",
        "i2": i2,
        "q_p": q_p,
        "tau2": 0.01,
        "refused_reason": None,
    }


def study(study_id=5, sites=None, **auroc) -> FederatedStudyEvidence:
    return FederatedStudyEvidence(
        id=study_id,
        name=f"Study {study_id}",
        pooling_id=study_id * 10,
        site_patients={"north": 200, "south": 300, "east": 250} if sites is None else sites,
        auroc=auroc or {"nodule": meta()},
    )


def test_external_sites_count_federated_sites_other_than_the_provider():
    provider = {**MODEL, "provider": "vendor"}
    federated = (study(6, sites={"vendor": 100, "north": 200}), study(5, sites={"north": 150, "east": 250}))
    outcome = apply("external_sites", version(model=provider, federated=federated))  # no external run at all
    assert outcome.inputs["federated_sites"] == ["east", "north"] and outcome.inputs["sites"] == 2
    assert outcome.value == pytest.approx(2 / 3, abs=1e-4) and outcome.n == 200 + 250  # each site's newest study, the provider left out
    assert [link.type for link in outcome.links] == ["federated_study", "federated_study"]
    assert "2 reported through federated studies (east, north)" in outcome.explanation
    south_run = run(2, report({"nodule": label()}), roles=("external_validation",), institution="south")
    both = apply("external_sites", version(model=provider, runs=(south_run,), federated=federated))
    assert both.inputs["institutions"] == ["east", "north", "south"] and both.status == "met" and both.n == 400 + 450
    assert apply("external_sites", version(model=provider, federated=(study(7, sites={"vendor": 100}),))).value is None


@pytest.mark.parametrize(
    "analysis, value, status, words",
    [
        (meta(), 1.0, "met", "expected at 0.7 or above and I² is under 50%"),
        (meta(prediction=(0.72, 0.9), i2=0.6, q_p=0.04), 0.5, "uncertain", "but I² is 50% or more and Cochran's Q shows heterogeneity (p 0.04"),
        (meta(prediction=(0.72, 0.9), i2=0.6, q_p=0.2), 1.0, "met", "I² is 50% or more, but Cochran's Q does not show heterogeneity (p 0.20"),
        (meta(prediction=(0.72, 0.9), i2=0.6, q_p=None), 0.5, "uncertain", "but I² is 50% or more"),
        (meta(prediction=(0.6, 0.95), i2=0.7), 0.25, "not_met", "may fall below 0.7"),
        (meta(k=2, ci=(0.7, 0.9)), 0.5, "uncertain", "needs at least 3 sites"),
        (meta(k=2, estimate=0.6, ci=(0.55, 0.65)), 0.375, "not_met", "pooled CI stays below 0.7"),
    ],
)
def test_site_heterogeneity_judges_the_prediction_interval_and_i2(analysis, value, status, words):
    outcome = apply("site_heterogeneity", version(federated=(study(nodule=analysis),)))
    assert (outcome.value, outcome.status) == (pytest.approx(value), status) and words in outcome.explanation
    assert outcome.links == (Link("federated_study", 5, "Federated study Study 5"),)
    assert outcome.inputs["k"] == analysis["k"] and outcome.inputs["i2"] == analysis["i2"] and outcome.n == 750


def test_site_heterogeneity_takes_the_newest_study_with_two_sites_and_its_worst_label():
    newest = study(9, sites={"north": 80}, nodule=meta(k=1, refused="fewer than two sites have an estimate"))
    middle = study(8, nodule=meta(), effusion=meta(prediction=(0.6, 0.9), i2=0.8))
    oldest = study(7, nodule=meta(prediction=(0.5, 0.9)))
    outcome = apply("site_heterogeneity", version(federated=(newest, middle, oldest)))
    assert outcome.inputs["study"] == 8 and outcome.inputs["label"] == "effusion" and outcome.status == "not_met"
    assert "for effusion" in outcome.explanation
    assert apply("site_heterogeneity", version(federated=(middle,)), min_auroc=0.55, max_i2=0.9).status == "met"


def test_site_heterogeneity_without_two_sites_shows_why():
    one = apply(
        "site_heterogeneity", version(federated=(study(4, sites={"north": 80}, nodule=meta(k=1, refused="only one site (north) has an estimate")),))
    )
    assert one.value is None and one.status == "no_evidence" and "only one site (north) has an estimate" in one.explanation
    assert "two or more sites" in apply("site_heterogeneity", version()).explanation


def test_a_stored_policy_without_site_heterogeneity_still_scores_universality():
    policy = copy.deepcopy(DEFAULT_POLICY)
    criteria = policy["principles"]["universality"]["criteria"]
    dropped = next(c for c in criteria if c["key"] == "site_heterogeneity")
    criteria.remove(dropped)
    criteria[0]["weight"] += dropped["weight"]
    validate_policy(policy)
    evidence = replace(full_evidence(), federated=(study(),))
    old = assess(evidence, policy)["universality"]
    assert "site_heterogeneity" not in {c.key for c in old.criteria} and old.status == "assessed"
    new = assess(evidence, DEFAULT_POLICY)["universality"]
    assert next(c for c in new.criteria if c.key == "site_heterogeneity").status == "met"


def test_local_validation_before_go_live_at_every_site():
    deployments = (deployment(1), deployment(2, before=False), deployment(3, status="planned", local_run=None))
    outcome = apply("local_validation", version(deployments=deployments))
    assert outcome.value == pytest.approx(1 / 3, abs=1e-4) and outcome.inputs["not_ok"] == ["site2", "site3"]
    assert {link.type for link in outcome.links} == {"deployment", "run"}


def test_clinical_settings_is_the_share_stated():
    outcome = apply("clinical_settings", version(model={**MODEL, "body_region": "", "modality": ""}))
    assert outcome.value == 0.5 and outcome.status == "partly" and "body_region" in outcome.explanation


# --- Traceability ---------------------------------------------------------------------


def test_traceability_rules():
    mismatched = version(runs=(run(2, report({"nodule": label()}), sha="b" * 64), run(1, report({"nodule": label()}))))
    assert apply("artifact_verified", mismatched).value == 0.5 and apply("artifact_verified", mismatched).inputs["mismatched_runs"] == [2]
    broken = apply("audit_chain", version(audit_chain_ok=False, audit_broken_reason="event 12 was altered"))
    assert broken.value == 0.0 and "event 12 was altered" in broken.explanation
    truncated = apply("audit_chain", version(audit_chain_ok=False, audit_events_checked=0, audit_broken_reason="events were removed"))
    assert (truncated.value, truncated.status) == (0.0, "not_met") and "events were removed" in truncated.explanation
    assert apply("audit_chain", version(audit_chain_ok=True, audit_events_checked=0)).status == "no_evidence"
    lineage = ({"version_id": 7, "label": "1.1", "training_provenance": True}, {"version_id": 3, "label": "1.0", "training_provenance": False})
    assert apply("lineage_complete", version(lineage=lineage)).value == 0.5
    datasheets = apply("datasheet_completeness", version(datasets=(dataset(1, completeness=0.6, missing=("licence",)), dataset(2))))
    assert datasheets.value == 0.8 and "licence" in datasheets.explanation
    overdue = (deployment(1, overdue=True), deployment(2), deployment(3, status="planned"))
    assert apply("revalidation_on_schedule", version(deployments=overdue)).value == 0.5
    logged = replace(deployment(2), usage_logger=True, usage_days_since=3, usage_retention_days=183)
    stale = replace(logged, id=3, institution="site3", usage_days_since=45)  # nothing logged for longer than recent_days (30)
    usage = apply("usage_logging", version(deployments=(deployment(1), logged, stale, deployment(4, status="planned"))))
    assert usage.value == pytest.approx(1 / 3, abs=1e-4) and usage.inputs["not_ok"] == ["site1", "site3"]
    assert apply("usage_logging", version(deployments=(logged,)), recent_days=2).value == 0.0


def test_quality_control_counts_uncertainty_drift_and_calibration():
    qc = label(uncertainty={"referral": {"coverage": 0.8}, "n_flagged": 3}, calibration={"ece": {"value": 0.05, "ci_low": 0.03, "ci_high": 0.07}})
    partial = version(runs=(run(2, report({"nodule": qc}, drift=drift_section("no baseline run was given"))),))
    outcome = apply("quality_control", partial)
    assert outcome.value == pytest.approx(2 / 3, abs=1e-4) and outcome.inputs["out_of_distribution_check"] is None
    full = version(runs=(run(3, report({"nodule": label()}, drift=drift_section())), *partial.runs))
    assert apply("quality_control", full).value == 1.0


# --- Usability ------------------------------------------------------------------------


def test_agreement_rate_needs_enough_reports_and_judges_its_wilson_ci():
    few = FeedbackEvidence(n=10, n_agree=10)
    assert apply("agreement_rate", version(feedback=few)).value is None
    many = FeedbackEvidence(n=200, n_agree=180, n_partly=10, n_disagree=10)
    outcome = apply("agreement_rate", version(feedback=many))
    assert outcome.value == pytest.approx(0.925) and outcome.status == "met" and outcome.n == 200
    assert outcome.inputs["ci_low"] < 0.925 < outcome.inputs["ci_high"] and outcome.ci_width < 0.1
    borderline = FeedbackEvidence(n=40, n_agree=33, n_disagree=7)
    assert apply("agreement_rate", version(feedback=borderline)).status == "uncertain"


def test_ratings_and_time_saved():
    feedback = FeedbackEvidence(
        n=60,
        n_agree=60,
        ratings={"fitted_workflow": rating(40, 4.2, 0.5), "uncertainty_helped": rating(20, 3.0, 0.5), "explanation_helped": rating(12, 5.0)},
        minutes_saved=rating(50, -3.0, 2.0),
    )
    evidence = version(feedback=feedback)
    usability = apply("usability_rating", evidence)
    assert usability.inputs["mean"] == pytest.approx(3.8) and usability.value == pytest.approx(0.7)
    assert apply("explanation_rating", evidence).value is None  # 12 ratings < 30
    assert apply("explanation_rating", evidence, min_n=10).value == 1.0
    time = apply("minutes_saved", evidence)
    assert time.value == pytest.approx(0.2) and time.status == "not_met" and "lost 3.0 minutes" in time.explanation
    assert apply("feedback_interface", evidence).value == 1.0
    assert apply("feedback_interface", version(deployments=(deployment(),))).value == 0.0


# --- Robustness and explainability -----------------------------------------------------------


def condition(name: str, change: float, low: float, high: float) -> dict:
    return {"condition": name, "metrics": {"auroc": {"value": 0.8 + change, "change": change, "ci_low": low, "ci_high": high}}}


def test_perturbation_drop_takes_the_worst_condition_of_any_label():
    a = label(robustness={"n_cases": 500, "conditions": [condition("noise@1", -0.01, -0.02, 0.0), condition("gamma@3", -0.38, -0.45, -0.32)]})
    b = label(robustness={"n_cases": 500, "conditions": [condition("blur@2", -0.08, -0.15, -0.02)]})
    outcome = apply("perturbation_drop", version(runs=(run(1, report({"a": a, "b": b})),)))
    assert outcome.inputs["condition"] == "gamma@3" and outcome.inputs["label"] == "a" and outcome.status == "not_met"
    assert "0.380 (95% CI 0.320-0.450) under gamma@3 for a exceeds 0.1" in outcome.explanation
    only_b = apply("perturbation_drop", version(runs=(run(1, report({"b": b})),)))
    assert only_b.status == "uncertain" and only_b.value == 0.5


def test_perturbation_drop_reads_a_detection_runs_cpm_under_perturbation():
    cpm = {"value": 0.5, "change": -0.3, "ci_low": -0.4, "ci_high": -0.2}
    robustness = {"n_cases": 40, "conditions": [{"condition": "windowing@3", "metrics": {"cpm": cpm}}]}
    detector = run(1, {**report({}), "task": "detection", "detection": {"robustness": robustness}})
    outcome = apply("perturbation_drop", version(runs=(detector,)))
    assert (outcome.status, outcome.inputs["metric"], outcome.inputs["label"]) == ("not_met", "cpm", "lesions")
    assert outcome.explanation.startswith("Worst CPM drop 0.300 (95% CI 0.200-0.400) under windowing@3 exceeds")


def test_generalisation_spread_is_judged_on_its_point_estimate():
    section = label(
        generalisation={
            "groupings": {"site": {"groups": [], "leave_one_out_spread": 0.03}, "scanner_manufacturer": {"groups": [], "leave_one_out_spread": 0.147}}
        }
    )
    outcome = apply("generalisation_spread", version(runs=(run(1, report({"nodule": section})),)))
    assert outcome.status == "not_met" and outcome.inputs["grouping"] == "scanner_manufacturer" and "no CI" in outcome.explanation


def test_variation_sources_and_training_diversity():
    datasets = (
        dataset(1, protocols={}),
        dataset(
            2, roles=("pretraining",), scanners=({"manufacturer": "GE"}, {"manufacturer": "Siemens"}), protocols={"PA": 1, "AP": 1, "lateral": 1}
        ),
    )
    evidence = version(datasets=datasets)
    assert apply("variation_sources", evidence).value == 0.75
    diversity = apply("training_diversity", evidence)
    assert diversity.value == pytest.approx((2 / 3 + 1) / 2, abs=1e-4) and diversity.inputs["vendors"] == ["GE", "Siemens"]


def explain(deletion: tuple, insertion: tuple, verdict: str = "") -> dict:
    def diff(v):
        return {"value": v[0], "ci_low": v[1], "ci_high": v[2]}

    return {"deletion_difference": diff(deletion), "insertion_difference": diff(insertion), "verdict": verdict}


def test_faithfulness_scores_each_curve_against_random():
    methods = {
        "occlusion": explain((-0.05, -0.08, -0.02), (0.08, 0.07, 0.10), "beats random"),
        "rise": explain((-0.008, -0.02, 0.008), (0.06, 0.04, 0.07), "beats random on insertion only"),
    }
    evidence = version(runs=(run(1, report({"nodule": label(explainability={"n_cases": 32, "methods": methods})})),))
    best = apply("faithfulness", evidence)
    assert best.value == 1.0 and best.inputs["method"] == "occlusion" and best.n == 32
    only_rise = version(runs=(run(1, report({"nodule": label(explainability={"n_cases": 32, "methods": {"rise": methods["rise"]}})})),))
    assert apply("faithfulness", only_rise).value == 0.75 and apply("faithfulness", only_rise).status == "partly"
    worse = {"m": explain((0.05, 0.03, 0.08), (-0.05, -0.08, -0.03)), "n": explain((0.01, None, None), (0.01, None, None))}
    assert apply("faithfulness", version(runs=(run(1, report({"x": label(explainability={"methods": {"m": worse["m"]}})})),))).value == 0.0
    assert apply("faithfulness", version(runs=(run(1, report({"x": label(explainability={"methods": {"n": worse["n"]}})})),))).status == "uncertain"


def fourteen_label_run(pooled_methods: dict) -> RunEvidence:
    """32 shared cases over 14 labels: each label's own 2-3 cases are too few for a CI, ``pooled`` judges all 32."""
    too_few = {"occlusion": explain((-0.2, None, None), (0.2, None, None), "too few cases to judge")}
    pooled = {"n_cases": 32, "methods": pooled_methods}
    labels = {
        f"finding_{i}": label(explainability={"n_cases": 3 if i < 4 else 2, "n_explained": 32, "methods": too_few, "pooled": pooled})
        for i in range(14)
    }
    return run(1, report(labels))


def test_faithfulness_judges_the_pooled_cases_when_each_labels_share_is_too_small():
    beats = {"occlusion": explain((-0.05, -0.08, -0.02), (0.08, 0.07, 0.10), "beats random")}
    outcome = apply("faithfulness", version(runs=(fourteen_label_run(beats),)))
    assert (outcome.value, outcome.status, outcome.n) == (1.0, "met", 32)
    assert outcome.inputs["pooled"] is True and outcome.inputs["label"] is None
    assert "on all 32 explained cases, shared by the labels" in outcome.explanation
    worse = {"occlusion": explain((0.05, 0.03, 0.08), (-0.05, -0.08, -0.03), "worse than random")}
    assert apply("faithfulness", version(runs=(fourteen_label_run(worse),))).status == "not_met"
    # the same per-label shares without ``pooled`` (a report stored before it existed): nothing to judge on
    old = version(
        runs=(
            run(
                1,
                report(
                    {
                        f"finding_{i}": label(explainability={"n_cases": 2, "methods": {"occlusion": explain((-0.2, None, None), (0.2, None, None))}})
                        for i in range(14)
                    }
                ),
            ),
        )
    )
    assert apply("faithfulness", old).status == "uncertain" and apply("faithfulness", old).inputs["pooled"] is False


# --- Principles and the assessment -------------------------------------------------------


def full_evidence() -> VersionEvidence:
    section = label(
        [gap("auroc_gap", "sex", 0.04, 0.01, 0.09), gap("fnr_gap", "sex", 0.2, 0.15, 0.25)],
        robustness={"n_cases": 500, "conditions": [condition("noise@1", -0.02, -0.04, -0.01)]},
        explainability={"n_cases": 32, "methods": {"occlusion": explain((-0.05, -0.08, -0.02), (0.08, 0.07, 0.10))}},
    )
    return version(runs=(run(1, report({"nodule": section}), roles=("external_validation",)),))


def test_principle_score_is_the_weighted_mean_over_criteria_with_evidence():
    results = assess(full_evidence(), DEFAULT_POLICY)
    assert set(results) == set(PRINCIPLES)
    fairness = results["fairness"]
    scored = [c for c in fairness.criteria if c.value is not None]
    assert len(scored) < len(fairness.criteria)  # equalized odds has no gap here: left out, not zero
    expected = 100 * sum(c.weight * c.value for c in scored) / sum(c.weight for c in scored)
    assert fairness.status == "assessed" and fairness.score == round(expected, 1)
    assert fairness.below_minimum == (fairness.score < fairness.minimum)
    assert (
        "underdiagnosis" in fairness.summary.lower()
        and "rests on 5 of 6 criteria (80% of the weight); without evidence: Equalized-odds difference" in fairness.summary
    )


def test_a_required_criterion_without_evidence_makes_the_principle_insufficient():
    results = assess(replace(full_evidence(), model={**MODEL, "explainability_needs": ""}), DEFAULT_POLICY)
    explainability = results["explainability"]
    assert explainability.score is None and explainability.status == "insufficient_evidence"
    assert "Explainability needs stated" in explainability.summary
    assert results["robustness"].status == "assessed"


def test_evidence_strength_bands():
    def c(n, width):
        return replace(assess(full_evidence(), DEFAULT_POLICY)["fairness"].criteria[0], n=n, ci_width=width)

    assert evidence_strength([c(600, 0.05)]) == "strong"
    assert evidence_strength([c(600, 0.05), c(150, 0.3)]) == "moderate"
    assert evidence_strength([c(600, 0.05), c(40, 0.15)]) == "moderate"
    assert evidence_strength([c(600, 0.05), c(40, 0.3)]) == "weak"
    assert evidence_strength([c(None, None)]) is None


def test_assessment_json_round_trip():
    stored = assessment_to_dict(assess(full_evidence(), DEFAULT_POLICY))
    text = json.dumps(stored, allow_nan=False)
    assert json.loads(text) == stored
    criterion = stored["fairness"]["criteria"][2]
    assert {"key", "value", "status", "weight", "required", "inputs", "links", "n", "ci_width", "explanation"} <= set(criterion)
    assert criterion["links"] == [{"type": "run", "id": 1, "label": "Run 1 on Set 1"}]


def test_assessment_diff_names_what_moved_and_why():
    before = assessment_to_dict(assess(full_evidence(), DEFAULT_POLICY))
    narrower = label([gap("auroc_gap", "sex", 0.02, 0.0, 0.04), gap("fnr_gap", "sex", 0.2, 0.15, 0.25)])
    after = assessment_to_dict(
        assess(replace(full_evidence(), runs=(run(2, report({"nodule": narrower}), roles=("external_validation",)),)), DEFAULT_POLICY)
    )
    changes = assessment_diff(before, after)
    gap_change = next(c for c in changes if c["criterion"] == "largest_auroc_gap")
    assert gap_change["before"] == {"value": 0.5, "status": "uncertain"} and gap_change["after"] == {"value": 1.0, "status": "met"}
    assert set(gap_change["changed_inputs"]) >= {"observed", "ci_high", "run"} and "observed 0.04 → 0.02" in gap_change["sentence"]
    assert "(uncertain: the interval spans the target) → 1 (met)" in gap_change["sentence"]
    assert "upper CI bound" in gap_change["sentence"] and "ci_high" not in gap_change["sentence"]  # words, not stored keys
    fairness = next(c for c in changes if c["principle"] == "fairness" and c["criterion"] is None)
    assert fairness["change"] > 0 and "Fairness:" in fairness["sentence"]
    assert any(c["principle"] == "robustness" and c["criterion"] == "perturbation_drop" for c in changes)  # its section is gone now
    assert assessment_diff(before, before) == []


def test_diff_reports_criteria_a_new_policy_added():
    policy = copy.deepcopy(DEFAULT_POLICY)
    policy["principles"]["usability"]["criteria"] = [c for c in policy["principles"]["usability"]["criteria"] if c["key"] != "minutes_saved"]
    policy["principles"]["usability"]["criteria"][0]["weight"] += 0.2
    before = assessment_to_dict(assess(full_evidence(), policy))
    after = assessment_to_dict(assess(full_evidence(), DEFAULT_POLICY))
    added = next(c for c in assessment_diff(before, after) if c["criterion"] == "minutes_saved")
    assert added["before"] is None and "new in the policy" in added["sentence"]


# --- Policy validation -------------------------------------------------------------------


def _policy(edit) -> dict:
    policy = copy.deepcopy(DEFAULT_POLICY)
    edit(policy)
    return policy


def _first(policy, principle="fairness"):
    return policy["principles"][principle]["criteria"][0]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda p: [c.update(weight=c["weight"] * 0.7) for c in p["principles"]["fairness"]["criteria"]],
            r"fairness: criterion weights sum to 0\.7; they must sum to 1",
        ),
        (lambda p: _first(p).update(rule="astrology"), r"unknown rule 'astrology'; known rules: .*largest_auroc_gap"),
        (
            lambda p: p["principles"]["fairness"]["criteria"][2]["params"].update(threshold=1.5),
            r"'largest_auroc_gap': param 'threshold' must be a number from 0\.001 to 1",
        ),
        (lambda p: p["principles"]["fairness"]["criteria"][2]["params"].update(colour=1), r"rule 'largest_auroc_gap' has no param 'colour'"),
        (lambda p: p["principles"].pop("robustness"), r"missing principle\(s\) robustness"),
        (lambda p: p["principles"].update(charisma={"minimum": 0, "criteria": []}), r"unknown principle\(s\) 'charisma'"),
        (lambda p: p["principles"]["usability"].update(minimum=120), r"usability: minimum must be a number from 0 to 100"),
        (lambda p: _first(p).update(weight=0), r"weight must be a number above 0"),
        (lambda p: _first(p, "usability").update(key="subgroup_coverage"), r"duplicate criterion key"),
        (lambda p: _first(p).update(colour="red"), r"unknown field\(s\) colour"),
        (lambda p: p["principles"]["traceability"].update(criteria=[]), r"traceability: give at least one criterion"),
    ],
)
def test_bad_policies_are_refused_with_a_message(edit, message):
    with pytest.raises(PolicyError, match=message):
        validate_policy(_policy(edit))


def test_default_policy_is_valid_and_weights_sum_to_one():
    validate_policy(DEFAULT_POLICY)
    for spec in DEFAULT_POLICY["principles"].values():
        assert sum(c["weight"] for c in spec["criteria"]) == pytest.approx(1)
        assert any(c["required"] for c in spec["criteria"])
    with pytest.raises(PolicyError):
        assess(EMPTY, _policy(lambda p: _first(p).update(rule="astrology")))


# --- Purity ----------------------------------------------------------------------------


def test_rules_read_only_the_evidence_object():
    imports = set()
    for module in ("rules", "rule_kit"):
        for node in ast.walk(ast.parse((ROOT / f"compliance/trust/{module}.py").read_text())):
            if isinstance(node, ast.ImportFrom):
                imports.add(node.module)
            elif isinstance(node, ast.Import):
                imports.update(alias.name for alias in node.names)
    # radtrust_engine.stats: the shared pure statistics (Wilson interval, normal quantile), which read nothing;
    # radtrust_engine.report: the types of the run reports the evidence holds (plain dataclasses)
    assert imports <= {
        "__future__",
        "math",
        "collections.abc",
        "dataclasses",
        "typing",
        "compliance.trust.evidence",
        "compliance.trust.rule_kit",
        "radtrust_engine.stats",
        "radtrust_engine.report",
    }
    evidence = full_evidence()
    snapshot = copy.deepcopy(evidence)
    first = assessment_to_dict(assess(evidence, DEFAULT_POLICY))
    assert evidence == snapshot and assessment_to_dict(assess(evidence, DEFAULT_POLICY)) == first


def test_trust_engine_modules_do_not_import_django():
    code = (
        "import sys, compliance.trust.evidence, compliance.trust.policy, compliance.trust.rule_kit, compliance.trust.rules, compliance.trust.assess; "
        "assert 'django' not in sys.modules, 'django imported'"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
