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
import hashlib
import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from json.encoder import encode_basestring

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from compliance.choices import InputQuality
from compliance.models import USAGE_RETENTION_MIN_DAYS, UsageBatch, UsageEvent, UsageLogging, UsageWeek
from core.audit import audit_record
from core.choices import Role
from core.errors import Conflict
from core.tokens import IssuedToken, api_token_issue
from radtrust_engine.stats import wilson_interval
from registry.models import Deployment, User
from registry.services import user_create

# A batch holds at most this many events; the request body is bounded by DATA_UPLOAD_MAX_MEMORY_SIZE (10 MiB).
MAX_BATCH_EVENTS = 10_000
# An event may carry a time this far ahead of the server's clock (clock skew between machines).
CLOCK_SKEW = dt.timedelta(minutes=5)
# A 400 names this many offending rows, the first ones.
ERRORS_SHOWN = 10
MAX_LABELS = 100
ENVELOPE_FLAGS = frozenset({InputQuality.OUT_OF_ENVELOPE, InputQuality.UNSUPPORTED_DEVICE})
_FLAGS = frozenset(InputQuality.values)
_EVENT_FIELDS = frozenset({"case_key", "occurred_at", "version", "outputs", "uncertainty", "overridden", "quality_flags", "note"})
# An event's columns as ``_event_row`` gives them; COPY writes the batch's two after them.
ROW_COLUMNS = (
    "version_id",
    "occurred_at",
    "case_key",
    "outputs",
    "uncertainty",
    "overridden",
    "quality_flags",
    "out_of_envelope",
    "note",
)
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


def _moment(value) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError("Give the time as ISO 8601 text with its offset, for example 2026-03-01T08:15:00Z.")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value[:40]!r} is not an ISO 8601 time.") from None
    if moment.tzinfo is None:
        raise ValueError("Give the time's UTC offset (Z or +01:00): a time without one is ambiguous.")
    return moment.astimezone(dt.UTC)


def _text(value) -> bool:
    """Text a database stores: no NUL, no lone surrogate (JSON lets a client send both)."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _event_row(raw, *, version_id: int, latest: dt.datetime) -> tuple[tuple, dict[str, str]]:
    """One event's column values (``ROW_COLUMNS``; the outputs as JSON text), or the errors per field."""
    if not isinstance(raw, dict):
        return (), {"non_field_errors": "An event is a JSON object."}
    errors: dict[str, str] = {}
    if not raw.keys() <= _EVENT_FIELDS:
        unknown = raw.keys() - _EVENT_FIELDS
        errors["non_field_errors"] = f"Unknown fields: {', '.join(sorted(map(str, unknown)))}."
    case_key = raw.get("case_key")
    if not _text(case_key) or not 1 <= len(case_key) <= 64:
        errors["case_key"] = "The case's pseudonym, 1 to 64 characters (never a patient identifier)."
    occurred_at = None
    try:
        occurred_at = _moment(raw.get("occurred_at"))
        if occurred_at > latest:
            errors["occurred_at"] = f"{occurred_at.isoformat()} lies in the future (more than {CLOCK_SKEW} ahead of the server's clock)."
    except ValueError as exc:
        errors["occurred_at"] = str(exc)
    if raw.get("version") != version_id:
        errors["version"] = f"This deployment runs model version {version_id}; give that id."
    outputs = _outputs_json(raw.get("outputs"))
    if outputs is None:
        errors["outputs"] = f"The outputs as displayed: an object of 1 to {MAX_LABELS} labels (up to 100 characters), each with a finite number."
    uncertainty = raw.get("uncertainty")
    if uncertainty is not None and not _number(uncertainty):
        errors["uncertainty"] = "The uncertainty displayed: a finite number, or null when none was shown."
    overridden = raw.get("overridden")
    if not isinstance(overridden, bool):
        errors["overridden"] = "true when the clinician overrode the output, else false."
    flags = raw.get("quality_flags", [])
    if not isinstance(flags, list) or (flags and not all(isinstance(f, str) and f in _FLAGS for f in flags)):
        errors["quality_flags"] = f"A list of input quality codes: {', '.join(InputQuality.values)}."
    note = raw.get("note", "")
    if not _text(note) or len(note) > 2000:
        errors["note"] = "The clinician's note: text of at most 2000 characters."
    if errors:
        return (), errors
    if len(flags) > 1:
        flags = sorted(set(flags))
    row = (version_id, occurred_at, case_key, outputs, uncertainty, overridden, flags, not ENVELOPE_FLAGS.isdisjoint(flags), note)
    return row, {}


