from django.urls import reverse
from rest_framework import serializers

from compliance.choices import IncidentStatus
from compliance.feedback import EDITABLE, feedback_editable_until
from compliance.models import Alert, CorrectiveAction, Document, Dossier, Feedback, Incident, ScoringPolicy, TrustAssessment, TrustException
from core.api import ModelSerializer
from core.models import AuditEvent
from registry.api.serializers import ScopedRelatedField
from registry.models import Deployment
from registry.selectors import version_list


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "seq",
            "occurred_at",
            "actor_id",
            "actor_username",
            "request_id",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
            "prev_hash",
            "hash",
            "key_id",
        ]
        read_only_fields = fields


class FeedbackSerializer(serializers.ModelSerializer):
    """A clinician's report; the rules (institution, deployment in use, pseudonymous case) are in
    ``compliance.feedback``, shared with the pages."""

    deployment = serializers.PrimaryKeyRelatedField(queryset=Deployment.objects.select_related("version", "institution"))
    clinician = serializers.SlugRelatedField(slug_field="username", read_only=True)
    submission_key = serializers.UUIDField(required=False, help_text="Send the same key again and the first report is returned, not a second one.")
    editable_until = serializers.SerializerMethodField()
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    class Meta:
        model = Feedback
        fields = [
            "id",
            "deployment",
            "version",
            "institution",
            "clinician",
            "submission_key",
            *EDITABLE,  # what a clinician reports (compliance.feedback)
            "created_at",
            "updated_at",
            "editable_until",
        ]
        read_only_fields = ["version", "institution", "created_at", "updated_at"]
        validators = []  # the one-per-form rule returns the first report instead of failing (the service)

    def get_editable_until(self, obj) -> str:
        return feedback_editable_until(obj).isoformat()


class FeedbackUpdateSerializer(FeedbackSerializer):
    class Meta(FeedbackSerializer.Meta):
        read_only_fields = [*FeedbackSerializer.Meta.read_only_fields, "deployment", "submission_key"]


class IncidentSerializer(serializers.ModelSerializer):
    feedback = serializers.PrimaryKeyRelatedField(queryset=Feedback.objects.all(), required=False, allow_null=True)
    alert = serializers.PrimaryKeyRelatedField(queryset=Alert.objects.all(), required=False, allow_null=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    overdue = serializers.BooleanField(read_only=True)

    class Meta:
        model = Incident
        fields = [
            "id",
            "feedback",
            "alert",
            "version",
            "deployment",
            "title",
            "description",
            "incident_type",
            "medical_device",
            "aware_on",
            "route",
            "legal_basis",
            "deadline",
            "overdue",
            "status",
            "reported_on",
            "authority_reference",
            "closing_note",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "version",
            "deployment",
            "medical_device",
            "route",
            "legal_basis",
            "deadline",
            "status",
            "reported_on",
            "authority_reference",
            "closing_note",
            "created_at",
            "updated_at",
        ]


class IncidentTransitionSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=IncidentStatus.choices)
    reported_on = serializers.DateField(required=False, allow_null=True)
    authority_reference = serializers.CharField(required=False, allow_blank=True, max_length=120, default="")
    closing_note = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")


class CorrectiveActionSerializer(serializers.ModelSerializer):
    taken_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = CorrectiveAction
        fields = ["id", "incident", "kind", "description", "taken_by", "taken_at"]
        read_only_fields = ["incident", "taken_by", "taken_at"]


class DossierSerializer(serializers.ModelSerializer):
    """A dossier revision: the fields officers write, its status, and once submitted the frozen snapshot and its hash."""

    version = ScopedRelatedField(selector=version_list)
    author = serializers.SlugRelatedField(slug_field="username", read_only=True)
    submitted_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    signature = serializers.SerializerMethodField()

    class Meta:
        model = Dossier
        fields = [
            "id",
            "version",
            "revision",
            "status",
            "values",
            "edit_count",
            "author",
            "submitted_by",
            "submitted_at",
            "snapshot_sha256",
            "review_note",
            "signature",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [f for f in fields if f != "version"]  # fields are written by the save action (DossierSaveSerializer)

    def get_signature(self, obj) -> dict | None:
        signature = getattr(obj, "signature", None)
        if signature is None:
            return None
        return {
            "signer": signature.signer.username,
            "signed_at": signature.signed_at.isoformat(),
            "meaning": signature.meaning,
            "snapshot_sha256": signature.snapshot_sha256,
        }


class DossierSaveSerializer(serializers.Serializer):
    values = serializers.DictField(child=serializers.CharField(allow_blank=True, max_length=10_000))
    edit_count = serializers.IntegerField(
        min_value=0, help_text="The edit_count you loaded; a save by someone else in between is refused with a diff."
    )


class DossierNoteSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=4000)


class DossierSignSerializer(serializers.Serializer):
    meaning = serializers.CharField(max_length=200, default="Approved as the technical documentation of this version")
    otp_code = serializers.CharField(
        max_length=8,
        required=False,
        default="",
        allow_blank=True,
        help_text="Your authenticator's current code, when RADTRUST_REQUIRE_OTP_FOR_SIGNING is on.",
    )


class DocumentSerializer(serializers.ModelSerializer):
    """A document rendered from a signed dossier revision's frozen snapshot; its bytes at ``download_url``."""

    version = serializers.IntegerField(source="dossier.version_id", read_only=True)
    revision = serializers.IntegerField(source="dossier.revision", read_only=True)
    kind_label = serializers.CharField(source="get_kind_display", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Document
        fields = [
            "id",
            "dossier",
            "version",
            "revision",
            "kind",
            "kind_label",
            "sha256",
            "size",
            "content_type",
            "pages",
            "snapshot_sha256",
            "created_by",
            "created_at",
            "retain_until",
            "download_url",
        ]
        read_only_fields = fields

    def get_download_url(self, obj) -> str:
        url = reverse("document-download", args=[obj.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url


class AlertSerializer(serializers.ModelSerializer):
    handled_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "version",
            "deployment",
            "run",
            "baseline_run",
            "kind",
            "severity",
            "subject",
            "message",
            "evidence",
            "status",
            "note",
            "handled_by",
            "handled_at",
            "created_at",
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


class ScoringPolicySerializer(ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = ScoringPolicy
        fields = ["id", "version", "name", "definition", "active", "created_by", "created_at"]
        read_only_fields = ["version", "active", "created_by", "created_at"]
        extra_kwargs = {"definition": {"kind": dict}}


class TrustExceptionSerializer(serializers.ModelSerializer):
    version = ScopedRelatedField(selector=version_list)
    granted_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = TrustException
        fields = ["id", "version", "principle", "justification", "granted_by", "granted_at"]
        read_only_fields = ["granted_by", "granted_at"]
        validators = []  # a second exception is a 409 from the service, not a 400
