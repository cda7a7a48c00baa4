"""Federated validation, server side: studies, the site agents' API, reports and pooling.

Payloads are built with the real engine (``site_summary``) on generated cases with a
different prevalence and separation per site, and posted through the API by agents that
authenticate with the token ``manage.py agent_token`` prints.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from core.access import role_of
from core.errors import Conflict
from core.models import AuditEvent
from radtrust_agent.pacs import PacsProblem, reason_text
from radtrust_engine.dicomweb import DicomwebProblem
from radtrust_engine.federated import site_summary
from radtrust_engine.federated_payload import SiteSummary
from radtrust_engine.federated_pooling import pool_sites, site_meta_analysis
from radtrust_engine.hashing import canonical_sha256
from registry.models import User
from registry.services import user_create
from tests.factories import FoundationModelFactory, InstitutionFactory
from validation.federated import payload_sha256
from validation.models import FederatedJob, FederatedStudy, SiteReport, StudyPooling

LABELS = ("effusion", "nodule")
THRESHOLDS = {"effusion": 0.5, "nodule": 0.4}
SPEC = {"intersections": [["sex", "age_band"]], "n_resamples": 50, "thresholds": {"nodule": 0.4}}
SITES = {"east": (0.08, 1.0, 300), "north": (0.15, 1.6, 500), "south": (0.30, 2.4, 400)}  # prevalence, separation, cases
ID_PREFIX = "PT0~"  # every generated patient id carries it (the tilde: no token or hash can); none may reach the database


def _cases(code: str, *, seed: int = 0):
    prevalence, separation, n = SITES[code]
    rng = np.random.default_rng(sorted(SITES).index(code) + 1 + 100 * seed)
    pid = np.array([f"{code.upper()}-{ID_PREFIX}{i:05d}" for i in rng.integers(0, int(n * 0.7), n)])
    attributes = {
        "sex": rng.choice(["F", "M"], n),
        "age_band": rng.choice(["18-39", "40-64", "65+"], n, p=[0.3, 0.4, 0.3]),
        "scanner_manufacturer": rng.choice(["GE", "Siemens", "Philips"], n, p=[0.4, 0.35, 0.25]),
    }
    scores, labels = {}, {}
    for label, prev in (("effusion", prevalence), ("nodule", min(0.5, prevalence * 1.5))):
        y = (rng.random(n) < prev).astype(int)
        z = rng.normal(size=n) + separation * y - 1.5 + 0.3 * (attributes["scanner_manufacturer"] == "GE")
        scores[label], labels[label] = 1.0 / (1.0 + np.exp(-z)), y
    return scores, labels, pid, attributes


def _payload(code: str, *, seed: int = 0, min_patients: int = 10, attributes=("sex", "age_band", "scanner_manufacturer")) -> dict:
    """What a site's agent sends, as JSON text parsed back."""
    scores, labels, pid, attrs = _cases(code, seed=seed)
    summary = site_summary(
        scores,
        labels,
        pid,
        {a: attrs[a] for a in attributes},
        [("sex", "age_band")],
        thresholds=THRESHOLDS,
        min_patients=min_patients,
        n_resamples=50,
        seed=0,
    )
    return json.loads(json.dumps(summary.to_dict()))


def _patient_ids() -> set[str]:
    return {str(p) for code in SITES for p in _cases(code)[2]}


def _agent(code: str) -> APIClient:
    """An API client holding the token ``manage.py agent_token`` prints for the site."""
    out = io.StringIO()
    call_command("agent_token", institution=code, stdout=out)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {out.getvalue().strip()}")
    return client


def _report_body(payload: dict, **extra) -> dict:
    return {
        "payload": payload,
        "approved_by": "Dr. Data Owner",
        "approved_at": timezone.now().isoformat(),
        "agent": {"version": "0.1.0", "device": "cpu", "seconds": 3.2, "timings": {"inference": 2.1, "summary": 0.4}},
        **extra,
    }


