"""Usage logs of deployed systems: ingestion by a deployment's logger token, idempotency, scoping,
bad input, retention and its purge, export and the weekly figures (compliance.usage_logs)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from compliance.models import UsageBatch, UsageEvent, UsageLogging, UsageWeek
from compliance.usage_checks import CHUNK_EVENTS, MAX_BATCH_EVENTS
from compliance.usage_logs import (
    WEEKS_PER_STATEMENT,
    usage_logger_issue,
    usage_retention_purge,
    usage_retention_set,
    usage_summary,
)
from core.audit import audit_verify_chain
from core.models import AuditEvent
from tests.factories import DeploymentFactory

URL = "/api/usage-batches/"


@pytest.fixture
def deployment(institutions):
    """The provider's (RadVendor's, where the officer persona works) version in use at North."""
    return DeploymentFactory(institution=institutions["north"], version__foundation_model__provider=institutions["vendor"])


@pytest.fixture
def logger(deployment):
    """An API client holding the deployment logger's token, as an installation would."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {usage_logger_issue(deployment=deployment).key}")
    return client


def event(deployment, *, at: datetime | None = None, **overrides) -> dict:
    at = at or timezone.now() - timedelta(hours=1)
    return {
        "case_key": "c-7f3a",
        "occurred_at": at.isoformat(),
        "version": deployment.version_id,
        "outputs": {"nodule": 0.82},
        "uncertainty": 0.07,
        "overridden": False,
        "quality_flags": [],
        **overrides,
    }


def batch(deployment, events, batch_id="b-1") -> dict:
    return {"deployment": deployment.pk, "batch_id": batch_id, "events": events}


def test_a_batch_is_stored_with_a_receipt_and_weekly_sums(logger, deployment):
    now = timezone.now()
    events = [
        event(deployment, at=now - timedelta(minutes=3), overridden=True),
        event(deployment, at=now - timedelta(minutes=9), quality_flags=["out_of_envelope", "low_quality"], note="Paediatric case"),
        event(deployment, at=now - timedelta(minutes=5)),
    ]
    response = logger.post(URL, batch(deployment, events), format="json")
    assert response.status_code == 201, response.content
    receipt = response.json()
    assert receipt["events"] == 3 and receipt["duplicate"] is False
    assert receipt["first_event_at"] == (now - timedelta(minutes=9)).astimezone(UTC).isoformat()
    stored = list(UsageEvent.objects.filter(deployment=deployment).order_by("occurred_at"))  # out of order in, time order out
    assert [e.note for e in stored] == ["Paediatric case", "", ""]
    assert stored[0].quality_flags == ["low_quality", "out_of_envelope"] and stored[0].out_of_envelope
    week = UsageWeek.objects.get(deployment=deployment)
    assert (week.n, week.n_overridden, week.n_out_of_envelope) == (3, 1, 1)


