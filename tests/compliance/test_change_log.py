"""The change log of a version against its parent: derived sections, paired metric deltas,
classification by the change plan in force (frozen in the parent's signed dossier), Markdown,
the dossier evidence provider, API and admin."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from compliance.change_control import change_plan_approve, change_plan_propose
from compliance.change_log import change_log_build
from compliance.change_log_text import change_log_markdown
from compliance.change_rules import DEFAULT_CHANGE_RULES, NO_PLAN_RULES, change_plan_pin, change_rules_validate
from compliance.dossier_evidence import PROVIDERS
from registry.models import Dataset
from registry.services import provenance_link, record_create, record_update
from tests.factories import DatasetFactory, DataUseGrantFactory, FoundationModelFactory, ModelVersionFactory, ProvenanceFactory

SUITE = {"n_resamples": 50, "min_patients": 5}
# The tiny inline model scores this dataset's negatives 0.562-0.564 and positives 0.568-0.570: 0.566 separates them.
PARENT_SCHEMA = {"class_names": ["pneumothorax"], "thresholds": {"pneumothorax": 0.566}, "activation": "sigmoid"}
CHILD_SCHEMA = {"class_names": ["pneumothorax"], "thresholds": {"pneumothorax": 0.5}, "activation": "sigmoid"}


def _section(log: dict, key: str) -> dict:
    return next(s for s in log["sections"] if s["key"] == key)


def _rules(log: dict, effect: str) -> set[str]:
    return {r["rule"] for r in log["classification"]["reasons"] if r["effect"] == effect}


@pytest.fixture
def lineage(run_setup, register_version, write_dataset, personas):
    """A parent evaluated on the North and South sets, and a child with other weights, a lower
    threshold, a preprocessing key and new data, evaluated on the North set only."""
    from validation import services

    engineer, model, north = personas["engineer"], run_setup["model"], run_setup["dataset"]
    vendor = engineer.institution
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
    DataUseGrantFactory(dataset=south, grantee=vendor)  # South's data, granted to the provider like North's
    tuning_a, tuning_b, calibration = (
        DatasetFactory(name=name, institution=vendor) for name in ("Vendor tuning A", "Vendor tuning B", "Vendor calibration")
    )
    parent = register_version(model, "2.0.0", output_schema=PARENT_SCHEMA)
    child = register_version(model, "2.1.0", kind="external", parent=parent, output_schema=CHILD_SCHEMA, preprocessing={"resize": [64, 64]})
    for version, dataset, role in (
        (parent, north, "external_validation"),
        (parent, tuning_a, "fine_tuning"),
        (child, north, "external_validation"),
        (child, tuning_a, "fine_tuning"),
        (child, tuning_b, "fine_tuning"),
        (child, calibration, "calibration"),
    ):
        provenance_link(actor=engineer, version=version, dataset=dataset, role=role)
    runs = {}
    for name, version, dataset in (("parent_north", parent, north), ("parent_south", parent, south), ("child_north", child, north)):
        run = services.run_create(actor=engineer, version=version, dataset=dataset, config=SUITE)
        services.run_execute(run_id=run.pk, worker="w")
        run.refresh_from_db()
        assert run.status == "succeeded", run.error
        runs[name] = run
    return {"parent": parent, "child": child, "model": model, "north": north, "south": south, "calibration": calibration, "runs": runs}


@pytest.mark.django_db
def test_change_log_of_a_retrained_version(lineage, personas, sign_dossier):
    from compliance.trust.services import trust_assess

    parent, child, runs = lineage["parent"], lineage["child"], lineage["runs"]
    for version in (parent, child):
        trust_assess(version=version, trigger="manual")
    sign_dossier(parent)
    log = change_log_build(child).to_dict()
    assert json.loads(json.dumps(log)) == log
    assert log["initial"] is False and log["parent"]["id"] == parent.pk and log["version"]["id"] == child.pk
    assert [s["key"] for s in log["sections"]] == [
        "artifact",
        "output_schema",
        "preprocessing",
        "data",
        "metrics",
        "subgroup_gaps",
        "trust",
        "dossier",
    ]

    artifact = {i["kind"]: i for i in _section(log, "artifact")["changes"]}
    assert artifact["artifact_sha256"]["before"] == parent.artifact_sha256 and artifact["artifact_sha256"]["after"] == child.artifact_sha256
    assert artifact["artifact_sha256"]["rule"] == "weights" and "inputs_signature" not in artifact
    [threshold] = _section(log, "output_schema")["changes"]
    assert (threshold["before"], threshold["after"], threshold["rule"]) == (0.566, 0.5, "threshold_move")
    assert threshold["detail"]["amount"] == pytest.approx(0.066)
    [resize] = _section(log, "preprocessing")["changes"]
    assert (resize["what"], resize["before"], resize["after"]) == ("Preprocessing resize", None, [64, 64])
    data = {i["what"]: i["rule"] for i in _section(log, "data")["changes"]}
    assert data == {"Vendor tuning B as fine_tuning": "data_same_sources", "Vendor calibration as calibration": "data_new_role"}

    metrics = _section(log, "metrics")["changes"]
    auroc = next(i for i in metrics if i["detail"].get("metric") == "auroc")
    d = auroc["detail"]
    assert auroc["kind"] == "metric_drop" and auroc["rule"] == "non_inferiority" and d["forgetting"] and d["significant"]
    assert d["amount"] == -d["ci_low"]  # non-inferiority reads the interval's lower end
    assert (d["dataset"], d["parent_run"], d["child_run"], d["n_shared_patients"]) == (
        "North test set",
        runs["parent_north"].pk,
        runs["child_north"].pk,
        30,
    )
    assert auroc["before"] == pytest.approx(1.0) and auroc["after"] < 0.3
    assert d["ci_low"] <= d["delta"] <= d["ci_high"] < 0 and d["p_value"] < 0.05
    sensitivity = next(i for i in metrics if i["detail"].get("metric") == "sensitivity")
    assert (sensitivity["before"], sensitivity["after"]) == (1.0, 0.0)  # each version at its own threshold
    [south] = [i for i in metrics if i["kind"] == "not_reevaluated"]
    assert south["what"] == "South test set" and south["after"] is None and south["rule"] == "not_reevaluated"
    assert "forgetting cannot be ruled out" in south["why"] and set(south["before"]["pneumothorax"]) == {"auroc", "sensitivity", "specificity"}

    gaps = _section(log, "subgroup_gaps")["changes"]
    assert gaps and all(g["detail"]["dataset"] == "North test set" for g in gaps)
    assert all((g["rule"] == "gap_widening") == (g["after"] > g["before"]) for g in gaps)
    trust = _section(log, "trust")
    assert trust["notes"][0].startswith("Assessments") and trust["changes"]
    assert all(set(i["before"]) == set(i["after"]) == {"score", "status"} and i["before"] != i["after"] for i in trust["changes"])
    assert _section(log, "dossier")["notes"] == [f"{child} has no dossier yet: its fields cannot be compared."]

    # The parent's dossier was signed after the child was registered: nothing was pre-determined, so
    # every change but editorial documentation is substantial, re-trained weights included.
    assert log["classification"]["value"] == "substantial"
    assert {"threshold_move", "non_inferiority", "not_reevaluated", "data_new_role", "weights", "preprocessing", "data_same_sources"} <= _rules(
        log, "substantial"
    )
    reason = next(r for r in log["classification"]["reasons"] if r["rule"] == "threshold_move")
    assert reason["text"] == "An operating threshold moves by more than 0" and reason["evidence"] == [
        "Operating threshold of pneumothorax: 0.566 → 0.5"
    ]
    assert reason["title"] == "Operating threshold"
    plan = log["plan"]
    assert plan["id"] is None and plan["rules"] == NO_PLAN_RULES and plan["rationale"] is None
    assert plan["source"].startswith(f"No change plan was pre-determined: {parent} had no signed dossier when {child} was registered")
    assert log["conformity"] == {"required": True, "assessments": []}

    text = change_log_markdown(log)
    assert text.startswith(f"# Change log: {child}")
    for line in (
        f"Against parent **{parent}** (artifact {parent.artifact_sha256[:12]}…)",
        "**Classification: Substantial modification: new conformity assessment (Art. 43(4))**",
        "A new conformity assessment is required (Art. 43(4)) and none is recorded: the version cannot be approved until one is.",
        f"Plan: No change plan was pre-determined: {parent} had no signed dossier",
        "- **Operating threshold: substantial.** An operating threshold moves by more than 0.",
        "  - Operating threshold of pneumothorax: 0.566 → 0.5",
        "- Operating threshold: within the plan up to 0, substantial beyond it",
        "- New weights: substantial",
        "- Documentation: within the plan",
        "## 5. Performance on the same data",
        "| South test set | pneumothorax: auroc 1.0, sensitivity 1.0, specificity 1.0 | — |",
        "Not re-evaluated: the parent was evaluated on it",
        "| Preprocessing resize | — | 64, 64 | Images reach the model differently",
        "| Performance on the same data (non-inferiority) |",
    ):
        assert line in text, line
    assert "possible catastrophic forgetting" in text and '{"' not in text and parent.artifact_sha256 not in text

    assert PROVIDERS["change_log"](parent) is None  # field 6 stays empty for a first version
    assert PROVIDERS["change_log"](child)["classification"]["value"] == "substantial"


LOOSE = {
    "threshold_move": {"limit": 0.1},
    "non_inferiority": {"effect": "within_plan"},  # the tiny model loses all sensitivity: only a plan that accepts any loss keeps it
    "not_reevaluated": {"effect": "within_plan"},
    "data_new_role": {"effect": "within_plan"},
    "gap_widening": {"limit": 1.0},
}


def _approved_plan(personas, model, rules: dict, rationale: str):
    plan = change_plan_propose(actor=personas["officer"], foundation_model=model, rules=rules, rationale=rationale)
    change_plan_approve(actor=personas["officer2"], plan=plan)
    return plan


def _later_child(lineage, register_version, personas, number: str):
    """Another child of the parent, registered now, with the lineage child's changes and its run on the North set."""
    from validation import services

    child = register_version(
        lineage["model"], number, kind="external", parent=lineage["parent"], output_schema=CHILD_SCHEMA, preprocessing={"resize": [64, 64]}
    )
    for dataset, role in ((lineage["north"], "external_validation"), (lineage["calibration"], "calibration")):
        provenance_link(actor=personas["engineer"], version=child, dataset=dataset, role=role)
    run = services.run_create(actor=personas["engineer"], version=child, dataset=lineage["north"], config=SUITE)
    services.run_execute(run_id=run.pk, worker="w")
    return child


