"""Serializers: shape and field checks only; rules live in ``registry.services``."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.access import may_share_case_outputs, writable_institutions
from core.api import JSONValueField, ModelSerializer
from radtrust_engine.dicomweb import LabelsError, labels_table
from registry.choices import AdaptationMethod, VersionStatus
from registry.datasheets import datasheet_completeness
from registry.models import (
    Adaptation,
    Dataset,
    DataUseGrant,
    Deployment,
    DicomwebManifest,
    DicomwebSource,
    FoundationModel,
    Institution,
    ModelVersion,
    Provenance,
)
from registry.selectors import data_use_grant_list, dataset_list, foundation_model_list, institution_list, version_list


@extend_schema_field(OpenApiTypes.INT)
class ScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A foreign key the user may name: only rows their role and institution can see exist."""

    def __init__(self, *, selector, owner: bool = False, **kwargs):
        self.selector, self.owner = selector, owner
        super().__init__(**kwargs)

    def get_queryset(self):
        user = self.context["request"].user
        queryset = self.selector(user=user)
        return writable_institutions(user, queryset) if self.owner else queryset

    def use_pk_only_optimization(self):
        return True


class InstitutionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Institution
        fields = ["id", "code", "name", "kind", "country", "address", "contact_email", "created_at"]
        read_only_fields = ["created_at"]


class FoundationModelSerializer(serializers.ModelSerializer):
    provider = ScopedRelatedField(selector=institution_list, owner=True)
    task_label = serializers.CharField(source="get_task_display", read_only=True)

    class Meta:
        model = FoundationModel
        fields = [
            "id",
            "name",
            "provider",
            "description",
            "intended_purpose",
            "intended_users",
            "instructions_for_use",
            "known_limitations",
            "explainability_needs",
            "modality",
            "body_region",
            "task",
            "task_label",
            "risk_class",
            "mdr_class",
            "licence",
            "general_purpose",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class ModelVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    task = serializers.CharField(
        source="task_spec.task", read_only=True, help_text="What its runs evaluate: its model's task, or volume_segmentation."
    )
    task_label = serializers.CharField(read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "foundation_model",
            "version",
            "parent",
            "status",
            "release_notes",
            "task",
            "task_label",
            "output_schema",
            "preprocessing",
            "artifact_sha256",
            "artifact_files",
            "artifact_size",
            "opset",
            "ir_version",
            "producer",
            "inputs",
            "outputs",
            "parameter_count",
            "mirror_state",
            "mirror_error",
            "mlflow_model_name",
            "mlflow_version",
            "mirrored_at",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [f for f in fields if f != "release_notes"]


class VersionRegisterSerializer(serializers.Serializer):
    """Multipart upload of a new version: the ONNX model plus any external data files."""

    foundation_model = ScopedRelatedField(selector=foundation_model_list)
    version = serializers.CharField(max_length=64)
    parent = ScopedRelatedField(selector=version_list, required=False, allow_null=True)
    artifact = serializers.FileField(help_text="The ONNX model (.onnx).")
    external_data = serializers.ListField(
        child=serializers.FileField(), required=False, default=list, help_text="The model's external data files, if any."
    )
    output_schema = JSONValueField(kind=dict, binary=True, help_text='{"class_names": [...], "thresholds": {name: 0.5}}')
    preprocessing = JSONValueField(kind=dict, binary=True, required=False, default=dict)
    release_notes = serializers.CharField(required=False, allow_blank=True, default="")

    def validate_version(self, value: str) -> str:
        ModelVersion._meta.get_field("version").run_validators(value)
        return value


class TransitionSerializer(serializers.Serializer):
    to_status = serializers.ChoiceField(choices=VersionStatus.choices)


class AdaptationSerializer(serializers.ModelSerializer):
    """How a version was adapted from its parent (its base): recorded once, never edited."""

    method = serializers.ChoiceField(choices=AdaptationMethod.choices, help_text="How the base was adapted.")
    method_label = serializers.CharField(source="get_method_display", read_only=True)
    labels = serializers.ListField(child=serializers.CharField(max_length=200), allow_empty=False, max_length=200)
    labelled_dataset = ScopedRelatedField(selector=dataset_list, required=False, allow_null=True, help_text="The labelled data used to adapt.")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Adaptation
        fields = [
            "id",
            "version",
            "method",
            "method_label",
            "task",
            "labels",
            "labelled_dataset",
            "labelled_cases",
            "labelled_patients",
            "frozen_parts",
            "created_by",
            "created_at",
        ]
        read_only_fields = ["id", "version", "method_label", "created_by", "created_at"]
        validators = []  # the database constraint is the service's check, with a field to fix (registry.adaptations)


class LineageEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "version", "status", "artifact_sha256", "parent", "created_at"]


class DataUseGrantSerializer(serializers.ModelSerializer):
    """A data-use grant as recorded: the steward names the dataset, grantee, purpose, agreement and period."""

    dataset = ScopedRelatedField(selector=dataset_list)
    grantee = ScopedRelatedField(selector=institution_list)
    purpose_label = serializers.CharField(source="get_purpose_display", read_only=True)
    granted_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    revoked_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    active = serializers.SerializerMethodField(help_text="Whether the grant opens the dataset to the grantee today.")

    class Meta:
        model = DataUseGrant
        fields = [
            "id",
            "dataset",
            "grantee",
            "purpose",
            "purpose_label",
            "purpose_detail",
            "agreement_reference",
            "valid_from",
            "valid_until",
            "active",
            "granted_by",
            "granted_at",
            "revoked_at",
            "revoked_by",
            "revocation_reason",
        ]
        read_only_fields = ["granted_at", "revoked_at", "revocation_reason"]

    def get_active(self, obj: DataUseGrant) -> bool:
        if not hasattr(obj, "is_active"):  # a grant just written by a service, not read through the selector
            obj = data_use_grant_list(user=self.context["request"].user).get(pk=obj.pk)
        return obj.is_active


class DataUseRevokeSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, default="", help_text="Why the use ends (required); the grantee reads it."
    )