def test_a_redelivered_batch_returns_the_first_receipt_and_writes_nothing(logger, deployment):
    body = batch(deployment, [event(deployment)])
    first = logger.post(URL, body, format="json")
    again = logger.post(URL, body, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {**first.json(), "duplicate": True}
    assert UsageEvent.objects.count() == 1 and UsageWeek.objects.get().n == 1


def test_an_event_refused_after_chunks_were_copied_stores_nothing_of_the_batch(logger, deployment):
    now = timezone.now()
    events = [event(deployment, at=now - timedelta(minutes=i), case_key=f"c-{i}") for i in range(CHUNK_EVENTS + 10)]
    bad = [*events[: CHUNK_EVENTS + 5], {**events[CHUNK_EVENTS + 5], "uncertainty": "low"}, *events[CHUNK_EVENTS + 6 :]]
    response = logger.post(URL, batch(deployment, bad), format="json")
    assert response.status_code == 400 and list(response.json()) == [f"events[{CHUNK_EVENTS + 5}]"]
    assert not UsageEvent.objects.exists() and not UsageBatch.objects.exists() and not UsageWeek.objects.exists()
    # The corrected batch, under the same id, is stored whole; sent again, it is a redelivery.
    first = logger.post(URL, batch(deployment, events), format="json")
    assert first.status_code == 201 and first.json()["events"] == CHUNK_EVENTS + 10
    again = logger.post(URL, batch(deployment, events), format="json")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert UsageEvent.objects.count() == CHUNK_EVENTS + 10
    assert set(UsageEvent.objects.values_list("case_key", flat=True)) == {e["case_key"] for e in events}


def test_weekly_sums_of_a_batch_spanning_more_weeks_than_one_statement_holds(logger, deployment):
    now = timezone.now()
    weeks = WEEKS_PER_STATEMENT + 2
    events = [event(deployment, at=now - timedelta(weeks=k), overridden=k % 2 == 0) for k in range(weeks)]
    assert logger.post(URL, batch(deployment, events), format="json").status_code == 201
    assert logger.post(URL, batch(deployment, events[:3], batch_id="b-2"), format="json").status_code == 201
    sums = list(UsageWeek.objects.filter(deployment=deployment).order_by("-week").values_list("n", "n_overridden"))
    assert len(sums) == weeks and sums[:3] == [(2, 2), (2, 0), (2, 2)] and sums[3:] == [(1, (k + 1) % 2) for k in range(3, weeks)]


def test_a_reused_batch_id_with_other_events_is_a_conflict(logger, deployment):
    logger.post(URL, batch(deployment, [event(deployment)]), format="json")
    response = logger.post(URL, batch(deployment, [event(deployment, overridden=True)]), format="json")
    assert response.status_code == 409 and response.json()["code"] == "batch_id_reused"
    assert UsageEvent.objects.count() == 1


def test_a_token_writes_only_its_own_deployments_logs(logger, deployment, institutions):
    other = DeploymentFactory(institution=institutions["south"])
    usage_logger_issue(deployment=other)
    response = logger.post(URL, batch(other, [event(other)]), format="json")
    assert response.status_code == 403 and f"deployment {deployment.pk} only" in response.json()["detail"]
    assert not UsageEvent.objects.exists() and not UsageBatch.objects.exists()


def test_people_cannot_send_batches(api_client, personas, deployment):
    response = api_client(personas["officer"]).post(URL, batch(deployment, [event(deployment)]), format="json")
    assert response.status_code == 403


def test_events_in_the_future_are_refused_naming_the_rows(logger, deployment):
    now = timezone.now()
    events = [event(deployment), event(deployment, at=now + timedelta(minutes=2)), event(deployment, at=now + timedelta(hours=1))]
    response = logger.post(URL, batch(deployment, events), format="json")
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) == {"events[2]"} and "future" in errors["events[2]"][0]  # two minutes ahead is clock skew
    assert not UsageEvent.objects.exists() and not UsageBatch.objects.exists()


def test_a_malformed_batch_names_the_first_offending_rows_and_stores_nothing(logger, deployment):
    good = event(deployment)
    events = [good, {**good, "overridden": "yes"}, {**good, "occurred_at": "2026-03-01T08:00:00"}, "not an object"]
    events += [{**good, "version": 0, "quality_flags": ["blurry"]}] * 20
    response = logger.post(URL, batch(deployment, events), format="json")
    assert response.status_code == 400
    errors = response.json()
    assert "overridden: true when the clinician overrode the output, else false." in errors["events[1]"]
    assert "offset" in errors["events[2]"][0]
    assert errors["events[3]"] == ["non_field_errors: An event is a JSON object."]
    assert any(m.startswith("quality_flags:") for m in errors["events[4]"]) and any(m.startswith("version:") for m in errors["events[4]"])
    assert len([k for k in errors if k.startswith("events[")]) == 10 and "23 events are refused" in errors["events"][0]
    assert not UsageEvent.objects.exists() and not UsageBatch.objects.exists()


