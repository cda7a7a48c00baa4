"""The registry: foundation models, their versions and artifacts, datasets, sites and deployments."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from core.choices import Role
from core.errors import ImmutableRecord
from core.models import NeverEdited
from radtrust_engine.task_spec import TaskSpec
from registry.choices import (
    VERSION_TASK_LABELS,
    AdaptationMethod,
    DataUsePurpose,
    DeploymentStatus,
    LegalBasis,
    MdrClass,
    MirrorState,
    Modality,
    ProvenanceRole,
    RevalidationBy,
    RevalidationState,
    RiskClass,
    Task,
    VersionStatus,
)
from registry.datasheets import MAX_COUNT, MAX_RATERS, validate_counts, validate_demographics, validate_scanners
from registry.guards import deployment_refusal
from registry.validators import validate_json_safe, validate_location, validate_preprocessing

SEMVER = RegexValidator(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$",
    "Use a semantic version such as 1.2.0 or 2.0.0-rc.1.",
)
SITE_CODE = RegexValidator(r"^[a-z0-9][a-z0-9-]{1,30}$", "Use 2-31 lower-case letters, digits or hyphens.")
SHA256 = RegexValidator(r"^[0-9a-f]{64}$", "A sha256 is 64 lower-case hex digits.")


class Institution(models.Model):
    """A hospital, vendor or research site; every user and deployment belongs to one."""

    class Kind(models.TextChoices):
        HOSPITAL = "hospital", "Hospital"
        PROVIDER = "provider", "Provider (vendor)"
        RESEARCH = "research", "Research institute"

    code = models.CharField(max_length=31, unique=True, validators=[SITE_CODE], help_text="Short site code; names the site's queue.")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.HOSPITAL)
    country = models.CharField(max_length=2, validators=[RegexValidator(r"^[A-Z]{2}$", "Use an ISO 3166-1 alpha-2 code such as DE.")])
    address = models.TextField(blank=True)
    contact_email = models.EmailField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class User(AbstractUser):
    """A person or service account; belongs to exactly one institution, acts in one role."""

    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, null=True, blank=True, related_name="users")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(is_superuser=True) | Q(institution__isnull=False),
                name="%(app_label)s_%(class)s_institution_required",
                violation_error_message="Every user except a superuser belongs to an institution.",
            )
        ]

    @property
    def role(self) -> str | None:
        """The user's role: the first of their groups that names one."""
        names = {g.name for g in self.groups.all()}
        return next((r.value for r in Role if r.value in names), None)


