"""A run of generated reports through a real Celery worker process on the default queue alone: the
request queues it, the worker evaluates the stored files, a redelivered task changes nothing."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from core.models import AuditEvent
from tests.integration.conftest import wait_for
from validation.choices import RunStatus
from validation.models import ValidationRun
from validation.tasks import run_execute

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TIMEOUT = 120.0
N = 60  # the run_setup dataset: pneumothorax on every third image


def _reports() -> bytes:
    planted = {1, 2}  # negatives whose report states a pneumothorax: confabulations
    lines = [
        json.dumps({"case_id": f"img/{i}.npy", "report": "Right pneumothorax." if i % 3 == 0 or i in planted else "No pneumothorax."})
        for i in range(N)
    ]
    return "\n".join(lines).encode()


def test_a_default_queue_worker_evaluates_uploaded_reports_once(start_worker, run_setup, api_client):
    worker = start_worker("w1", queues="default")
    response = api_client(run_setup["engineer"]).post(
        "/api/validation-runs/from-reports/",
        {
            "version": run_setup["version"].pk,
            "dataset": run_setup["dataset"].pk,
            "artifact_sha256": run_setup["version"].artifact_sha256,
            "config": json.dumps({"n_resamples": 100}),
            "reports": SimpleUploadedFile("reports.jsonl", _reports()),
        },
        format="multipart",
    )
    assert response.status_code == 201 and response.json()["status"] == "queued", response.content
    run_id = response.json()["id"]

    def finished():
        run = ValidationRun.objects.get(pk=run_id)
        return run if run.finished else None

    run = wait_for(finished, timeout=TIMEOUT, interval=0.05, describe=worker.describe)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.worker.startswith("w1-")
    (finding,) = [f for f in run.results["report_generation"]["findings"] if f["finding"] == "Pneumothorax"]
    assert finding["confabulation_rate"]["value"] == pytest.approx(2 / (N - N // 3)) and finding["omission_rate"]["value"] == 0.0

    again = run_execute.apply_async((run_id,), queue="default")  # a broker redelivery of the same task
    wait_for(lambda: "succeeded in" in worker.log().split(again.id, 1)[-1], timeout=TIMEOUT, describe=worker.describe)
    after = ValidationRun.objects.get(pk=run_id)
    assert (after.attempt, after.finished_at, after.results) == (1, run.finished_at, run.results)
    events = AuditEvent.objects.filter(object_type="validation.validationrun", object_id=str(run_id)).order_by("seq")
    assert list(events.values_list("action", flat=True)) == ["create", "claim", "succeed"]
