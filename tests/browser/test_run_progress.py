"""The run page follows a running run without a reload, and reloads with the report when it ends."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login
from validation import services
from validation.models import ValidationRun

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "Correct-horse-battery-9"


def test_progress_updates_in_place(page, live_server, personas, run_setup):
    personas["engineer"].set_password(PASSWORD)
    personas["engineer"].save()
    run = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config={})
    login(page, live_server.url, "engineer", PASSWORD)
    page.goto(f"/runs/{run.pk}/")
    box = page.locator("#run-progress")
    expect(box).to_contain_text("Waiting for a worker")
    page.evaluate("window.__same_page = true")  # gone if the page reloads
    ValidationRun.objects.filter(pk=run.pk).update(
        status="running", stage="inference", progress=0.42, worker="gpu-1@node", device={"name": "NVIDIA H100"}
    )
    expect(box.locator("[data-field=stage_label]")).to_have_text("Running the model")
    expect(box.locator("[data-field=percent]")).to_have_text("42")
    expect(box.locator("[data-field=worker]")).to_have_text("gpu-1@node")
    expect(box.locator("[data-field=device]")).to_have_text("NVIDIA H100")
    assert page.evaluate("window.__same_page === true")
    ValidationRun.objects.filter(pk=run.pk).update(status="failed", stage="done", progress=1.0, error_reason="worker_lost", error="No heartbeat.")
    expect(page.get_by_text("Worker lost, no attempts left.")).to_be_visible()  # reloaded: the failure in words
