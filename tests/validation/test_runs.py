"""Validation runs through the service, in this process: results, idempotency, leases, cancellation, sweeping."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from core.models import AuditEvent
from validation import services
from validation.choices import MlflowState, RunStage, RunStatus
from validation.models import ValidationRun

NO_SHARDS = {"shards_requeued": [], "shards_failed": [], "shards_resent": []}  # no sharded run to sweep


def _create(run_setup, **kwargs) -> ValidationRun:
    kwargs.setdefault("config", {"n_resamples": 50, "min_patients": 5})
    return services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], **kwargs)


def test_run_succeeds_with_results_device_and_hashes(run_setup):
    run = _create(run_setup)
    assert services.run_execute(run_id=run.pk, worker="w1@test") == RunStatus.SUCCEEDED
    run.refresh_from_db()
    assert (run.status, run.stage, run.progress, run.attempt, run.worker) == (RunStatus.SUCCEEDED, RunStage.DONE, 1.0, 1, "w1@test")
    assert run.device["kind"] == "cpu" and run.device["providers"] == ["CPUExecutionProvider"] and run.device["name"]
    assert run.artifact_sha256 == run_setup["version"].artifact_sha256
    assert len(run.manifest_sha256) == 64
    assert run.mlflow_state == MlflowState.PENDING
    report = run.results
    assert report["dataset"]["n_evaluated"] == 60 and report["dataset"]["n_patients"] == 30
    overall = report["results"]["pneumothorax"]["overall"]
    assert overall["n_cases"] == 60 and overall["metrics"]["auroc"]["n_valid"] > 0
    groupings = {s["grouping"] for s in report["results"]["pneumothorax"]["subgroups"]}
    assert {"sex", "age_band", "site", "sex x age_band"} <= groupings
    assert report["dataset"]["attributes_not_collected"] == ["race_ethnicity", "scanner_manufacturer"]
    assert set(run.timings) >= {"verify_and_load", "manifest", "headers", "inference", "metrics"}
    assert run.summary["labels"]["pneumothorax"]["overall"]["auroc"] == overall["metrics"]["auroc"]
    actions = list(AuditEvent.objects.filter(object_type="validation.validationrun", object_id=str(run.pk)).values_list("action", flat=True))
    assert actions == ["create", "claim", "succeed"]


def test_results_match_an_independent_scoring_of_the_same_model(run_setup):
    """The stored AUROC equals scikit-learn's on ONNX Runtime outputs computed here, image by image."""
    import onnxruntime as ort
    from sklearn.metrics import roc_auc_score

    from radtrust_engine.artifacts import artifact_dir
    from registry.services import artifact_root

    run = _create(run_setup)
    services.run_execute(run_id=run.pk, worker="w")
    run.refresh_from_db()
    version = run_setup["version"]
    session = ort.InferenceSession(str(artifact_dir(artifact_root(), version.artifact_sha256) / version.artifact_files[0]["name"]))
    images = np.stack([np.load(run_setup["root"] / "img" / f"{i}.npy")[None] for i in range(60)]).astype(np.float32)
    logits = session.run(None, {"image": images})[0][:, 0]
    labels = np.array([int(i % 3 == 0) for i in range(60)])
    expected = roc_auc_score(labels, 1 / (1 + np.exp(-logits.astype(np.float64))))
    assert run.results["results"]["pneumothorax"]["overall"]["metrics"]["auroc"]["value"] == pytest.approx(expected, abs=1e-9)


def test_second_delivery_does_nothing_and_leaves_one_result(run_setup):
    run = _create(run_setup)
    assert services.run_execute(run_id=run.pk, worker="w1") == RunStatus.SUCCEEDED
    before = ValidationRun.objects.get(pk=run.pk)
    assert services.run_execute(run_id=run.pk, worker="w2") is None
    after = ValidationRun.objects.get(pk=run.pk)
    assert (after.attempt, after.worker, after.finished_at, after.results) == (1, "w1", before.finished_at, before.results)


def test_a_held_lease_is_not_claimed_twice(run_setup):
    run = _create(run_setup)
    assert services.run_claim(run_id=run.pk, worker="w1") == 1
    assert services.run_claim(run_id=run.pk, worker="w2") is None
    ValidationRun.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert services.run_claim(run_id=run.pk, worker="w2") == 2


def test_a_worker_that_lost_its_lease_cannot_write_results(run_setup):
    run = _create(run_setup)
    first = services.run_claim(run_id=run.pk, worker="w1")
    ValidationRun.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert services.run_claim(run_id=run.pk, worker="w2") == first + 1
    reporter = services.RunReporter(run_id=run.pk, attempt=first)
    with pytest.raises(services.LeaseLost):
        reporter.write(stage=RunStage.INFERENCE, progress=0.5)
    assert services._close(run.pk, first, status=RunStatus.SUCCEEDED, action="succeed", results={"x": 1}) is None
    run.refresh_from_db()
    assert (run.status, run.results, run.worker) == (RunStatus.RUNNING, None, "w2")


