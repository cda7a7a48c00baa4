"""Downloads: a version's technical file as one ZIP (streamed), and alerts, feedback and incidents as CSV."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone

from compliance import exports, selectors
from core.access import role_of
from core.choices import Role
from core.pages import requires
from registry.selectors import version_list


@requires("document")
def technical_file(request, pk: int):
    version = get_object_or_404(version_list(user=request.user).select_related("foundation_model__provider"), pk=pk)
    entries = exports.technical_file_entries(user=request.user, version=version)
    stream = exports.zip_stream(entries, readme=exports.technical_file_readme(version, entries))
    response = StreamingHttpResponse(stream, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{exports.technical_file_name(version)}"'
    return response


def _csv(name: str, header: list[str], rows) -> StreamingHttpResponse:
    response = StreamingHttpResponse(exports.csv_stream(header, rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="radtrust-{name}-{timezone.localdate():%Y%m%d}.csv"'
    return response


@requires("alert")
def alerts_csv(request):
    alerts = selectors.alert_list(user=request.user).order_by("-created_at", "-pk")
    return _csv("alerts", exports.ALERT_HEADER, exports.alert_rows(alerts.iterator(chunk_size=500)))


@requires("feedback")
def feedback_csv(request):
    reports = selectors.feedback_list(user=request.user).order_by("-created_at", "-pk")
    if role_of(request.user) == Role.CLINICIAN:
        reports = reports.filter(clinician=request.user)  # as on the feedback page: one's own reports
    return _csv("feedback", exports.FEEDBACK_HEADER, exports.feedback_rows(reports.iterator(chunk_size=500)))


@requires("incident")
def incidents_csv(request):
    incidents = selectors.incident_list(user=request.user).order_by("deadline", "pk")
    return _csv("incidents", exports.INCIDENT_HEADER, exports.incident_rows(incidents.iterator(chunk_size=500)))
