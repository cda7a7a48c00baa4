"""Scheduled revalidation by a site's agent: the beat dispatcher opens one one-site study per due
date (never a central run), the site's report is written on the deployment, and a job whose
deadline passes unreported leaves the deployment overdue."""

from __future__ import annotations

import io
import json
from datetime import datetime, time, timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from compliance.models import TrustAssessment
from compliance.trust.gather import version_evidence
from radtrust_engine.federated import site_summary
from registry.choices import DeploymentStatus, RevalidationBy, RevalidationState
from registry.models import Deployment, ModelVersion
from tests.concurrency import race
from validation.models import FederatedJob, FederatedStudy, ValidationRun
from validation.revalidation import next_due_on, revalidation_dispatch, revalidation_overdue_from

CADENCE = 30


@pytest.fixture
def agent_deployment(run_setup, personas):
    """run_setup's version, approved and active at North for 40 days with a 30-day cadence, revalidated by North's agent."""
    from registry.services import deployment_create
    from tests.factories import within_clinical_investigation

    version = run_setup["version"]
    ModelVersion.objects.filter(pk=version.pk).update(status="approved")
    version.refresh_from_db()
    within_clinical_investigation(version, personas["clinician_north"].institution, personas["officer"])  # deployable before placing on the market
    return deployment_create(
        actor=personas["officer"],
        version=version,
        institution=personas["clinician_north"].institution,
        status=DeploymentStatus.ACTIVE,
        since=timezone.localdate() - timedelta(days=40),
        revalidation_cadence_days=CADENCE,
        revalidation_by=RevalidationBy.SITE_AGENT,
    )


@pytest.fixture
def eager():
    from radtrust.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def _agent(code: str) -> APIClient:
    out = io.StringIO()
    call_command("agent_token", institution=code, stdout=out)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {out.getvalue().strip()}")
    return client


def _payload(spec: dict) -> dict:
    """What North's agent sends for the study's design, computed by the real engine on generated cases."""
    rng = np.random.default_rng(3)
    n = 400
    y = (rng.random(n) < 0.25).astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.8 * y - 1.0)))
    attributes = {
        "sex": rng.choice(["F", "M"], n),
        "age_band": rng.choice(["18-39", "40-64", "65+"], n),
        "scanner_manufacturer": rng.choice(["GE", "Siemens"], n),
    }
    summary = site_summary(
        {"pneumothorax": scores},
        {"pneumothorax": y},
        np.array([f"N{i:04d}" for i in range(n)]),
        {a: attributes[a] for a in spec["attributes"]},
        [tuple(p) for p in spec["intersections"]],
        thresholds=spec["thresholds"],
        min_patients=spec["min_patients"],
        n_resamples=spec["n_resamples"],
        seed=spec["seed"],
    )
    return json.loads(json.dumps(summary.to_dict()))


def test_a_due_agent_deployment_gets_one_site_job_and_no_central_run(agent_deployment, settings):
    settings.RADTRUST_AGENT_REVALIDATION_DAYS = 5
    today = timezone.localdate()
    due_on = today - timedelta(days=10)
    assert revalidation_dispatch(today=today) == {"queued": [agent_deployment.pk], "no_data": [], "skipped": []}
    assert revalidation_dispatch(today=today) == {"queued": [], "no_data": [], "skipped": []}  # beat fires again: nothing new

    assert not ValidationRun.objects.exists()
    study = FederatedStudy.objects.get()
    job = FederatedJob.objects.get()
    assert (job.study, job.institution.code, job.deployment, job.status) == (study, "north", agent_deployment, "pending")
    assert study.version == agent_deployment.version and study.created_by == agent_deployment.created_by
    assert study.spec["labels"] == ["pneumothorax"] and study.spec["thresholds"] == {"pneumothorax": 0.5}  # from the output schema
    # Dispatched ten days late: the site still gets the whole grace, counted from today.
    assert study.deadline == timezone.make_aware(datetime.combine(today + timedelta(days=6), time.min))
    agent_deployment.refresh_from_db()
    assert agent_deployment.agent_due_on == due_on and agent_deployment.revalidation_state == RevalidationState.QUEUED
    assert f"Job {job.pk} of study {study.pk}" in agent_deployment.revalidation_note
    assert next_due_on(agent_deployment) == due_on + timedelta(days=CADENCE)
    assert revalidation_overdue_from(agent_deployment) is None


