"""Operational (usage) logs of deployed systems (AI Act Art. 12, 19, 26(6)).

A deployed installation sends batches of inference events with a token of its deployment
logger, an account bound to that one deployment (``usage_logger_issue``). A batch is
stored whole or not at all, in one transaction: its receipt, its events (PostgreSQL COPY,
``bulk_create`` elsewhere) and the weekly sums monitoring reads. A batch id seen before
returns the first receipt and writes nothing, so an installation may resend whatever it
is unsure was received.

The events keep their personal fields (the case's pseudonym, the clinician's note) for the
deployment's retention, at least six months (Art. 19(1), 26(6)); ``usage_retention_purge``
then empties them, with one audit event per deployment and run. The rest of each event
stays: it is the record of what the system did.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from compliance.models import USAGE_RETENTION_MIN_DAYS, UsageBatch, UsageEvent, UsageLogging, UsageWeek
from compliance.usage_checks import ROW_COLUMNS, CheckedBatch, copy_lines
from core.audit import audit_record
from core.choices import Role
from core.errors import Conflict
from core.tokens import IssuedToken, api_token_issue
from radtrust_engine.stats import wilson_interval
from registry.models import Deployment, User
from registry.services import user_create

# Weekly sums upserted by one statement (5 parameters each: SQLite takes up to 32,766).
WEEKS_PER_STATEMENT = 1_000
# COPY's columns: an event's (``ROW_COLUMNS``), then its batch's two.
COPY_COLUMNS = (*ROW_COLUMNS, "deployment_id", "batch_id")


@dataclass(frozen=True)
class UsageReceipt:
    """What the installation is told about a batch: stored now, or stored before (``duplicate``)."""

    deployment: int
    batch_id: str
    events: int
    first_event_at: str
    last_event_at: str
    received_at: str
    duplicate: bool

    @classmethod
    def of(cls, batch: UsageBatch, *, duplicate: bool) -> UsageReceipt:
        return cls(
            deployment=batch.deployment_id,
            batch_id=batch.batch_id,
            events=batch.events,
            first_event_at=batch.first_event_at.isoformat(),
            last_event_at=batch.last_event_at.isoformat(),
            received_at=batch.received_at.isoformat(),
            duplicate=duplicate,
        )

    def to_dict(self) -> dict:
        return asdict(self)


# --- The deployment logger's account ----------------------------------------------------------


def usage_logger_issue(*, deployment: Deployment, days: int | None = None) -> IssuedToken:
    """A new token for ``deployment``'s logger (``logger-<deployment id>``, created the first time),
    whose every token writes that deployment's usage logs and nothing else."""
    days = settings.RADTRUST_API_TOKEN_MAX_DAYS if days is None else days
    username = f"logger-{deployment.pk}"
    with transaction.atomic():
        logging, _ = UsageLogging.objects.select_for_update().get_or_create(deployment=deployment)
        account = User.objects.filter(username=username).first()
        if account is None:
            account = user_create(username=username, role=Role.DEPLOYMENT_LOGGER, institution=deployment.institution)
        if account.role != Role.DEPLOYMENT_LOGGER or (logging.account_id not in (None, account.pk)):
            raise Conflict(f"{username!r} exists but is not this deployment's logger; refusing to hand out its token.", code="not_the_logger")
        if logging.account_id is None:
            logging.account = account
            logging.save(update_fields=["account"])
        return api_token_issue(user=account, name=f"usage logger of deployment {deployment.pk}", days=days)


def logged_deployment(user, *, named: object) -> UsageLogging:
    """The logging of the deployment ``user`` logs for, which must be the one the batch ``named``
    (PermissionDenied otherwise: a token writes its own deployment's logs only)."""
    logging = UsageLogging.objects.select_related("deployment").filter(account_id=user.pk).first()
    if logging is None:
        raise PermissionDenied("This account logs no deployment; use the token of the deployment's logger.")
    if str(named) != str(logging.deployment_id):
        raise PermissionDenied(f"This token logs deployment {logging.deployment_id} only; the batch names deployment {named}.")
    return logging


# --- Ingestion --------------------------------------------------------------------------------


