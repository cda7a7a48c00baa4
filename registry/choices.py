"""Enumerations of the registry domain."""

from django.db import models


class Modality(models.TextChoices):
    CR = "CR", "Computed radiography"
    DX = "DX", "Digital radiography"
    CT = "CT", "Computed tomography"
    MR = "MR", "Magnetic resonance"
    MG = "MG", "Mammography"
    US = "US", "Ultrasound"
    PT = "PT", "PET"
    NM = "NM", "Nuclear medicine"
    MULTI = "multi", "Several modalities"


class Task(models.TextChoices):
    """What a foundation model does; it decides the kind of its versions' runs (``ModelVersion.task_spec``).

    A segmentation model's version may declare 3D volume segmentation in its output schema: the
    same task on volumes, not another (``radtrust_engine.task_spec``)."""

    BINARY = "binary", "Binary classification"
    MULTILABEL = "multilabel", "Multi-label classification"
    SEGMENTATION = "segmentation", "Segmentation"
    DETECTION = "detection", "Lesion detection"


CLASSIFICATION_TASKS: frozenset[str] = frozenset({Task.BINARY, Task.MULTILABEL})
"""The tasks whose ground truth is a 0/1 label per case and class (a PACS labels table, uploaded outputs)."""
VERSION_TASK_LABELS: dict[str, str] = {**dict(Task.choices), "volume_segmentation": "Segmentation of 3D volumes"}
"""Every task a version's runs can have (``ModelVersion.task_spec``), in words."""


class RiskClass(models.TextChoices):
    """AI Act risk class; MDR class IIa and above makes a system high-risk (Art. 6(1))."""

    HIGH = "high", "High-risk (Art. 6)"
    LIMITED = "limited", "Limited risk (Art. 50)"
    MINIMAL = "minimal", "Minimal risk"
    GPAI = "gpai", "General-purpose AI model (Art. 51-55)"


class MdrClass(models.TextChoices):
    NONE = "", "Not a medical device"
    I = "I", "Class I"  # noqa: E741 (the MDR's own name for the class)
    IIA = "IIa", "Class IIa"
    IIB = "IIb", "Class IIb"
    III = "III", "Class III"


class VersionStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    IN_VALIDATION = "in_validation", "In validation"
    UNDER_REVIEW = "under_review", "Under review"
    APPROVED = "approved", "Approved"
    DEPLOYED = "deployed", "Deployed"
    SUSPENDED = "suspended", "Suspended"
    RETIRED = "retired", "Retired"


class MirrorState(models.TextChoices):
    """Where the version stands in the MLflow model registry."""

    PENDING = "pending", "Pending"
    MIRRORED = "mirrored", "Mirrored"
    FAILED = "failed", "Failed, retrying"
    REFUSED = "refused", "Refused: the stored artifact fails verification"


class ProvenanceRole(models.TextChoices):
    PRETRAINING = "pretraining", "Pre-training"
    FINE_TUNING = "fine_tuning", "Fine-tuning"
    CALIBRATION = "calibration", "Calibration"
    INTERNAL_TEST = "internal_test", "Internal test"
    EXTERNAL_VALIDATION = "external_validation", "External validation"


class DeploymentStatus(models.TextChoices):
    PLANNED = "planned", "Planned"
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    ENDED = "ended", "Ended"


class LegalBasis(models.TextChoices):
    CONSENT = "consent", "Consent (GDPR Art. 6(1)(a), 9(2)(a))"
    PUBLIC_INTEREST = "public_interest", "Public interest in public health (GDPR Art. 9(2)(i))"
    RESEARCH = "research", "Scientific research (GDPR Art. 9(2)(j))"
    CARE = "care", "Provision of health care (GDPR Art. 9(2)(h))"
    ANONYMOUS = "anonymous", "Anonymous data (outside GDPR)"
    OTHER = "other", "Other (state it in the notes)"


class RevalidationState(models.TextChoices):
    """Where a deployment's latest scheduled revalidation stands."""

    NOT_YET = "not_yet", "Not yet due"
    QUEUED = "queued", "Queued"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    NO_DATA = "no_data", "No data at the site to revalidate on"


class RevalidationBy(models.TextChoices):
    """Who runs a deployment's scheduled revalidation."""

    CENTRAL = "central", "A central worker (on data this server can read)"
    SITE_AGENT = "site_agent", "The site's own agent (a one-site federated study; only aggregates leave)"


class DataUsePurpose(models.TextChoices):
    """What a data steward grants another institution the use of a dataset for (``DataUseGrant``).

    Each purpose opens exactly the uses in ``PURPOSE_PROVENANCE_ROLES`` and ``PURPOSE_RUNS``:
    data granted for training is no independent evidence, so it is never validated on.
    """

    EXTERNAL_VALIDATION = "external_validation", "External validation of the grantee's model versions"
    PERFORMANCE_MONITORING = "performance_monitoring", "Post-market performance monitoring (revalidation, drift checks)"
    TRAINING = "training", "Training, fine-tuning or calibration"


# The provenance roles a grant of each purpose lets the grantee record, and the purposes that allow validation runs.
PURPOSE_PROVENANCE_ROLES: dict[str, frozenset[str]] = {
    DataUsePurpose.EXTERNAL_VALIDATION: frozenset({ProvenanceRole.EXTERNAL_VALIDATION}),
    DataUsePurpose.PERFORMANCE_MONITORING: frozenset(),
    DataUsePurpose.TRAINING: frozenset({ProvenanceRole.PRETRAINING, ProvenanceRole.FINE_TUNING, ProvenanceRole.CALIBRATION}),
}
PURPOSE_RUNS: frozenset[str] = frozenset({DataUsePurpose.EXTERNAL_VALIDATION, DataUsePurpose.PERFORMANCE_MONITORING})


class AdaptationMethod(models.TextChoices):
    """How a version was adapted from its base (the parent version) to its task."""

    LINEAR_PROBE = "linear_probe", "Linear probe (base frozen, a new linear head)"
    FULL_FINE_TUNE = "full_fine_tune", "Full fine-tune (every weight trained)"
    PARTIAL_FINE_TUNE = "partial_fine_tune", "Partial fine-tune (some layers trained)"
    ADAPTER = "adapter", "Adapter or LoRA (small added weights trained)"
    PROMPT = "prompt", "Prompt or few-shot (no weight trained)"