@pytest.mark.django_db
def test_the_plan_frozen_in_the_parents_signed_dossier_judges_later_versions_only(lineage, personas, register_version, sign_dossier):
    model, parent = lineage["model"], lineage["parent"]
    _approved_plan(personas, model, {}, "First plan of this model.")
    unapproved = change_plan_propose(actor=personas["officer"], foundation_model=model, rules=LOOSE, rationale="Not approved: never in force.")
    assert change_plan_pin(model)["version"] == 1  # a proposal is not in force
    plan = _approved_plan(personas, model, LOOSE, "Threshold recalibration up to 0.1; re-training with calibration data.")
    assert plan.version == 3 and unapproved.version == 2 and plan.rules["signature"] == {"effect": "substantial"}  # stored merged
    signed = sign_dossier(parent)
    assert signed.snapshot["change_plan"]["version"] == 3 and signed.snapshot["change_plan"]["approved_by"] == "officer2"

    # Registered before the parent's dossier was signed: the plan is not applied retroactively.
    assert change_log_build(lineage["child"]).to_dict()["classification"]["value"] == "substantial"

    later = _later_child(lineage, register_version, personas, "2.2.0")
    log = change_log_build(later).to_dict()
    assert log["classification"]["value"] == "within_plan" and not _rules(log, "substantial")
    assert {"threshold_move", "non_inferiority", "data_new_role", "weights", "preprocessing"} <= _rules(log, "within_plan")
    reason = next(r for r in log["classification"]["reasons"] if r["rule"] == "threshold_move")
    assert reason["text"] == "Operating threshold moves of at most 0.1"
    assert (log["plan"]["id"], log["plan"]["version"], log["plan"]["approved_by"]) == (plan.pk, 3, "officer2")
    assert log["plan"]["source"].startswith(f"Change plan 3, frozen in the signed dossier of {parent} (revision {signed.revision}")
    assert log["conformity"] == {"required": False, "assessments": []}
    text = change_log_markdown(log)
    assert "Proposed by officer, approved by officer2." in text and "Its text: Threshold recalibration up to 0.1" in text
    assert "**Classification: Within the pre-determined change plan (Annex IV 2(f))**" in text

    # A stricter plan approved now changes nothing for the version already judged by the frozen one ...
    _approved_plan(personas, model, {"threshold_move": {"limit": 0.01}}, "Tighter thresholds.")
    assert change_log_build(later).to_dict()["plan"]["version"] == 3


