from django_filters import rest_framework as filters
from rest_framework import viewsets

from compliance.api.serializers import AuditEventSerializer
from compliance.models import AuditEvent


class AuditEventFilterSet(filters.FilterSet):
    occurred_after = filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["object_type", "object_id", "action", "actor_username", "request_id"]


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit trail, read-only: officers and auditors follow what changed, who did it and when."""

    access_resource = "audit_event"
    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    lookup_field = "seq"
    lookup_value_regex = r"[0-9]+"
