"""Request and response bodies of the vigilance actions on incidents (``compliance.vigilance``)."""

from __future__ import annotations

from rest_framework import serializers

from compliance.choices import IncidentDecisionKind, IncidentReportKind, IncidentTriage, IntakeChannel
from compliance.incident_rules import INCIDENT_TYPES
from compliance.models import AwarenessCorrection, FieldSafetyNotice, IncidentDecision, IncidentReport
from registry.api.serializers import ScopedRelatedField
from registry.selectors import deployment_list, version_list


class IntakeSerializer(serializers.Serializer):
    """A call, an e-mail or a letter about a possible incident, as the officer took it down."""

    version = ScopedRelatedField(selector=version_list)
    deployment = ScopedRelatedField(selector=deployment_list, required=False, allow_null=True, default=None)
    channel = serializers.ChoiceField(choices=[c for c in IntakeChannel.choices if c[0] not in {"feedback", "alert"}])
    reporter = serializers.CharField(max_length=200)
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=10000)
    received_at = serializers.DateTimeField()


class TriageSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=[c for c in IncidentTriage.choices if c[0] != IncidentTriage.PENDING])
    incident_type = serializers.ChoiceField(choices=list(INCIDENT_TYPES.items()), required=False, allow_blank=True, default="")
    reason = serializers.CharField(max_length=4000)


class AwarenessSerializer(serializers.Serializer):
    aware_on = serializers.DateField()
    reason = serializers.CharField(max_length=4000)


class IncidentReportSerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=IncidentReportKind.choices)
    recorded_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = IncidentReport
        fields = ["id", "kind", "submitted_on", "authority", "reference", "summary", "recorded_by", "recorded_at"]
        read_only_fields = ["recorded_by", "recorded_at"]


class AwarenessCorrectionSerializer(serializers.ModelSerializer):
    changed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = AwarenessCorrection
        fields = ["previous", "aware_on", "reason", "changed_by", "changed_at"]
        read_only_fields = fields


class DecisionSerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=IncidentDecisionKind.choices)
    proposed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    confirmed_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = IncidentDecision
        fields = ["id", "kind", "reason", "proposed_by", "proposed_at", "confirmed_by", "confirmed_at"]
        read_only_fields = ["proposed_by", "proposed_at", "confirmed_by", "confirmed_at"]


class DecisionConfirmSerializer(serializers.Serializer):
    decision = serializers.IntegerField(help_text="The id of the proposal a second officer confirms.")


class FieldSafetyNoticeSerializer(serializers.ModelSerializer):
    class Meta:
        model = FieldSafetyNotice
        fields = ["text", "recipients", "issued_on", "recorded_at"]
        read_only_fields = fields


class FieldSafetyActionSerializer(serializers.Serializer):
    """A field safety corrective action (MDR Art. 87(1)(b)) and the notice its users received."""

    description = serializers.CharField(max_length=4000)
    notice_text = serializers.CharField(max_length=10000)
    recipients = serializers.CharField(max_length=4000)
    issued_on = serializers.DateField()