def usage_batch_ingest(*, logging: UsageLogging, batch_id, events) -> UsageReceipt:
    """Store one batch of ``logging``'s deployment whole, or refuse it whole.

    1. A batch id seen before: the same events (``CheckedBatch.digest``) return the first receipt
       (a redelivery, nothing written); other events under that id are a 409.
    2. One transaction: the logging row locked against a purge running now (so no late event slips
       behind the purge's mark with its personal fields), the events, the receipt (its unique
       constraint settles two deliveries racing) and the weekly sums. On PostgreSQL the events are
       checked and copied chunk by chunk (``_copy_events``); a refused event (a 400 naming the first
       offending rows) aborts the COPY and the transaction. Events arrive in any order; readers
       order by time. An event older than the retention purge's reach is stored without its
       personal fields.
    """
    if not isinstance(batch_id, str) or not 1 <= len(batch_id) <= 64:
        raise ValidationError({"batch_id": "The installation's id of this batch, 1 to 64 characters, the same on every redelivery."})
    deployment = logging.deployment
    now = timezone.now()
    checked = CheckedBatch(events, version_id=deployment.version_id, now=now)
    earlier = UsageBatch.objects.filter(deployment=deployment, batch_id=batch_id).first()
    if earlier is not None:
        return _redelivery(earlier, checked.digest())
    batch = UsageBatch(deployment=deployment, batch_id=batch_id, received_at=now)  # the rest once the events are checked
    try:
        with transaction.atomic():
            purged_before = UsageLogging.objects.select_for_update().values_list("purged_before", flat=True).get(pk=logging.pk)
            if connection.vendor == "postgresql":
                batch = _copy_events(batch, checked, purged_before)
            else:
                batch = _create_events(batch, checked, purged_before)
            latest = Value(batch.last_event_at)
            UsageLogging.objects.filter(pk=logging.pk).update(last_received_at=now, last_event_at=Greatest(Coalesce("last_event_at", latest), latest))
            _weeks_add(deployment.pk, checked.rows)
    except IntegrityError:
        earlier = UsageBatch.objects.filter(deployment=deployment, batch_id=batch_id).first()
        if earlier is None:
            raise
        return _redelivery(earlier, checked.digest())
    return UsageReceipt.of(batch, duplicate=False)


def _redelivery(earlier: UsageBatch, digest: str) -> UsageReceipt:
    if earlier.digest != digest:
        raise Conflict(
            f"Batch {earlier.batch_id!r} was received on {earlier.received_at:%Y-%m-%d %H:%M} UTC with other events; give a new batch id.",
            code="batch_id_reused",
        )
    return UsageReceipt.of(earlier, duplicate=True)


def _receipt_save(batch: UsageBatch, checked: CheckedBatch) -> UsageBatch:
    """The receipt, once every event is checked: their digest, count and period."""
    batch.digest = checked.digest()
    times = [row[1] for row in checked.rows]
    batch.events, batch.first_event_at, batch.last_event_at = len(times), min(times), max(times)
    (batch,) = UsageBatch.objects.bulk_create([batch])  # an insert, also under the id the COPY lines name (save() refuses a set pk)
    return batch


def _expired(rows: list[tuple], purged_before: dt.datetime | None) -> list[tuple] | None:
    """``rows`` with no personal fields in late events from a period already purged; None when there is none."""
    if purged_before is None or all(row[1] >= purged_before for row in rows):
        return None
    return [(*row[:2], "", *row[3:8], "") if row[1] < purged_before else row for row in rows]