@pytest.mark.django_db
def test_outputs_signature_and_clinical_claim_changes_are_substantial(personas):
    from compliance.dossiers import dossier_open, dossier_save

    parent = ModelVersionFactory()
    child = ModelVersionFactory(
        foundation_model=parent.foundation_model,
        parent=parent,
        artifact_sha256=parent.artifact_sha256,
        parameter_count=2000,
        outputs=[{"name": "logits", "dtype": "float32", "shape": ["batch", 2]}],
        output_schema={"class_names": ["pneumothorax", "effusion"], "thresholds": {"pneumothorax": 0.52}, "activation": "sigmoid"},
    )
    for version, claim in ((parent, "Pneumothorax triage in adults."), (child, "Pneumothorax | effusion <b>triage</b> in adults.")):
        dossier = dossier_open(actor=personas["officer"], version=version)
        dossier_save(actor=personas["officer"], dossier=dossier, values={"1a_purpose_statement": claim, "7_standards": "ISO 14971"}, edit_count=0)
    log = change_log_build(child).to_dict()
    changes = {i["kind"]: i for s in log["sections"] for i in s["changes"]}
    assert changes["class_added"]["after"] == "effusion" and changes["activation"]["before"] == "none"
    assert changes["outputs_signature"]["before"]["shape"] == ["batch", 1] and changes["outputs_signature"]["after"]["shape"] == ["batch", 2]
    assert changes["dossier_field"]["what"] == "Clinical claim (1a_purpose_statement)" and changes["dossier_field"]["rule"] == "intended_purpose"
    assert "artifact_sha256" not in changes
    # No plan: a threshold move of any size is substantial, and a changed model without a paired
    # comparison on the same data is not assessable, hence substantial too.
    assert _rules(log, "substantial") == {
        "output_classes",
        "activation",
        "intended_purpose",
        "signature",
        "architecture",
        "threshold_move",
        "non_inferiority",
    }
    assert _rules(log, "within_plan") == set()
    assert _section(log, "metrics")["notes"] == ["Neither version has a succeeded validation run."]
    [missing] = _section(log, "metrics")["changes"]
    assert missing["kind"] == "no_paired_evidence" and missing["detail"] == {"unassessed": True}
    reason = next(r for r in log["classification"]["reasons"] if r["rule"] == "non_inferiority")
    assert reason["text"].startswith("Non-inferiority not assessable") and reason["evidence"] == [
        "Performance on the same data: No run of this version is paired with a run of the parent on the same data: non-inferiority cannot be assessed."
    ]
    text = change_log_markdown(log)
    assert "| Pneumothorax triage in adults. | Pneumothorax \\| effusion \\<b\\>triage\\</b\\> in adults. |" in text
    assert "| Output tensor logits | dtype float32, shape batch, 1 | dtype float32, shape batch, 2 |" in text and '{"' not in text


