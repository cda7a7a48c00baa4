"""Per-case outputs stay with the data owner: a run's case table, saliency overlays and case flags
are seen by the users of the institution that stewards the run's dataset, and by the version
provider's users only once the steward shares them; charts go to whoever may read the run."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client

from core.models import AuditEvent
from registry.models import Dataset
from registry.services import user_create
from tests.factories import DatasetFactory, FoundationModelFactory, ModelVersionFactory, ProvenanceFactory
from validation.models import CaseFlag, RunFile, ValidationRun
from validation.report_views import report_without_cases

SHARE = "case_outputs_shared_with_provider"


def _file(run: ValidationRun, kind: str, name: str, data: bytes, content_type: str) -> RunFile:
    return RunFile.objects.create(
        run=run,
        kind=kind,
        name=name,
        storage_name=default_storage.save(f"runs/{run.pk}/attempt-1/{name}", ContentFile(data)),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        content_type=content_type,
    )


@pytest.fixture
def outputs(personas, institutions):
    """The vendor's version validated on a dataset North stewards (linked as external validation data)."""
    version = ModelVersionFactory(foundation_model=FoundationModelFactory(provider=institutions["vendor"]))
    dataset = DatasetFactory(institution=institutions["north"])
    ProvenanceFactory(version=version, dataset=dataset, role="external_validation")
    run = ValidationRun.objects.create(version=version, dataset=dataset, requested_by=personas["engineer"])
    files = {
        "chart": _file(run, "chart", "charts/roc.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        "saliency": _file(run, "saliency", "saliency/case-7.png", b"\x89PNG\r\n\x1a\n overlay", "image/png"),
        "case_table": _file(run, "case_table", "cases.parquet", b"PAR1 rows", "application/octet-stream"),
    }
    flag = CaseFlag.objects.create(run=run, label="nodule", row=7, image_path="img/7.dcm", uncertainty=0.6, probability=0.5, tta_std=0.1, cutoff=0.5)
    north_engineer = user_create(username="engineer_north", role="ml_engineer", institution=institutions["north"])
    return {"run": run, "dataset": dataset, "files": files, "flag": flag, "north_engineer": north_engineer}


def _seen(client, run: ValidationRun) -> dict[str, set]:
    """The kinds of the run's files the client lists and can download, and the flags it lists."""
    listed = {row["kind"] for row in client.get(f"/api/run-files/?run={run.pk}").json()["results"]}
    served = {f.kind for f in run.files.all() if client.get(f"/api/run-files/{f.pk}/content/").status_code == 200}
    flags = {row["id"] for row in client.get(f"/api/case-flags/?run={run.pk}").json()["results"]}
    return {"listed": listed, "served": served, "flags": flags}


@pytest.mark.django_db
def test_the_provider_sees_per_case_outputs_only_once_the_data_owner_shares_them(outputs, personas, api_client):
    run, flag = outputs["run"], outputs["flag"]
    everything = {"listed": {"chart", "saliency", "case_table"}, "served": {"chart", "saliency", "case_table"}, "flags": {flag.pk}}
    charts_only = {"listed": {"chart"}, "served": {"chart"}, "flags": set()}
    provider = [api_client(personas[name]) for name in ("engineer", "officer", "auditor")]
    north = api_client(outputs["north_engineer"])
    assert _seen(north, run) == everything
    for client in provider:
        assert _seen(client, run) == charts_only
        assert client.get(f"/api/case-flags/{flag.pk}/").status_code == 404

    response = north.patch(f"/api/datasets/{outputs['dataset'].pk}/", {SHARE: True}, format="json")
    assert response.status_code == 200 and response.json()[SHARE] is True
    for client in provider:
        assert _seen(client, run) == everything
    assert _seen(api_client(personas["officer2"]), run) == everything  # the provider's, whichever officer
    event = AuditEvent.objects.filter(object_type="registry.dataset", object_id=str(outputs["dataset"].pk), action="update").last()
    assert event.actor_username == "engineer_north" and event.changes[SHARE] == [False, True]  # who shared, and when


@pytest.mark.django_db
def test_sharing_with_the_provider_is_not_sharing_with_another_hospital(outputs, personas, institutions, api_client):
    Dataset.objects.filter(pk=outputs["dataset"].pk).update(**{SHARE: True})
    south_officer = user_create(username="officer_south", role="compliance_officer", institution=institutions["south"])
    assert _seen(api_client(south_officer), outputs["run"]) == {"listed": {"chart"}, "served": {"chart"}, "flags": set()}
    south_engineer = api_client(personas["engineer_south"])
    assert south_engineer.get(f"/api/run-files/{outputs['files']['chart'].pk}/").status_code == 404  # not even the run


@pytest.mark.django_db
def test_only_the_data_stewards_users_decide_the_sharing(outputs, personas, institutions, api_client):
    url = f"/api/datasets/{outputs['dataset'].pk}/"
    officer = api_client(personas["officer"])  # the provider's officer may edit North's datasheet, not North's terms
    response = officer.patch(url, {SHARE: True}, format="json")
    assert response.status_code == 400 and "(north)" in response.json()[SHARE][0]
    assert officer.patch(url, {SHARE: False, "description": "Checked."}, format="json").status_code == 200  # the current value again: no change
    assert api_client(personas["engineer"]).patch(url, {SHARE: True}, format="json").status_code == 403  # another institution's record
    created = officer.post(
        "/api/datasets/", {"name": "South set", "institution": institutions["south"].pk, "modality": "DX", SHARE: True}, format="json"
    )
    assert created.status_code == 400 and SHARE in created.json()
    assert not Dataset.objects.filter(name="South set").exists()
    outputs["dataset"].refresh_from_db()
    assert getattr(outputs["dataset"], SHARE) is False


@pytest.mark.django_db
def test_the_admin_shows_the_sharing_and_lets_only_the_steward_change_it(outputs, personas):
    change = f"/admin/registry/dataset/{outputs['dataset'].pk}/change/"
    for user, editable in ((personas["officer"], False), (outputs["north_engineer"], True)):
        user.is_staff = True
        user.save(update_fields=["is_staff"])
        client = Client()
        client.force_login(user)
        response = client.get(change)
        assert response.status_code == 200
        adminform = response.context["adminform"]
        assert (SHARE in adminform.form.fields) is editable and (SHARE in adminform.readonly_fields) is not editable


def test_report_without_cases_drops_every_image_path_and_counts_flagged_cases():
    report = {
        "skipped": [{"row": 3, "image_path": "a/b.dcm", "reason": "unreadable"}],
        "results": {
            "nodule": {"uncertainty": {"flagged_cases": [{"row": 1, "image_path": "x.dcm"}, {"row": 2, "image_path": "y.dcm"}], "coverage": 0.9}}
        },
        "explainability": {"cases": [{"row": 1, "image_path": "x.dcm", "faithfulness": 0.4}]},
    }
    redacted = report_without_cases(report)
    assert "image_path" not in json.dumps(redacted)
    assert redacted["results"]["nodule"]["uncertainty"] == {"n_flagged_cases": 2, "coverage": 0.9}
    assert redacted["skipped"] == [{"row": 3, "reason": "unreadable"}]
    assert redacted["explainability"]["cases"] == [{"row": 1, "faithfulness": 0.4}]
    assert report["skipped"][0]["image_path"] == "a/b.dcm"  # a copy: the stored report is untouched


@pytest.mark.django_db
def test_the_run_report_names_cases_only_to_those_who_may_see_them(outputs, personas, api_client):
    run = outputs["run"]
    run.results = {
        "skipped": [{"row": 3, "image_path": "img/3.dcm", "reason": "unreadable"}],
        "results": {"nodule": {"uncertainty": {"flagged_cases": [{"row": 7, "image_path": "img/7.dcm"}]}}},
    }
    run.save(update_fields=["results"])
    steward = api_client(outputs["north_engineer"]).get(f"/api/validation-runs/{run.pk}/").json()
    provider = api_client(personas["engineer"]).get(f"/api/validation-runs/{run.pk}/").json()
    assert "img/7.dcm" in json.dumps(steward["results"]) and "img/3.dcm" in json.dumps(steward["results"])
    assert "image_path" not in json.dumps(provider["results"])
    assert provider["results"]["results"]["nodule"]["uncertainty"] == {"n_flagged_cases": 1}

    Dataset.objects.filter(pk=outputs["dataset"].pk).update(**{SHARE: True})
    shared = api_client(personas["engineer"]).get(f"/api/validation-runs/{run.pk}/").json()
    assert "img/7.dcm" in json.dumps(shared["results"])