def test_a_stale_dispatcher_loses_the_claim_on_the_due_date(agent_deployment):
    """A second dispatcher that read the deployment before the first one claimed its due date."""
    from validation.revalidation import hand_to_agent

    stale = Deployment.objects.select_related("version", "institution", "created_by").get(pk=agent_deployment.pk)
    today = timezone.localdate()
    revalidation_dispatch(today=today)
    assert hand_to_agent(stale, next_due_on(stale), "due", today=today) == "skipped"
    assert FederatedJob.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_racing_dispatchers_open_exactly_one_study(agent_deployment):
    outcomes, errors = race(lambda: revalidation_dispatch(today=timezone.localdate()))
    assert not errors, errors
    assert FederatedStudy.objects.count() == 1 and FederatedJob.objects.filter(deployment=agent_deployment).count() == 1
    assert sum(len(o["queued"]) for o in outcomes) == 1 and not ValidationRun.objects.exists()


def test_the_sites_report_is_written_on_the_deployment(agent_deployment, eager, django_capture_on_commit_callbacks):
    revalidation_dispatch()
    job = FederatedJob.objects.get()
    north = _agent("north")
    assert north.post(f"/api/federated/jobs/{job.pk}/claim/").status_code == 200
    body = {
        "payload": _payload(job.study.spec),
        "approved_by": "Dr. Data Owner",
        "approved_at": timezone.now().isoformat(),
        "agent": {"version": "0.1.0", "device": "cpu", "seconds": 2.0},
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = north.post(f"/api/federated/jobs/{job.pk}/report/", body, format="json")
    assert response.status_code == 201, response.content
    agent_deployment.refresh_from_db()
    assert agent_deployment.revalidation_state == RevalidationState.SUCCEEDED and agent_deployment.revalidated_at is not None
    note = agent_deployment.revalidation_note
    assert f"Job {job.pk}" in note and "approved by Dr. Data Owner" in note and "400 patients" in note and "pneumothorax AUROC 0." in note
    assert TrustAssessment.objects.filter(version=agent_deployment.version, trigger="site_report").count() == 1
    # The same payload again (an agent that lost the answer) changes nothing.
    assert north.post(f"/api/federated/jobs/{job.pk}/report/", body, format="json").status_code == 200
    assert revalidation_overdue_from(agent_deployment) is None
    assert revalidation_dispatch() == {"queued": [], "no_data": [], "skipped": []}


def test_an_unreported_job_past_its_deadline_leaves_the_deployment_overdue(agent_deployment):
    revalidation_dispatch()
    deployment = Deployment.objects.get(pk=agent_deployment.pk)
    assert not version_evidence(deployment.version).deployments[0].revalidation_overdue
    deadline = timezone.now() - timedelta(hours=1)
    FederatedStudy.objects.update(deadline=deadline)  # the grace has run out without a report

    assert revalidation_overdue_from(deployment) == deadline
    assert version_evidence(deployment.version).deployments[0].revalidation_overdue
    from compliance.trust.services import trust_overdue_requests

    assert trust_overdue_requests() == [deployment.version_id]
    assert revalidation_dispatch() == {"queued": [], "no_data": [], "skipped": []}  # not due again before a cadence has passed
    deployment.refresh_from_db()
    assert deployment.revalidation_state == RevalidationState.FAILED and "did not report by" in deployment.revalidation_note


def test_a_study_that_cannot_be_opened_is_noted_and_retried(agent_deployment):
    ModelVersion.objects.filter(pk=agent_deployment.version_id).update(status="retired")
    assert revalidation_dispatch() == {"queued": [], "no_data": [agent_deployment.pk], "skipped": []}
    agent_deployment.refresh_from_db()
    assert agent_deployment.revalidation_state == RevalidationState.FAILED and "retired version" in agent_deployment.revalidation_note
    assert agent_deployment.agent_due_on is None and not FederatedStudy.objects.exists()  # the claim was rolled back: the next beat tries again

    ModelVersion.objects.filter(pk=agent_deployment.version_id).update(status="approved", created_by=None)
    Deployment.objects.filter(pk=agent_deployment.pk).update(created_by=None)
    assert revalidation_dispatch()["no_data"] == [agent_deployment.pk]
    agent_deployment.refresh_from_db()
    assert "no one can open the study" in agent_deployment.revalidation_note and not FederatedStudy.objects.exists()


def test_officers_choose_who_revalidates_through_the_api(agent_deployment, personas, api_client):
    officer = api_client(personas["officer"])
    url = f"/api/deployments/{agent_deployment.pk}/"
    assert officer.get(url).json()["revalidation_by"] == "site_agent"
    assert officer.patch(url, {"revalidation_by": "central", "agent_due_on": "2020-01-01"}, format="json").status_code == 200
    agent_deployment.refresh_from_db()
    assert agent_deployment.revalidation_by == RevalidationBy.CENTRAL and agent_deployment.agent_due_on is None  # read-only
    assert officer.patch(url, {"revalidation_by": "carrier_pigeon"}, format="json").status_code == 400
