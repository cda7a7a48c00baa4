"""Thin API views of the usage logs: an installation sends batches; readers get the weekly
figures and export the events; officers set the retention (``compliance.usage_logs``)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django.http import StreamingHttpResponse
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from compliance import selectors
from compliance import usage_logs as usage
from compliance.usage_checks import MAX_BATCH_EVENTS
from core.api import ScopedViewSet


class UsageBatchSerializer(serializers.Serializer):
    """The body of a batch (the schema's; the service checks the events itself, in one pass)."""

    deployment = serializers.IntegerField(help_text="The deployment the token logs for.")
    batch_id = serializers.CharField(max_length=64, help_text="The installation's id of the batch, the same on every redelivery.")
    events = serializers.ListField(child=serializers.DictField(), max_length=MAX_BATCH_EVENTS)


class RetentionSerializer(serializers.Serializer):
    retention_days = serializers.IntegerField(help_text=f"At least {usage.USAGE_RETENTION_MIN_DAYS} days (six months).")


class UsageBatchViewSet(viewsets.ViewSet):
    """A deployed installation's batches of inference events: 201 with a receipt, or 200 with the
    first receipt when the batch id was received before."""

    access_resource = "usage_batch"

    @extend_schema(request=UsageBatchSerializer, responses={201: OpenApiTypes.OBJECT, 200: OpenApiTypes.OBJECT})
    def create(self, request):
        body = request.data if isinstance(request.data, dict) else {}
        logging = usage.logged_deployment(request.user, named=body.get("deployment"))
        receipt = usage.usage_batch_ingest(logging=logging, batch_id=body.get("batch_id"), events=body.get("events"))
        return Response(receipt.to_dict(), status=status.HTTP_200_OK if receipt.duplicate else status.HTTP_201_CREATED)


def _moment(request, name: str):
    """``since`` or ``until`` as a time with its offset, or as a date (UTC): ``since`` from the start of
    that day, ``until`` to the end of it, so that a period picked as two dates includes both."""
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        day = parse_date(value)  # first: a date alone would parse as a time without an offset
        moment = None if day is not None else parse_datetime(value)
    except ValueError:  # well formed, but no such day or time (2026-02-30)
        moment = day = None
    if day is not None:
        moment = datetime.combine(day + timedelta(days=1 if name == "until" else 0), time(), tzinfo=UTC)
    if moment is None or moment.tzinfo is None:
        raise ValidationError({name: "A date (2026-03-01) or an ISO 8601 time with its offset (2026-03-01T00:00:00Z)."})
    return moment


class UsageLogViewSet(ScopedViewSet, mixins.RetrieveModelMixin):
    """A deployment's usage logs: weekly volume, override rate and inputs outside the envelope;
    the events exported as CSV or JSON (streamed); the retention of their personal fields."""

    access_resource = "usage_log"
    selector = staticmethod(selectors.usage_logged_deployments)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def retrieve(self, request, *args, **kwargs):
        return Response(usage.usage_summary(self.get_object()).to_dict())

    @extend_schema(
        parameters=[
            OpenApiParameter("as", str, enum=["csv", "json"], description="The file's format (default csv)."),
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="Events at or after this time (a date: from its start, UTC)."),
            OpenApiParameter("until", OpenApiTypes.DATETIME, description="Events before this time (a date: to its end, UTC)."),
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/json"): OpenApiTypes.STR},
    )
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        kind = request.query_params.get("as", "csv")
        if kind not in {"csv", "json"}:
            raise ValidationError({"as": "csv or json."})
        deployment = self.get_object()
        pieces = usage.usage_export(deployment, kind=kind, since=_moment(request, "since"), until=_moment(request, "until"))
        content_type = "text/csv; charset=utf-8" if kind == "csv" else "application/json"
        response = StreamingHttpResponse(pieces, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="usage-deployment-{deployment.pk}.{kind}"'
        return response

    @extend_schema(request=RetentionSerializer, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def retention(self, request, pk=None):
        deployment = self.get_object()  # first: out of scope is a 404 whatever the body
        body = RetentionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        usage.usage_retention_set(deployment=deployment, days=body.validated_data["retention_days"])
        return Response(usage.usage_summary(deployment).to_dict())
