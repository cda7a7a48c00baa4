from django.urls import reverse
from rest_framework import serializers

from compliance.api.vigilance_serializers import (
    AwarenessCorrectionSerializer,
    DecisionSerializer,
    FieldSafetyNoticeSerializer,
    IncidentReportSerializer,
)
from compliance.choices import IncidentStatus
from compliance.documents import document_list
from compliance.dossiers import DEFAULT_MEANING
from compliance.feedback import EDITABLE, feedback_editable_until
from compliance.models import (
    Alert,
    ClinicalInvestigation,
    ConformityAssessment,
    CorrectiveAction,
    Document,
    Dossier,
    Feedback,
    Incident,
    MarketPlacement,
    MarketWithdrawal,
    ReleaseEvidence,
    ScoringPolicy,
    TrustAssessment,
    TrustException,
    VersionApproval,
)
from core.api import ModelSerializer
from core.models import AuditEvent
from registry.api.serializers import ScopedRelatedField
from registry.models import Deployment
from registry.selectors import institution_list, version_list
from validation.selectors import run_list


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
            "suspected_serious_incident",  # opens an incident for triage (compliance.vigilance)
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
        read_only_fields = [*FeedbackSerializer.Meta.read_only_fields, "deployment", "submission_key", "suspected_serious_incident"]


class IncidentSerializer(serializers.ModelSerializer):
    feedback = serializers.PrimaryKeyRelatedField(queryset=Feedback.objects.all(), required=False, allow_null=True)
    alert = serializers.PrimaryKeyRelatedField(queryset=Alert.objects.all(), required=False, allow_null=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    overdue = serializers.BooleanField(read_only=True)
    incident_type = serializers.ChoiceField(choices=Incident._meta.get_field("incident_type").choices, required=False, allow_blank=True, default="")
    aware_on = serializers.DateField(required=False, help_text="Derived from the earliest linked record; another date needs awareness_reason.")
    awareness_reason = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=4000, default="")
    reports = IncidentReportSerializer(many=True, read_only=True)
    awareness_corrections = AwarenessCorrectionSerializer(many=True, read_only=True)
    decisions = DecisionSerializer(many=True, read_only=True)

    class Meta:
        model = Incident
        fields = [
            "id",
            "feedback",
            "alert",
            "intake",
            "version",
            "deployment",
            "title",
            "description",
            "incident_type",
            "triage",
            "triage_reason",
            "medical_device",
            "aware_on",
            "awareness_reason",
            "awareness_corrections",
            "reports",
            "decisions",
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
            "intake",
            "triage",
            "triage_reason",
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
    confirmed = serializers.BooleanField(
        write_only=True, required=False, default=False, help_text="Suspending or resuming a deployment happens only when true."
    )
    notices = FieldSafetyNoticeSerializer(many=True, read_only=True)

    class Meta:
        model = CorrectiveAction
        fields = ["id", "incident", "kind", "description", "confirmed", "notices", "taken_by", "taken_at"]
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
            "signer_name": signature.signer_name,
            "institution": signature.institution.name if signature.institution_id else None,
            "signed_at": signature.signed_at.isoformat(),
            "meaning": signature.meaning,
            "authentication": signature.authentication,
            "snapshot_sha256": signature.snapshot_sha256,
            "audit_seq": signature.audit_seq,
            "audit_hash": signature.audit_hash,
        }


class DossierSaveSerializer(serializers.Serializer):
    values = serializers.DictField(child=serializers.CharField(allow_blank=True, max_length=10_000))
    edit_count = serializers.IntegerField(
        min_value=0, help_text="The edit_count you loaded; a save by someone else in between is refused with a diff."
    )


class DossierNoteSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=4000)


