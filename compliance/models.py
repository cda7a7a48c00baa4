"""Compliance records: clinician feedback and its monitoring, alerts, trust assessments, serious incidents, dossiers and documents."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from compliance.choices import (
    Agreement,
    AlertKind,
    AlertSeverity,
    AlertStatus,
    ApprovalStatus,
    ConformityRoute,
    CorrectiveActionKind,
    DocumentKind,
    DossierStatus,
    ErrorType,
    IncidentStatus,
    Severity,
)
from compliance.incident_rules import INCIDENT_TYPES, is_overdue
from core.errors import ImmutableRecord
from core.models import NeverEdited
from registry.validators import validate_json_safe

_RATING = [MinValueValidator(1), MaxValueValidator(5)]
# The usability questionnaire (1-5 ratings) and, with minutes saved, the numbers summed per week.
RATING_QUESTIONS = {
    "explanation_helped": "The explanation helped me",
    "uncertainty_helped": "The uncertainty flag helped me",
    "fitted_workflow": "The output fitted my workflow",
}
SUMMED_FIELDS = (*RATING_QUESTIONS, "minutes_saved")


class Feedback(models.Model):
    """A clinician's report on one case read with a deployed version at their institution.

    The case is named by a pseudonymous reference only (never a name or a raw patient
    id). ``institution`` and ``version`` are copied from the deployment at submission, so
    lists are scoped and grouped without joins and a later change of the deployment never
    rewrites what was reported. ``submission_key`` makes a double-submitted form one row.
    """

    deployment = models.ForeignKey("registry.Deployment", on_delete=models.PROTECT, related_name="feedback")
    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="feedback")
    institution = models.ForeignKey("registry.Institution", on_delete=models.PROTECT, related_name="feedback")
    clinician = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="feedback")
    submission_key = models.UUIDField(help_text="One per filled-in form; a second submission of the same form is the same feedback.")
    case_reference = models.CharField(max_length=64, help_text="The pseudonymous case reference from the reading list, e.g. CASE-7f3a9c.")
    model_output = models.CharField(max_length=200, help_text="What the model said, e.g. 'nodule 0.82 (flagged)'.")
    agreement = models.CharField(max_length=10, choices=Agreement.choices)
    error_type = models.CharField(max_length=24, choices=ErrorType.choices, blank=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.NONE)
    minutes_saved = models.SmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(-240), MaxValueValidator(240)],
        help_text="Minutes the model saved on this case; negative when it cost time.",
    )
    explanation_helped = models.PositiveSmallIntegerField(null=True, blank=True, validators=_RATING, help_text="1 (not at all) to 5 (very much).")
    uncertainty_helped = models.PositiveSmallIntegerField(null=True, blank=True, validators=_RATING, help_text="1 (not at all) to 5 (very much).")
    fitted_workflow = models.PositiveSmallIntegerField(null=True, blank=True, validators=_RATING, help_text="1 (not at all) to 5 (very much).")
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["deployment", "created_at"], name="feedback_deployment_time"),
            models.Index(fields=["clinician", "created_at"], name="feedback_clinician_time"),
            models.Index(fields=["institution", "created_at"], name="feedback_institution_time"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["clinician", "submission_key"],
                name="%(app_label)s_%(class)s_one_per_form",
                violation_error_message="This form was submitted already.",
            ),
            models.CheckConstraint(
                condition=models.Q(agreement=Agreement.AGREE) | ~models.Q(error_type=""),
                name="%(app_label)s_%(class)s_disagreement_has_error_type",
                violation_error_message="Say what kind of error the model made.",
            ),
        ]

    def __str__(self) -> str:
        return f"Feedback {self.pk} on {self.case_reference} ({self.agreement})"


class DeploymentMonitor(models.Model):
    """The maintained feedback summary of one deployment and its sequential test (CUSUM) on
    the disagreement rate: updated in the transaction that stores each feedback, so the
    monitoring pages read one row instead of aggregating every feedback."""

    deployment = models.OneToOneField("registry.Deployment", on_delete=models.CASCADE, related_name="monitor")
    n_feedback = models.PositiveIntegerField(default=0)
    n_agree = models.PositiveIntegerField(default=0)
    n_partly = models.PositiveIntegerField(default=0)
    n_disagree = models.PositiveIntegerField(default=0)
    baseline_sum = models.FloatField(default=0.0, help_text="Disagreements (partly counting one half) among the first feedbacks.")
    baseline_rate = models.FloatField(null=True, blank=True, help_text="The disagreement rate at deployment (first feedbacks), the test's p0.")
    design = models.JSONField(default=dict, blank=True, help_text="The CUSUM's parameters: p0, p1, h.")
    state = models.JSONField(default=dict, blank=True, help_text="The CUSUM statistic and where it alarmed.")
    tested_n = models.PositiveIntegerField(default=0, help_text="Reports the test has seen since it last started.")
    tested_sum = models.FloatField(default=0.0, help_text="Their disagreements (partly counting one half).")
    last_feedback_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Monitor of {self.deployment}"


class DeploymentWeek(models.Model):
    """One week of a deployment's feedback, summed: kept up to date in the transaction that stores or
    edits each report, so the monitoring page reads a row per week whatever the volume."""

    deployment = models.ForeignKey("registry.Deployment", on_delete=models.CASCADE, related_name="feedback_weeks")
    week = models.DateField(help_text="The Monday the week starts on.")
    n = models.PositiveIntegerField(default=0)
    n_agree = models.PositiveIntegerField(default=0)
    n_partly = models.PositiveIntegerField(default=0)
    n_disagree = models.PositiveIntegerField(default=0)
    error_types = models.JSONField(default=dict, help_text="Reports per error type.")
    severities = models.JSONField(default=dict, help_text="Reports per clinical severity.")
    sums = models.JSONField(default=dict, help_text="Per rating and minutes saved: [answers, sum, sum of squares].")

    class Meta:
        ordering = ["deployment", "week"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "week"], name="%(app_label)s_%(class)s_one_row", violation_error_message="One summary per deployment and week."
            ),
        ]

    def __str__(self) -> str:
        return f"Week of {self.week} at {self.deployment}"


class Alert(models.Model):
    """Something a model's monitoring found that a person must look at: a performance drop,
    input or output drift, a prevalence shift. One list of alerts for every source; each
    carries its evidence and links to the runs behind it."""

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="alerts")
    deployment = models.ForeignKey("registry.Deployment", on_delete=models.PROTECT, related_name="alerts", null=True, blank=True)
    run = models.ForeignKey("validation.ValidationRun", on_delete=models.PROTECT, related_name="alerts", null=True, blank=True)
    baseline_run = models.ForeignKey("validation.ValidationRun", on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    kind = models.CharField(max_length=30, choices=AlertKind.choices)
    severity = models.CharField(max_length=10, choices=AlertSeverity.choices)
    subject = models.CharField(max_length=200, help_text="What moved: a label and metric, a feature.")
    message = models.TextField()
    evidence = models.JSONField(default=dict, validators=[validate_json_safe])
    status = models.CharField(max_length=12, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    note = models.TextField(blank=True, help_text="What was done about it.")
    handled_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    handled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "validation_alert"  # the table (and its index and constraint names) kept from validation
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "severity"], name="validation_alert_status")]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "kind", "subject"],
                condition=models.Q(run__isnull=False),
                name="validation_alert_once_per_run_finding",
                violation_error_message="A run raises each finding once.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_severity_display()}: {self.message[:80]}"


class ScoringPolicy(models.Model):
    """A version of the rules that turn evidence into the six FUTURE-AI scores. Never edited:
    a change is a new version, so every assessment keeps the policy it was computed under. One
    officer proposes a version; it becomes active once a second officer confirms it."""

    version = models.PositiveIntegerField(unique=True)
    name = models.CharField(max_length=120)
    definition = models.JSONField(
        validators=[validate_json_safe], help_text="Principles, criteria, rules, weights, thresholds (compliance.trust.policy)."
    )
    active = models.BooleanField(default=False, help_text="The policy new assessments use; one at a time.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", help_text="The officer who proposed it."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The second officer who made it the active policy; empty while it waits, and for the built-in policy.",
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "validation_scoringpolicy"  # the table (and its index and constraint names) kept from validation
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["active"],
                condition=models.Q(active=True),
                name="validation_scoringpolicy_one_active",
                violation_error_message="One scoring policy is active at a time.",
            ),
        ]

    def __str__(self) -> str:
        return f"Scoring policy {self.version}: {self.name}"


class TrustAssessment(models.Model):
    """The six trustworthiness scores of a version at one moment, each with its criteria, inputs
    and evidence links. Kept forever and never changed, so history and differences can be shown."""

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="trust_assessments")
    policy = models.ForeignKey(ScoringPolicy, on_delete=models.PROTECT, related_name="assessments")
    trigger = models.CharField(max_length=60, help_text="What asked for it: run_finished, feedback, datasheet_changed, revalidation_overdue, manual.")
    principles = models.JSONField(help_text="Per principle: score (or null), status, strength, summary and criteria.")
    evidence_digest = models.CharField(max_length=64, help_text="sha256 of the evidence it was computed from.")
    chart_svg = models.TextField(blank=True, help_text="The six-axis radar chart, rendered once.")
    computed_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "validation_trustassessment"  # the table (and its index and constraint names) kept from validation
        ordering = ["-computed_at", "-pk"]
        indexes = [models.Index(fields=["version", "computed_at"], name="trust_version_time")]

    def __str__(self) -> str:
        return f"Trust assessment {self.pk} of {self.version}"


class TrustException(models.Model):
    """A justified exception to the trust guard for one principle of one version: approval may go
    ahead although that principle lacks evidence or is under the policy's minimum. One officer of
    the provider proposes it (``granted_by``); it counts once a second officer confirms it."""

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="trust_exceptions")
    principle = models.CharField(max_length=20)
    justification = models.TextField(max_length=4000)
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", help_text="The officer who proposed it.")
    granted_at = models.DateTimeField(auto_now_add=True)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The second officer who confirmed it; until then the guard does not count it.",
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "validation_trustexception"  # the table (and its index and constraint names) kept from validation
        ordering = ["-granted_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "principle"],
                name="validation_trustexception_once",
                violation_error_message="This principle already has an exception for this version.",
            ),
        ]

    def __str__(self) -> str:
        return f"Exception for {self.principle} of {self.version}"


class Incident(models.Model):
    """A possible serious incident, escalated by an officer from a feedback or an alert, with the
    reporting route and deadline computed from the rules table (``compliance.incident_rules``)."""

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="incidents")
    deployment = models.ForeignKey("registry.Deployment", on_delete=models.PROTECT, related_name="incidents", null=True, blank=True)
    feedback = models.OneToOneField(Feedback, on_delete=models.PROTECT, related_name="incident", null=True, blank=True)
    alert = models.OneToOneField(Alert, on_delete=models.PROTECT, related_name="incident", null=True, blank=True)
    title = models.CharField(max_length=200)
    description = models.TextField(max_length=10000)
    incident_type = models.CharField(max_length=30, choices=list(INCIDENT_TYPES.items()))
    medical_device = models.BooleanField(help_text="Whether the system is a medical device under the MDR (from its MDR class at escalation).")
    aware_on = models.DateField(help_text="When the provider became aware of the incident.")
    route = models.CharField(max_length=20)
    legal_basis = models.CharField(max_length=60)
    deadline = models.DateField(help_text="The latest date the market surveillance authority must be told.")
    status = models.CharField(max_length=14, choices=IncidentStatus.choices, default=IncidentStatus.OPEN)
    reported_on = models.DateField(null=True, blank=True)
    authority_reference = models.CharField(max_length=120, blank=True)
    closing_note = models.TextField(blank=True, max_length=4000)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["deadline", "pk"]
        indexes = [models.Index(fields=["status", "deadline"], name="incident_status_deadline")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(feedback__isnull=True) | models.Q(alert__isnull=True),
                name="%(app_label)s_%(class)s_one_source",
                violation_error_message="An incident is escalated from a feedback or from an alert, not both.",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=IncidentStatus.REPORTED) | models.Q(reported_on__isnull=False),
                name="%(app_label)s_%(class)s_reported_has_date",
                violation_error_message="A reported incident records when it was reported.",
            ),
        ]

    def __str__(self) -> str:
        return f"Incident {self.pk}: {self.title}"

    @property
    def overdue(self) -> bool:
        """Not reported, not closed, and past its deadline."""
        return self.status != IncidentStatus.CLOSED and is_overdue(self.deadline, reported_on=self.reported_on, today=timezone.localdate())


class CorrectiveAction(models.Model):
    """A measure taken for an incident (suspending the deployment, a field safety notice, ...)."""

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="actions")
    kind = models.CharField(max_length=24, choices=CorrectiveActionKind.choices)
    description = models.TextField(max_length=4000)
    taken_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    taken_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["taken_at", "pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for incident {self.incident_id}"


class DossierQuerySet(models.QuerySet):
    def update(self, **kwargs):
        if self.filter(status=DossierStatus.SIGNED).exists():
            raise ImmutableRecord("A signed dossier cannot be changed; open a new revision.", code="dossier_signed")
        return super().update(**kwargs)

    def delete(self):
        if self.filter(status=DossierStatus.SIGNED).exists():
            raise ImmutableRecord("A signed dossier cannot be deleted.", code="dossier_signed")
        return super().delete()


class Dossier(models.Model):
    """One revision of a version's technical documentation (AI Act Annex IV, with Art. 10(2),
    13(3) and 14(4)): the fields officers write, and once submitted the frozen snapshot of
    those fields and of the evidence they were read with. A signed revision never changes;
    a change is a new revision that starts as a draft."""

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="dossiers")
    revision = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=DossierStatus.choices, default=DossierStatus.DRAFT)
    values = models.JSONField(default=dict, blank=True, help_text="The officer-written fields by key (compliance.dossier_fields).")
    edit_count = models.PositiveIntegerField(
        default=0, help_text="Saves so far; a save names the count it started from, so a concurrent edit is refused, not overwritten."
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    editors = models.JSONField(default=list, blank=True, help_text="Ids of the users who saved fields of this revision: none of them may sign it.")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    snapshot = models.JSONField(null=True, blank=True, help_text="Fields, evidence and completeness frozen at submission.")
    snapshot_sha256 = models.CharField(max_length=64, blank=True)
    review_note = models.TextField(blank=True, max_length=4000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DossierQuerySet.as_manager()

    class Meta:
        ordering = ["version", "-revision"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "revision"],
                name="%(app_label)s_%(class)s_one_per_revision",
                violation_error_message="This revision exists already.",
            ),
            models.UniqueConstraint(
                fields=["version"],
                condition=~models.Q(status=DossierStatus.SIGNED),
                name="%(app_label)s_%(class)s_one_open_revision",
                violation_error_message="This version has an open dossier revision already.",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=DossierStatus.SIGNED) | ~models.Q(snapshot_sha256=""),
                name="%(app_label)s_%(class)s_signed_has_snapshot",
                violation_error_message="A signed dossier carries its snapshot's hash.",
            ),
        ]

    def __str__(self) -> str:
        return f"Dossier of {self.version}, revision {self.revision}"

    def save(self, *args, **kwargs):
        if self.pk and type(self).objects.filter(pk=self.pk, status=DossierStatus.SIGNED).exists():
            raise ImmutableRecord("A signed dossier cannot be changed; open a new revision.", code="dossier_signed")
        super().save(*args, **kwargs)


class DossierSignatureQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise ImmutableRecord("A signature cannot be changed.", code="signature_immutable")

    def delete(self):
        raise ImmutableRecord("A signature cannot be deleted.", code="signature_immutable")


class DossierSignature(NeverEdited):
    """A second officer's electronic signature of a submitted dossier (21 CFR 11.50 style): the
    signer's printed name, when, what the signature means, for which institution, how the signer
    re-authenticated, the hash of the snapshot signed and the audit chain's head at that moment.
    Never edited, never deleted."""

    dossier = models.OneToOneField(Dossier, on_delete=models.PROTECT, related_name="signature")
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    signer_name = models.CharField(max_length=300, blank=True, help_text="The signer's full name as it was at signing.")
    institution = models.ForeignKey(
        "registry.Institution", on_delete=models.PROTECT, null=True, blank=True, related_name="+", help_text="The institution signed for."
    )
    meaning = models.CharField(max_length=200)
    authentication = models.CharField(max_length=60, blank=True, help_text="How the signer proved who they were at signing.")
    snapshot_sha256 = models.CharField(max_length=64)
    audit_seq = models.PositiveBigIntegerField(null=True, blank=True, help_text="The audit chain's newest event when the signature was made.")
    audit_hash = models.CharField(max_length=64, blank=True, help_text="That event's hash: the chain's head at signing.")
    signed_at = models.DateTimeField(auto_now_add=True)

    objects = DossierSignatureQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Signature of {self.dossier} by {self.signer_name or self.signer_id}"

    edit_refused = ("A signature cannot be changed.", "signature_immutable")

    def delete(self, *args, **kwargs):
        raise ImmutableRecord("A signature cannot be deleted.", code="signature_immutable")


class VersionApproval(models.Model):
    """The approval of a version under review, with four eyes: one compliance officer of the
    provider proposes it, a second one confirms it, and the confirmation moves the version to
    approved through the lifecycle guards. A declined proposal stays, with the note why."""

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="approvals")
    status = models.CharField(max_length=12, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    proposed_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", help_text="Who confirmed or declined it."
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, max_length=4000, help_text="Why it was declined.")

    class Meta:
        ordering = ["-proposed_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["version"],
                condition=models.Q(status=ApprovalStatus.PENDING),
                name="%(app_label)s_%(class)s_one_pending",
                violation_error_message="This version has a proposed approval waiting already.",
            ),
            models.CheckConstraint(
                condition=models.Q(status=ApprovalStatus.PENDING) | models.Q(decided_by__isnull=False),
                name="%(app_label)s_%(class)s_decided_has_officer",
                violation_error_message="A confirmed or declined approval names the officer who decided.",
            ),
        ]

    def __str__(self) -> str:
        return f"Approval of {self.version} proposed by {self.proposed_by_id} ({self.status})"


class DocumentQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise ImmutableRecord("A stored document is never edited; render a new revision instead.", code="document_immutable")

    def delete(self):
        if self.filter(retain_until__gt=timezone.localdate()).exists():
            raise ImmutableRecord(
                "Documents are kept for their retention period (AI Act Art. 18); this one cannot be deleted yet.", code="document_retained"
            )
        return super().delete()


class Document(NeverEdited):
    """A document rendered from a signed dossier revision's frozen snapshot (technical
    documentation, instructions for use, declaration of conformity draft, model card, change
    log, general-purpose model documentation). The file is stored content-addressed by its
    sha256, never edited, and kept for the retention period."""

    dossier = models.ForeignKey(Dossier, on_delete=models.PROTECT, related_name="documents")
    kind = models.CharField(max_length=30, choices=DocumentKind.choices)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=60)
    storage_name = models.CharField(max_length=400, help_text="documents/<sha256[:2]>/<sha256>.<ext> in the default storage.")
    pages = models.PositiveIntegerField(null=True, blank=True, help_text="Pages of a PDF; empty for text formats.")
    snapshot_sha256 = models.CharField(max_length=64, help_text="The hash of the frozen snapshot it was rendered from.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    retain_until = models.DateField(help_text="Deletion is refused before this date.")

    objects = DocumentQuerySet.as_manager()

    class Meta:
        ordering = ["dossier", "kind"]
        constraints = [
            models.UniqueConstraint(
                fields=["dossier", "kind"],
                name="%(app_label)s_%(class)s_one_per_kind",
                violation_error_message="A dossier revision has one document of each kind.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.dossier}"

    edit_refused = ("A stored document is never edited; render a new revision instead.", "document_immutable")

    def delete(self, *args, **kwargs):
        return type(self).objects.filter(pk=self.pk).delete()


class ChangePlan(NeverEdited):
    """A model's pre-determined change plan (Annex IV 2(f)): the rules that classify a version's
    changes against its parent as within the plan or a substantial modification (Art. 43(4)).

    One officer proposes a version; it is in force only once a second officer of the provider
    approves it (``ChangePlanApproval``). Never edited: a change is a new plan version. A signed
    dossier freezes the plan in force for its version, and that frozen plan judges the versions
    derived from it later (``compliance.change_rules.change_plan_in_force``). Rows without a
    foundation model are plans of the first release, which applied to every model; they are
    never in force."""

    foundation_model = models.ForeignKey("registry.FoundationModel", on_delete=models.PROTECT, null=True, blank=True, related_name="change_plans")
    version = models.PositiveIntegerField()
    rules = models.JSONField(help_text="Limits and which kinds of change stay within the plan (compliance.change_rules).")
    rationale = models.TextField(help_text="Why these rules: the change plan text of Annex IV 2(f) they implement.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", help_text="The officer who proposed it."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["foundation_model", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["foundation_model", "version"],
                name="%(app_label)s_%(class)s_one_per_version",
                nulls_distinct=False,
                violation_error_message="This change plan version exists already.",
            ),
        ]

    def __str__(self) -> str:
        return f"Change plan {self.version} of {self.foundation_model or 'every model'}"

    edit_refused = ("A change plan is never edited; add a new version.", "change_plan_immutable")


class ChangePlanApproval(NeverEdited):
    """A second officer's approval that puts a proposed change plan in force: never its proposer,
    always an officer of the model's provider. Never edited."""

    plan = models.OneToOneField(ChangePlan, on_delete=models.PROTECT, related_name="approval")
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    approved_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Approval of {self.plan} by {self.approved_by_id}"

    edit_refused = ("An approval is never edited.", "change_plan_approval_immutable")


