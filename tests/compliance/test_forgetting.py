"""Forgetting across tasks: a recorded adaptation is re-evaluated on every task of its parent and
its base (``validation.forgetting``), the change log pairs each with the reference run by patient
and flags forgetting (``compliance.change_log``), and the trust criterion ``no_forgetting`` reads it."""

from __future__ import annotations

import pytest

from compliance.change_log import FORGETTING_MARGIN, change_log_build
from compliance.trust.gather import version_evidence
from compliance.trust.policy import DEFAULT_POLICY, rule_params, validate_policy
from compliance.trust.rules import RULES
from registry.adaptations import adaptation_record
from registry.choices import AdaptationMethod
from registry.models import Dataset
from registry.services import record_create
from tests.factories import DataUseGrantFactory
from validation import services
from validation.choices import RunStatus
from validation.models import ValidationRun

SUITE = {"n_resamples": 100, "min_patients": 5}
# The tiny inline model separates this data's classes at 0.566 (tests/compliance/test_change_log.py); the external one does not.
SCHEMA = {"class_names": ["pneumothorax"], "thresholds": {"pneumothorax": 0.566}, "activation": "sigmoid"}


def _run(engineer, version, dataset):
    run = services.run_create(actor=engineer, version=version, dataset=dataset, config=SUITE)
    services.run_execute(run_id=run.pk, worker="w")
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


@pytest.fixture
def family(run_setup, register_version, write_dataset, personas):
    """A base evaluated on the North and South sets, a parent adapted from it evaluated on North
    only, and a fine-tune of the parent (other weights) about to be recorded as an adaptation."""
    engineer, model, north = personas["engineer"], run_setup["model"], run_setup["dataset"]
    south = record_create(
        model=Dataset,
        actor=engineer,
        fields={
            "name": "South test set",
            "institution": personas["clinician_south"].institution,
            "modality": "DX",
            "location": str(write_dataset("south", seed=1)),
        },
    )
    DataUseGrantFactory(dataset=south, grantee=engineer.institution)
    base = register_version(model, "2.0.0", output_schema=SCHEMA)
    parent = register_version(model, "2.1.0", parent=base, output_schema=SCHEMA)
    tuned = register_version(model, "2.2.0", kind="external", parent=parent, output_schema=SCHEMA)
    runs = {"base_north": _run(engineer, base, north), "base_south": _run(engineer, base, south), "parent_north": _run(engineer, parent, north)}
    return {"base": base, "parent": parent, "tuned": tuned, "north": north, "south": south, "runs": runs, "engineer": engineer}


def _record(family):
    return adaptation_record(
        actor=family["engineer"], version=family["tuned"], method=AdaptationMethod.FULL_FINE_TUNE, task="pneumothorax", labels=["pneumothorax"]
    )


@pytest.mark.django_db
def test_recording_an_adaptation_queues_every_task_of_its_parent_and_base_and_the_change_log_flags_forgetting(family, api_client):
    _record(family)
    queued = {r.dataset_id: r for r in ValidationRun.objects.filter(version=family["tuned"])}
    assert set(queued) == {family["north"].pk, family["south"].pk}  # the parent's task, and the base's the parent lacks
    assert all(r.status == RunStatus.QUEUED and r.config["n_resamples"] == SUITE["n_resamples"] for r in queued.values())

    again = api_client(family["engineer"]).post("/api/validation-runs/forgetting/", {"version": family["tuned"].pk}, format="json")
    assert again.status_code == 200
    by_dataset = {t["dataset"]: t for t in again.json()}
    assert by_dataset["South test set"]["reference"] == "base" and by_dataset["North test set"]["reference"] == "parent"
    assert not any(t["queued"] for t in again.json()) and "Already evaluated there" in by_dataset["South test set"]["reason"]
    assert ValidationRun.objects.filter(version=family["tuned"]).count() == 2

    evidence = version_evidence(family["tuned"])
    assert evidence.tasks and all(t["kind"] == "not_reevaluated" for t in evidence.tasks)  # queued, not yet run
    outcome = RULES["no_forgetting"].function(evidence, rule_params("no_forgetting", {}))
    assert outcome.value == 0.0 and outcome.inputs["not_assessable"] == 2

    for run in queued.values():
        services.run_execute(run_id=run.pk, worker="w")
    log = change_log_build(family["tuned"]).to_dict()
    metrics = next(s for s in log["sections"] if s["key"] == "metrics")["changes"]
    south = next(i for i in metrics if i["detail"].get("dataset") == "South test set" and i["detail"].get("metric") == "auroc")
    d = south["detail"]
    assert d["reference"] == "base" and d["parent_run"] == family["runs"]["base_south"].pk and d["n_shared_patients"] == 30
    assert d["ci_high"] < -FORGETTING_MARGIN and d["forgetting"] and "data the base was evaluated on" in south["why"]
    north = next(i for i in metrics if i["detail"].get("dataset") == "North test set" and i["detail"].get("metric") == "auroc")
    assert north["detail"]["reference"] == "parent" and north["detail"]["parent_run"] == family["runs"]["parent_north"].pk

    evidence = version_evidence(family["tuned"])
    outcome = RULES["no_forgetting"].function(evidence, rule_params("no_forgetting", {}))
    assert outcome.status == "not_met" and outcome.inputs["forgotten"] and "South test set" in " ".join(outcome.inputs["forgotten"])