@pytest.fixture
def world(personas, institutions, register_version, api_client):
    """A vendor version with two labels and a real artifact, three hospitals, and a way to open a study."""
    east = InstitutionFactory(code="east", name="East Hospital")
    sites = {"north": institutions["north"], "south": institutions["south"], "east": east}
    model = FoundationModelFactory(provider=institutions["vendor"])
    version = register_version(
        model, output_schema={"class_names": list(LABELS), "thresholds": {"effusion": 0.5, "nodule": 0.3}, "activation": "sigmoid"}
    )
    engineer = api_client(personas["engineer"])

    def open_study(codes=("east", "north", "south"), **fields) -> FederatedStudy:
        body = {
            "version": version.pk,
            "name": "Effusion across hospitals",
            "spec": SPEC,
            "deadline": (timezone.now() + timedelta(days=7)).isoformat(),
            "sites": [sites[c].pk for c in codes],
            **fields,
        }
        response = engineer.post("/api/federated-studies/", body, format="json")
        assert response.status_code == 201, response.content
        return FederatedStudy.objects.get(pk=response.json()["id"])

    return {"version": version, "sites": sites, "open_study": open_study, "engineer": engineer}


def _job(study: FederatedStudy, code: str) -> FederatedJob:
    return study.jobs.get(institution__code=code)


def _report(agent: APIClient, job: FederatedJob, payload: dict):
    assert agent.post(f"/api/federated/jobs/{job.pk}/claim/").status_code == 200
    return agent.post(f"/api/federated/jobs/{job.pk}/report/", _report_body(payload), format="json")


# --- Accounts, studies and the design --------------------------------------------------------


@pytest.mark.django_db
def test_agent_token_command_creates_a_site_agent_of_the_site_once(world):
    """The account is made once; each call prints a new token (on one line), and each of them works."""
    outs = [io.StringIO(), io.StringIO()]
    for out in outs:
        call_command("agent_token", institution="north", stdout=out)
    keys = [out.getvalue().strip() for out in outs]
    assert keys[0] != keys[1] and all(len(out.getvalue().strip().splitlines()) == 1 for out in outs)
    agent = User.objects.get(username="agent-north")
    assert role_of(agent) == "site_agent" and agent.institution.code == "north"
    assert agent.api_tokens.count() == 2
    for key in keys:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        assert client.get("/api/federated/jobs/").status_code == 200
    with pytest.raises(CommandError, match="No institution"):
        call_command("agent_token", institution="nowhere", stdout=io.StringIO())


@pytest.mark.django_db
def test_a_study_has_one_pending_job_per_site_and_its_design_defaults_filled(world):
    study = world["open_study"]()
    assert sorted(study.jobs.values_list("institution__code", "status")) == [("east", "pending"), ("north", "pending"), ("south", "pending")]
    assert study.spec == {
        "labels": ["effusion", "nodule"],
        "attributes": ["sex", "age_band", "scanner_manufacturer"],
        "intersections": [["sex", "age_band"]],
        "min_patients": 10,
        "thresholds": {"effusion": 0.5, "nodule": 0.4},
        "n_resamples": 50,
        "seed": 0,
        "manifest": "manifest.csv",
    }
    assert AuditEvent.objects.filter(object_type="validation.federatedstudy", object_id=str(study.pk), action="create").exists()
    assert AuditEvent.objects.filter(object_type="validation.federatedjob", action="create").count() == 3