@pytest.mark.django_db
def test_data_from_a_new_source_and_edited_datasets_are_classified(personas, institutions):
    parent = ModelVersionFactory()
    child = ModelVersionFactory(foundation_model=parent.foundation_model, parent=parent, artifact_sha256=parent.artifact_sha256)
    shared = DatasetFactory(name="Tuning set", institution=institutions["vendor"])
    for version in (parent, child):
        ProvenanceFactory(version=version, dataset=shared, role="fine_tuning")
    ProvenanceFactory(version=child, dataset=DatasetFactory(name="South tuning", institution=institutions["south"]), role="fine_tuning")
    record_update(instance=shared, fields={"manifest_sha256": "b" * 64, "patient_count": 120})
    record_update(instance=shared, fields={"case_outputs_shared_with_provider": True})  # who may see, not what the data are
    log = change_log_build(child).to_dict()
    data = {i["what"]: i for i in _section(log, "data")["changes"]}
    assert data["South tuning as fine_tuning"]["rule"] == "data_new_source" and "south" in data["South tuning as fine_tuning"]["why"]
    assert (data["Tuning set: manifest_sha256"]["before"], data["Tuning set: manifest_sha256"]["after"]) == ("", "b" * 64)
    assert data["Tuning set: patient_count"]["rule"] == "dataset_contents"
    assert "Tuning set: case_outputs_shared_with_provider" not in data
    # The model file, outputs and preprocessing are the same: performance rules do not apply; with no
    # plan in force every data change is substantial.
    assert _rules(log, "substantial") == {"data_new_source", "dataset_contents"} and _rules(log, "within_plan") == set()


