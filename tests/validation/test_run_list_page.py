"""The run list (issue 19: engineers had no way to their runs by clicking): every run the user may
see, filtered by status, each linked to its page, two of them comparable."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_engineers_find_their_runs_filter_them_and_pick_two_to_compare(run_setup, client):
    from validation import services

    version = run_setup["version"]
    ok = services.run_create(
        actor=run_setup["engineer"], version=version, dataset=run_setup["dataset"], config={"n_resamples": 30, "min_patients": 5}
    )
    services.run_execute(run_id=ok.pk, worker="w")
    queued = services.run_create(actor=run_setup["engineer"], version=version, dataset=run_setup["dataset"], config={"n_resamples": 30})
    client.force_login(run_setup["engineer"])
    home = client.get("/").content.decode()
    assert 'href="/runs/"' in home  # the engineer's navigation leads here
    page = client.get("/runs/").content.decode()
    assert f'href="/runs/{ok.pk}/"' in page and f'href="/runs/{queued.pk}/"' in page
    assert "Succeeded" in page and "Queued (waiting for a worker)" in page and 'action="/runs/compare/"' in page
    only = client.get("/runs/", {"status": "queued"}).content.decode()
    assert f'href="/runs/{queued.pk}/"' in only and f'href="/runs/{ok.pk}/"' not in only
    assert client.get("/runs/", {"status": "done"}).status_code == 400


def test_another_institutions_engineer_and_clinicians_do_not_see_the_runs(run_setup, personas, client):
    from validation import services

    run = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config={"n_resamples": 30})
    client.force_login(personas["engineer_south"])
    assert f'href="/runs/{run.pk}/"' not in client.get("/runs/").content.decode()
    client.force_login(personas["clinician_north"])
    assert client.get("/runs/").status_code == 403