def test_text_a_database_cannot_store_is_refused(logger, deployment):
    body = json.dumps(batch(deployment, [event(deployment, note="a\x00b"), event(deployment, case_key="\ud800")]))
    response = logger.post(URL, body, content_type="application/json")
    assert response.status_code == 400 and set(response.json()) == {"events[0]", "events[1]"}
    assert not UsageEvent.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [({"batch_id": "", "events": []}, "batch_id"), ({"batch_id": "b", "events": []}, "events"), ({"batch_id": "b", "events": {}}, "events")],
)
def test_a_batch_without_an_id_or_events_is_refused(logger, deployment, body, field):
    response = logger.post(URL, {"deployment": deployment.pk, **body}, format="json")
    assert response.status_code == 400 and field in response.json()


def test_a_batch_over_the_event_limit_is_refused(logger, deployment):
    response = logger.post(URL, batch(deployment, [event(deployment)] * (MAX_BATCH_EVENTS + 1)), format="json")
    assert response.status_code == 400 and str(MAX_BATCH_EVENTS) in response.json()["events"][0]


def test_a_100_mb_batch_is_a_413(logger, deployment):
    body = json.dumps(batch(deployment, [event(deployment, note="x" * 2000)] * 50_000)).encode()
    assert len(body) > 100 * 1024**2
    response = logger.post(URL, body, content_type="application/json")
    assert response.status_code == 413
    assert not UsageEvent.objects.exists()


def test_a_failure_while_storing_leaves_nothing_half_written(logger, deployment, monkeypatch):
    from compliance import usage_logs

    def broken(deployment_id, rows):
        raise RuntimeError("disk full")

    monkeypatch.setattr(usage_logs, "_weeks_add", broken)
    with pytest.raises(RuntimeError):
        logger.post(URL, batch(deployment, [event(deployment)]), format="json")
    assert not UsageEvent.objects.exists() and not UsageBatch.objects.exists()


def test_retention_under_six_months_is_refused(api_client, personas, deployment):
    with pytest.raises(ValidationError):
        usage_retention_set(deployment=deployment, days=182)
    client = api_client(personas["officer"])
    response = client.post(f"/api/usage-logs/{deployment.pk}/retention/", {"retention_days": 90}, format="json")
    assert response.status_code == 400 and "six months" in response.json()["retention_days"][0]
    response = client.post(f"/api/usage-logs/{deployment.pk}/retention/", {"retention_days": 400}, format="json")
    assert response.status_code == 200 and response.json()["retention_days"] == 400
    assert AuditEvent.objects.filter(object_type="compliance.usagelogging", changes__retention_days=[183, 400]).exists()


def test_retention_is_set_by_officers_only(api_client, personas, deployment):
    response = api_client(personas["engineer"]).post(f"/api/usage-logs/{deployment.pk}/retention/", {"retention_days": 400}, format="json")
    assert response.status_code == 403


def test_the_purge_empties_personal_fields_past_retention_once_with_an_audit_event(logger, deployment):
    now = timezone.now()
    old = [event(deployment, at=now - timedelta(days=200), case_key=f"old-{i}", note="seen at night") for i in range(3)]
    recent = [event(deployment, at=now - timedelta(days=10), case_key="new-1", note="kept")]
    assert logger.post(URL, batch(deployment, old + recent), format="json").status_code == 201
    assert usage_retention_purge(now=now) == 3
    rows = list(UsageEvent.objects.order_by("occurred_at").values_list("case_key", "note", "outputs"))
    assert rows[:3] == [("", "", {"nodule": 0.82})] * 3 and rows[3] == ("new-1", "kept", {"nodule": 0.82})
    purge = AuditEvent.objects.get(action="purge", object_type="compliance.usagelogging")
    assert purge.changes["events"] == 3 and purge.changes["fields"] == ["case_key", "note"]
    assert usage_retention_purge(now=now) == 0  # nothing left to purge: no second event
    assert AuditEvent.objects.filter(action="purge").count() == 1
    # A late event from the purged period arrives without its personal fields.
    late = [event(deployment, at=now - timedelta(days=300), case_key="late", note="late note")]
    assert logger.post(URL, batch(deployment, late, batch_id="b-late"), format="json").status_code == 201
    assert UsageEvent.objects.filter(case_key="late").count() == 0
    assert audit_verify_chain().ok