# A stored run report (radtrust_engine.report.RunReport) without labels: these rows record their figures in the summary.
NO_LABELS = {
    "engine_version": "1",
    "task": "binary",
    "config": {},
    "preprocessing": {},
    "activation": "none",
    "model": {},
    "dataset": {
        "n_images": 0,
        "n_evaluated": 0,
        "n_patients": 0,
        "label_names": [],
        "prevalence": {},
        "attributes_not_collected": [],
        "intersections_not_evaluated": [],
        "header_fill": {"filled": {}, "unreadable": []},
    },
    "skipped": [],
    "inference": {},
    "results": {},
}


def _recorded_run(version, dataset, manifest: str, auroc: float):
    """A succeeded run as its row records it (no per-case table: what a segmentation run keeps)."""
    from validation.models import ValidationRun

    overall = {"auroc": {"value": auroc}, "sensitivity": {"value": 0.8}, "specificity": {"value": 0.9}}
    return ValidationRun.objects.create(
        version=version,
        dataset=dataset,
        status="succeeded",
        manifest_sha256=manifest * 64,
        results=NO_LABELS,
        summary={"labels": {"pneumothorax": {"overall": overall}}},
        finished_at=timezone.now(),
    )


@pytest.mark.django_db
def test_evaluations_on_other_contents_are_shown_unpaired(personas):
    parent = ModelVersionFactory()
    child = ModelVersionFactory(foundation_model=parent.foundation_model, parent=parent)
    moved, new, same = (DatasetFactory(name=name) for name in ("Moved set", "New set", "Same set"))
    for version, dataset, manifest, auroc in (
        (parent, moved, "a", 0.91),
        (child, moved, "b", 0.85),
        (child, new, "c", 0.88),
        (parent, same, "d", 0.9),
        (child, same, "d", 0.9),
    ):
        _recorded_run(version, dataset, manifest, auroc)
    log = change_log_build(child).to_dict()
    metrics = {i["what"]: i for i in _section(log, "metrics")["changes"]}
    assert metrics["Moved set"]["kind"] == "different_data" and metrics["Moved set"]["rule"] == "not_reevaluated"
    assert (metrics["Moved set"]["before"]["pneumothorax"]["auroc"], metrics["Moved set"]["after"]["pneumothorax"]["auroc"]) == (0.91, 0.85)
    assert "no significance test is possible" in metrics["Moved set"]["why"]
    assert metrics["New set"]["kind"] == "new_evaluation" and metrics["New set"]["before"] is None and metrics["New set"]["rule"] is None
    assert metrics["Same set"]["kind"] == "unpaired" and "kept no readable per-case table" in _section(log, "metrics")["notes"][0]
    assert metrics["Same set"]["rule"] == "non_inferiority" and metrics["Same set"]["detail"]["unassessed"]  # same data, no interval
    assert {"not_reevaluated", "non_inferiority"} <= _rules(log, "substantial")


