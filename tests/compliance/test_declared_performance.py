"""Declared performance (issue 17, part 5): the officer pins the release evidence, the documents quote
it, post-market runs never stand in for it, and a claim the declared figures contradict stops
submission; with the rules around it that read several fields at once (the declaration's items,
the AI Act and MDR classes)."""

from __future__ import annotations

import html

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from compliance.claims import claim_check, claims_in_text
from compliance.declaration import declaration_missing
from compliance.dossier_checks import NO_DECLARED_PERFORMANCE, class_problems, submission_problems
from compliance.dossier_fields import completeness
from compliance.release_evidence import POST_MARKET, TEST, release_evidence_current, release_evidence_pin, run_role, version_run_role
from core.models import AuditEvent
from core.readable import metric, number
from tests.factories import dossier_officer_values
from validation.models import ValidationRun

# --- claims, without a database ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text, metric_name, op, bound",
    [
        ("Operating threshold chosen for sensitivity at least 0.85 on the tuning data.", "sensitivity", ">=", 0.85),
        ("Sensitivity >= 0.85.", "sensitivity", ">=", 0.85),
        ("Sensitivity ≥85%", "sensitivity", ">=", 0.85),
        ("a specificity of at least 90 percent at the operating point", "specificity", ">=", 0.90),
        ("The AUC exceeds 0.9.", "auroc", ">", 0.9),
        ("Recall is not below 0.8", "sensitivity", ">=", 0.8),  # negated: never read as "below"
        ("False-positive rate no more than 0.1 per study", "fpr", "<=", 0.1),
        ("0.85 or higher sensitivity", "sensitivity", ">=", 0.85),
        ("at least 85% sensitivity", "sensitivity", ">=", 0.85),
        ("An area under the ROC curve above 0.90 was required before release", "auroc", ">", 0.90),
        ("specificity traded against sensitivity of 0.85 or more", "sensitivity", ">=", 0.85),  # the nearest metric before the bound
    ],
)
def test_a_bound_on_a_metric_is_a_claim(text, metric_name, op, bound):
    (claim,) = claims_in_text("2b_design_specifications", text)
    assert (claim.metric, claim.op, claim.bound) == (metric_name, op, pytest.approx(bound))


@pytest.mark.parametrize(
    "text",
    [
        "Sensitivity was 0.72 (95% CI 0.66 to 0.78).",  # a value, not a bound
        "We report AUROC with its 95% CI.",
        "Sensitivity is reported for at least 95% of cases.",  # a share of cases, not of the metric
        "Threshold moves under 0.05 stay within the plan.",  # no metric
        "Inference takes under 10 ms per image.",
        "High sensitivity is the design goal.",  # no number: not found (docs/compliance.md)
    ],
)
def test_values_and_other_numbers_are_not_claims(text):
    assert claims_in_text("k", text) == []


def _declared(**overall) -> dict:
    return {"runs": [{"run": 7, "dataset": "North test set", "labels": {"nodule": {"threshold": 0.494, "overall": overall}}}]}


def test_a_claim_is_contradicted_not_demonstrated_or_consistent_by_the_declared_figures():
    declared = _declared(sensitivity={"value": 0.72, "ci_low": 0.66, "ci_high": 0.78}, auroc={"value": 0.90, "ci_low": 0.84, "ci_high": 0.95})
    verdict = {
        text: claim_check(claims_in_text("k", text)[0], declared).verdict
        for text in (
            "sensitivity at least 0.85",  # 0.72 breaks it
            "sensitivity at least 0.70",  # 0.72 keeps it, but the interval reaches 0.66
            "sensitivity at least 0.60",  # the whole interval keeps it
            "AUROC below 0.80",  # 0.90 breaks it
            "specificity at least 0.50",  # no declared figure
            "sensitivity at least 0.6 for patients aged 65 and over",  # about a group
        )
    }
    assert list(verdict.values()) == ["contradicted", "not_demonstrated", "consistent", "contradicted", "not_checkable", "not_checkable"]


def test_a_claim_that_names_a_label_is_checked_against_that_label_only():
    declared = {
        "runs": [
            {
                "run": 1,
                "dataset": "D",
                "labels": {
                    "nodule": {"overall": {"sensitivity": {"value": 0.9, "ci_low": 0.88, "ci_high": 0.92}}},
                    "effusion": {"overall": {"sensitivity": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}}},
                },
            }
        ]
    }
    (claim,) = claims_in_text("k", "Nodule sensitivity at least 0.85.", ["nodule", "effusion"])
    assert claim.labels == ("nodule",) and claim_check(claim, declared).verdict == "consistent"
    (unlabelled,) = claims_in_text("k", "Sensitivity at least 0.85.", ["nodule", "effusion"])
    assert claim_check(unlabelled, declared).verdict == "contradicted"  # effusion's 0.5 breaks it