def test_late_events_anywhere_in_a_long_batch_arrive_without_personal_fields(logger, deployment):
    now = timezone.now()
    assert logger.post(URL, batch(deployment, [event(deployment, at=now - timedelta(days=200))]), format="json").status_code == 201
    usage_retention_purge(now=now)
    recent = [event(deployment, at=now - timedelta(minutes=i), case_key=f"new-{i}", note="kept") for i in range(CHUNK_EVENTS)]
    late = [event(deployment, at=now - timedelta(days=190 + i), case_key=f"late-{i}", note="late note") for i in range(2)]
    assert logger.post(URL, batch(deployment, recent + late, batch_id="b-2"), format="json").status_code == 201
    stored = UsageEvent.objects.filter(batch__batch_id="b-2")
    assert set(stored.filter(occurred_at__lt=now - timedelta(days=183)).values_list("case_key", "note")) == {("", "")}
    assert stored.filter(case_key__startswith="new-", note="kept").count() == CHUNK_EVENTS and stored.count() == CHUNK_EVENTS + 2


def test_a_longer_retention_keeps_the_fields(logger, deployment):
    now = timezone.now()
    usage_retention_set(deployment=deployment, days=365)
    logger.post(URL, batch(deployment, [event(deployment, at=now - timedelta(days=200), case_key="kept")]), format="json")
    assert usage_retention_purge(now=now) == 0
    assert UsageEvent.objects.get().case_key == "kept"


def test_export_streams_csv_and_json_in_time_order(api_client, personas, logger, deployment):
    now = timezone.now()
    events = [event(deployment, at=now - timedelta(hours=h), case_key=f"k{h}", quality_flags=["artefact"] if h == 2 else []) for h in (1, 3, 2)]
    logger.post(URL, batch(deployment, events), format="json")
    client = api_client(personas["auditor"])
    response = client.get(f"/api/usage-logs/{deployment.pk}/export/")
    assert response.status_code == 200 and response.streaming and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["case_key"] for r in rows] == ["k3", "k2", "k1"] and rows[1]["quality_flags"] == "artefact"
    since = (now - timedelta(hours=2, minutes=30)).astimezone(UTC).isoformat().replace("+00:00", "Z")
    response = client.get(f"/api/usage-logs/{deployment.pk}/export/", {"as": "json", "since": since})
    records = json.loads(b"".join(response.streaming_content))
    assert [r["case_key"] for r in records] == ["k2", "k1"] and records[0]["outputs"] == {"nodule": 0.82}


def test_export_is_scoped_like_the_deployment(api_client, personas, deployment, institutions):
    south = DeploymentFactory(institution=institutions["south"])
    assert api_client(personas["engineer_south"]).get(f"/api/usage-logs/{south.pk}/export/").status_code == 200
    assert api_client(personas["engineer_south"]).get(f"/api/usage-logs/{deployment.pk}/export/").status_code == 404
    assert api_client(personas["clinician_north"]).get(f"/api/usage-logs/{deployment.pk}/export/").status_code == 403