def _copy_events(batch: UsageBatch, checked: CheckedBatch, purged_before: dt.datetime | None) -> UsageBatch:
    """The events by COPY, a chunk sent as soon as it is checked (each line ends with the batch's own
    columns, added by one join), then the receipt under the id the lines name."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [UsageBatch._meta.db_table])
        (batch.pk,) = cursor.fetchone()
        end = f"\t{batch.deployment_id}\t{batch.pk}\n"
        with cursor.copy(f"COPY {UsageEvent._meta.db_table} ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
            for rows, lines in checked.chunks():
                expired = _expired(rows, purged_before)
                copy.write(end.join(lines if expired is None else copy_lines(expired)) + end)
            checked.digest()  # a refused event aborts the COPY here
    return _receipt_save(batch, checked)


def _create_events(batch: UsageBatch, checked: CheckedBatch, purged_before: dt.datetime | None) -> UsageBatch:
    """The receipt, then the events by ``bulk_create`` (databases other than PostgreSQL)."""
    _receipt_save(batch, checked)
    rows = _expired(checked.rows, purged_before) or checked.rows
    events = []
    for row in rows:
        values = dict(zip(ROW_COLUMNS, row, strict=True))
        values["outputs"] = json.loads(values["outputs"])  # the checked JSON text, as the object the field stores
        events.append(UsageEvent(deployment_id=batch.deployment_id, batch_id=batch.pk, **values))
    UsageEvent.objects.bulk_create(events, batch_size=1000)
    return batch


def week_start(moment: dt.datetime) -> dt.date:
    """The Monday (UTC) of the week ``moment`` falls in, as the usage summaries key it."""
    day = moment.astimezone(dt.UTC).date()
    return day - dt.timedelta(days=day.weekday())


def _weeks_add(deployment_id: int, rows: list[tuple]) -> None:
    """Add the batch's events to its deployment's weekly sums, in the batch's transaction: one upsert
    statement for up to ``WEEKS_PER_STATEMENT`` weeks (a statement per week cost a round trip each)."""
    n, overridden, outside = Counter(), Counter(), Counter()
    weeks: dict[dt.date, dt.date] = {}  # day -> its Monday: the events' times are UTC already
    for row in rows:
        day = row[1].date()
        week = weeks.get(day)
        if week is None:
            week = weeks[day] = day - dt.timedelta(days=day.weekday())
        n[week] += 1
        overridden[week] += row[5]
        outside[week] += row[7]
    sums = [(deployment_id, week, n[week], overridden[week], outside[week]) for week in sorted(n)]
    table = UsageWeek._meta.db_table
    with connection.cursor() as cursor:
        for start in range(0, len(sums), WEEKS_PER_STATEMENT):
            part = sums[start : start + WEEKS_PER_STATEMENT]
            cursor.execute(
                f"INSERT INTO {table} (deployment_id, week, n, n_overridden, n_out_of_envelope) VALUES "
                + ", ".join(["(%s, %s, %s, %s, %s)"] * len(part))
                + f" ON CONFLICT (deployment_id, week) DO UPDATE SET n = {table}.n + excluded.n, "
                f"n_overridden = {table}.n_overridden + excluded.n_overridden, n_out_of_envelope = {table}.n_out_of_envelope + excluded.n_out_of_envelope",
                [value for week in part for value in week],
            )


# --- Retention ----------------------------------------------------------------------------


def usage_retention_set(*, deployment: Deployment, days: int) -> UsageLogging:
    """Keep ``deployment``'s usage logs' personal fields ``days`` days (audited); fewer than six months is refused."""
    if not isinstance(days, int) or days < USAGE_RETENTION_MIN_DAYS:
        raise ValidationError(
            {"retention_days": f"Usage logs are kept at least six months ({USAGE_RETENTION_MIN_DAYS} days), AI Act Art. 19(1) and 26(6)."}
        )
    with transaction.atomic():
        logging, _ = UsageLogging.objects.select_for_update().get_or_create(deployment=deployment)
        if logging.retention_days != days:
            logging.retention_days = days
            logging.save(update_fields=["retention_days"])
    return logging


def usage_retention_purge(*, now: dt.datetime | None = None) -> int:
    """Empty the case keys and notes of every event past its deployment's retention; returns how many.

    Each deployment in its own transaction, from where its last purge stopped (``purged_before``)
    to the cutoff, along the (deployment, time) index; one audit event per deployment that had
    events to purge, naming the period and the count.
    """
    now = now or timezone.now()
    total = 0
    for pk in UsageLogging.objects.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            logging = UsageLogging.objects.select_for_update().get(pk=pk)
            cutoff = now - dt.timedelta(days=logging.retention_days)
            if logging.purged_before is not None and logging.purged_before >= cutoff:
                continue
            expired = UsageEvent.objects.filter(deployment_id=logging.deployment_id, occurred_at__lt=cutoff)
            if logging.purged_before is not None:
                expired = expired.filter(occurred_at__gte=logging.purged_before)
            purged = expired.update(case_key="", note="")
            before = logging.purged_before
            UsageLogging.objects.filter(pk=pk).update(purged_before=cutoff)  # bookkeeping; the audit event below says what happened
            if purged:
                audit_record(
                    action="purge",
                    instance=logging,
                    changes={"purged_before": [_iso(before), cutoff.isoformat()], "events": purged, "fields": ["case_key", "note"]},
                )
            total += purged
    return total


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# --- Reading: monitoring figures and the deployer's export --------------------------------------


@dataclass(frozen=True)
class UsageWeekFigures:
    """One week of a deployment's use, for monitoring: volume, override rate with its 95% CI, inputs outside the envelope."""

    week: str
    events: int
    overridden: int
    override_rate: float | None
    override_ci: tuple[float | None, float | None]
    out_of_envelope: int
    out_of_envelope_rate: float | None


