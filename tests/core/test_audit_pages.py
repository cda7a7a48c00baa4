"""The audit trail pages: officers and auditors filter it, read changes in words, open the record,
export it (CSV, JSON, streamed) and verify the chain; a tampered event is named."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.test import Client

from core.audit import audit_context
from core.models import AuditEvent
from registry.models import Dataset
from registry.services import record_create
from tests.tampering import owner_sql
from validation.models import ValidationRun

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def trail(personas, deployed, institutions):
    """An audited change: a dataset the engineer created (as a request of theirs would record it)."""
    with audit_context(user=personas["engineer"]):
        return record_create(
            model=Dataset, actor=personas["engineer"], fields={"name": "Chest set", "institution": institutions["vendor"], "modality": "DX"}
        )


def test_only_officers_and_auditors_read_the_trail(personas, trail):
    for name, status in (("officer", 200), ("auditor", 200), ("engineer", 403), ("clinician_north", 403)):
        assert _client(personas[name]).get("/audit/").status_code == status, name
        assert _client(personas[name]).get("/audit/export.csv").status_code == status, name


def test_filters_and_readable_changes(personas, trail):
    client = _client(personas["auditor"])
    page = client.get("/audit/", {"object_type": "registry.dataset", "actor": "engineer"}).content.decode()
    assert "Chest set" in page
    assert "Name: empty → Chest set" in page  # field: old -> new, not JSON
    assert "{&quot;" not in page and "[null" not in page
    assert "registry.deployment" in page  # offered as a kind, though filtered out of the table
    nobody = client.get("/audit/", {"actor": "nobody"}).content.decode()
    assert "No events match." in nobody
    assert client.get("/audit/", {"since": "not a date"}).status_code == 400
    assert "No events match." in client.get("/audit/", {"until": "2000-01-01"}).content.decode()


def test_actions_and_record_kinds_in_words(personas, trail):
    page = _client(personas["auditor"]).get("/audit/", {"object_type": "registry.dataset"}).content.decode()
    event = AuditEvent.objects.filter(object_type="registry.dataset").last()
    assert event.action == "create" and "<td>Create</td>" in page and f'<span class="muted">Dataset {event.object_id}</span>' in page
    assert '<option value="registry.dataset" selected>Dataset</option>' in page and ">registry.dataset<" not in page


def test_events_link_to_their_record(personas, run_setup):
    run = ValidationRun.objects.create(version=run_setup["version"], dataset=run_setup["dataset"], requested_by=personas["engineer"])
    page = _client(personas["officer"]).get("/audit/", {"object_type": "validation.validationrun"}).content.decode()
    assert f'href="/runs/{run.pk}/"' in page


def test_exports_stream_every_filtered_event(personas, trail):
    client = _client(personas["officer"])
    expected = AuditEvent.objects.filter(object_type="registry.dataset").count()
    response = client.get("/audit/export.csv", {"object_type": "registry.dataset"})
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    assert 'filename="audit-trail.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == expected and rows[0]["object_type"] == "registry.dataset"
    assert json.loads(rows[0]["changes"])["name"] == [None, "Chest set"]
    response = client.get("/audit/export.json")
    assert response.streaming
    events = json.loads(b"".join(response.streaming_content))
    assert [e["seq"] for e in events] == sorted(AuditEvent.objects.values_list("seq", flat=True))
    assert {"hash", "prev_hash", "changes", "actor_username"} <= set(events[0])


def test_verify_shows_an_intact_chain_then_names_the_tampered_event(personas, trail):
    client = _client(personas["auditor"])
    assert "Verify now" in client.get("/audit/verify/").content.decode()
    page = client.post("/audit/verify/").content.decode()
    assert "The chain is intact:" in page
    victim = AuditEvent.objects.order_by("seq")[1]
    owner_sql("UPDATE compliance_auditevent SET actor_username = 'mallory' WHERE seq = %s", [victim.seq])
    page = client.post("/audit/verify/").content.decode()
    assert f"The chain is broken at event #{victim.seq}:" in page
    assert "its content was altered after it was written" in page