def test_the_summary_gives_weekly_volume_override_rate_and_envelope(api_client, personas, logger, deployment):
    now = timezone.now()
    events = [
        event(deployment, at=now - timedelta(minutes=i), overridden=i < 2, quality_flags=["unsupported_device"] if i == 0 else []) for i in range(8)
    ]
    logger.post(URL, batch(deployment, events), format="json")
    summary = api_client(personas["officer"]).get(f"/api/usage-logs/{deployment.pk}/").json()
    assert summary["logging_configured"] and summary["retention_days"] == 183
    weeks = summary["weeks"]
    assert sum(w["events"] for w in weeks) == 8 and sum(w["overridden"] for w in weeks) == 2
    assert sum(w["out_of_envelope"] for w in weeks) == 1
    latest = weeks[-1]
    assert latest["override_ci"][0] <= latest["override_rate"] <= latest["override_ci"][1]
    assert usage_summary(DeploymentFactory()).logging_configured is False


def test_the_logger_token_command_prints_a_working_token(deployment, capsys):
    call_command("usage_logger_token", "--deployment", str(deployment.pk))
    key = capsys.readouterr().out.strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.post(URL, batch(deployment, [event(deployment)]), format="json").status_code == 201
    assert UsageLogging.objects.get(deployment=deployment).account.username == f"logger-{deployment.pk}"
    assert client.get(f"/api/usage-logs/{deployment.pk}/").status_code == 403  # a logger reads nothing


def test_usage_feeds_monitoring_and_traceability_5(api_client, personas, logger, deployment):
    from compliance.trust.gather import version_evidence
    from compliance.trust.policy import RULES, rule_params

    evidence = version_evidence(deployment.version)
    outcome = RULES["usage_logging"].function(evidence, rule_params("usage_logging", None))
    assert outcome.value == 0.0 and evidence.deployments[0].usage_logger and evidence.deployments[0].usage_days_since is None
    logger.post(URL, batch(deployment, [event(deployment, overridden=True), event(deployment)]), format="json")
    monitoring = api_client(personas["officer"]).get(f"/api/monitoring/{deployment.pk}/").json()
    assert monitoring["usage"]["weeks"][-1]["events"] == 2 and monitoring["usage"]["weeks"][-1]["override_rate"] == 0.5
    evidence = version_evidence(deployment.version)
    assert (evidence.deployments[0].usage_days_since, evidence.deployments[0].usage_retention_days) == (0, 183)
    outcome = RULES["usage_logging"].function(evidence, rule_params("usage_logging", None))
    assert (outcome.value, outcome.status) == (1.0, "met")


# --- Ingestion equivalence: what is stored is what was sent, on SQLite and on PostgreSQL (COPY) ---------


def _awkward_events(deployment) -> list[dict]:
    """Events whose text needs escaping in COPY's format and in JSON, numbers of every JSON kind, and an offset."""
    now = timezone.now().replace(microsecond=123456)
    return [
        event(
            deployment,
            at=(now - timedelta(hours=2)).astimezone(timezone.get_fixed_timezone(120)),
            case_key="tab\there\\back",
            outputs={'quote " label': 0.5, "back\\slash": 1, "Lunge ü 🫁": 1e-07, "neg": -2.5},
            uncertainty=0,
            quality_flags=["artefact", "low_quality", "artefact"],
            note='line one\nline two\r\n"quoted"\ttabbed \\N not null',
        ),
        event(deployment, at=now - timedelta(hours=1), uncertainty=None, overridden=True, quality_flags=["unsupported_device"]),
        {k: v for k, v in event(deployment, at=now - timedelta(minutes=30)).items() if k != "quality_flags"},
    ]


def test_stored_events_equal_the_events_sent(logger, deployment):
    events = _awkward_events(deployment)
    assert logger.post(URL, batch(deployment, events), format="json").status_code == 201
    columns = ("occurred_at", "case_key", "version_id", "outputs", "uncertainty", "overridden", "quality_flags", "out_of_envelope", "note")
    stored = list(UsageEvent.objects.order_by("occurred_at").values_list(*columns))
    expected = [
        (
            datetime.fromisoformat(e["occurred_at"]),
            e["case_key"],
            deployment.version_id,
            e["outputs"],
            e["uncertainty"],
            e["overridden"],
            sorted(set(e.get("quality_flags", []))),
            bool({"out_of_envelope", "unsupported_device"} & set(e.get("quality_flags", []))),
            e.get("note", ""),
        )
        for e in events
    ]
    assert stored == expected
    assert stored[0][0].utcoffset() == timedelta(0)  # +02:00 in, the same instant in UTC out


