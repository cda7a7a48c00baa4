"""Officers acknowledge and resolve alerts in the pages, with a note and an audit event; the list
puts the most severe first, groups by run, says "Escalated" with the incident, and the monitoring
list counts the alerts the monitoring page lists."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from compliance.incidents import incident_escalate
from compliance.models import Alert
from core.models import AuditEvent
from validation.models import ValidationRun

pytestmark = pytest.mark.django_db


def _alert(deployed, severity="warning", **fields) -> Alert:
    fields.setdefault("deployment", deployed["north"])
    return Alert.objects.create(
        version=deployed["version"],
        kind="input_drift",
        severity=severity,
        subject=f"s{Alert.objects.count()}",
        message=f"{severity} finding",
        **fields,
    )


def test_acknowledge_then_resolve_with_a_note_is_audited(client, personas, deployed):
    alert = _alert(deployed)
    client.force_login(personas["officer"])
    response = client.post(f"/alerts/{alert.pk}/handle/", {"status": "acknowledged", "note": "", "next": "/alerts/?status=open"})
    assert response.status_code == 302 and response["Location"] == "/alerts/?status=open"
    alert.refresh_from_db()
    assert alert.status == "acknowledged" and alert.handled_by == personas["officer"]
    client.post(f"/alerts/{alert.pk}/handle/", {"status": "resolved", "note": ""})  # no note: refused, said why
    alert.refresh_from_db()
    assert alert.status == "acknowledged"
    page = client.get("/alerts/").content.decode()
    assert "Say what was done about the alert before resolving it." in page
    client.post(f"/alerts/{alert.pk}/handle/", {"status": "resolved", "note": "Scanner recalibrated at North."})
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.note == "Scanner recalibrated at North."
    events = AuditEvent.objects.filter(object_type="compliance.alert", object_id=str(alert.pk)).values_list("action", "actor_username")
    assert ("acknowledged", "officer") in events and ("resolved", "officer") in events


def test_only_officers_handle_alerts(client, personas, deployed):
    alert = _alert(deployed)
    for name in ("engineer", "auditor", "clinician_north"):
        client.force_login(personas[name])
        assert client.post(f"/alerts/{alert.pk}/handle/", {"status": "acknowledged"}).status_code == 403
    client.force_login(personas["officer"])
    assert client.get(f"/alerts/{alert.pk}/handle/").status_code == 405
    alert.refresh_from_db()
    assert alert.status == "open"


def test_list_sorted_by_severity_grouped_by_run_and_escalated_shown(client, personas, deployed, run_setup):
    run = ValidationRun.objects.create(version=deployed["version"], dataset=run_setup["dataset"], requested_by=personas["engineer"])
    info = _alert(deployed, "info", run=run)
    critical = _alert(deployed, "critical", run=run)
    warning = _alert(deployed, "warning")
    incident = incident_escalate(
        actor=personas["officer"], alert=warning, title="Drift", description="d", incident_type="other", aware_on=timezone.localdate()
    )
    client.force_login(personas["officer"])
    page = client.get("/alerts/").content.decode()
    assert page.index(f'id="alert-{critical.pk}"') < page.index(f'id="alert-{info.pk}"')
    assert f"Validation run {run.pk}" in page and f'href="/runs/{run.pk}/"' in page
    row = page[page.index(f'id="alert-{warning.pk}"') :].split("</tr>")[0]
    assert "<strong>Escalated</strong>" in row and f"/incidents/{incident.pk}/" in row
    escalated = client.get("/alerts/?status=escalated").content.decode()
    assert f'id="alert-{warning.pk}"' in escalated and f'id="alert-{info.pk}"' not in escalated
    only_run = client.get(f"/alerts/?run={run.pk}").content.decode()
    assert f'id="alert-{warning.pk}"' not in only_run and f'id="alert-{critical.pk}"' in only_run
    assert client.get("/alerts/?status=bogus").status_code == 400


def test_monitoring_list_counts_what_the_detail_lists(client, personas, deployed):
    _alert(deployed)
    _alert(deployed, "critical", deployment=None)  # raised on the version as a whole: counts for every deployment of it
    _alert(deployed, status="resolved")
    client.force_login(personas["officer"])
    listing = client.get("/monitoring/").content.decode()
    row = listing[listing.index(f"/monitoring/{deployed['north'].pk}/") :].split("</tr>")[0]
    assert re.search(r">2</a>", row), row
    detail = client.get(f"/monitoring/{deployed['north'].pk}/").content.decode()
    assert detail.count('class="badge ') == 2