@dataclass(frozen=True)
class UsageSummary:
    """A deployment's usage logging at a glance: whether it is on, how long it keeps logs, and the weeks."""

    deployment: int
    logging_configured: bool
    retention_days: int | None
    purged_before: str | None
    last_event_at: str | None
    last_received_at: str | None
    weeks: list[UsageWeekFigures]

    def to_dict(self) -> dict:
        return asdict(self)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def usage_summary(deployment: Deployment, *, weeks: int = 12) -> UsageSummary:
    """The last ``weeks`` weeks of ``deployment``'s use (``usage_summaries``)."""
    return usage_summaries([deployment.pk], weeks=weeks)[deployment.pk]


def usage_summaries(deployment_ids: Iterable[int], *, weeks: int = 12) -> dict[int, UsageSummary]:
    """The last ``weeks`` weeks of use of each deployment, from its logging row and the weekly
    sums: two queries for any number of deployments, whatever the volume of their history."""
    ids = list(deployment_ids)
    loggings = {lg.deployment_id: lg for lg in UsageLogging.objects.filter(deployment_id__in=ids)}
    since = week_start(timezone.now()) - dt.timedelta(weeks=weeks - 1)
    figures: dict[int, list[UsageWeekFigures]] = {pk: [] for pk in ids}
    rows = (
        UsageWeek.objects.filter(deployment_id__in=ids, week__gte=since)
        .order_by("deployment_id", "week")
        .values_list("deployment_id", "week", "n", "n_overridden", "n_out_of_envelope")
    )
    for deployment_id, week, n, over, out in rows:
        figures[deployment_id].append(
            UsageWeekFigures(
                week=week.isoformat(),
                events=n,
                overridden=over,
                override_rate=_share(over, n),
                override_ci=tuple(None if b is None else round(b, 4) for b in wilson_interval(over, n)),
                out_of_envelope=out,
                out_of_envelope_rate=_share(out, n),
            )
        )
    return {pk: _summary(pk, loggings.get(pk), figures[pk]) for pk in ids}


def _summary(deployment_id: int, logging: UsageLogging | None, weeks: list[UsageWeekFigures]) -> UsageSummary:
    return UsageSummary(
        deployment=deployment_id,
        logging_configured=logging is not None,
        retention_days=None if logging is None else logging.retention_days,
        purged_before=None if logging is None else _iso(logging.purged_before),
        last_event_at=None if logging is None else _iso(logging.last_event_at),
        last_received_at=None if logging is None else _iso(logging.last_received_at),
        weeks=weeks,
    )


