"""The run page: progress while it runs, the report for people when done, scoped like the API."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from registry.choices import DeploymentStatus
from tests.factories import DeploymentFactory
from validation import services

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore::FutureWarning")]


@pytest.fixture
def finished_run(run_setup):
    run = services.run_create(
        actor=run_setup["engineer"],
        version=run_setup["version"],
        dataset=run_setup["dataset"],
        config={"n_resamples": 50, "min_patients": 5, "attributes": ["sex", "site"], "intersections": [["sex", "site"]]},
    )
    services.run_execute(run_id=run.pk, worker="w")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_queued_run_shows_progress_and_polls(run_setup, personas):
    run = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config={})
    client = _client(personas["engineer"])
    page = client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert "Waiting for a worker" in page
    assert 'http-equiv="refresh"' in page  # the no-JavaScript fallback
    assert "validation/run_progress.js" in page
    progress = client.get(reverse("runs:progress", args=[run.pk])).json()
    assert progress == {
        "status": "queued",
        "status_label": "Queued",
        "stage": "queued",
        "stage_label": "Waiting for a worker",
        "percent": 0,
        "worker": "waiting for a worker",
        "device": "not yet known",
        "finished": False,
    }


def test_finished_run_renders_the_report_for_people(finished_run, personas):
    page = _client(personas["engineer"]).get(reverse("runs:detail", args=[finished_run.pk])).content.decode()
    assert "pneumothorax: overall, 95% confidence intervals" in page
    assert "AUROC" in page and "Sensitivity" in page
    assert "Subgroups" in page and "Sex female" in page and "intersections of subgroups" in page
    assert "Fairness gaps" in page
    assert "ci_low" not in page and "{&#x27;" not in page  # no raw JSON
    estimates = re.findall(r"<td>(\d\.\d+) \((\d\.\d+) to (\d\.\d+)\)</td>", page)
    assert estimates, "metrics with their intervals"
    for value, low, high in estimates:  # three significant figures
        assert len(value.replace("0.", "").lstrip("0")) <= 3 or value.startswith("1.")
        assert float(low) <= float(value) <= float(high)
    charts = finished_run.files.filter(kind="chart")
    assert charts.exists()
    for chart in charts:
        assert reverse("run-file-content", args=[chart.pk]) in page
    assert 'http-equiv="refresh"' not in page and "run_progress.js" not in page
    assert 'tabindex="0" role="region"' in page


def test_suppressed_subgroup_shows_the_disclosure_text(finished_run, personas):
    results = finished_run.results
    group = results["results"]["pneumothorax"]["subgroups"][0]
    group.update({"suppressed": True, "reason": "too_few_patients", "n_cases": None, "n_patients": None, "metrics": None})
    finished_run.results = results
    finished_run.save(update_fields=["results"])
    page = _client(personas["officer"]).get(reverse("runs:detail", args=[finished_run.pk])).content.decode()
    assert "&lt;5" in page  # min_patients 5: "<5", never the count
    assert "fewer patients than the minimum" in page


def test_clinician_sees_a_summary_only_where_the_version_is_in_use(finished_run, personas, institutions):
    url = reverse("runs:detail", args=[finished_run.pk])
    assert _client(personas["clinician_north"]).get(url).status_code == 404  # not deployed anywhere yet
    DeploymentFactory(version=finished_run.version, institution=institutions["north"], status=DeploymentStatus.ACTIVE)
    page = _client(personas["clinician_north"]).get(url).content.decode()
    assert "AUROC" in page and "headline figures" in page
    assert "Subgroups" not in page and "run-files" not in page
    assert _client(personas["clinician_south"]).get(url).status_code == 404
    assert _client(personas["engineer_south"]).get(url).status_code == 404


def test_compare_two_runs(finished_run, run_setup, personas):
    second = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config={})
    client = _client(personas["auditor"])
    page = client.get(reverse("runs:compare"), {"a": finished_run.pk, "b": second.pk}).content.decode()
    assert f"Run {finished_run.pk} and run {second.pk} side by side" in page
    assert "AUROC" in page
    assert client.get(reverse("runs:compare"), {"a": "x", "b": second.pk}).status_code == 400
    assert client.get(reverse("runs:compare"), {"a": 999999, "b": second.pk}).status_code == 404
    assert _client(personas["clinician_north"]).get(reverse("runs:compare"), {"a": 1, "b": 2}).status_code == 403