class FoundationModel(models.Model):
    """A radiology model family: what it is for, who provides it, and how the AI Act classes it."""

    name = models.CharField(max_length=120, unique=True)
    provider = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="foundation_models")
    description = models.TextField(blank=True)
    intended_purpose = models.TextField(help_text="Art. 13(3)(b)(i): the clinical purpose, population and setting.")
    intended_users = models.TextField(blank=True)
    instructions_for_use = models.TextField(
        blank=True, help_text="Art. 13(3): how clinicians use the output, what it is not for, what to do when it looks wrong."
    )
    known_limitations = models.TextField(
        blank=True, help_text="Art. 13(3)(b)(iii)-(v): groups, settings and images where performance is lower or unknown."
    )
    explainability_needs = models.TextField(
        blank=True, help_text="FUTURE-AI Explainability 1: what clinicians need explained, and how the model's explanations serve it."
    )
    modality = models.CharField(max_length=10, choices=Modality.choices)
    body_region = models.CharField(max_length=80)
    task = models.CharField(max_length=20, choices=Task.choices)
    risk_class = models.CharField(max_length=10, choices=RiskClass.choices, default=RiskClass.HIGH)
    mdr_class = models.CharField(max_length=4, choices=MdrClass.choices, blank=True, default=MdrClass.IIA)
    licence = models.CharField(max_length=120)
    general_purpose = models.BooleanField(
        default=False,
        help_text="Offered to other providers as a general-purpose AI model: Annex XI and XII documentation and the public training-content summary of Art. 53 are produced.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    """One released or candidate version: its ONNX artifact, lineage, outputs and lifecycle state.

    The artifact is immutable once registered: its files are stored content-addressed
    under ``artifacts/<sha256>/`` and ``artifact_sha256`` hashes the whole set.
    """

    foundation_model = models.ForeignKey(FoundationModel, on_delete=models.PROTECT, related_name="versions")
    version = models.CharField(max_length=64, validators=[SEMVER])
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="children")
    status = models.CharField(max_length=20, choices=VersionStatus.choices, default=VersionStatus.DRAFT)
    release_notes = models.TextField(blank=True)
    output_schema = models.JSONField(default=dict, validators=[validate_json_safe], help_text="class_names and operating thresholds per class.")
    preprocessing = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_json_safe, validate_preprocessing],
        help_text="Resize, intensity normalisation, windowing, channel layout.",
    )

    artifact_sha256 = models.CharField(max_length=64, validators=[SHA256])
    artifact_files = models.JSONField(default=list, help_text="name, sha256, size and role of each stored file.")
    artifact_size = models.BigIntegerField(validators=[MinValueValidator(1)])
    opset = models.PositiveIntegerField()
    ir_version = models.PositiveIntegerField()
    producer = models.CharField(max_length=120, blank=True)
    inputs = models.JSONField(default=list)
    outputs = models.JSONField(default=list)
    parameter_count = models.BigIntegerField(validators=[MinValueValidator(0)])

    mirror_state = models.CharField(max_length=10, choices=MirrorState.choices, default=MirrorState.PENDING)
    mirror_error = models.TextField(blank=True)
    mlflow_model_name = models.CharField(max_length=200, blank=True)
    mlflow_version = models.CharField(max_length=20, blank=True)
    mirrored_at = models.DateTimeField(null=True, blank=True)
    mirror_lease_until = models.DateTimeField(null=True, blank=True, help_text="A worker holds the mirror until then.")

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["foundation_model__name", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["foundation_model", "version"],
                name="%(app_label)s_%(class)s_unique_version",
                violation_error_message="This model already has a version with that number.",
            ),
            models.CheckConstraint(
                condition=~Q(parent=models.F("pk")),
                name="%(app_label)s_%(class)s_not_own_parent",
                violation_error_message="A version cannot be its own parent.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.foundation_model.name} {self.version}"

    @property
    def task_spec(self) -> TaskSpec:
        """What the version does (its model's task; for a segmentation model, 3D volumes where its schema
        says so) and how its outputs are read (``radtrust_engine.task_spec``); the schema was checked
        against the model's task when the version was registered."""
        return TaskSpec.from_schema(self.output_schema or {}, self.foundation_model.task)

    @property
    def task_label(self) -> str:
        """The version's task in words, for pages."""
        return VERSION_TASK_LABELS[self.task_spec.task]


class Dataset(models.Model):
    """A dataset and its datasheet (Art. 10(2), CLAIM): where the data comes from and what it holds.

    The JSON composition fields hold ``{"category": count}`` mappings or lists of
    ``{"manufacturer", "model", "count"}`` rows, validated in ``registry.datasheets``.
    """

    name = models.CharField(max_length=160, unique=True)
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="datasets", help_text="The data steward.")
    description = models.TextField(blank=True)
    source_institutions = models.ManyToManyField(Institution, blank=True, related_name="+")
    collection_start = models.DateField(null=True, blank=True)
    collection_end = models.DateField(null=True, blank=True)
    modality = models.CharField(max_length=10, choices=Modality.choices)
    body_region = models.CharField(max_length=80, blank=True)
    collection_purpose = models.TextField(blank=True, help_text="Art. 10(2)(b): origin and original purpose of the data.")
    patient_count = models.PositiveIntegerField(null=True, blank=True, validators=[MaxValueValidator(MAX_COUNT)])
    study_count = models.PositiveIntegerField(null=True, blank=True, validators=[MaxValueValidator(MAX_COUNT)])
    image_count = models.PositiveIntegerField(null=True, blank=True, validators=[MaxValueValidator(MAX_COUNT)])
    scanners = models.JSONField(default=list, blank=True, validators=[validate_json_safe, validate_scanners])
    protocols = models.JSONField(default=dict, blank=True, validators=[validate_json_safe, validate_counts])
    demographics = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_json_safe, validate_demographics],
        help_text='{"sex": {"F": 10}, "age_band": {...}, "ethnicity": {...}}',
    )
    label_source = models.TextField(blank=True, help_text="Reference standard and how labels were produced.")
    rater_count = models.PositiveIntegerField(null=True, blank=True, validators=[MaxValueValidator(MAX_RATERS)])
    rater_agreement = models.CharField(max_length=120, blank=True, help_text="For example: Cohen's kappa 0.82.")
    preparation = models.TextField(blank=True, help_text="Art. 10(2)(c): annotation, cleaning, enrichment.")
    legal_basis = models.CharField(max_length=20, choices=LegalBasis.choices, blank=True)
    deidentification = models.TextField(blank=True)
    licence = models.CharField(max_length=120, blank=True)
    case_outputs_shared_with_provider = models.BooleanField(
        default=False,
        help_text=(
            "The data steward's terms: whether the provider of a version validated on this dataset may see the runs' "
            "per-case outputs (case tables, saliency overlays, flagged cases with their image paths). Only the steward's "
            "users change it; charts and aggregate results are shared either way."
        ),
    )
    known_limitations = models.TextField(blank=True, help_text="Art. 10(2)(h): gaps and shortcomings.")
    location = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_location],
        help_text="Where the data lives: a folder under a data root that runs read, or a description. Data never leaves a site that forbids it.",
    )
    manifest_sha256 = models.CharField(max_length=64, blank=True, validators=[SHA256])
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(collection_start__isnull=True) | Q(collection_end__isnull=True) | Q(collection_start__lte=models.F("collection_end")),
                name="%(app_label)s_%(class)s_period_ordered",
                violation_error_message="The collection period must end after it starts.",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Provenance(models.Model):
    """The role a dataset played for a version (pre-training, fine-tuning, test, ...)."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="provenance")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="provenance")
    role = models.CharField(max_length=24, choices=ProvenanceRole.choices)
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version", "role"]
        verbose_name_plural = "provenance"
        constraints = [
            models.UniqueConstraint(
                fields=["version", "dataset", "role"],
                name="%(app_label)s_%(class)s_unique_role",
                violation_error_message="This dataset already has that role for this version.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.dataset} -> {self.version} ({self.get_role_display()})"


class DataUseGrantQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise ImmutableRecord("A data-use grant is never edited; revoke it and record a new one.", code="grant_immutable")

    def delete(self):
        raise ImmutableRecord("A data-use grant is kept as the record of the agreement; revoke it instead.", code="grant_immutable")


class DataUseGrant(models.Model):
    """A data steward's recorded data-use agreement: another institution (``grantee``) may use
    ``dataset`` for ``purpose`` from ``valid_from`` to ``valid_until`` (both days included).

    Written once by ``registry.services.data_use_grant``; the only later change is its revocation,
    once. While it is active (``core.access.data_use_active``) the grantee's users see the dataset,
    may link it to their versions in the roles the purpose allows, and validate on it.
    """

    REVOCATION_FIELDS = frozenset({"revoked_at", "revoked_by", "revocation_reason"})

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="use_grants")
    grantee = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="data_use_grants", help_text="The institution granted the use.")
    purpose = models.CharField(max_length=30, choices=DataUsePurpose.choices)
    purpose_detail = models.TextField(blank=True, help_text="The purpose in the agreement's words: which models, which study.")
    agreement_reference = models.CharField(max_length=120, help_text="The signed data-use agreement, for example DUA-2025-014.")
    valid_from = models.DateField()
    valid_until = models.DateField(help_text="The last day the use is granted.")
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    granted_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    revocation_reason = models.TextField(blank=True)

    objects = DataUseGrantQuerySet.as_manager()

    class Meta:
        ordering = ["dataset", "-valid_until", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(valid_from__lte=models.F("valid_until")),
                name="%(app_label)s_%(class)s_period_ordered",
                violation_error_message="The grant must end on or after the day it starts.",
            ),
            models.CheckConstraint(
                condition=Q(revoked_at__isnull=True, revocation_reason="") | (Q(revoked_at__isnull=False) & ~Q(revocation_reason="")),
                name="%(app_label)s_%(class)s_revocation_has_reason",
                violation_error_message="A revocation states its reason.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agreement_reference}: {self.dataset} for {self.grantee.code}"

    def save(self, *args, **kwargs):
        """Refuse every change but the one revocation (``update_fields`` within ``REVOCATION_FIELDS``)."""
        if not self._state.adding:
            fields = kwargs.get("update_fields")
            revoked_before = type(self)._base_manager.filter(pk=self.pk, revoked_at__isnull=False).exists()
            if fields is None or not set(fields) <= self.REVOCATION_FIELDS or revoked_before:
                raise ImmutableRecord("A data-use grant is never edited; revoke it and record a new one.", code="grant_immutable")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableRecord("A data-use grant is kept as the record of the agreement; revoke it instead.", code="grant_immutable")


class Deployment(models.Model):
    """A version in clinical use at an institution, revalidated on a cadence."""

    # Planned, active or suspended: the deployments a clinician at the site works with.
    OPEN_STATUSES = (DeploymentStatus.PLANNED, DeploymentStatus.ACTIVE, DeploymentStatus.SUSPENDED)

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="deployments")
    status = models.CharField(max_length=12, choices=DeploymentStatus.choices, default=DeploymentStatus.PLANNED)
    since = models.DateField(null=True, blank=True)
    revalidation_cadence_days = models.PositiveIntegerField(default=90, validators=[MinValueValidator(1)])
    revalidation_by = models.CharField(
        max_length=12,
        choices=RevalidationBy.choices,
        default=RevalidationBy.CENTRAL,
        help_text="Who runs the scheduled revalidation: a central worker, or the site's agent on its own patients.",
    )
    agent_due_on = models.DateField(
        null=True,
        blank=True,
        help_text="The due date of the latest scheduled revalidation handed to the site's agent (written by the dispatcher).",
    )
    revalidation_state = models.CharField(
        max_length=12,
        choices=RevalidationState.choices,
        default=RevalidationState.NOT_YET,
        help_text="Outcome of the latest scheduled revalidation, written by the dispatcher and the run.",
    )
    revalidation_note = models.TextField(blank=True)
    revalidated_at = models.DateTimeField(null=True, blank=True, help_text="When the latest scheduled revalidation ended.")
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["institution", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "institution"],
                condition=~Q(status=DeploymentStatus.ENDED),
                name="%(app_label)s_%(class)s_one_open_per_site",
                violation_error_message="This version already has an open deployment at this institution.",
            ),
            models.CheckConstraint(
                condition=Q(revalidation_cadence_days__gte=1),
                name="%(app_label)s_%(class)s_cadence_positive",
                violation_error_message="The revalidation cadence is at least one day.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version} at {self.institution.code}"

    def deploys_anew(self) -> bool:
        """Whether saving this row deploys its version anew: a new open deployment, or one made active
        again (from planned, suspended or ended)."""
        if self.status not in (DeploymentStatus.PLANNED, DeploymentStatus.ACTIVE):
            return False
        if self._state.adding or self.pk is None:
            return True
        previous = type(self).objects.filter(pk=self.pk).values_list("status", flat=True).first()
        return self.status == DeploymentStatus.ACTIVE and previous != DeploymentStatus.ACTIVE

    def clean(self) -> None:
        """The market rule below every path that saves through validation (API, admin, services):
        a version is deployed only once placed on the market, or within a clinical investigation."""
        super().clean()
        if self.version_id and self.institution_id and self.deploys_anew():
            refusal = deployment_refusal(self.version, self.institution)
            if refusal:
                raise ValidationError({"version": refusal})


class Adaptation(NeverEdited):
    """How a version was made from its base: a foundation model is pre-trained once and adapted to
    many tasks, each adaptation a device candidate of its own that inherits the base's data and
    weaknesses. Written once when recorded; a correction is a new version."""

    version = models.OneToOneField(ModelVersion, on_delete=models.PROTECT, related_name="adaptation")
    method = models.CharField(max_length=20, choices=AdaptationMethod.choices)
    task = models.CharField(max_length=300, help_text="The task the base was adapted to, in words (e.g. pneumothorax on adult chest films).")
    labels = models.JSONField(default=list, validators=[validate_json_safe], help_text="The labels the adaptation predicts.")
    labelled_dataset = models.ForeignKey(
        Dataset, on_delete=models.PROTECT, null=True, blank=True, related_name="adaptations", help_text="The labelled data used to adapt."
    )
    labelled_cases = models.PositiveIntegerField(default=0, help_text="Labelled cases used (0 for a prompt without examples).")
    labelled_patients = models.PositiveIntegerField(default=0, help_text="Distinct patients among the labelled cases.")
    frozen_parts = models.TextField(blank=True, help_text="What stayed as in the base (e.g. the whole encoder, blocks 1-10).")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    edit_refused = ("An adaptation record is never edited; register a new version for a new adaptation.", "adaptation_immutable")

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(labelled_patients__lte=models.F("labelled_cases")),
                name="%(app_label)s_%(class)s_patients_within_cases",
                violation_error_message="There cannot be more labelled patients than labelled cases.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_method_display()} of {self.version}"


STUDY_DATES = RegexValidator(
    r"^(\d{8})?(-(\d{8})?)?$", "Give a DICOM date or range: 20240101, 20240101-20241231, 20240101- (from) or -20241231 (until)."
)
ENV_PREFIX = RegexValidator(r"^[A-Z][A-Z0-9_]{0,59}$", "Use an environment variable prefix in capitals, digits and _, such as RADTRUST_PACS.")


class DicomwebSource(models.Model):
    """A dataset held in a PACS: its DICOMweb service, the QIDO-RS query that selects it and the labels.

    Credentials are never stored: workers (and a site's agent) read ``<credentials_env>_USER`` and
    ``<credentials_env>_PASSWORD`` or ``<credentials_env>_PASSWORD_FILE`` from their own
    environment. ``labels`` is the checked table (``radtrust_engine.dicomweb.LabelsTable.to_dict``).
    """

    dataset = models.OneToOneField(Dataset, on_delete=models.CASCADE, related_name="dicomweb")
    base_url = models.URLField(max_length=500, help_text="The DICOMweb root, e.g. https://pacs.example.org/dicom-web.")
    credentials_env = models.CharField(
        max_length=60, blank=True, validators=[ENV_PREFIX], help_text="Prefix of the environment variables that hold the user and password."
    )
    modality = models.CharField(max_length=16, blank=True, validators=[RegexValidator(r"^[A-Z0-9]*$", "A DICOM modality code, e.g. CR or CT.")])
    body_part = models.CharField(max_length=16, blank=True, help_text="BodyPartExamined, e.g. CHEST.")
    study_dates = models.CharField(max_length=17, blank=True, validators=[STUDY_DATES])
    series_description = models.CharField(max_length=64, blank=True)
    accession_numbers = models.JSONField(default=list, blank=True, help_text="Only these studies (optional).")
    labels = models.JSONField(help_text="The labels table, keyed by StudyInstanceUID or SOPInstanceUID.")
    labels_sha256 = models.CharField(max_length=64, validators=[SHA256])
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "DICOMweb source"

    def __str__(self) -> str:
        return f"{self.dataset} at {self.base_url}"

    def clean(self) -> None:
        numbers = self.accession_numbers
        if not isinstance(numbers, list) or not all(isinstance(n, str) and 0 < len(n.strip()) <= 16 for n in numbers):
            raise ValidationError({"accession_numbers": "Give a list of accession numbers, each 1-16 characters."})
        if len(set(numbers)) != len(numbers):
            raise ValidationError({"accession_numbers": "An accession number is listed twice."})
        start, _, end = self.study_dates.partition("-")
        if start and end and start > end:
            raise ValidationError({"study_dates": "The study date range must end after it starts."})


class DicomwebManifest(NeverEdited):
    """A DICOMweb dataset's query resolved at run creation to the exact instances and their labels.

    Named by its sha256 (``radtrust_engine.dicomweb.LabelledManifest``), which the runs that read it
    record as their ``manifest_sha256``: a run evaluates these instances and no others, whatever
    the PACS or the labels table hold later. Written once.
    """

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="dicomweb_manifests")
    sha256 = models.CharField(max_length=64, validators=[SHA256])
    base_url = models.URLField(max_length=500)
    query = models.JSONField(help_text="The QIDO-RS query it was resolved with.")
    content = models.JSONField(help_text="The instances (study, series and SOP Instance UIDs, patient) with their labels.")
    n_instances = models.PositiveIntegerField()
    unlabelled = models.PositiveIntegerField(default=0, help_text="Instances the query matched that the labels table does not cover.")
    created_at = models.DateTimeField(auto_now_add=True)

    edit_refused = ("A frozen manifest is never edited; a new resolution makes a new manifest.", "manifest_immutable")

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["dataset", "sha256"], name="%(app_label)s_%(class)s_one_per_hash")]

    def __str__(self) -> str:
        return f"{self.dataset} manifest {self.sha256[:12]} ({self.n_instances} instances)"