@pytest.mark.django_db
def test_a_version_that_is_not_an_adaptation_has_no_tasks_to_keep(family):
    evidence = version_evidence(family["parent"])
    assert evidence.tasks is None
    outcome = RULES["no_forgetting"].function(evidence, rule_params("no_forgetting", {}))
    assert outcome.value is None and outcome.status == "no_evidence"
    log = change_log_build(family["parent"]).to_dict()  # the base is the parent: no extra tasks
    metrics = next(s for s in log["sections"] if s["key"] == "metrics")["changes"]
    assert {i["detail"].get("reference") for i in metrics} == {"parent"}


def _task(low, high, **extra):
    return {"what": f"pneumothorax AUROC on set {low}", "kind": "metric", "detail": {"ci_low": low, "ci_high": high, "metric": "auroc", **extra}}


def test_each_task_is_kept_uncertain_forgotten_or_not_assessable_against_the_margin():
    from dataclasses import replace

    from compliance.trust.evidence import FeedbackEvidence, VersionEvidence

    evidence = VersionEvidence(
        version_id=1, label="v", artifact_sha256="", artifact_format="onnx", model={}, lineage=(), audit_chain_ok=True, audit_events_checked=1,
        audit_broken_reason="", datasets=(), runs=(), deployments=(), feedback=FeedbackEvidence(), baseline_run_id=None, today="2026-01-01",
    )  # fmt: skip

    def apply(*tasks, margin=0.02):
        return RULES["no_forgetting"].function(replace(evidence, tasks=tasks), rule_params("no_forgetting", {"margin": margin}))

    assert apply(_task(-0.01, 0.03)).status == "met"  # the interval's lower end stays above -0.02
    assert apply(_task(-0.05, 0.01)).value == 0.5  # spans -0.02: uncertain
    forgotten = apply(_task(-0.2, -0.05), _task(-0.01, 0.03))
    assert forgotten.status == "not_met" and forgotten.value == 0.5 and len(forgotten.inputs["forgotten"]) == 1
    assert apply(_task(None, None, unassessed=True)).value == 0.0
    assert apply(_task(-0.05, 0.01), margin=0.1).status == "met"  # a looser margin keeps it


def test_the_default_policy_adds_the_criterion_as_a_new_version_and_keeps_other_scores():
    validate_policy(DEFAULT_POLICY)
    assert DEFAULT_POLICY["version"] == 2
    robustness = {c["key"]: c["weight"] for c in DEFAULT_POLICY["principles"]["robustness"]["criteria"]}
    others = {k: w for k, w in robustness.items() if k != "no_forgetting"}
    # version 1's weights scaled by one factor: a version without an adaptation scores as before
    assert {k: round(w / 0.85, 6) for k, w in others.items()} == {
        "variation_sources": 0.15,
        "training_diversity": 0.2,
        "perturbation_drop": 0.4,
        "generalisation_spread": 0.25,
    }