# --- what submission checks, without a database ------------------------------------------------

MODEL = {"risk_class": "high", "mdr_class": "IIa", "intended_purpose": "Flag nodules."}


def _evidence(declared: dict | None) -> dict:
    return {"model_description": MODEL, "declared_performance": declared}


def _problems(values: dict, declared: dict | None) -> list[str]:
    evidence = _evidence(declared)
    done = completeness(values, {name: bool(data) for name, data in evidence.items()} | {"validation_runs": True, "version_identity": True})
    return [p.message for p in submission_problems(values, evidence, done)]


def test_a_contradicted_claim_blocks_submission_with_a_message_that_names_it():
    declared = _declared(sensitivity={"value": 0.72, "ci_low": 0.66, "ci_high": 0.78})
    values = dossier_officer_values() | {
        "2b_design_specifications": "The operating threshold was chosen for sensitivity at least 0.85 on tuning data."
    }
    (problem,) = [p for p in _problems(values, declared) if "claims" in p]
    assert "'Design specifications' claims Sensitivity at least 0.850" in problem
    assert "Sensitivity 0.720 (0.660 to 0.780) for nodule on North test set (run 7)" in problem and "Correct the claim" in problem


def test_a_consistent_claim_passes():
    declared = _declared(sensitivity={"value": 0.91, "ci_low": 0.88, "ci_high": 0.94})
    values = dossier_officer_values() | {
        "2b_design_specifications": "The operating threshold was chosen for sensitivity at least 0.85 on tuning data."
    }
    assert not [p for p in _problems(values, declared) if "claims" in p]


def test_no_pinned_evidence_refuses_submission():
    assert NO_DECLARED_PERFORMANCE in _problems(dossier_officer_values(), None)


def test_a_declaration_missing_an_item_is_refused_naming_it():
    values = {k: v for k, v in dossier_officer_values().items() if k not in {"mdr_basic_udi_di", "8_v3_sole_responsibility"}}
    missing = declaration_missing(values, "IIa")
    assert missing == [
        "Statement of sole responsibility (AI Act Annex V(3); MDR Annex IV(2): Statement of sole responsibility)",
        "Basic UDI-DI (MDR Annex IV(3): Basic UDI-DI)",
    ]
    assert any(p.startswith("The declaration of conformity lacks: Statement of sole responsibility") for p in _problems(values, _declared()))
    assert declaration_missing({**values, "mdr_notified_body_number": ""}, "I") == missing  # class I: no notified body
    assert "Notified body" in declaration_missing({**dossier_officer_values(), "mdr_notified_body_number": ""}, "IIb")[0]
    assert declaration_missing({k: v for k, v in values.items() if not k.startswith("mdr_")}, "") == missing[:1]  # not a device


def test_a_medical_device_declaration_cites_both_laws():
    values = dossier_officer_values() | {
        "8_v4_conformity": "The AI system is in conformity with Regulation (EU) 2024/1689 on artificial intelligence."
    }
    assert any("does not cite the MDR (Regulation (EU) 2017/745)" in p for p in _problems(values, _declared()))


@pytest.mark.parametrize(
    "risk_class, mdr_class, stated, expected",
    [
        ("high", "IIa", "Class IIa, Annex VIII Rule 11", []),
        ("minimal", "", "", []),
        ("limited", "IIa", "Class IIa, Annex VIII Rule 11", ["makes it a high-risk AI system"]),
        ("high", "I", "Class I, Annex VIII Rule 11", ["does not make it high-risk"]),
        ("high", "IIb", "Class IIa, Annex VIII Rule 11", ["states MDR class IIa", "records class IIb"]),
        ("minimal", "", "Class IIa, Annex VIII Rule 11", ["records no MDR class"]),
    ],
)
def test_the_ai_act_and_mdr_classes_are_checked_against_each_other(risk_class, mdr_class, stated, expected):
    problems = " ".join(class_problems(risk_class=risk_class, mdr_class=mdr_class, values={"mdr_class_rule": stated}))
    assert all(words in problems for words in expected) and bool(problems) == bool(expected)


def test_numbers_are_rounded_for_people():
    assert [number(v) for v in (0.49412345678, 0.0123456, 12.3456, 1234.5, 0.99996, 0.0, 42)] == [
        "0.494",
        "0.0123",
        "12.3",
        "1,234",
        "1.00",
        "0.00",
        "42",
    ]
    assert metric({"value": 0.731234, "ci_low": 0.70249, "ci_high": 0.7601}) == "0.731 (0.702 to 0.760)"
    assert metric({"value": 0.0123, "ci_low": 0.00449, "ci_high": 0.031}) == "0.0123 (0.0045 to 0.0310)"
    assert metric({"value": None, "ci_low": None, "ci_high": None}) == "not estimable"


