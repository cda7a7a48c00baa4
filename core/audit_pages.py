"""The audit trail for officers and auditors: filter it, read each change as "field: old -> new",
open the record it is about, export it (CSV or JSON, streamed: the trail grows without bound) and
verify the hash chain (``core.audit.audit_verify_chain``, what ``manage.py verify_audit`` runs)."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django import forms
from django.apps import apps
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.text import capfirst
from django.views.decorators.http import require_http_methods

from core.audit import audit_verify_chain
from core.errors import BadQuery
from core.models import AuditEvent
from core.pages import page_window, requires
from core.readable import number, title

# The page of each kind of record, by its label (names only: core imports no app above it).
OBJECT_PAGES = {
    "validation.validationrun": "runs:detail",
    "compliance.dossier": "pages:dossier-detail",
    "compliance.incident": "pages:incident-detail",
    "compliance.trustassessment": "pages:trust-chart",
    "validation.federatedstudy": "federated:detail",
    "registry.modelversion": "pages:version-trust",
}
EXPORT_FIELDS = (
    "seq",
    "occurred_at",
    "actor_username",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "changes",
    "request_id",
    "prev_hash",
    "hash",
    "key_id",
)
SHORT = 12  # characters of a hash or a long value shown in a table cell; the export has them whole


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=150, label="Who (user name)")
    action = forms.CharField(required=False, max_length=40, label="What was done")
    object_type = forms.CharField(required=False, max_length=100, label="Kind of record")
    object_id = forms.CharField(required=False, max_length=64, label="Record number")
    since = forms.DateField(required=False, label="From (date)", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To (date, included)", widget=forms.DateInput(attrs={"type": "date"}))

    def rows(self) -> QuerySet[AuditEvent]:
        """The events the filters name, newest first; ``BadQuery`` (a 400 page) for a filter that is not valid."""
        if not self.is_valid():
            name, errors = next(iter(self.errors.items()))
            raise BadQuery(name, " ".join(errors))
        data, rows = self.cleaned_data, AuditEvent.objects.order_by("-seq")
        for field, lookup in (("actor", "actor_username__iexact"), ("action", "action"), ("object_type", "object_type"), ("object_id", "object_id")):
            if data[field]:
                rows = rows.filter(**{lookup: data[field]})
        zone = timezone.get_current_timezone()
        if data["since"]:
            rows = rows.filter(occurred_at__gte=dt.datetime.combine(data["since"], dt.time.min, zone))
        if data["until"]:
            rows = rows.filter(occurred_at__lt=dt.datetime.combine(data["until"] + dt.timedelta(days=1), dt.time.min, zone))
        return rows


@dataclass(frozen=True)
class Change:
    field: str
    old: str
    new: str


def _value(value) -> str:
    if value is None or value == "":
        return "empty"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = number(value) if isinstance(value, (int, float)) else str(value)
    return text if len(text) <= 80 else text[:77] + "…"


def readable_changes(event: AuditEvent) -> list[Change]:
    """``{"status": ["draft", "approved"]}`` as "Status: draft -> approved"; a field id as its field ("Version")."""
    changes = event.changes if isinstance(event.changes, dict) else {}
    return [
        Change(title(name.removesuffix("_id")) if name.endswith("_id") else title(name), _value(pair[0]), _value(pair[1]))
        for name, pair in changes.items()
        if isinstance(pair, list) and len(pair) == 2
    ]


def kind_label(object_type: str) -> str:
    """``registry.modelversion`` -> ``Model version``: the record's own verbose name, the label if it is gone."""
    try:
        return capfirst(apps.get_model(object_type)._meta.verbose_name)
    except (LookupError, ValueError):
        return object_type


def object_url(event: AuditEvent) -> str:
    """The page of the record an event is about, or "" when it has none."""
    name = OBJECT_PAGES.get(event.object_type)
    if name is None or not event.object_id.isdigit():
        return ""
    try:
        return reverse(name, args=[int(event.object_id)])
    except NoReverseMatch:
        return ""


@requires("audit_event")
def audit_list(request):
    form = AuditFilterForm(request.GET)
    rows = form.rows()
    page = page_window(request, rows, **{k: v for k, v in request.GET.items() if k != "page"})
    events = [
        {"event": e, "action": title(e.action), "kind": kind_label(e.object_type), "changes": readable_changes(e), "url": object_url(e)}
        for e in page.items
    ]
    distinct = AuditEvent.objects.order_by()
    context = {
        "form": form,
        "page": page,
        "events": events,
        "kinds": [(k, kind_label(k)) for k in sorted(distinct.values_list("object_type", flat=True).distinct())],
        "actions": [(a, title(a)) for a in sorted(distinct.values_list("action", flat=True).distinct())],
        "query": request.GET.urlencode(),
    }
    return render(request, "core/audit_list.html", context)


class _Echo:
    """A file-like object whose ``write`` returns the line, for ``csv.writer`` to stream through."""

    def write(self, value: str) -> str:
        return value


def _record(event: AuditEvent) -> dict:
    return {field: (event.occurred_at.isoformat() if field == "occurred_at" else getattr(event, field)) for field in EXPORT_FIELDS}


def export_csv(rows: Iterable[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_FIELDS)
    for event in rows:
        record = _record(event)
        record["changes"] = json.dumps(record["changes"], ensure_ascii=False, sort_keys=True)
        yield writer.writerow([record[f] for f in EXPORT_FIELDS])


def export_json(rows: Iterable[AuditEvent]) -> Iterator[str]:
    yield "["
    for i, event in enumerate(rows):
        yield ("," if i else "") + "\n" + json.dumps(_record(event), ensure_ascii=False, sort_keys=True)
    yield "\n]\n"


@requires("audit_event")
def audit_export(request, fmt: str):
    """The filtered events, oldest first (the chain's order), as a streamed download."""
    rows = AuditFilterForm(request.GET).rows().order_by("seq").iterator(chunk_size=2000)
    if fmt == "csv":
        response = StreamingHttpResponse(export_csv(rows), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(export_json(rows), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="audit-trail.{fmt}"'
    return response


@requires("audit_event")
@require_http_methods(["GET", "POST"])
def audit_verify(request):
    """Verify the whole chain on request (a POST: it reads every event); the verdict in words."""
    verdict = audit_verify_chain() if request.method == "POST" else None
    return render(request, "core/audit_verify.html", {"verdict": verdict, "checked": number(verdict.checked) if verdict else ""})