@pytest.mark.django_db
def test_a_bad_design_is_refused_with_every_problem_named_and_nothing_stored(world):
    spec = {
        "labels": ["effusion", "pneumothorax"],
        "min_patients": 5,
        "intersections": [["sex", "height"]],
        "attributes": ["sex", "scanner_vendor"],
        "manifest": "../elsewhere.csv",
        "thresholds": {"effusion": 1.5},
        "colour": "red",
    }
    response = world["engineer"].post(
        "/api/federated-studies/",
        {
            "version": world["version"].pk,
            "name": "x",
            "spec": spec,
            "deadline": (timezone.now() - timedelta(days=1)).isoformat(),
            "sites": [world["sites"]["north"].pk],
        },
        format="json",
    )
    assert response.status_code == 400
    errors = response.json()
    text = " ".join(errors["spec"])
    for expected in (
        "unknown keys colour",
        "'pneumothorax' is not a class of this version",
        "min_patients: give a whole number of at least 10",
        "['sex', 'height'] is not a pair",
        "threshold of 'effusion' must be a number between 0 and 1",
        "manifest:",
        "'scanner_vendor' is not an attribute a manifest records",
    ):
        assert expected in text, expected
    assert "deadline" in errors
    assert not FederatedStudy.objects.exists() and not FederatedJob.objects.exists()


@pytest.mark.django_db
def test_a_design_may_name_a_pacs_query_that_each_site_runs_on_its_own_pacs(world):
    query = {"modality": "dx", "body_part": "CHEST", "study_dates": "20240101-20241231", "labels": "pacs/labels.csv", "accessions": "pacs/acc.txt"}
    study = world["open_study"](spec={**SPEC, "dicomweb": query})
    assert study.spec["dicomweb"] == {**query, "modality": "DX", "series_description": ""}
    agent = _agent("north")
    [job] = agent.get("/api/federated/jobs/?status=pending").json()
    assert job["spec"]["dicomweb"] == study.spec["dicomweb"]
    # Every reason the agent reports for its PACS passes the server's check for paths and file names.
    for code in (*DicomwebProblem, *PacsProblem):
        assert agent.post(f"/api/federated/jobs/{job['id']}/claim/").status_code == 200
        failed = agent.post(f"/api/federated/jobs/{job['id']}/fail/", {"reason": f"{code}: {reason_text(code)}"}, format="json")
        assert failed.status_code == 200, failed.content

    bad = {"base_url": "https://pacs.north.example/dicom-web", "study_dates": "20241231-20240101", "labels": "../labels.csv"}
    response = world["engineer"].post(
        "/api/federated-studies/",
        {
            "version": world["version"].pk,
            "name": "x",
            "spec": {**SPEC, "dicomweb": bad},
            "deadline": study.deadline.isoformat(),
            "sites": [world["sites"]["north"].pk],
        },
        format="json",
    )
    assert response.status_code == 400
    text = " ".join(response.json()["spec"])
    for expected in (
        "dicomweb: unknown keys base_url",
        "each site's agent has its own PACS address",
        "the range must end after it starts",
        "labels: '../labels.csv'",
    ):
        assert expected in text, expected
    assert FederatedStudy.objects.count() == 1


# --- The agent's API: scope, claim, artifact -------------------------------------------------


@pytest.mark.django_db
def test_an_agent_sees_only_its_own_sites_jobs_in_the_agreed_shape(world):
    study = world["open_study"]()
    north, south = _agent("north"), _agent("south")
    listed = north.get("/api/federated/jobs/?status=pending")
    assert listed.status_code == 200
    [job] = listed.json()
    assert job["id"] == _job(study, "north").pk and job["study"] == study.pk and job["status"] == "pending"
    assert job["spec"] == study.spec and job["deadline"]
    version = world["version"]
    assert job["version"]["id"] == version.pk and job["version"]["artifact_sha256"] == version.artifact_sha256
    assert job["version"]["files"] == [{k: f[k] for k in ("name", "sha256", "size", "role")} for f in version.artifact_files]
    assert set(job["version"]) == {"id", "label", "artifact_sha256", "files", "output_schema", "preprocessing", "task", "modality"}

    other = _job(study, "north").pk
    name = version.artifact_files[0]["name"]
    assert south.get(f"/api/federated/jobs/{other}/").status_code == 404
    assert south.post(f"/api/federated/jobs/{other}/claim/").status_code == 404
    assert north.post(f"/api/federated/jobs/{other}/claim/").status_code == 200
    assert south.get(f"/api/federated/jobs/{other}/artifact/{name}/").status_code == 404
    assert south.post(f"/api/federated/jobs/{other}/report/", _report_body(_payload("south")), format="json").status_code == 404
    assert south.post(f"/api/federated/jobs/{other}/fail/", {"reason": "x"}, format="json").status_code == 404
    assert _job(study, "north").status == "claimed" and not SiteReport.objects.exists()


