"""The usage-logs page: what each deployed system did, for the officers of the hospital that runs it
and of the provider (``selectors.usage_logged_deployments``, the API's scope): weekly volume, how
often clinicians overrode the output, inputs outside the intended-use envelope, how long the logs
keep their personal fields, when the installation last sent a batch, and the export of a period."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django import forms
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from compliance import selectors
from compliance.models import USAGE_RETENTION_MIN_DAYS
from compliance.usage_logs import UsageSummary, usage_summaries
from core.pages import page_window, requires
from radtrust_engine.stats import wilson_interval
from registry.models import Deployment

WEEKS_SHOWN = 4
DEFAULT_PERIOD_DAYS = 30


class ExportPeriodForm(forms.Form):
    """The period the page's export links cover: two dates, both included (UTC)."""

    since = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To (included)", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("The period starts after it ends: give the earlier date first.")
        return data


@dataclass(frozen=True)
class UsageRow:
    """One deployment's line on the page, in words and rounded numbers."""

    deployment: Deployment
    logging_on: bool
    weekly: list[tuple[str, str]]  # (week, events) oldest first; the current week says "so far"
    events_a_week: str
    override_rate: str
    out_of_envelope: str
    retention: str
    last_batch: dt.datetime | None
    exports: dict[str, str]  # format -> link for the chosen period


def _percent(share: float) -> str:
    return f"{share * 100:.1f}%" if share < 0.1 else f"{share * 100:.0f}%"


def retention_in_words(days: int | None) -> str:
    """``183 days (6 months, the minimum)``: the setting as an officer reads it."""
    if days is None:
        return "Not set up"
    months = round(days / 30.44)
    minimum = ", the minimum" if days == USAGE_RETENTION_MIN_DAYS else ""
    return f"{days} days (about {months} months{minimum})"


def usage_row(deployment: Deployment, summary: UsageSummary, *, this_week: dt.date, exports: dict[str, str]) -> UsageRow:
    """The figures of the last ``WEEKS_SHOWN`` weeks of ``summary`` as the page shows them."""
    by_week = {dt.date.fromisoformat(w.week): w for w in summary.weeks}
    weeks = [this_week - dt.timedelta(weeks=k) for k in range(WEEKS_SHOWN - 1, -1, -1)]
    n = sum(by_week[w].events for w in weeks if w in by_week)
    over = sum(by_week[w].overridden for w in weeks if w in by_week)
    outside = sum(by_week[w].out_of_envelope for w in weeks if w in by_week)
    weekly = [(f"{w:%d %b}" + (" (so far)" if w == this_week else ""), f"{by_week[w].events if w in by_week else 0:,}") for w in weeks]
    if n:
        low, high = wilson_interval(over, n)
        override = f"{_percent(over / n)} (95% CI {_percent(low)} to {_percent(high)}; {over:,} of {n:,})"
        envelope = f"{outside:,} ({_percent(outside / n)})"
    else:
        override = envelope = "No events"
    return UsageRow(
        deployment=deployment,
        logging_on=summary.logging_configured,
        weekly=weekly,
        events_a_week=f"{n / WEEKS_SHOWN:,.0f}",
        override_rate=override,
        out_of_envelope=envelope,
        retention=retention_in_words(summary.retention_days),
        last_batch=None if summary.last_received_at is None else dt.datetime.fromisoformat(summary.last_received_at),
        exports=exports,
    )


@requires("usage_log")
def usage_log_list(request):
    today = timezone.now().astimezone(dt.UTC).date()
    default = {"since": today - dt.timedelta(days=DEFAULT_PERIOD_DAYS - 1), "until": today}
    form = ExportPeriodForm(request.GET if "since" in request.GET or "until" in request.GET else None, initial=default)
    period = form.cleaned_data if form.is_bound and form.is_valid() else default
    query = f"since={period['since']:%Y-%m-%d}&until={period['until']:%Y-%m-%d}"
    page = page_window(
        request,
        selectors.usage_logged_deployments(user=request.user).order_by("institution__name", "pk"),
        since=request.GET.get("since", ""),
        until=request.GET.get("until", ""),
    )
    summaries = usage_summaries([d.pk for d in page.items], weeks=WEEKS_SHOWN)
    this_week = today - dt.timedelta(days=today.weekday())
    rows = [
        usage_row(
            d,
            summaries[d.pk],
            this_week=this_week,
            exports={kind: f"{reverse('usage-log-export', args=[d.pk])}?as={kind}&{query}" for kind in ("csv", "json")},
        )
        for d in page.items
    ]
    return render(request, "compliance/usage_logs.html", {"rows": rows, "page": page, "form": form, "period": period, "weeks": WEEKS_SHOWN})