class DossierSignSerializer(serializers.Serializer):
    """What a signature needs (compliance.dossiers.dossier_sign): the signer's password again, the
    snapshot they reviewed, and the meaning recorded with the signature."""

    meaning = serializers.CharField(max_length=200, default=DEFAULT_MEANING, help_text="What your signature means; recorded with it.")
    snapshot_sha256 = serializers.CharField(
        max_length=64, help_text="The snapshot_sha256 of the revision you reviewed; a revision resubmitted since is refused (409)."
    )
    password = serializers.CharField(max_length=4096, write_only=True, style={"input_type": "password"}, help_text="Your own password, again.")
    otp_code = serializers.CharField(
        max_length=8,
        required=False,
        default="",
        allow_blank=True,
        help_text="Your authenticator's current code, when you enrolled one or RADTRUST_REQUIRE_OTP_FOR_SIGNING is on.",
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
    """A scoring policy version; a new one is proposed inactive and a second officer activates it."""

    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    confirmed_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = ScoringPolicy
        fields = ["id", "version", "name", "definition", "active", "created_by", "created_at", "confirmed_by", "confirmed_at"]
        read_only_fields = ["version", "active", "created_by", "created_at", "confirmed_by", "confirmed_at"]
        extra_kwargs = {"definition": {"kind": dict}}


class TrustExceptionSerializer(serializers.ModelSerializer):
    """A justified exception; proposed by ``granted_by``, counted by the guard once ``confirmed_by`` is set."""

    version = ScopedRelatedField(selector=version_list)
    granted_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    confirmed_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = TrustException
        fields = ["id", "version", "principle", "justification", "granted_by", "granted_at", "confirmed_by", "confirmed_at"]
        read_only_fields = ["granted_by", "granted_at", "confirmed_by", "confirmed_at"]
        validators = []  # a second exception is a 409 from the service, not a 400


class DeclineSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=4000, help_text="Why it is declined; kept with the record.")


class VersionApprovalSerializer(serializers.ModelSerializer):
    """A version approval with four eyes: proposed by one officer of the provider, confirmed (which
    approves the version through the lifecycle guards) or declined by another."""

    version = ScopedRelatedField(selector=version_list)
    proposed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = VersionApproval
        fields = ["id", "version", "status", "proposed_by", "proposed_at", "decided_by", "decided_at", "note"]
        read_only_fields = ["status", "proposed_by", "proposed_at", "decided_by", "decided_at", "note"]
        validators = []  # a second pending proposal is a 409 from the service, not a 400


class ConformityAssessmentSerializer(serializers.ModelSerializer):
    """A version's conformity assessment; the rules (the provider's officers, the route for the
    model's MDR class, the notified body and its certificate) are in ``compliance.change_control``."""

    recorded_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ConformityAssessment
        fields = ["id", "version", "route", "mdr_procedure", "notified_body", "certificate_reference", "assessed_on", "recorded_by", "recorded_at"]
        read_only_fields = ["version", "recorded_by", "recorded_at"]


class ReleaseEvidenceSerializer(serializers.ModelSerializer):
    """The release evidence pinned for a version: its runs on the intended population and the operating
    point they measured. The rules (the provider's officers, which runs may be declared, the threshold
    the version ships with) are in ``compliance.release_evidence``."""

    runs = ScopedRelatedField(selector=run_list, many=True, help_text="Succeeded runs of this version on its test data.")
    operating_points = serializers.DictField(
        child=serializers.FloatField(), required=False, help_text="Per label, the threshold you declare; it must be the one the runs measured."
    )
    pinned_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ReleaseEvidence
        fields = ["id", "version", "runs", "population", "operating_points", "pinned_by", "pinned_at"]
        read_only_fields = ["version", "pinned_by", "pinned_at"]


class MarketPlacementSerializer(serializers.ModelSerializer):
    """A version placed on the market; the rules (the newest conformity assessment, a signed
    declaration, the CE-marking decision, a second officer) are in ``compliance.market``."""

    declaration = ScopedRelatedField(
        selector=document_list,
        required=False,
        allow_null=True,
        help_text="The signed EU declaration of conformity; by default that of the newest signed dossier revision.",
    )
    recorded_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = MarketPlacement
        fields = ["id", "version", "conformity_assessment", "declaration", "ce_marking", "placed_on", "recorded_by", "recorded_at"]
        read_only_fields = ["version", "conformity_assessment", "recorded_by", "recorded_at"]


class MarketWithdrawalSerializer(serializers.ModelSerializer):
    recorded_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = MarketWithdrawal
        fields = ["id", "placement", "withdrawn_on", "reason", "recorded_by", "recorded_at"]
        read_only_fields = ["placement", "recorded_by", "recorded_at"]
        extra_kwargs = {"reason": {"allow_blank": True}}  # the service says what a reason must say


class ClinicalInvestigationSerializer(serializers.ModelSerializer):
    institution = ScopedRelatedField(selector=institution_list)
    recorded_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ClinicalInvestigation
        fields = ["id", "version", "institution", "reference", "reason", "recorded_by", "recorded_at"]
        read_only_fields = ["version", "recorded_by", "recorded_at"]
        extra_kwargs = {"reference": {"allow_blank": True}, "reason": {"allow_blank": True}}
        validators = []  # a second record at the same site is the service's field error
