"""``manage.py bench documents --json --quick``: the keys a script reads and their arithmetic (not the timing)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from compliance.models import Document, Dossier
from registry.models import ModelVersion

pytestmark = pytest.mark.slow  # renders real documents in a benchmark


@pytest.mark.django_db
def test_bench_documents_reports_the_share_outside_weasyprint_and_leaves_nothing_behind():
    out = StringIO()
    call_command("bench", "documents", "--json", "--quick", stdout=out, stderr=StringIO())
    result = json.loads(out.getvalue())
    assert {"total_seconds", "weasyprint_seconds", "pages", "total_over_weasyprint", "goal", "meets_goal", "details"} <= result.keys()
    assert result["weasyprint_seconds"] > 0 and result["total_seconds"] > 0
    assert result["total_over_weasyprint"] == pytest.approx(result["total_seconds"] / result["weasyprint_seconds"])
    assert result["goal"] == 1.5 and result["meets_goal"] == (result["total_over_weasyprint"] <= 1.5)
    assert result["pages"] > 3 and result["details"]["charts"] >= 3 and result["details"]["quick"] is True
    stages = result["details"]["stages_seconds"]
    assert stages["weasyprint"] == result["details"]["weasyprint_in_pipeline_seconds"] and sum(stages.values()) == pytest.approx(
        result["total_seconds"]
    )
    assert not Document.objects.exists() and not Dossier.objects.exists() and not ModelVersion.objects.exists()  # rolled back


def test_bench_documents_prints_a_table_without_json():
    from radtrust_demo.bench.documents import format_table

    result = {
        "total_seconds": 2.2,
        "weasyprint_seconds": 2.0,
        "pages": 20,
        "total_over_weasyprint": 1.1,
        "goal": 1.5,
        "meets_goal": True,
        "details": {
            "repeats": 5,
            "charts": 4,
            "bytes": 150000,
            "stages_seconds": {"snapshot_and_charts": 0.1, "context_and_templates": 0.05, "weasyprint": 2.0, "hash_and_store": 0.05},
        },
    }
    table = format_table(result)
    assert "20 pages, 4 charts, 150,000 bytes" in table and "total / WeasyPrint = 1.100 (goal <= 1.5): met" in table
