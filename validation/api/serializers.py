"""Serializers of validation runs: shape only; rules live in ``validation.services``."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.access import may_see_case_outputs
from core.api import JSONValueField
from registry.api.serializers import ScopedRelatedField
from registry.selectors import dataset_list, institution_list, version_list
from validation.models import CaseFlag, FederatedJob, FederatedStudy, RunFile, SiteReport, ValidationRun
from validation.report_views import report_without_cases
from validation.selectors import run_list

_READ = [
    "id",
    "version",
    "dataset",
    "manifest",
    "config",
    "queue",
    "requested_by",
    "status",
    "stage",
    "progress",
    "cancel_requested",
    "attempt",
    "max_attempts",
    "worker",
    "heartbeat_at",
    "device",
    "artifact_sha256",
    "manifest_sha256",
    "outputs_source",
    "predictions_sha256",
    "predictions_name",
    "error_reason",
    "error",
    "timings",
    "summary",
    "mlflow_state",
    "mlflow_run_id",
    "deployment",
    "due_on",
    "baseline",
    "is_baseline",
    "comparator",
    "created_at",
    "started_at",
    "finished_at",
]


class ValidationRunSerializer(serializers.ModelSerializer):
    """A run as listed and followed: status, progress and headline figures, not the full report."""

    version = ScopedRelatedField(selector=version_list)
    dataset = ScopedRelatedField(selector=dataset_list)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    on_site = serializers.BooleanField(write_only=True, default=False, help_text="Run on the dataset institution's own workers (site queue).")
    manifest = serializers.CharField(default="manifest.csv", max_length=300)
    config = JSONValueField(kind=dict, default=dict, help_text="Suite options; omitted ones take their defaults.")
    baseline = ScopedRelatedField(
        selector=run_list,
        required=False,
        allow_null=True,
        help_text="The run drift is measured against; by default the version's baseline run.",
    )
    comparator = ScopedRelatedField(
        selector=run_list,
        required=False,
        allow_null=True,
        help_text="Data efficiency: another version's succeeded run on the same dataset, whose embeddings' curves are compared with this run's.",
    )

    shards = serializers.SerializerMethodField(help_text="A sharded run's shards scored and in all; null for a run scored whole.")

    class Meta:
        model = ValidationRun
        fields = [*_READ, "shards", "on_site"]
        read_only_fields = [f for f in _READ if f not in {"version", "dataset", "manifest", "config", "baseline", "comparator"}]
        extra_kwargs = {"error_reason": {"allow_blank": True}}  # "" until a run fails: the schema's enum must hold it

    @extend_schema_field({"type": "object", "nullable": True, "properties": {"done": {"type": "integer"}, "total": {"type": "integer"}}})
    def get_shards(self, run: ValidationRun) -> dict[str, int] | None:
        total = getattr(run, "shards_total", 0)  # annotated by the run selectors
        return {"done": run.shards_done, "total": total} if total else None


class PredictionsUploadSerializer(serializers.Serializer):
    """Outputs of a version produced elsewhere, evaluated on a registered dataset without running the model."""

    MAX_BYTES = 64 * 1024 * 1024

    version = ScopedRelatedField(selector=version_list)
    dataset = ScopedRelatedField(selector=dataset_list)
    predictions = serializers.FileField(help_text="CSV or Parquet: case_id (the manifest's image_path), one column per class, optional uncertainty.")
    artifact_sha256 = serializers.CharField(max_length=64, help_text="The SHA-256 of the artifact that produced the outputs: the version's.")
    manifest = serializers.CharField(default="manifest.csv", max_length=300)
    config = JSONValueField(kind=dict, default=dict, help_text="Suite options; analyses that re-run the model are dropped.")
    baseline = ScopedRelatedField(selector=run_list, required=False, allow_null=True)

    def validate_predictions(self, value):
        if value.size > self.MAX_BYTES:
            raise serializers.ValidationError(f"A predictions file is at most {self.MAX_BYTES // (1024 * 1024)} MiB.")
        return value


class ReportsUploadSerializer(serializers.Serializer):
    """Generated reports of a version produced elsewhere, evaluated against a dataset's reference
    findings or against reference reports."""

    MAX_BYTES = 64 * 1024 * 1024

    version = ScopedRelatedField(selector=version_list)
    dataset = ScopedRelatedField(selector=dataset_list)
    reports = serializers.FileField(
        help_text='JSON Lines, UTF-8: one {"case_id": the manifest\'s image_path, "report": the generated text} per case.'
    )
    artifact_sha256 = serializers.CharField(max_length=64, help_text="The SHA-256 of the artifact that generated the reports: the version's.")
    manifest = serializers.CharField(default="manifest.csv", max_length=300)
    config = JSONValueField(kind=dict, default=dict, help_text="Suite options: attributes, n_resamples, seed, min_patients, confidence.")
    uncertain_as_present = serializers.BooleanField(default=False, help_text="Count a hedged finding ('possible effusion') as asserted.")
    reference_reports = serializers.FileField(
        required=False,
        help_text="Optional reference reports, in the same form as the generated ones; without them the manifest's label columns are the reference.",
    )

    def validate_reports(self, value):
        return self._bounded(value)

    def validate_reference_reports(self, value):
        return self._bounded(value)

    def _bounded(self, value):
        if value.size > self.MAX_BYTES:
            raise serializers.ValidationError(f"A reports file is at most {self.MAX_BYTES // (1024 * 1024)} MiB.")
        return value


class ForgettingRequestSerializer(serializers.Serializer):
    version = ScopedRelatedField(selector=version_list, help_text="The adaptation to re-evaluate on its base's and parent's tasks.")


class TaskRequeueSerializer(serializers.Serializer):
    """One task of the base or the parent (``validation.forgetting.TaskRequeue``)."""

    dataset_id = serializers.IntegerField()
    dataset = serializers.CharField()
    manifest = serializers.CharField()
    reference = serializers.ChoiceField(choices=["parent", "base"])
    reference_version = serializers.CharField()
    reference_run = serializers.IntegerField()
    labels = serializers.ListField(child=serializers.CharField())
    run = serializers.IntegerField(allow_null=True)
    queued = serializers.BooleanField()
    reason = serializers.CharField()


class ValidationRunDetailSerializer(ValidationRunSerializer):
    """One run with its full report: overall, subgroup and gap results with CIs."""

    class Meta(ValidationRunSerializer.Meta):
        fields = [*ValidationRunSerializer.Meta.fields, "results"]
        read_only_fields = [*ValidationRunSerializer.Meta.read_only_fields, "results"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        if data.get("results") and request is not None and not may_see_case_outputs(request.user, instance):
            data["results"] = report_without_cases(data["results"])  # single patients' data stay with their hospital
        return data


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


# --- Federated validation -------------------------------------------------------------------


class FederatedJobBriefSerializer(serializers.ModelSerializer):
    """A site's job as officers see it in its study."""

    institution = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = FederatedJob
        fields = ["id", "institution", "status", "claimed_at", "attempts", "error"]
        read_only_fields = fields