def test_the_export_gives_back_the_events_sent(api_client, personas, logger, deployment):
    events = _awkward_events(deployment)
    logger.post(URL, batch(deployment, events), format="json")
    response = api_client(personas["officer"]).get(f"/api/usage-logs/{deployment.pk}/export/", {"as": "json"})
    records = json.loads(b"".join(response.streaming_content))
    assert [r["note"] for r in records] == [e.get("note", "") for e in events]
    assert [r["outputs"] for r in records] == [e["outputs"] for e in events]
    assert [datetime.fromisoformat(r["occurred_at"]) for r in records] == [datetime.fromisoformat(e["occurred_at"]) for e in events]
    rows = list(
        csv.DictReader(
            io.StringIO(b"".join(api_client(personas["officer"]).get(f"/api/usage-logs/{deployment.pk}/export/").streaming_content).decode())
        )
    )
    assert [r["case_key"] for r in rows] == [e["case_key"] for e in events] and rows[0]["quality_flags"] == "artefact;low_quality"


def test_the_same_events_written_otherwise_are_a_redelivery(logger, deployment):
    events = _awkward_events(deployment)
    assert logger.post(URL, batch(deployment, events), format="json").status_code == 201
    # The same batch as another installation library would write it: keys reordered, other spacing, times in UTC.
    same = [{**dict(reversed(list(e.items()))), "occurred_at": datetime.fromisoformat(e["occurred_at"]).astimezone(UTC).isoformat()} for e in events]
    body = json.dumps(batch(deployment, same), indent=1, ensure_ascii=True)
    again = logger.post(URL, body, content_type="application/json")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    changed = [*same[:2], {**same[2], "case_key": "another"}]
    assert logger.post(URL, batch(deployment, changed), format="json").status_code == 409
    assert UsageEvent.objects.count() == 3


def test_the_logging_keeps_the_last_batch_and_the_latest_event(logger, deployment):
    now = timezone.now()
    logger.post(URL, batch(deployment, [event(deployment, at=now - timedelta(hours=1))], batch_id="a"), format="json")
    logger.post(URL, batch(deployment, [event(deployment, at=now - timedelta(days=3))], batch_id="b"), format="json")  # a late batch
    logging = UsageLogging.objects.get(deployment=deployment)
    assert logging.last_event_at == now - timedelta(hours=1)  # the late batch does not move it back
    assert logging.last_received_at == UsageBatch.objects.get(batch_id="b").received_at


@pytest.mark.parametrize(("since", "until", "keys"), [("2026-03-02", "2026-03-02", ["k2"]), ("2026-03-01", "2026-03-03", ["k1", "k2", "k3"])])
def test_export_periods_may_be_given_as_dates(api_client, personas, logger, deployment, since, until, keys):
    events = [event(deployment, at=datetime(2026, 3, d, 23, 59, tzinfo=UTC), case_key=f"k{d}") for d in (1, 2, 3)]
    logger.post(URL, batch(deployment, events), format="json")
    response = api_client(personas["officer"]).get(f"/api/usage-logs/{deployment.pk}/export/", {"as": "json", "since": since, "until": until})
    assert [r["case_key"] for r in json.loads(b"".join(response.streaming_content))] == keys


def test_an_impossible_export_date_is_a_400(api_client, personas, deployment):
    response = api_client(personas["officer"]).get(f"/api/usage-logs/{deployment.pk}/export/", {"since": "2026-02-30"})
    assert response.status_code == 400 and "A date (2026-03-01)" in response.json()["since"]