def test_post_market_runs_are_never_release_evidence():
    run = ValidationRun(pk=3, dataset_id=11)
    assert run_role(run, pinned={3}, test_data={11}) == "declared"
    assert run_role(ValidationRun(pk=4, dataset_id=11), pinned={3}, test_data={11}) == TEST
    assert run_role(ValidationRun(pk=5, dataset_id=12), pinned={3}, test_data={11}) == POST_MARKET  # data not declared as test data
    assert run_role(ValidationRun(pk=6, dataset_id=11, deployment_id=1), pinned={3}, test_data={11}) == POST_MARKET  # a revalidation


# --- pinning, with a database -----------------------------------------------------------------


@pytest.fixture
def with_drift_run(run_setup, write_dataset, personas):
    """run_setup's version with a run on its test data and a later run on data its provenance does not name (a drift check)."""
    from registry.models import Dataset
    from registry.services import record_create
    from tests.factories import DataUseGrantFactory
    from validation import services

    later = record_create(
        model=Dataset,
        actor=personas["engineer"],
        fields={
            "name": "North follow-up",
            "institution": personas["clinician_north"].institution,
            "modality": "DX",
            "location": str(write_dataset("later", seed=3)),
        },
    )
    DataUseGrantFactory(dataset=later, grantee=run_setup["model"].provider)
    runs = {}
    for name, dataset in (("test", run_setup["dataset"]), ("drift", later)):
        run = services.run_create(
            actor=run_setup["engineer"], version=run_setup["version"], dataset=dataset, config={"n_resamples": 30, "min_patients": 5}
        )
        services.run_execute(run_id=run.pk, worker="w")
        runs[name] = ValidationRun.objects.get(pk=run.pk)
    return {**run_setup, "runs": runs}


POPULATION = "Adults with frontal chest radiographs at the North hospital."


@pytest.mark.django_db
def test_a_post_market_run_is_refused_and_never_shown_as_the_declared_performance(with_drift_run, personas):
    from compliance.dossier_evidence import dossier_evidence

    version, runs = with_drift_run["version"], with_drift_run["runs"]
    with pytest.raises(ValidationError) as refused:
        release_evidence_pin(actor=personas["officer"], version=version, runs=[runs["drift"]], population=POPULATION)
    assert "post-market evidence (North follow-up is not declared as this version's test data)" in str(refused.value)
    assert release_evidence_current(version) is None

    before = dossier_evidence(version, {"declared_performance", "validation_runs", "post_market_runs", "subgroup_performance"})
    assert before["declared_performance"] is None and before["subgroup_performance"]["declared"] is False
    assert before["subgroup_performance"]["run"] == runs["test"].pk  # the newest run on test data, never the drift run

    pin = release_evidence_pin(actor=personas["officer"], version=version, runs=[runs["test"]], population=POPULATION)
    assert pin.operating_points == {"pneumothorax": 0.5} and pin.pinned_by == personas["officer"]
    evidence = dossier_evidence(version, {"declared_performance", "validation_runs", "post_market_runs", "subgroup_performance"})
    assert [r["run"] for r in evidence["declared_performance"]["runs"]] == [runs["test"].pk]
    assert [(r["run"], r["role"]) for r in evidence["validation_runs"]] == [(runs["test"].pk, "declared")]
    assert [r["run"] for r in evidence["post_market_runs"]] == [runs["drift"].pk]
    assert evidence["subgroup_performance"]["declared"] is True and evidence["subgroup_performance"]["run"] == runs["test"].pk
    assert version_run_role(version)(runs["drift"]) == POST_MARKET


@pytest.mark.django_db
def test_pinning_is_an_officers_audited_act_at_the_shipped_operating_point(with_drift_run, personas):
    version, run = with_drift_run["version"], with_drift_run["runs"]["test"]
    with pytest.raises(PermissionDenied, match="Only a compliance officer of"):
        release_evidence_pin(actor=personas["engineer"], version=version, runs=[run], population=POPULATION)
    assert AuditEvent.objects.filter(action="pin_refused", object_type="registry.modelversion", object_id=str(version.pk)).exists()
    with pytest.raises(ValidationError, match="is not the 0.5 the runs measured"):
        release_evidence_pin(actor=personas["officer"], version=version, runs=[run], population=POPULATION, operating_points={"pneumothorax": 0.4})
    with pytest.raises(ValidationError, match="same dataset"):
        release_evidence_pin(actor=personas["officer"], version=version, runs=[run, run.__class__.objects.get(pk=run.pk)], population=POPULATION)
    with pytest.raises(ValidationError, match="population"):
        release_evidence_pin(actor=personas["officer"], version=version, runs=[run], population=" ")

    version.output_schema = {**version.output_schema, "thresholds": {"pneumothorax": 0.494}}
    version.save()
    with pytest.raises(ValidationError, match="ships with 0.494"):
        release_evidence_pin(actor=personas["officer"], version=version, runs=[run], population=POPULATION)
    version.output_schema = {**version.output_schema, "thresholds": {"pneumothorax": 0.5}}
    version.save()

    pin = release_evidence_pin(actor=personas["officer"], version=version, runs=[run], population=POPULATION, operating_points={"pneumothorax": 0.5})
    events = AuditEvent.objects.filter(object_type="compliance.releaseevidence", object_id=str(pin.pk))
    assert {e.action for e in events} >= {"create"} and any(str(run.pk) in str(e.changes) for e in events)


