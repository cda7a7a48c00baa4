"""A rescore lost after a run (the broker was down when the run closed) is asked for again by
compliance's sweep until an assessment covers the run. Time is moved with explicit ``now``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from compliance.tasks import trust_recompute
from compliance.trust.services import trust_assess, trust_missed_requests
from tests.factories import ModelVersionFactory
from validation import services

pytestmark = pytest.mark.django_db

SECOND = timedelta(seconds=1)


def test_a_version_whose_newest_run_no_assessment_covers_is_rescored(run_setup, settings, django_capture_on_commit_callbacks, monkeypatch):
    version = run_setup["version"]
    unvalidated = ModelVersionFactory(foundation_model=run_setup["model"], version="0.9.0")
    run = services.run_create(actor=run_setup["engineer"], version=version, dataset=run_setup["dataset"], config={"n_resamples": 20})
    services.run_execute(run_id=run.pk, worker="w")  # its rescore request is lost: the test's transaction never commits
    run.refresh_from_db()
    requested = []
    monkeypatch.setattr(trust_recompute, "apply_async", lambda args, countdown: requested.append(args[:2]))
    period = timedelta(seconds=settings.RADTRUST_TRUST_SWEEP_SECONDS)

    def missed(at) -> list[int]:
        with django_capture_on_commit_callbacks(execute=True):
            return trust_missed_requests(now=at)

    assert missed(run.finished_at + period - SECOND) == []  # the run's own request may still be on its way
    assert missed(run.finished_at + period + SECOND) == [version.pk]
    assert requested == [(version.pk, "run_finished")]
    assert unvalidated.pk not in missed(run.finished_at + 2 * period)  # no run, nothing to rescore

    trust_assess(version=version, trigger="run_finished")  # what the request does
    assert missed(run.finished_at + 10 * period) == []
