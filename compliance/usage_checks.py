"""Checking a batch of usage events (``CheckedBatch``) and writing each event's line of PostgreSQL
COPY text (``copy_lines``), for ``compliance.usage_logs``: plain values in, rows, lines and a digest
out, and a ValidationError naming the first offending events."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterator
from json.encoder import encode_basestring

from django.core.exceptions import ValidationError

from compliance.choices import InputQuality

# A batch holds at most this many events; the request body is bounded by DATA_UPLOAD_MAX_MEMORY_SIZE (10 MiB).
MAX_BATCH_EVENTS = 10_000
# Events checked, then sent to COPY, this many at a time (about 100 KiB of COPY text).
CHUNK_EVENTS = 1_000
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


class CheckedBatch:
    """A batch's events checked a chunk at a time (``CHUNK_EVENTS``): PostgreSQL stores one chunk while
    the next is checked, on the other core, instead of waiting for the whole batch to be checked."""

    def __init__(self, events, *, version_id: int, now: dt.datetime) -> None:
        if not isinstance(events, list) or not 1 <= len(events) <= MAX_BATCH_EVENTS:
            raise ValidationError({"events": f"A batch is a list of 1 to {MAX_BATCH_EVENTS} events."})
        self.rows: list[tuple] = []  # the events' columns (``ROW_COLUMNS``), as checked so far
        self._bad: dict[str, list[str]] = {}
        self._refused = 0
        self._sha = hashlib.sha256()
        self._chunks = self._check(events, version_id=version_id, latest=now + CLOCK_SKEW)

    def chunks(self) -> Iterator[tuple[list[tuple], list[str]]]:
        """Each chunk's rows and COPY lines (``copy_lines``), up to the first refused event; the
        events after it are still checked (``digest`` names the first offending rows), not given."""
        return self._chunks

    def _check(self, events: list, *, version_id: int, latest: dt.datetime) -> Iterator[tuple[list[tuple], list[str]]]:
        for start in range(0, len(events), CHUNK_EVENTS):
            rows = []
            for index in range(start, min(start + CHUNK_EVENTS, len(events))):
                row, errors = _event_row(events[index], version_id=version_id, latest=latest)
                if errors:
                    self._refused += 1
                    if len(self._bad) < ERRORS_SHOWN:
                        self._bad[f"events[{index}]"] = [f"{field}: {message}" for field, message in errors.items()]
                else:
                    rows.append(row)
            if self._refused:
                continue
            lines = copy_lines(rows)
            self._sha.update((("\n" if start else "") + "\n".join(lines)).encode())
            self.rows += rows
            yield rows, lines

    def digest(self) -> str:
        """What tells a redelivery from another batch under a reused id, once every event is checked (a
        ValidationError naming the first offending rows otherwise): sha256 of the events' COPY lines
        joined by line ends, in the order sent, so the same events written with other JSON spacing, key
        order or UTC offset are the same batch. Not ``canonical_sha256``: nothing recomputes it
        elsewhere, and hashing text already written costs nothing per event."""
        for _ in self._chunks:  # whatever the caller did not take
            pass
        if self._bad:
            more = self._refused - len(self._bad)
            if more:
                self._bad["events"] = [f"{self._refused} events are refused; the first {len(self._bad)} are shown. Nothing of this batch was stored."]
            raise ValidationError(self._bad)
        return self._sha.hexdigest()


def _copy_field(text: str) -> str:
    """A value in COPY's text format: its backslashes, tabs and line ends escaped."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


_NULL = "\\N"


def _flags_json(flags: list[str]) -> str:
    """The flags (checked ``InputQuality`` codes: no character needs escaping) as a JSON array."""
    return '["' + '","'.join(flags) + '"]' if flags else "[]"


def copy_lines(rows: list[tuple]) -> list[str]:
    """Each event's line of COPY text (``ROW_COLUMNS``), without the batch's columns and the line end
    (``compliance.usage_logs`` adds both); psycopg's ``write_row`` took a third of the time."""
    return [
        f"{v}\t{at.isoformat()}\t{_copy_field(key)}\t{_copy_field(outputs)}\t"
        f"{_NULL if unc is None else repr(float(unc))}\t{'t' if over else 'f'}\t{_flags_json(flags)}\t{'t' if env else 'f'}\t{_copy_field(note)}"
        for v, at, key, outputs, unc, over, flags, env, note in rows
    ]
