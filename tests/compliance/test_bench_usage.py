"""``manage.py bench usage`` at a tiny size, in the test database: every key, counts and query counts."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from compliance.models import UsageBatch, UsageEvent

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_bench_usage_reports_its_figures_at_a_tiny_size():
    out = StringIO()
    call_command("bench", "usage", "--json", "--events", "600", "--deployments", "3", "--repeats", "2", stdout=out, stderr=StringIO())
    result = json.loads(out.getvalue())
    assert {"events_per_second", "worst_p95_over_count", "queries_constant", "retention_purge_seconds_per_million"} <= result.keys()
    assert result["events"] == 600 == UsageEvent.objects.count() and result["deployments"] == 3
    assert result["events_per_second"] > 0 and result["queries_constant"] is True
    assert result["worst_p95_over_count"] == max(r["p95_over_count"] for r in result["reads"].values())
    for figures in result["reads"].values():
        assert figures["p95_ms"] >= figures["p50_ms"] > 0 and figures["queries"]["60"] == figures["queries"]["600"] > 0
    assert result["purged_events"] == 600 and not UsageEvent.objects.exclude(case_key="").exists()
    assert UsageBatch.objects.count() == 3 * 2  # each deployment gets a batch in each of the two steps


def test_bench_usage_refuses_a_database_with_other_data(institutions):
    with pytest.raises(CommandError, match="other than this bench"):
        call_command("bench", "usage", "--events", "100", stdout=StringIO(), stderr=StringIO())