def _outputs_json(outputs) -> str | None:
    """The outputs as JSON text, or None unless they are 1 to ``MAX_LABELS`` labels of up to 100
    characters, each with a finite number. Written here while checking (labels escaped by the
    standard library's JSON string encoder, numbers as ``json`` writes them): ``json.dumps`` per
    event cost more than all the checks."""
    if not isinstance(outputs, dict) or not 1 <= len(outputs) <= MAX_LABELS:
        return None
    parts = []
    for label, value in outputs.items():
        if not _number(value) or len(label) > 100 or not _text(label):
            return None
        number = float.__repr__(value) if isinstance(value, float) else int.__repr__(value)  # a subclass's repr may not be JSON
        parts.append(f"{encode_basestring(label)}: {number}")
    return "{" + ", ".join(parts) + "}"


def _rows(events, *, version_id: int, now: dt.datetime) -> list[tuple]:
    """Every event's columns, or a ValidationError naming the first offending rows (index: field: message)."""
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_BATCH_EVENTS:
        raise ValidationError({"events": f"A batch is a list of 1 to {MAX_BATCH_EVENTS} events."})
    rows, bad, n_bad = [], {}, 0
    latest = now + CLOCK_SKEW
    for index, raw in enumerate(events):
        row, errors = _event_row(raw, version_id=version_id, latest=latest)
        if errors:
            n_bad += 1
            if len(bad) < ERRORS_SHOWN:
                bad[f"events[{index}]"] = [f"{field}: {message}" for field, message in errors.items()]
        rows.append(row)
    if bad:
        more = n_bad - len(bad)
        if more:
            bad["events"] = [f"{n_bad} events are refused; the first {len(bad)} are shown. Nothing of this batch was stored."]
        raise ValidationError(bad)
    return rows


def usage_batch_ingest(*, logging: UsageLogging, batch_id, events) -> UsageReceipt:
    """Store one batch of ``logging``'s deployment whole, or refuse it whole.

    1. The batch id and every event are checked first (a 400 names the first offending rows), then
       each event's line of COPY text is written once: the digest is over those lines.
    2. A batch id seen before: the same events return the first receipt (a redelivery, nothing
       written); other events under that id are a 409.
    3. One transaction: the receipt (its unique constraint settles two deliveries racing),
       the events, and the weekly sums. Events arrive in any order; readers order by time.
       An event older than the retention purge's reach is stored without its personal fields.
    """
    if not isinstance(batch_id, str) or not 1 <= len(batch_id) <= 64:
        raise ValidationError({"batch_id": "The installation's id of this batch, 1 to 64 characters, the same on every redelivery."})
    deployment = logging.deployment
    now = timezone.now()
    rows = _rows(events, version_id=deployment.version_id, now=now)
    lines = _copy_lines(rows)
    digest = batch_digest(lines)
    earlier = UsageBatch.objects.filter(deployment=deployment, batch_id=batch_id).first()
    if earlier is not None:
        return _redelivery(earlier, digest)
    times = [row[1] for row in rows]
    try:
        with transaction.atomic():
            batch = UsageBatch.objects.create(
                deployment=deployment,
                batch_id=batch_id,
                digest=digest,
                received_at=now,
                events=len(rows),
                first_event_at=min(times),
                last_event_at=max(times),
            )
            # The update locks the logging against a purge running now, so no late event slips behind
            # the purge's mark with its personal fields; the mark is read once the lock is held.
            latest = Value(batch.last_event_at)
            UsageLogging.objects.filter(pk=logging.pk).update(last_received_at=now, last_event_at=Greatest(Coalesce("last_event_at", latest), latest))
            purged_before = UsageLogging.objects.values_list("purged_before", flat=True).get(pk=logging.pk)
            if purged_before is not None and batch.first_event_at < purged_before:
                rows = _expire(rows, purged_before)
                lines = _copy_lines(rows)
            _insert(batch, rows, lines)
            _weeks_add(deployment.pk, rows)
    except IntegrityError:
        earlier = UsageBatch.objects.filter(deployment=deployment, batch_id=batch_id).first()
        if earlier is None:
            raise
        return _redelivery(earlier, digest)
    return UsageReceipt.of(batch, duplicate=False)


