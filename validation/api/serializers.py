"""Serializers of validation runs: shape only; rules live in ``validation.services``."""

from __future__ import annotations

from rest_framework import serializers

from registry.api.serializers import ScopedRelatedField
from registry.selectors import dataset_list, version_list
from validation.selectors import run_list
from validation.models import Alert, CaseFlag, RunFile, ScoringPolicy, TrustAssessment, TrustException, ValidationRun

_READ = [
    "id", "version", "dataset", "manifest", "config", "queue", "requested_by", "status", "stage", "progress",
    "cancel_requested", "attempt", "max_attempts", "worker", "heartbeat_at", "device", "artifact_sha256",
    "manifest_sha256", "error_reason", "error", "timings", "summary", "mlflow_state", "mlflow_run_id",
    "deployment", "due_on", "baseline", "is_baseline", "created_at", "started_at", "finished_at",
]


class ValidationRunSerializer(serializers.ModelSerializer):
    """A run as listed and followed: status, progress and headline figures, not the full report."""

    version = ScopedRelatedField(selector=version_list)
    dataset = ScopedRelatedField(selector=dataset_list)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    on_site = serializers.BooleanField(write_only=True, default=False, help_text="Run on the dataset institution's own workers (site queue).")
    manifest = serializers.CharField(default="manifest.csv", max_length=300)
    config = serializers.JSONField(default=dict, help_text="Suite options; omitted ones take their defaults.")
    baseline = ScopedRelatedField(
        selector=run_list, required=False, allow_null=True,
        help_text="The run drift is measured against; by default the version's baseline run.",
    )

    class Meta:
        model = ValidationRun
        fields = [*_READ, "on_site"]
        read_only_fields = [f for f in _READ if f not in {"version", "dataset", "manifest", "config", "baseline"}]


class ValidationRunDetailSerializer(ValidationRunSerializer):
    """One run with its full report: overall, subgroup and gap results with CIs."""

    class Meta(ValidationRunSerializer.Meta):
        fields = [*ValidationRunSerializer.Meta.fields, "results"]
        read_only_fields = [*ValidationRunSerializer.Meta.read_only_fields, "results"]


class RunFileSerializer(serializers.ModelSerializer):
    """A file a run produced; its bytes come from the ``content`` action."""

    class Meta:
        model = RunFile
        fields = ["id", "run", "kind", "name", "title", "alt", "content_type", "size", "sha256", "created_at"]
        read_only_fields = fields


class CaseFlagSerializer(serializers.ModelSerializer):
    class Meta:
        model = CaseFlag
        fields = ["id", "run", "label", "row", "image_path", "uncertainty", "probability", "tta_std", "cutoff"]
        read_only_fields = fields


class AlertSerializer(serializers.ModelSerializer):
    handled_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id", "version", "deployment", "run", "baseline_run", "kind", "severity", "subject", "message", "evidence",
            "status", "note", "handled_by", "handled_at", "created_at",
        ]
        read_only_fields = fields


class AlertHandleSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")


class TrustAssessmentSerializer(serializers.ModelSerializer):
    """The six scores of a version at one moment, each with its criteria, inputs and evidence links."""

    version = ScopedRelatedField(selector=version_list)
    policy = serializers.SlugRelatedField(slug_field="version", read_only=True)

    class Meta:
        model = TrustAssessment
        fields = ["id", "version", "policy", "trigger", "principles", "evidence_digest", "computed_at"]
        read_only_fields = ["policy", "trigger", "principles", "evidence_digest", "computed_at"]


class ScoringPolicySerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ScoringPolicy
        fields = ["id", "version", "name", "definition", "active", "created_by", "created_at"]
        read_only_fields = ["version", "active", "created_by", "created_at"]


class TrustExceptionSerializer(serializers.ModelSerializer):
    version = ScopedRelatedField(selector=version_list)
    granted_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = TrustException
        fields = ["id", "version", "principle", "justification", "granted_by", "granted_at"]
        read_only_fields = ["granted_by", "granted_at"]
        validators = []  # a second exception is a 409 from the service, not a 400