class FederatedStudySerializer(serializers.ModelSerializer):
    """A federated study: ``sites`` (institution ids) when creating, their ``jobs`` when reading."""

    version = ScopedRelatedField(selector=version_list)
    spec = JSONValueField(kind=dict, default=dict, help_text="The design; omitted keys take their defaults (validation.federated.study_spec_clean).")
    sites = ScopedRelatedField(selector=institution_list, many=True, write_only=True, help_text="The participating institutions' ids.")
    jobs = FederatedJobBriefSerializer(many=True, read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = FederatedStudy
        fields = ["id", "version", "name", "spec", "deadline", "status", "sites", "jobs", "created_by", "created_at"]
        read_only_fields = ["status", "created_by", "created_at"]


class FederatedJobSerializer(serializers.ModelSerializer):
    """A job as a site's agent reads it: the study's design and what it needs to fetch and verify the model."""

    deadline = serializers.DateTimeField(source="study.deadline", read_only=True)
    spec = serializers.JSONField(source="study.spec", read_only=True)
    version = serializers.SerializerMethodField()

    class Meta:
        model = FederatedJob
        fields = ["id", "study", "status", "deadline", "spec", "version", "claimed_at", "attempts", "error"]
        read_only_fields = fields

    def get_version(self, job: FederatedJob) -> dict:
        version = job.study.version
        model = version.foundation_model
        return {
            "id": version.pk,
            "label": str(version),
            "artifact_sha256": version.artifact_sha256,
            "files": [{k: f[k] for k in ("name", "sha256", "size", "role")} for f in version.artifact_files],
            "output_schema": version.output_schema,
            "preprocessing": version.preprocessing,
            "task": model.task,
            "modality": model.modality,
        }


class SiteReportSubmitSerializer(serializers.Serializer):
    """What a site's agent sends: the approved payload, who approved it at the site and when, and about itself."""

    payload = JSONValueField(kind=dict, help_text="The site summary (radtrust_engine.federated_payload), exactly as approved.")
    approved_by = serializers.CharField(allow_blank=True, max_length=200, help_text="The site's data owner who approved the payload.")
    approved_at = serializers.DateTimeField()
    agent = JSONValueField(kind=dict, default=dict, help_text="Agent version, device, seconds, engine timings.")


class SiteReportSerializer(serializers.ModelSerializer):
    """A stored report, without its payload (the pooled figures show what it holds)."""

    submitted_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = SiteReport
        fields = ["id", "job", "payload_sha256", "approved_by", "approved_at", "submitted_by", "submitted_at", "agent"]
        read_only_fields = fields


class JobFailSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, help_text="Why the agent could not evaluate; no paths or identifiers.")
