"""The alert pages: every alert a user may see, the most severe first and grouped by the run that
raised it, and the officer's acknowledge and resolve with a note (``compliance.alerts.alert_handle``,
audited there)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Case, IntegerField, Value, When
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from compliance import selectors
from compliance.alerts import alert_handle
from compliance.choices import AlertSeverity, AlertStatus
from core.access import may
from core.errors import BadQuery, Conflict
from core.pages import page_window, requires

ESCALATED = "escalated"  # not a stored status: an alert with an incident, shown as "Escalated"
SEVERITY_RANK = Case(
    When(severity=AlertSeverity.CRITICAL, then=Value(0)),
    When(severity=AlertSeverity.WARNING, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)
STATUS_FILTERS = {
    "": "all",
    AlertStatus.OPEN: "open",
    AlertStatus.ACKNOWLEDGED: "acknowledged",
    ESCALATED: "escalated",
    AlertStatus.RESOLVED: "resolved",
}


def alert_status_label(alert) -> str:
    """ "Escalated" for an alert an incident took over and not yet resolved; its stored status otherwise."""
    if alert.status != AlertStatus.RESOLVED and getattr(alert, "incident", None) is not None:
        return "Escalated"
    return alert.get_status_display()


def _grouped(alerts: list) -> list[dict]:
    """Alerts by the run that raised them (the feedback monitor's under no run), in the order of each group's most severe alert."""
    groups: dict = {}
    for alert in alerts:
        alert.status_label = alert_status_label(alert)
        groups.setdefault(alert.run_id, {"run": alert.run, "alerts": []})["alerts"].append(alert)
    return list(groups.values())


@requires("alert")
def alert_list(request):
    rows = selectors.alert_list(user=request.user).select_related("run", "incident").annotate(rank=SEVERITY_RANK)
    status, run = request.GET.get("status", ""), request.GET.get("run", "")
    if status not in STATUS_FILTERS:
        raise BadQuery("status", f"Show alerts by status: {', '.join(s for s in STATUS_FILTERS if s)}.")
    if status == ESCALATED:
        rows = rows.filter(incident__isnull=False).exclude(status=AlertStatus.RESOLVED)
    elif status in {AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED}:
        rows = rows.filter(status=status, incident__isnull=True)
    elif status:
        rows = rows.filter(status=status)
    if run:
        if not (run.isascii() and run.isdigit() and len(run) < 12):
            raise BadQuery("run", "Name a run by its number.")
        rows = rows.filter(run_id=int(run))
    page = page_window(request, rows.order_by("rank", "-run_id", "-created_at", "-pk"), status=status, run=run)
    context = {
        "page": page,
        "groups": _grouped(page.items),
        "status": status,
        "filters": STATUS_FILTERS,
        "may_escalate": may(request.user, "incident", write=True),
        "may_handle": may(request.user, "alert", write=True),
    }
    return render(request, "compliance/alert_list.html", context)


@requires("alert", write=True)
@require_POST
def alert_handle_page(request, pk: int):
    """Acknowledge or resolve an alert with a note; back to the list the officer came from."""
    alert = get_object_or_404(selectors.alert_list(user=request.user), pk=pk)
    status, note = request.POST.get("status", ""), request.POST.get("note", "")
    try:
        alert_handle(actor=request.user, alert=alert, status=status, note=note)
    except ValidationError as exc:
        messages.error(request, " ".join(m for ms in exc.message_dict.values() for m in ms))
    except Conflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Alert {alert.pk} {'resolved' if status == AlertStatus.RESOLVED else 'acknowledged'}.")
    back = request.POST.get("next", "")
    return redirect(back if back.startswith("/alerts/") else "pages:alert-list")