EXPORT_COLUMNS = ("occurred_at", "case_key", "version_id", "outputs", "uncertainty", "overridden", "quality_flags", "out_of_envelope", "note")
# The export streams pieces of about this many bytes (a piece per row cost more than PostgreSQL's writing it).
EXPORT_CHUNK = 64 * 1024
_UTC_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"
# PostgreSQL writes the files itself (COPY ... TO STDOUT): a row costs microseconds, not tens of them in Python.
_PG_TIME = "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
_PG_CSV = (
    f"SELECT {_PG_TIME}, case_key, version_id, outputs::text, uncertainty, CASE WHEN overridden THEN 'true' ELSE 'false' END, "
    "array_to_string(ARRAY(SELECT jsonb_array_elements_text(quality_flags)), ';'), "
    "CASE WHEN out_of_envelope THEN 'true' ELSE 'false' END, note"
)
_PG_JSON = (
    "SELECT ',' || json_build_object("
    f"'occurred_at', {_PG_TIME}, 'case_key', case_key, 'version_id', version_id, 'outputs', outputs, 'uncertainty', uncertainty, "
    "'overridden', overridden, 'quality_flags', quality_flags, 'out_of_envelope', out_of_envelope, 'note', note)::text"
)


def usage_export(deployment: Deployment, *, kind: str, since: dt.datetime | None = None, until: dt.datetime | None = None) -> Iterator[str | bytes]:
    """``deployment``'s events in time order as CSV (a header, then ``EXPORT_COLUMNS``) or a JSON array of
    objects, in pieces for a streaming response; read along the (deployment, time) index."""
    if connection.vendor == "postgresql":
        return _pg_export(deployment.pk, kind=kind, since=since, until=until)
    events = UsageEvent.objects.filter(deployment=deployment)
    if since is not None:
        events = events.filter(occurred_at__gte=since)
    if until is not None:
        events = events.filter(occurred_at__lt=until)
    rows = events.order_by("occurred_at", "pk").values_list(*EXPORT_COLUMNS).iterator(chunk_size=5000)
    return _csv(rows) if kind == "csv" else _json(rows)


def _pg_export(deployment_id: int, *, kind: str, since, until) -> Iterator[str | bytes]:
    where, params = "deployment_id = %s", [deployment_id]
    if since is not None:
        where, params = f"{where} AND occurred_at >= %s", [*params, since]
    if until is not None:
        where, params = f"{where} AND occurred_at < %s", [*params, until]
    select = _PG_CSV if kind == "csv" else _PG_JSON
    query = f"COPY ({select} FROM compliance_usageevent WHERE {where} ORDER BY occurred_at, id) TO STDOUT "
    if kind == "csv":
        yield ",".join(EXPORT_COLUMNS) + "\r\n"
        query += "(FORMAT csv)"
    else:  # one JSON object a line, as PostgreSQL wrote it: CSV quoting off (no control character is left unescaped in JSON)
        yield "["
        query += "(FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')"
    # psycopg's own cursor: Django's debug wrapper passes no parameters to copy().
    with connection.cursor() as cursor, cursor.cursor.copy(query, params) as copy:
        chunk, skip = bytearray(), 1 if kind == "json" else 0  # every JSON object follows a comma, but the first
        for row in copy:  # libpq hands over one row at a time: sent on in pieces of about EXPORT_CHUNK bytes
            chunk += row
            if len(chunk) >= EXPORT_CHUNK:
                yield bytes(chunk[skip:])
                chunk, skip = bytearray(), 0
        if len(chunk) > skip:
            yield bytes(chunk[skip:])
    if kind == "json":
        yield "]\n"


def _csv(rows: Iterator[tuple]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for i, (at, key, version, outputs, unc, over, flags, env, note) in enumerate(rows, 1):
        writer.writerow(
            (
                at.astimezone(dt.UTC).strftime(_UTC_FORMAT),
                key,
                version,
                json.dumps(outputs),
                unc,
                str(over).lower(),
                ";".join(flags),
                str(env).lower(),
                note,
            )
        )
        if i % 1000 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json(rows: Iterator[tuple]) -> Iterator[str]:
    yield "["
    for i, row in enumerate(rows):
        record = dict(zip(EXPORT_COLUMNS, row, strict=True))
        record["occurred_at"] = record["occurred_at"].astimezone(dt.UTC).strftime(_UTC_FORMAT)
        yield ("," if i else "") + json.dumps(record) + "\n"
    yield "]\n"