def test_cancel_a_queued_run(run_setup):
    run = _create(run_setup)
    services.run_cancel(actor=run_setup["engineer"], run=run)
    run.refresh_from_db()
    assert (run.status, run.error_reason) == (RunStatus.CANCELLED, "cancelled")
    assert services.run_execute(run_id=run.pk, worker="w") is None


def test_cancel_a_running_run_stops_it_at_the_next_progress_report(run_setup):
    run = _create(run_setup)
    attempt = services.run_claim(run_id=run.pk, worker="w1")
    services.run_cancel(actor=run_setup["engineer"], run=run)
    run.refresh_from_db()
    assert (run.status, run.cancel_requested) == (RunStatus.RUNNING, True)
    with pytest.raises(services.RunCancelled):
        services.RunReporter(run_id=run.pk, attempt=attempt).write(stage=RunStage.INFERENCE, progress=0.1)


def test_cancel_during_execution_ends_cancelled(run_setup, monkeypatch):
    """The engine's progress callback sees the request between batches and the run ends cancelled."""
    run = _create(run_setup, config={"n_resamples": 10, "batch_size": 4})
    real_call = services.RunReporter.__call__

    def cancel_midway(self, stage, fraction):
        if stage == "inference" and fraction > 0.3:
            ValidationRun.objects.filter(pk=self.run_id).update(cancel_requested=True)
            self._last_write = 0.0
        return real_call(self, stage, fraction)

    monkeypatch.setattr(services.RunReporter, "__call__", cancel_midway)
    assert services.run_execute(run_id=run.pk, worker="w") == RunStatus.CANCELLED
    run.refresh_from_db()
    assert run.results is None and run.progress < 1.0 and run.error == "Cancelled while running."


def test_sweeper_requeues_an_expired_run_then_fails_it_out_of_attempts(run_setup, django_capture_on_commit_callbacks):
    run = _create(run_setup)
    ValidationRun.objects.filter(pk=run.pk).update(max_attempts=2)
    for attempt in (1, 2):
        assert services.run_claim(run_id=run.pk, worker=f"w{attempt}") == attempt
        ValidationRun.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
        with django_capture_on_commit_callbacks() as callbacks:
            outcome = services.run_sweep(unclaimed_after_seconds=3600)
        if attempt == 1:
            assert outcome["requeued"] == [run.pk] and len(callbacks) == 1
            run.refresh_from_db()
            assert (run.status, run.stage) == (RunStatus.QUEUED, RunStage.QUEUED) and "w1" in run.error
    assert outcome["failed"] == [run.pk]
    run.refresh_from_db()
    assert (run.status, run.error_reason) == (RunStatus.FAILED, "worker_lost")
    assert "No attempts left (2)" in run.error


def test_sweeper_leaves_live_runs_alone_and_resends_forgotten_queued_ones(run_setup, monkeypatch):
    live = _create(run_setup)
    services.run_claim(run_id=live.pk, worker="w1")
    forgotten = _create(run_setup)
    ValidationRun.objects.filter(pk=forgotten.pk).update(created_at=timezone.now() - timedelta(hours=1))
    sent = []
    monkeypatch.setattr(services, "run_enqueue", lambda *, run_id, queue, now: sent.append((run_id, queue)))
    outcome = services.run_sweep(unclaimed_after_seconds=600)
    assert outcome == {"requeued": [], "failed": [], "resent": [forgotten.pk], "mlflow_resent": [], **NO_SHARDS}
    assert sent == [(forgotten.pk, "gpu")]
    assert ValidationRun.objects.get(pk=live.pk).status == RunStatus.RUNNING


def test_on_site_runs_go_to_the_site_queue(run_setup):
    run = _create(run_setup, on_site=True)
    assert run.queue == "site.north"


def test_seeded_runs_reproduce_the_same_intervals(run_setup):
    first, second = _create(run_setup), _create(run_setup)
    for run in (first, second):
        services.run_execute(run_id=run.pk, worker="w")
        run.refresh_from_db()
    assert first.results["results"] == second.results["results"]


def test_passing_validation_evidence_needs_a_succeeded_run_on_linked_test_data(run_setup):
    from registry.models import Provenance

    version = run_setup["version"]
    assert "No succeeded validation run" in services.passing_validation(version)
    Provenance.objects.filter(version=version).update(role="fine_tuning")
    assert "link an internal-test" in services.passing_validation(version)
    Provenance.objects.filter(version=version).update(role="external_validation")
    run = _create(run_setup)
    services.run_execute(run_id=run.pk, worker="w")
    assert services.passing_validation(version) is None