@pytest.mark.django_db
def test_an_unchanged_version_and_a_first_version(personas):
    parent = ModelVersionFactory()
    same = ModelVersionFactory(foundation_model=parent.foundation_model, parent=parent, artifact_sha256=parent.artifact_sha256)
    log = change_log_build(same).to_dict()
    assert log["classification"] == {"value": "none", "label": "No change", "reasons": []}
    assert "No change." in change_log_markdown(log)

    # Documentation alone is editorial, with or without a plan: nothing to assess.
    from compliance.dossiers import dossier_open, dossier_save

    for version, standard in ((parent, "ISO 14971"), (same, "ISO 14971:2019")):
        dossier = dossier_open(actor=personas["officer"], version=version)
        dossier_save(actor=personas["officer"], dossier=dossier, values={"7_standards": standard}, edit_count=0)
    log = change_log_build(same).to_dict()
    assert log["classification"]["value"] == "editorial" and _rules(log, "within_plan") == {"documentation"}
    assert log["conformity"]["required"] is False

    first = change_log_build(parent).to_dict()
    assert first["initial"] is True and first["parent"] is None and first["sections"] == [] and first["plan"] is None
    assert first["classification"]["value"] == "none" and first["classification"]["reasons"] == []
    assert "First version: there is no parent version to compare with." in change_log_markdown(first)


def test_invalid_rules_name_the_field_to_fix():
    assert change_rules_validate(DEFAULT_CHANGE_RULES) == {} and change_rules_validate({"weights": {"effect": "substantial"}}) == {}
    errors = change_rules_validate(
        {
            "threshold_move": {"limit": 2},
            "non_inferiority": {"effect": "maybe"},
            "nonsense": {},
            "weights": {"effect": "within_plan", "limit": 0.1},
            "signature": "substantial",
            "gap_widening": {"limit": True},
        }
    )
    assert set(errors) == {"threshold_move.limit", "non_inferiority.effect", "nonsense", "weights", "signature", "gap_widening.limit"}
    assert "from 0 to 1" in errors["threshold_move.limit"] and "within_plan or substantial" in errors["non_inferiority.effect"]
    assert "Unknown rule" in errors["nonsense"] and "Unknown keys limit" in errors["weights"]
    assert "rules" in change_rules_validate(["threshold_move"])


@pytest.mark.django_db
def test_change_plans_are_validated_and_never_edited(personas, institutions, client):
    from compliance.models import ChangePlan
    from core.errors import ImmutableRecord

    model = FoundationModelFactory(provider=institutions["vendor"])
    with pytest.raises(ValidationError) as refused:
        change_plan_propose(actor=personas["officer"], foundation_model=model, rules={"non_inferiority": {"limit": -1}}, rationale="x")
    assert "non_inferiority.limit" in str(refused.value.message_dict["rules"])
    with pytest.raises(ValidationError, match="Annex IV 2"):
        change_plan_propose(actor=personas["officer"], foundation_model=model, rules={}, rationale=" ")
    with pytest.raises(ValidationError, match="Name the model"):
        change_plan_propose(actor=personas["officer"], foundation_model=None, rules={}, rationale="For every model.")

    officer = personas["officer"]
    for user in (officer, personas["engineer"]):
        user.is_staff = True
        user.save()
    client.force_login(officer)
    assert json.loads(client.get("/admin/compliance/changeplan/add/").context["adminform"].form["rules"].value()) == DEFAULT_CHANGE_RULES
    form = {"foundation_model": model.pk, "rationale": "r"}
    bad = client.post("/admin/compliance/changeplan/add/", {**form, "rules": json.dumps({"threshold_move": {"limit": 5}})})
    assert bad.status_code == 200 and "threshold_move.limit: Give the limit as a number from 0 to 1" in bad.content.decode()
    other = FoundationModelFactory(provider=institutions["north"])
    refused = client.post("/admin/compliance/changeplan/add/", {**form, "foundation_model": other.pk, "rules": "{}"})
    assert refused.status_code == 200 and f"Only a compliance officer of {institutions['north'].name}" in refused.content.decode()
    for n in (1, 2):
        assert (
            client.post(
                "/admin/compliance/changeplan/add/", {**form, "rules": json.dumps({"threshold_move": {"limit": 0.1}}), "rationale": f"Plan {n}"}
            ).status_code
            == 302
        )
    plans = list(ChangePlan.objects.order_by("version"))
    assert [(p.version, p.created_by, p.rules["threshold_move"]["limit"]) for p in plans] == [(1, officer, 0.1), (2, officer, 0.1)]
    assert client.post(f"/admin/compliance/changeplan/{plans[0].pk}/change/", {"rules": "{}", "rationale": "edited"}).status_code == 403
    assert client.post(f"/admin/compliance/changeplan/{plans[0].pk}/delete/", {"post": "yes"}).status_code == 403
    with pytest.raises(ImmutableRecord):
        plans[0].save()
    client.force_login(personas["engineer"])
    assert client.get("/admin/compliance/changeplan/add/").status_code == 403