@pytest.mark.django_db
def test_api_lists_the_runs_with_their_role_and_pins(with_drift_run, personas, api_client):
    version, runs = with_drift_run["version"], with_drift_run["runs"]
    url = f"/api/model-versions/{version.pk}/release-evidence/"
    listed = api_client(personas["auditor"]).get(url).json()
    assert listed["current"] is None and {(r["id"], r["role"]) for r in listed["runs"]} == {
        (runs["test"].pk, "test"),
        (runs["drift"].pk, "post_market"),
    }
    assert api_client(personas["engineer"]).post(url, {"runs": [runs["test"].pk], "population": POPULATION}, format="json").status_code == 403
    refused = api_client(personas["officer"]).post(url, {"runs": [runs["drift"].pk], "population": POPULATION}, format="json")
    assert refused.status_code == 400 and "post-market" in str(refused.json())
    pinned = api_client(personas["officer"]).post(url, {"runs": [runs["test"].pk], "population": POPULATION}, format="json")
    assert pinned.status_code == 201 and pinned.json()["runs"] == [runs["test"].pk] and pinned.json()["pinned_by"] == "officer"
    assert api_client(personas["auditor"]).get(url).json()["current"]["operating_points"] == {"pneumothorax": 0.5}


@pytest.mark.django_db
def test_the_dossier_page_pins_and_says_what_submission_still_needs(with_drift_run, personas, client):
    from compliance.dossiers import dossier_open

    version, runs = with_drift_run["version"], with_drift_run["runs"]
    dossier = dossier_open(actor=personas["officer"], version=version)
    client.force_login(personas["officer"])
    page = html.unescape(client.get(f"/dossiers/{dossier.pk}/").content.decode())
    assert "No declared performance yet." in page and NO_DECLARED_PERFORMANCE in page
    assert f'value="{runs["drift"].pk}" disabled' in page and "post-market evidence: never declared" in page
    response = client.post(f"/dossiers/{dossier.pk}/release-evidence/", {"runs": [runs["test"].pk], "population": POPULATION})
    assert response.status_code == 302 and release_evidence_current(version).population == POPULATION
    page = html.unescape(client.get(f"/dossiers/{dossier.pk}/").content.decode())
    assert "In force: pinned by officer" in page and NO_DECLARED_PERFORMANCE not in page


@pytest.mark.django_db
def test_submission_is_refused_without_release_evidence_and_for_a_contradicted_claim(with_drift_run, personas, pin_release_evidence):
    from compliance.dossiers import dossier_open, dossier_save, dossier_submit

    version = with_drift_run["version"]
    dossier = dossier_open(actor=personas["officer"], version=version)
    dossier = dossier_save(actor=personas["officer"], dossier=dossier, values=dossier_officer_values(), edit_count=0)
    with pytest.raises(ValidationError) as refused:
        dossier_submit(actor=personas["officer"], dossier=dossier)
    assert refused.value.message_dict["values"] == [NO_DECLARED_PERFORMANCE]

    pin_release_evidence(version)
    declared = with_drift_run["runs"]["test"].summary["labels"]["pneumothorax"]["overall"]["sensitivity"]["value"]
    claim = f"Sensitivity at least {min(declared + 0.05, 1.0):.2f}" if declared < 0.95 else f"Sensitivity below {declared / 2:.2f}"
    dossier = dossier_save(
        actor=personas["officer"],
        dossier=dossier,
        values={"2b_design_specifications": f"{claim} was the design target, fixed before the test set was opened."},
        edit_count=1,
    )
    with pytest.raises(ValidationError) as contradicted:
        dossier_submit(actor=personas["officer"], dossier=dossier)
    (message,) = contradicted.value.message_dict["values"]
    assert message.startswith("'Design specifications' claims Sensitivity") and "North test set" in message
    dossier = dossier_save(
        actor=personas["officer"],
        dossier=dossier,
        values={"2b_design_specifications": dossier_officer_values()["2b_design_specifications"]},
        edit_count=2,
    )
    assert dossier_submit(actor=personas["officer"], dossier=dossier).status == "in_review"