def batch_digest(lines: list[str]) -> str:
    """What tells a redelivery from another batch under a reused id: sha256 of the batch's events
    as checked and stored (their COPY lines, in the order sent), so the same events written with
    other JSON spacing, key order or UTC offset are the same batch. Not ``canonical_sha256``:
    nothing recomputes it elsewhere, and hashing text already written costs nothing per event."""
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _redelivery(earlier: UsageBatch, digest: str) -> UsageReceipt:
    if earlier.digest != digest:
        raise Conflict(
            f"Batch {earlier.batch_id!r} was received on {earlier.received_at:%Y-%m-%d %H:%M} UTC with other events; give a new batch id.",
            code="batch_id_reused",
        )
    return UsageReceipt.of(earlier, duplicate=True)


def _expire(rows: list[tuple], purged_before: dt.datetime) -> list[tuple]:
    """Late events from a period already purged keep no personal fields."""
    return [(*row[:2], "", *row[3:8], "") if row[1] < purged_before else row for row in rows]


def _insert(batch: UsageBatch, rows: list[tuple], lines: list[str]) -> None:
    """The events by PostgreSQL COPY of ``lines`` (one round trip per batch), by ``bulk_create`` elsewhere."""
    if connection.vendor == "postgresql":
        # Each line ends with the batch's own columns: one join writes them all.
        end = f"\t{batch.deployment_id}\t{batch.pk}\n"
        with connection.cursor() as cursor, cursor.copy(f"COPY compliance_usageevent ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
            copy.write(end.join(lines) + end)
        return
    events = []
    for row in rows:
        values = dict(zip(ROW_COLUMNS, row, strict=True))
        values["outputs"] = json.loads(values["outputs"])  # the checked JSON text, as the object the field stores
        events.append(UsageEvent(deployment_id=batch.deployment_id, batch_id=batch.pk, **values))
    UsageEvent.objects.bulk_create(events, batch_size=1000)


def _copy_field(text: str) -> str:
    """A value in COPY's text format: its backslashes, tabs and line ends escaped."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


_NULL = "\\N"


def _flags_json(flags: list[str]) -> str:
    """The flags (checked ``InputQuality`` codes: no character needs escaping) as a JSON array."""
    return '["' + '","'.join(flags) + '"]' if flags else "[]"


def _copy_lines(rows: list[tuple]) -> list[str]:
    """Each event's line of COPY text (``ROW_COLUMNS``), without the batch's columns and the line end
    (``_insert`` adds both); psycopg's ``write_row`` took a third of the time."""
    return [
        f"{v}\t{at.isoformat()}\t{_copy_field(key)}\t{_copy_field(outputs)}\t"
        f"{_NULL if unc is None else repr(float(unc))}\t{'t' if over else 'f'}\t{_flags_json(flags)}\t{'t' if env else 'f'}\t{_copy_field(note)}"
        for v, at, key, outputs, unc, over, flags, env, note in rows
    ]


def week_start(moment: dt.datetime) -> dt.date:
    """The Monday (UTC) of the week ``moment`` falls in, as the usage summaries key it."""
    day = moment.astimezone(dt.UTC).date()
    return day - dt.timedelta(days=day.weekday())


def _weeks_add(deployment_id: int, rows: list[tuple]) -> None:
    """Add the batch's events to its deployment's weekly sums (an upsert per week, in the batch's transaction)."""
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
    table = UsageWeek._meta.db_table
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (deployment_id, week, n, n_overridden, n_out_of_envelope) VALUES (%s, %s, %s, %s, %s) "
            f"ON CONFLICT (deployment_id, week) DO UPDATE SET n = {table}.n + excluded.n, "
            f"n_overridden = {table}.n_overridden + excluded.n_overridden, n_out_of_envelope = {table}.n_out_of_envelope + excluded.n_out_of_envelope",
            [(deployment_id, week, n[week], overridden[week], outside[week]) for week in sorted(n)],
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