@pytest.mark.django_db
def test_change_log_api(personas, institutions, api_client):
    model = FoundationModelFactory(provider=institutions["vendor"])
    parent = ModelVersionFactory(foundation_model=model)
    child = ModelVersionFactory(
        foundation_model=model, parent=parent, output_schema={"class_names": ["pneumothorax"], "thresholds": {"pneumothorax": 0.7}}
    )
    url = f"/api/model-versions/{child.pk}/change-log/"
    response = api_client(personas["officer"]).get(url)
    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    body = response.json()
    assert {"format", "version", "parent", "initial", "plan", "classification", "sections", "generated_at"} <= set(body)
    assert body["classification"]["value"] == "substantial" and body["parent"]["id"] == parent.pk
    markdown = api_client(personas["engineer"]).get(url, {"format": "md"})
    assert markdown.status_code == 200 and markdown["Content-Type"] == "text/markdown; charset=utf-8"
    assert (
        markdown.content.decode().startswith(f"# Change log: {child}")
        and "| Operating threshold of pneumothorax | 0.5 | 0.7 |" in markdown.content.decode()
    )
    assert api_client(personas["auditor"]).get(f"/api/model-versions/{parent.pk}/change-log/").json()["initial"] is True
    assert api_client(personas["engineer_south"]).get(url).status_code == 404  # another institution's model is not found
    assert api_client(personas["clinician_north"]).get(url).status_code == 403  # dossier text and run results are not for clinicians
    assert api_client(personas["engineer_south"]).get(url, {"format": "md"}).status_code == 404
    assert api_client().get(url).status_code in {401, 403}
    assert api_client(personas["officer"]).get(f"/api/model-versions/{child.pk + 1000}/change-log/").status_code == 404


def test_change_log_against_another_version_of_the_same_model_only(personas, institutions, api_client):
    model = FoundationModelFactory(provider=institutions["vendor"])
    first = ModelVersionFactory(foundation_model=model)
    second = ModelVersionFactory(foundation_model=model, parent=first)
    third = ModelVersionFactory(
        foundation_model=model, parent=second, output_schema={"class_names": ["pneumothorax"], "thresholds": {"pneumothorax": 0.7}}
    )
    log = change_log_build(third, against=first).to_dict()
    assert log["parent"]["id"] == first.pk and log["version"]["id"] == third.pk
    other = ModelVersionFactory(foundation_model=FoundationModelFactory(provider=institutions["vendor"]))
    with pytest.raises(ValidationError) as caught:
        change_log_build(third, against=other)
    assert "versions of one model" in str(caught.value.message_dict["against"])
    officer = api_client(personas["officer"])
    url = f"/api/model-versions/{third.pk}/change-log/"
    assert officer.get(url, {"against": first.pk}).json()["parent"]["id"] == first.pk
    refused = officer.get(url, {"against": other.pk})
    assert refused.status_code == 400 and "versions of one model" in str(refused.json()["against"])
    assert officer.get(url, {"against": third.pk}).status_code == 400
    assert officer.get(url, {"against": "x"}).json()["against"] == ["No version 'x' that you may read."]
    assert officer.get(url, {"against": other.pk + 1000}).status_code == 400
