"""The usage-logs page: scoped like the API (the deployer's and the provider's officers, not another
hospital's), figures in words and rounded, export links for the period picked (compliance.pages.usage_pages)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from compliance.models import UsageEvent, UsageLogging
from compliance.usage_logs import usage_batch_ingest, usage_logger_issue
from registry.services import user_create
from tests.factories import DeploymentFactory, FoundationModelFactory

PAGE = "/usage-logs/"


@pytest.fixture
def world(institutions):
    """The provider's (RadVendor's) models in use at North and at South, each with a week of logs."""
    now = timezone.now()
    placed = {}
    for site, model in (("north", "NorthLungFM"), ("south", "SouthLungFM")):
        deployment = DeploymentFactory(
            institution=institutions[site], version__foundation_model=FoundationModelFactory(name=model, provider=institutions["vendor"])
        )
        usage_logger_issue(deployment=deployment)
        events = [
            {
                "case_key": f"{site}-{i}",
                "occurred_at": (now - timedelta(minutes=i)).isoformat(),
                "version": deployment.version_id,
                "outputs": {"nodule": 0.4},
                "overridden": i % 4 == 0,
                "quality_flags": ["out_of_envelope"] if i == 1 else [],
            }
            for i in range(40)
        ]
        usage_batch_ingest(logging=UsageLogging.objects.get(deployment=deployment), batch_id="b1", events=events)
        placed[site] = deployment
    return placed


def _page(user, **query):
    client = Client()
    client.force_login(user)
    return client.get(PAGE, query)


@pytest.fixture
def officers(institutions):
    return {site: user_create(username=f"officer_{site}", role="compliance_officer", institution=institutions[site]) for site in ("north", "south")}


def test_each_hospitals_officer_sees_only_their_hospitals_logs(world, officers):
    north = _page(officers["north"]).content.decode()
    assert "NorthLungFM" in north and "SouthLungFM" not in north and "south-" not in north
    south = _page(officers["south"]).content.decode()
    assert "SouthLungFM" in south and "NorthLungFM" not in south


def test_the_providers_officer_and_the_auditor_see_every_deployment_of_the_provider(world, personas):
    for user in (personas["officer"], personas["auditor"]):
        text = _page(user).content.decode()
        assert "NorthLungFM" in text and "SouthLungFM" in text


def test_another_hospitals_officer_cannot_export_the_logs(world, officers):
    client = Client()
    client.force_login(officers["south"])
    assert client.get(f"/api/usage-logs/{world['north'].pk}/export/").status_code == 404
    assert client.get(f"/api/usage-logs/{world['south'].pk}/export/").status_code == 200


def test_clinicians_have_no_usage_logs_page(world, personas):
    assert _page(personas["clinician_north"]).status_code == 403


def test_the_figures_are_in_words_and_rounded(world, officers):
    response = _page(officers["north"])
    assert response.status_code == 200
    text = response.content.decode()
    assert "183 days (about 6 months, the minimum)" in text
    assert "25% (95% CI 14% to 40%; 10 of 40)" in text  # every fourth event overridden
    assert "1 (2.5%)" in text  # one input outside the envelope
    assert '<td class="num">10</td>' in text  # 40 events over four weeks: 10 a week
    assert "(so far)" in text and "UTC (" in text


def test_the_export_links_cover_the_period_picked_and_work(world, officers):
    response = _page(officers["north"], since="2026-01-01", until=timezone.now().date().isoformat())
    (row,) = response.context["rows"]
    assert row.exports["csv"].endswith(f"as=csv&since=2026-01-01&until={timezone.now().date():%Y-%m-%d}")
    client = Client()
    client.force_login(officers["north"])
    exported = json.loads(b"".join(client.get(row.exports["json"]).streaming_content))
    assert len(exported) == 40 and {e["case_key"][:6] for e in exported} == {"north-"}


def test_a_backwards_period_is_explained_not_a_failure(world, officers):
    response = _page(officers["north"], since="2026-03-10", until="2026-03-01")
    assert response.status_code == 200 and "The period starts after it ends" in response.content.decode()
    assert _page(officers["north"], since="not a date").status_code == 200


def test_the_demo_logs_usage_through_the_loggers_token_and_monitoring_shows_it(institutions, personas):
    from radtrust_demo.usage import EVENTS_A_WEEK, WEEKS, usage_demo, usage_lines

    deployments = {
        code: DeploymentFactory(institution=institutions[site], version__foundation_model__provider=institutions["vendor"])
        for code, site in (("st-anna", "north"), ("city-general", "south"))
    }
    summaries = usage_demo(deployments=deployments, out=lambda line: None)
    assert UsageEvent.objects.filter(deployment=deployments["city-general"]).count() == WEEKS * EVENTS_A_WEEK
    assert UsageLogging.objects.get(deployment=deployments["st-anna"]).account.username == f"logger-{deployments['st-anna'].pk}"
    assert usage_demo(deployments=deployments, out=lambda line: None) == summaries  # a second demo sends nothing again
    assert "inferences logged over" in usage_lines(summaries, deployments)[0]
    client = Client()
    client.force_login(personas["officer"])
    page = client.get(f"/monitoring/{deployments['city-general'].pk}/").content.decode()
    last_full_week = summaries["city-general"].weeks[-2]
    assert "Use of the deployed system" in page and f'<td>{last_full_week.week}</td><td class="num">{last_full_week.events}</td>' in page