@pytest.mark.django_db
def test_claiming_is_idempotent_and_the_artifact_is_served_only_to_the_claimed_job(world):
    from radtrust_engine.artifacts import artifact_dir
    from registry.services import artifact_root

    study = world["open_study"]()
    north, job = _agent("north"), _job(study, "north")
    version = world["version"]
    entry = version.artifact_files[0]
    url = f"/api/federated/jobs/{job.pk}/artifact/{entry['name']}/"
    refused = north.get(url)
    assert refused.status_code == 409 and refused.json()["code"] == "not_claimed"

    first, again = north.post(f"/api/federated/jobs/{job.pk}/claim/"), north.post(f"/api/federated/jobs/{job.pk}/claim/")
    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == again.json()["status"] == "claimed" and again.json()["attempts"] == 1
    assert AuditEvent.objects.filter(object_type="validation.federatedjob", object_id=str(job.pk), action="claim").count() == 1
    assert north.get("/api/federated/jobs/?status=pending").json() == []
    assert [j["id"] for j in north.get("/api/federated/jobs/?status=claimed").json()] == [job.pk]

    response = north.get(url, HTTP_ACCEPT="application/octet-stream")
    assert response.status_code == 200 and response["Content-Type"] == "application/octet-stream"
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == entry["sha256"] == response["X-Content-SHA256"]
    assert body == (artifact_dir(artifact_root(), version.artifact_sha256) / entry["name"]).read_bytes()
    assert north.get(f"/api/federated/jobs/{job.pk}/artifact/other.onnx/").status_code == 404