class ConformityAssessment(NeverEdited):
    """The conformity assessment recorded for a version (AI Act Art. 43): how it was assessed, by
    which notified body, under which certificate, and when. A substantial modification (Art. 43(4))
    is approved only once one is recorded. Never edited: a correction is a new record."""

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="conformity_assessments")
    route = models.CharField(max_length=30, choices=ConformityRoute.choices)
    notified_body = models.CharField(
        max_length=200, blank=True, help_text="Its name and four-digit identification number; empty for internal control."
    )
    certificate_reference = models.CharField(max_length=120, blank=True, help_text="The notified body's certificate; empty for internal control.")
    assessed_on = models.DateField(help_text="When the assessment concluded.")
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version", "-assessed_on", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(route=ConformityRoute.INTERNAL_CONTROL) | (~models.Q(notified_body="") & ~models.Q(certificate_reference="")),
                name="%(app_label)s_%(class)s_notified_body_named",
                violation_error_message="An assessment by a notified body names the body and its certificate.",
            ),
        ]

    def __str__(self) -> str:
        return f"Conformity assessment of {self.version} ({self.get_route_display()}, {self.assessed_on})"

    edit_refused = ("A recorded conformity assessment is never edited; record a new one.", "conformity_assessment_immutable")


class ReleaseEvidence(NeverEdited):
    """The evidence a provider declares for a version: the validation runs on its intended population
    and the operating point they measured, pinned by a compliance officer of the provider
    (``compliance.release_evidence``). The documents quote these figures as the declared performance;
    no other run (a post-market revalidation, a drift check) ever stands in for them. Never edited:
    pinning again is a new record, and the newest is in force; a submitted dossier freezes it."""

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="release_evidence")
    runs = models.ManyToManyField("validation.ValidationRun", related_name="+", help_text="Succeeded runs on the version's test data.")
    population = models.TextField(max_length=2000, help_text="The intended population these runs represent, in words.")
    operating_points = models.JSONField(
        validators=[validate_json_safe], help_text="Per label, the threshold the runs measured, which is the one the version ships with."
    )
    pinned_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    pinned_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version", "-pinned_at", "-pk"]
        verbose_name_plural = "release evidence"

    def __str__(self) -> str:
        return f"Release evidence of {self.version} pinned by {self.pinned_by_id}"

    edit_refused = ("Pinned release evidence is never edited; pin it again.", "release_evidence_immutable")
