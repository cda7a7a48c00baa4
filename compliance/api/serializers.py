from rest_framework import serializers

from compliance.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "seq", "occurred_at", "actor_id", "actor_username", "request_id", "action",
            "object_type", "object_id", "object_repr", "changes", "prev_hash", "hash",
        ]
        read_only_fields = fields