class DicomwebManifestSerializer(serializers.ModelSerializer):
    class Meta:
        model = DicomwebManifest
        fields = ["sha256", "n_instances", "unlabelled", "query", "created_at"]


class DicomwebSourceSerializer(serializers.ModelSerializer):
    """A dataset's PACS source as stored: the query, the labels table by its key, columns, size and
    hash (not its rows), and the manifests runs froze from it, newest first."""

    labels = serializers.SerializerMethodField()
    manifests = serializers.SerializerMethodField()

    class Meta:
        model = DicomwebSource
        fields = [
            "base_url",
            "credentials_env",
            "modality",
            "body_part",
            "study_dates",
            "series_description",
            "accession_numbers",
            "labels",
            "labels_sha256",
            "manifests",
            "updated_at",
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_labels(self, obj: DicomwebSource) -> dict:
        return {"key": obj.labels["key"], "label_names": obj.labels["label_names"], "n_rows": len(obj.labels["rows"])}

    @extend_schema_field(DicomwebManifestSerializer(many=True))
    def get_manifests(self, obj: DicomwebSource) -> list[dict]:
        return DicomwebManifestSerializer(obj.dataset.dicomweb_manifests.all()[:20], many=True).data


class DicomwebSourceWriteSerializer(serializers.Serializer):
    """Where a dataset lives in a PACS: the DICOMweb root, the environment prefix of its credentials
    (never the credentials), the QIDO-RS query and the labels table as rows keyed by
    ``StudyInstanceUID`` or ``SOPInstanceUID`` with one 0/1 column per label."""

    base_url = serializers.URLField(max_length=500, help_text="The DICOMweb root, e.g. https://pacs.example.org/dicom-web.")
    credentials_env = serializers.CharField(max_length=60, required=False, allow_blank=True, default="")
    modality = serializers.CharField(max_length=16, required=False, allow_blank=True, default="")
    body_part = serializers.CharField(max_length=16, required=False, allow_blank=True, default="")
    study_dates = serializers.CharField(max_length=17, required=False, allow_blank=True, default="", help_text="20240101-20241231")
    series_description = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    accession_numbers = serializers.ListField(child=serializers.CharField(max_length=16), required=False, default=list, max_length=10000)
    labels = serializers.ListField(child=serializers.DictField(), min_length=1, help_text='[{"StudyInstanceUID": "1.2.3", "effusion": 1}, ...]')

    def validate_base_url(self, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("A DICOMweb root is an http:// or https:// address.")
        return value

    def validate_labels(self, value: list[dict]):
        try:
            return labels_table(value)
        except LabelsError as exc:
            raise serializers.ValidationError(str(exc)) from None


class DatasetSerializer(ModelSerializer):
    institution = ScopedRelatedField(selector=institution_list, owner=True)
    dicomweb = serializers.SerializerMethodField(help_text="Where the dataset lives in a PACS, if it does (set with PUT .../dicomweb/).")
    source_institutions = serializers.PrimaryKeyRelatedField(many=True, required=False, queryset=Institution.objects.all())
    completeness = serializers.SerializerMethodField()
    use_grants = serializers.SerializerMethodField(help_text="The data-use grants of this dataset that you may see (the steward's agreements).")

    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "institution",
            "description",
            "source_institutions",
            "collection_start",
            "collection_end",
            "modality",
            "body_region",
            "collection_purpose",
            "patient_count",
            "study_count",
            "image_count",
            "scanners",
            "protocols",
            "demographics",
            "label_source",
            "rater_count",
            "rater_agreement",
            "preparation",
            "legal_basis",
            "deidentification",
            "licence",
            "case_outputs_shared_with_provider",
            "known_limitations",
            "location",
            "dicomweb",
            "manifest_sha256",
            "completeness",
            "use_grants",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    @extend_schema_field(DicomwebSourceSerializer(allow_null=True))
    def get_dicomweb(self, obj: Dataset) -> dict | None:
        try:
            source = obj.dicomweb  # selected with the dataset (``selectors.dataset_list``)
        except DicomwebSource.DoesNotExist:
            return None
        return DicomwebSourceSerializer(source).data

    def get_completeness(self, obj: Dataset) -> dict:
        return datasheet_completeness(obj).to_dict()

    @extend_schema_field(DataUseGrantSerializer(many=True))
    def get_use_grants(self, obj: Dataset) -> list[dict]:
        grants = getattr(obj, "visible_grants", None)
        if grants is None:  # a dataset just created or updated, not read through the selector
            grants = data_use_grant_list(user=self.context["request"].user).filter(dataset=obj)
        return DataUseGrantSerializer(grants, many=True, context=self.context).data

    def validate(self, attrs: dict) -> dict:
        """Sharing the runs' per-case outputs with the provider is the data steward's decision, so
        only the steward's users may change it (sending the current value again is no change)."""
        shared = attrs.get("case_outputs_shared_with_provider")
        current = self.instance.case_outputs_shared_with_provider if self.instance else False
        steward = self.instance.institution if self.instance else attrs.get("institution")
        if shared is not None and shared != current and steward is not None:
            if not may_share_case_outputs(self.context["request"].user, steward_id=steward.pk):
                raise serializers.ValidationError(
                    {
                        "case_outputs_shared_with_provider": [
                            f"Only the data steward's users ({steward.code}) decide whether the provider sees per-case outputs."
                        ]
                    }
                )
        return attrs


class ProvenanceSerializer(serializers.ModelSerializer):
    version = ScopedRelatedField(selector=version_list)
    dataset = ScopedRelatedField(selector=dataset_list)

    class Meta:
        model = Provenance
        fields = ["id", "version", "dataset", "role", "notes", "created_at"]
        read_only_fields = ["created_at"]
        validators = []  # the service reports duplicates as a 409 with a message


class DeploymentSerializer(serializers.ModelSerializer):
    version = ScopedRelatedField(selector=version_list)
    institution = ScopedRelatedField(selector=institution_list)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "version",
            "institution",
            "status",
            "since",
            "revalidation_cadence_days",
            "revalidation_by",
            "revalidation_state",
            "revalidation_note",
            "revalidated_at",
            "agent_due_on",
            "notes",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["revalidation_state", "revalidation_note", "revalidated_at", "agent_due_on", "created_at", "updated_at"]
        validators = []