# --- Reports -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_payload_with_per_case_data_small_cells_or_another_design_is_refused_and_nothing_stored(world):
    study = world["open_study"]()
    north, job = _agent("north"), _job(study, "north")
    assert north.post(f"/api/federated/jobs/{job.pk}/claim/").status_code == 200

    leaking = _payload("north")
    leaking["strata"][0]["labels"]["effusion"]["patient_ids"] = ["NORTH-PT000001", "NORTH-PT000002"]
    response = north.post(f"/api/federated/jobs/{job.pk}/report/", _report_body(leaking), format="json")
    assert response.status_code == 400
    assert any("patient_ids" in m and "per-case data" in m for m in response.json()["payload"])

    small = _payload("north", min_patients=2)
    response = north.post(f"/api/federated/jobs/{job.pk}/report/", _report_body(small), format="json")
    assert response.status_code == 400
    assert any(m.startswith("min_patients: 2 is under the minimum of 10") for m in response.json()["payload"])

    other_design = _payload("north", attributes=("sex", "age_band"))
    body = _report_body(other_design, approved_by="", agent={"device": "/home/site/data/images"})
    response = north.post(f"/api/federated/jobs/{job.pk}/report/", body, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert any(m.startswith("attributes: the study's design has ['sex', 'age_band', 'scanner_manufacturer']") for m in errors["payload"])
    assert "approved_by" in errors and any("path" in m for m in errors["agent"])
    assert not SiteReport.objects.exists()
    job.refresh_from_db()
    assert job.status == "claimed"


@pytest.mark.django_db
def test_the_same_payload_again_is_the_stored_report_and_a_different_one_a_conflict(world):
    study = world["open_study"]()
    north, job = _agent("north"), _job(study, "north")
    payload = _payload("north")
    first = _report(north, job, payload)
    assert first.status_code == 201
    assert first.json()["payload_sha256"] == payload_sha256(payload) == canonical_sha256(payload)
    again = north.post(f"/api/federated/jobs/{job.pk}/report/", _report_body(payload), format="json")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    different = north.post(f"/api/federated/jobs/{job.pk}/report/", _report_body(_payload("north", seed=7)), format="json")
    assert different.status_code == 409 and different.json()["code"] == "already_reported"
    assert north.post(f"/api/federated/jobs/{job.pk}/claim/").json()["code"] == "already_reported"
    report = SiteReport.objects.get()
    assert report.payload == payload and report.approved_by == "Dr. Data Owner" and report.job.status == "reported"
    assert report.submitted_by.username == "agent-north" and report.agent["device"] == "cpu"


@pytest.mark.django_db
def test_a_report_stored_with_the_legacy_hash_still_knows_its_payload(world, monkeypatch):
    """Reports stored before canonical hashing keep their legacy hash; the same payload sent again
    is still the stored report, and a different one still a conflict."""
    study = world["open_study"]()
    north, job = _agent("north"), _job(study, "north")
    payload = _payload("north")
    legacy = hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert legacy != canonical_sha256(payload)  # the payload's floats are spelt differently
    with monkeypatch.context() as patch:
        patch.setattr("validation.federated.payload_sha256", lambda value: legacy)  # the hashing of the day
        assert _report(north, job, payload).status_code == 201
    assert SiteReport.objects.get().payload_sha256 == legacy
    again = north.post(f"/api/federated/jobs/{job.pk}/report/", _report_body(payload), format="json")
    assert again.status_code == 200 and again.json()["payload_sha256"] == legacy
    different = north.post(f"/api/federated/jobs/{job.pk}/report/", _report_body(_payload("north", seed=7)), format="json")
    assert different.status_code == 409 and different.json()["code"] == "already_reported"


@pytest.mark.django_db
def test_a_report_is_never_edited(world):
    study = world["open_study"](("north",))
    assert _report(_agent("north"), _job(study, "north"), _payload("north")).status_code == 201
    report = SiteReport.objects.get()
    report.approved_by = "someone else"
    with pytest.raises(Conflict, match="never edited"):
        report.save()
    with pytest.raises(Conflict, match="never edited"):
        SiteReport.objects.update(approved_by="someone else")
    assert SiteReport.objects.get().approved_by == "Dr. Data Owner"


@pytest.mark.django_db
def test_a_report_body_over_one_mebibyte_is_refused_before_it_is_parsed(world):
    study = world["open_study"]()
    north, job = _agent("north"), _job(study, "north")
    north.post(f"/api/federated/jobs/{job.pk}/claim/")
    body = b'{"payload": "' + b"x" * (1024 * 1024) + b'"}'
    response = north.generic("POST", f"/api/federated/jobs/{job.pk}/report/", body, content_type="application/json")
    assert response.status_code == 413 and "KiB" in response.json()["detail"]
    assert not SiteReport.objects.exists()


@pytest.mark.django_db
def test_a_failure_is_kept_with_its_reason_for_officers_and_the_site_may_claim_again(world, personas, api_client):
    study = world["open_study"]()
    north, job = _agent("north"), _job(study, "north")
    north.post(f"/api/federated/jobs/{job.pk}/claim/")
    for leaky in ("copied from /mnt/pacs/x", "cannot read img/NORTH-PT00001.dcm: truncated", "C:\\data\\north"):
        assert north.post(f"/api/federated/jobs/{job.pk}/fail/", {"reason": leaky}, format="json").status_code == 400, leaky
    reason = "artifact hash mismatch: the downloaded model does not match the registry's sha256; refused to run"
    failed = north.post(f"/api/federated/jobs/{job.pk}/fail/", {"reason": reason}, format="json")
    assert failed.status_code == 200 and failed.json()["status"] == "failed" and failed.json()["error"] == reason
    assert AuditEvent.objects.filter(object_type="validation.federatedjob", object_id=str(job.pk), action="fail").exists()
    seen = api_client(personas["officer"]).get(f"/api/federated-studies/{study.pk}/").json()
    assert {"institution": "north", "status": "failed", "error": reason}.items() <= next(
        j for j in seen["jobs"] if j["institution"] == "north"
    ).items()
    pooled = api_client(personas["officer"]).get(f"/api/federated-studies/{study.pk}/pooled/").json()
    assert pooled["failed"] == ["north"] and next(s for s in pooled["sites"] if s["code"] == "north")["error"] == reason
    retry = north.post(f"/api/federated/jobs/{job.pk}/claim/").json()
    assert retry["status"] == "claimed" and retry["attempts"] == 2 and retry["error"] == ""


# --- Pooling -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_pooled_figures_are_pool_sites_on_the_reported_summaries_with_a_meta_analysis_and_forest_plots(world, personas, api_client):
    study = world["open_study"]()
    payloads = {code: _payload(code) for code in SITES}
    for code, payload in payloads.items():
        assert _report(_agent(code), _job(study, code), payload).status_code == 201
    officer = api_client(personas["officer"])
    response = officer.get(f"/api/federated-studies/{study.pk}/pooled/")
    assert response.status_code == 200
    pooled = response.json()

    summaries = {code: SiteSummary.from_dict(payloads[code]) for code in sorted(SITES)}
    expected = pool_sites(summaries)
    assert pooled["pooled"]["sites"] == ["east", "north", "south"]
    for stratum, reference in zip(pooled["pooled"]["strata"], expected.strata):
        assert stratum["name"] == reference.name and stratum["missing_sites"] == list(reference.missing_sites)
        for label in LABELS:
            for metric in ("auroc", "sensitivity", "specificity", "prevalence"):
                assert stratum["labels"][label][metric] == getattr(reference.labels[label], metric).to_dict()
    overall = pooled["pooled"]["strata"][0]
    assert overall["name"] == "overall" and overall["complete"] and overall["labels"]["effusion"]["auroc"]["ci_low"] is not None

    for label in LABELS:
        for metric in ("auroc", "sensitivity", "specificity"):
            meta = pooled["meta_analysis"][label][metric]
            reference = site_meta_analysis(summaries, label=label, metric=metric)
            assert meta["refused_reason"] is None and meta["k"] == 3
            assert meta["i2"] == pytest.approx(reference.i2) and meta["tau2"] == pytest.approx(reference.tau2)
            assert meta["estimate"] == pytest.approx(reference.estimate) and meta["prediction_low"] is not None
    assert pooled["meta_analysis"]["effusion"]["auroc"]["i2"] > 0.3  # separations 1.0 / 1.6 / 2.4 differ on purpose
    rows = {(r["site"], r["label"]): r for r in pooled["site_results"]}
    assert len(rows) == 6 and rows[("south", "effusion")]["auroc"] == summaries["south"].stratum().labels["effusion"].metrics["auroc"].to_dict()
    assert pooled["completeness"] == {"invited": 3, "reported": 3, "complete": True} and pooled["not_reported"] == []

    charts = {c["name"]: c for c in pooled["charts"]}
    assert len(charts) == 6
    chart = charts["study-forest-auroc-effusion"]
    served = officer.get(chart["url"])
    assert served.status_code == 200 and served["Content-Type"] == "image/svg+xml"
    svg = served.content.decode()
    assert hashlib.sha256(served.content).hexdigest() == chart["sha256"]
    assert "AUROC across sites: effusion" in svg and "I² = " in svg and "tau² = " in svg and "prediction interval" in svg
    assert "east" in chart["alt"] and "pooled" in chart["alt"]
    assert officer.get(f"/api/federated-studies/{study.pk}/charts/nothing.svg/").status_code == 404
    officer.get(f"/api/federated-studies/{study.pk}/pooled/")
    assert StudyPooling.objects.filter(study=study).count() == 1  # rendered once for these reports


@pytest.mark.django_db
def test_a_one_site_study_refuses_the_meta_analysis_with_its_reason_and_still_shows_pooled_figures(world, personas, api_client):
    study = world["open_study"](("north",))
    assert _report(_agent("north"), _job(study, "north"), _payload("north")).status_code == 201
    pooled = api_client(personas["engineer"]).get(f"/api/federated-studies/{study.pk}/pooled/").json()
    meta = pooled["meta_analysis"]["effusion"]["auroc"]
    assert "at least 2 sites" in meta["refused_reason"] and meta["estimate"] is None and meta["i2"] is None
    assert [s["site"] for s in meta["sites"]] == ["north"]
    overall = pooled["pooled"]["strata"][0]["labels"]["effusion"]
    assert overall["auroc"]["value"] == pytest.approx(
        SiteSummary.from_dict(_payload("north")).stratum().labels["effusion"].metrics["auroc"].value, abs=2e-3
    )
    chart = next(c for c in pooled["charts"] if c["name"] == "study-forest-auroc-effusion")
    assert "meta-analysis refused" in api_client(personas["engineer"]).get(chart["url"]).content.decode()


@pytest.mark.django_db
def test_sites_without_a_report_are_listed_as_not_reported_then_as_missing_the_deadline(world, personas, api_client):
    study = world["open_study"]()
    assert _report(_agent("north"), _job(study, "north"), _payload("north")).status_code == 201
    south = _agent("south")
    south.post(f"/api/federated/jobs/{_job(study, 'south').pk}/claim/")
    officer = api_client(personas["officer"])
    pooled = officer.get(f"/api/federated-studies/{study.pk}/pooled/").json()
    assert pooled["reported"] == ["north"] and pooled["not_reported"] == ["east", "south"] and pooled["missed_deadline"] == []
    assert {s["code"]: s["outcome"] for s in pooled["sites"]} == {"east": "not reported", "north": "reported", "south": "not reported"}
    assert pooled["completeness"] == {"invited": 3, "reported": 1, "complete": False}
    assert pooled["pooled"]["sites"] == ["north"] and pooled["meta_analysis"]["effusion"]["auroc"]["refused_reason"]

    FederatedStudy.objects.filter(pk=study.pk).update(deadline=timezone.now() - timedelta(minutes=1))
    pooled = officer.get(f"/api/federated-studies/{study.pk}/pooled/").json()
    assert pooled["deadline_passed"] and pooled["missed_deadline"] == ["east", "south"]
    assert {s["code"]: s["outcome"] for s in pooled["sites"]}["east"] == "missed the deadline"
    late = south.post(f"/api/federated/jobs/{_job(study, 'south').pk}/report/", _report_body(_payload("south")), format="json")
    assert late.status_code == 409 and late.json()["code"] == "deadline_passed"
    assert _agent("east").get("/api/federated/jobs/?status=pending").json() == []
    assert SiteReport.objects.count() == 1


@pytest.mark.django_db
def test_a_closed_study_takes_no_more_claims(world):
    study = world["open_study"]()
    response = world["engineer"].post(f"/api/federated-studies/{study.pk}/close/")
    assert response.status_code == 200 and response.json()["status"] == "closed"
    claim = _agent("north").post(f"/api/federated/jobs/{_job(study, 'north').pk}/claim/")
    assert claim.status_code == 409 and claim.json()["code"] == "study_closed"
    assert world["engineer"].post(f"/api/federated-studies/{study.pk}/close/").status_code == 409


# --- Who sees what -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_studies_are_for_the_providers_engineers_officers_and_auditors_only(world, personas, api_client):
    study = world["open_study"](("north",))
    url = f"/api/federated-studies/{study.pk}/"
    for who in ("engineer", "officer", "auditor"):
        client = api_client(personas[who])
        assert client.get(url).status_code == 200 and client.get(f"{url}pooled/").status_code == 200, who
    assert api_client(personas["officer"]).post(f"{url}close/").status_code == 200
    other = api_client(personas["engineer_south"])
    assert other.get("/api/federated-studies/").json()["count"] == 0
    assert other.get(url).status_code == 404 and other.get(f"{url}pooled/").status_code == 404
    refused = other.post(
        "/api/federated-studies/",
        {
            "version": world["version"].pk,
            "name": "x",
            "spec": {},
            "deadline": (timezone.now() + timedelta(days=1)).isoformat(),
            "sites": [world["sites"]["south"].pk],
        },
        format="json",
    )
    assert refused.status_code == 400 and "version" in refused.json()
    for who in ("clinician_north", "worker"):
        assert api_client(personas[who]).get(url).status_code == 403
        assert api_client(personas[who]).get(f"{url}pooled/").status_code == 403
    for who in ("officer", "engineer", "clinician_north", "worker"):  # the central worker is no site's agent
        assert api_client(personas[who]).get("/api/federated/jobs/").status_code == 403


@pytest.mark.django_db
def test_a_site_agent_reads_its_sites_studies_with_its_own_job_only(world):
    study = world["open_study"](("north", "south"))
    north, east = _agent("north"), _agent("east")
    url = f"/api/federated-studies/{study.pk}/"
    [listed] = north.get("/api/federated-studies/").json()["results"]
    assert listed["id"] == study.pk and [job["institution"] for job in listed["jobs"]] == ["north"]
    assert [job["institution"] for job in north.get(url).json()["jobs"]] == ["north"]
    assert east.get("/api/federated-studies/").json()["count"] == 0 and east.get(url).status_code == 404  # not a site of it
    for refused in (north.get(f"{url}pooled/"), north.post(f"{url}close/"), north.post("/api/federated-studies/", {}, format="json")):
        assert refused.status_code == 403  # the pooled figures and the study's course are the provider's


@pytest.mark.django_db
def test_agent_token_refuses_an_account_of_that_name_in_another_role(world):
    user_create(username="agent-north", role="worker", institution=world["sites"]["north"])
    with pytest.raises(CommandError, match="not the site agent of north"):
        call_command("agent_token", institution="north", stdout=io.StringIO())


# --- Data minimisation ---------------------------------------------------------------------------


def _texts(obj) -> list[str]:
    if isinstance(obj, dict):
        return [t for k, v in obj.items() for t in (str(k), *_texts(v))]
    if isinstance(obj, list):
        return [t for v in obj for t in _texts(v)]
    return [str(obj)]


@pytest.mark.django_db
def test_the_central_database_holds_no_patient_level_data_after_a_study(world, personas, api_client):
    study = world["open_study"]()
    for code in ("north", "south"):
        assert _report(_agent(code), _job(study, code), _payload(code)).status_code == 201
    _agent("east").post(f"/api/federated/jobs/{_job(study, 'east').pk}/claim/")
    failed = _agent("east").post(
        f"/api/federated/jobs/{_job(study, 'east').pk}/fail/", {"reason": "manifest.csv has no column scanner_manufacturer"}, format="json"
    )
    assert failed.status_code == 200  # the study's own manifest may be named
    api_client(personas["officer"]).get(f"/api/federated-studies/{study.pk}/pooled/")

    stored: list[str] = []
    for report in SiteReport.objects.all():
        stored += _texts(report.payload) + _texts(report.agent) + [report.approved_by, report.payload_sha256]
    for job in FederatedJob.objects.all():
        stored.append(job.error)
    for row in FederatedStudy.objects.all():
        stored += [row.name, *_texts(row.spec)]
    for pooling in StudyPooling.objects.all():
        stored += _texts(pooling.result) + _texts(pooling.charts)
    for event in AuditEvent.objects.all():
        stored += [event.object_repr, *_texts(event.changes)]
    text = "\n".join(stored)
    assert len(stored) > 1000 and "north" in text
    assert ID_PREFIX not in text
    leaked = [p for p in _patient_ids() if p in text]
    assert not leaked
    longest = max(len(v) for r in SiteReport.objects.all() for v in _lists(r.payload))
    assert longest <= 1182  # no list as long as a site's cases could hide in: histograms are run-length encoded bins


def _lists(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _lists(v)
    elif isinstance(obj, list):
        yield obj
        for v in obj:
            yield from _lists(v)
