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
    CeMarking,
    ConformityRoute,
    CorrectiveActionKind,
    DocumentKind,
    DossierStatus,
    ErrorType,
    HarmonisedStatus,
    IncidentDecisionKind,
    IncidentReportKind,
    IncidentStatus,
    IncidentTriage,
    IntakeChannel,
    MdrProcedure,
    RiskControlKind,
    RiskFileStatus,
    Severity,
    TrustTrigger,
    VerificationKind,
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
    suspected_serious_incident = models.BooleanField(
        default=False,
        db_default=False,  # rows written by COPY (the feedback bench, imports) need not name it
        help_text="The clinician suspects a serious incident: it opens an incident for triage (compliance.vigilance).",
    )
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
    feedback = models.ForeignKey(Feedback, on_delete=models.PROTECT, related_name="alerts", null=True, blank=True)
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

    @property
    def trigger_label(self) -> str:
        """The trigger in words; the field has no ``choices`` (a free code), so an unknown one shows as stored."""
        return TrustTrigger(self.trigger).label if self.trigger in TrustTrigger.values else self.trigger


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
    """A possible serious incident, from a clinician's flag, a feedback or alert escalated by an officer,
    or an officer's intake of a call or e-mail; triaged to a route whose deadline comes from the rules
    table (``compliance.incident_rules``), or to a trend or post-market signal. Its reports to the
    authority are separate records (``IncidentReport``); ``reported_on`` is the first one's date."""

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="incidents")
    deployment = models.ForeignKey("registry.Deployment", on_delete=models.PROTECT, related_name="incidents", null=True, blank=True)
    feedback = models.OneToOneField(Feedback, on_delete=models.PROTECT, related_name="incident", null=True, blank=True)
    alert = models.OneToOneField(Alert, on_delete=models.PROTECT, related_name="incident", null=True, blank=True)
    title = models.CharField(max_length=200)
    description = models.TextField(max_length=10000)
    intake = models.OneToOneField("IncidentIntake", on_delete=models.PROTECT, related_name="incident", null=True, blank=True)
    incident_type = models.CharField(max_length=30, choices=list(INCIDENT_TYPES.items()), blank=True)
    triage = models.CharField(max_length=10, choices=IncidentTriage.choices, default=IncidentTriage.PENDING)
    triage_reason = models.TextField(blank=True, max_length=4000)
    triaged_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    triaged_at = models.DateTimeField(null=True, blank=True)
    medical_device = models.BooleanField(help_text="Whether the system is a medical device under the MDR (from its MDR class at escalation).")
    aware_on = models.DateField(help_text="When the provider became aware: the earliest linked record, changed only with a reason.")
    route = models.CharField(max_length=20, blank=True)
    legal_basis = models.CharField(max_length=60, blank=True)
    deadline = models.DateField(
        null=True, blank=True, help_text="The latest date the authority must be told; none while untriaged or where no report is due."
    )
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


class IncidentIntake(NeverEdited):
    """A possible incident as it reached an officer outside RadTrust: a call, an e-mail, a letter.
    Kept as it was received; the incident it opens is triaged separately."""

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="incident_intakes")
    deployment = models.ForeignKey("registry.Deployment", on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    channel = models.CharField(max_length=10, choices=IntakeChannel.choices)
    reporter = models.CharField(max_length=200, help_text="Who reported it: name and role, or the institution's vigilance contact.")
    description = models.TextField(max_length=10000)
    received_at = models.DateTimeField(help_text="When the call or message reached the provider: the earliest the provider was aware.")
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)

    edit_refused = ("An intake record is kept as it was received.", "intake_immutable")

    def __str__(self) -> str:
        return f"{self.get_channel_display()} from {self.reporter}"


class AwarenessCorrection(NeverEdited):
    """A change of an incident's date of awareness, with the officer's reason: the deadline counts from it."""

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="awareness_corrections")
    previous = models.DateField()
    aware_on = models.DateField()
    reason = models.TextField(max_length=4000)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["changed_at", "pk"]

    def __str__(self) -> str:
        return f"Awareness of incident {self.incident_id}: {self.previous} -> {self.aware_on}"


class IncidentReport(NeverEdited):
    """One report to the authority: initial (may be incomplete), follow-up or final, each with its own
    date, authority and reference; a correction is a further report, never an edit."""

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="reports")
    kind = models.CharField(max_length=10, choices=IncidentReportKind.choices)
    submitted_on = models.DateField(help_text="When it was sent to the authority.")
    authority = models.CharField(max_length=200, help_text="The authority it went to, e.g. BfArM (competent authority, MDR).")
    reference = models.CharField(max_length=120, help_text="The authority's reference, or the provider's if none was given yet.")
    summary = models.TextField(max_length=10000, help_text="What the report said: findings so far, root cause, actions.")
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)

    edit_refused = ("A report to the authority is never edited; send a follow-up report.", "report_immutable")

    class Meta:
        ordering = ["submitted_on", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["incident"],
                condition=models.Q(kind=IncidentReportKind.INITIAL),
                name="%(app_label)s_%(class)s_one_initial",
                violation_error_message="An incident has one initial report; later ones are follow-ups.",
            ),
            models.UniqueConstraint(
                fields=["incident"],
                condition=models.Q(kind=IncidentReportKind.FINAL),
                name="%(app_label)s_%(class)s_one_final",
                violation_error_message="An incident has one final report.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of incident {self.incident_id} on {self.submitted_on}"


class IncidentDecision(models.Model):
    """A decision about an incident that takes two compliance officers: one proposes it with a reason,
    a different one confirms it (closing a serious incident unreported, lifting the investigation lock)."""

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="decisions")
    kind = models.CharField(max_length=20, choices=IncidentDecisionKind.choices)
    reason = models.TextField(max_length=4000)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    proposed_at = models.DateTimeField(auto_now_add=True)
    confirmed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["proposed_at", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(confirmed_by__isnull=True) | ~models.Q(confirmed_by=models.F("proposed_by")),
                name="%(app_label)s_%(class)s_four_eyes",
                violation_error_message="A second officer confirms, never the one who proposed it.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} (incident {self.incident_id})"


class FieldSafetyNotice(NeverEdited):
    """The notice sent to users for a field safety corrective action (MDR Art. 2(69), 89(8)): its text,
    who received it and when."""

    action = models.ForeignKey(CorrectiveAction, on_delete=models.PROTECT, related_name="notices")
    text = models.TextField(max_length=10000)
    recipients = models.TextField(max_length=4000, help_text="Who it went to: institutions, roles, distribution list.")
    issued_on = models.DateField()
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)

    edit_refused = ("A field safety notice is kept as it was sent; issue a new one to correct it.", "notice_immutable")

    def __str__(self) -> str:
        return f"Field safety notice of {self.issued_on} (action {self.action_id})"


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
        from compliance.market import retention_of  # it reads this module's records (a real cycle)

        today = timezone.localdate()
        versions = {d.dossier.version for d in self.select_related("dossier__version__foundation_model")}
        if self.filter(retain_until__gt=today).exists() or any(retention_of(v).kept_on(today) for v in versions):
            raise ImmutableRecord(
                "Documents are kept for ten years after placing on the market and after withdrawal (AI Act Art. 18, MDR Art. 10(8)); "
                "this one cannot be deleted yet.",
                code="document_retained",
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
    mdr_procedure = models.CharField(
        max_length=20,
        choices=MdrProcedure.choices,
        blank=True,
        default=MdrProcedure.NONE,
        help_text="The MDR procedure (Annex IX, X or XI; II and III for class I) for a medical device; empty otherwise.",
    )
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


class MarketPlacement(NeverEdited):
    """A version placed on the EU market (AI Act Art. 3(9), MDR Art. 2(28)): the conformity
    assessment it rests on, the signed EU declaration of conformity (Annex V; MDR Annex IV), the
    CE-marking decision and the date. Recorded by a second compliance officer of the provider (not
    the one who recorded the assessment); the retention of its documentation counts from here
    (``compliance.market``). Never edited: a version is placed once, and later withdrawn."""

    version = models.OneToOneField("registry.ModelVersion", on_delete=models.PROTECT, related_name="market_placement")
    conformity_assessment = models.ForeignKey(ConformityAssessment, on_delete=models.PROTECT, related_name="+")
    declaration = models.ForeignKey(
        "compliance.Document", on_delete=models.PROTECT, related_name="+", help_text="The signed EU declaration of conformity."
    )
    ce_marking = models.CharField(max_length=20, choices=CeMarking.choices)
    placed_on = models.DateField(help_text="The day the version was first made available on the EU market.")
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Placing on the market of {self.version} ({self.placed_on})"

    edit_refused = ("A placing on the market is never edited; withdraw the version instead.", "market_placement_immutable")


class MarketWithdrawal(NeverEdited):
    """The withdrawal of a version from the market: it is never newly deployed again, and its
    documentation is kept ten years from this date (MDR Art. 10(8)). Never edited."""

    placement = models.OneToOneField(MarketPlacement, on_delete=models.PROTECT, related_name="withdrawal")
    withdrawn_on = models.DateField()
    reason = models.TextField(max_length=4000)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Withdrawal of {self.placement.version} ({self.withdrawn_on})"

    edit_refused = ("A withdrawal is never edited.", "market_withdrawal_immutable")


class ClinicalInvestigation(NeverEdited):
    """A version used at one institution within a clinical investigation (MDR Art. 62-82) before it
    is placed on the market: the one context in which it may be deployed without a placing on the
    market. Recorded by a compliance officer of the provider (the sponsor). Never edited."""

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="clinical_investigations")
    institution = models.ForeignKey("registry.Institution", on_delete=models.PROTECT, related_name="+")
    reference = models.CharField(max_length=120, help_text="The investigation's identifier (CIV-ID) or the ethics committee's approval.")
    reason = models.TextField(max_length=4000, help_text="Why the version is used at this site before it is placed on the market.")
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["version", "institution"],
                name="%(app_label)s_%(class)s_one_per_site",
                violation_error_message="This version is recorded in a clinical investigation at this institution already.",
            ),
        ]

    def __str__(self) -> str:
        return f"Clinical investigation {self.reference} of {self.version}"

    edit_refused = ("A clinical investigation record is never edited.", "clinical_investigation_immutable")


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


# --- Operational (usage) logs of deployed systems (AI Act Art. 12, 19, 26(6)) -------------------

USAGE_RETENTION_MIN_DAYS = 183  # six months, rounded up (Art. 19(1), 26(6))


class UsageLogging(models.Model):
    """How a deployment's installation logs its use: the service account whose tokens write that
    deployment's logs and no other's, and how long the logs keep their personal fields (at least
    six months, Art. 19(1) and 26(6); then ``compliance.usage_logs.usage_retention_purge``).
    ``purged_before`` is how far the purge has gone, so each run reads only the newly expired rows."""

    deployment = models.OneToOneField("registry.Deployment", on_delete=models.PROTECT, related_name="usage_logging")
    account = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="usage_logging", null=True, blank=True, help_text="The deployment logger."
    )
    retention_days = models.PositiveIntegerField(
        default=USAGE_RETENTION_MIN_DAYS, help_text="Days the case keys and notes of usage events are kept (at least 183: six months)."
    )
    purged_before = models.DateTimeField(null=True, blank=True, help_text="Events before this time have had their personal fields deleted.")
    # Kept by each batch's transaction, so that pages and monitoring read one row whatever the history.
    last_received_at = models.DateTimeField(null=True, blank=True, help_text="When the last batch was received.")
    last_event_at = models.DateTimeField(null=True, blank=True, help_text="The latest time of any event received.")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(retention_days__gte=USAGE_RETENTION_MIN_DAYS),
                name="%(app_label)s_%(class)s_six_months",
                violation_error_message="Usage logs are kept at least six months (183 days), AI Act Art. 19(1) and 26(6).",
            ),
        ]

    def __str__(self) -> str:
        return f"Usage logging of {self.deployment_id}"


class UsageBatch(NeverEdited):
    """One batch of usage events as an installation delivered it: its receipt. The installation's
    ``batch_id`` makes delivery idempotent (a redelivery returns this receipt and writes nothing),
    and ``digest`` tells a redelivery from a different batch sent under a reused id."""

    deployment = models.ForeignKey("registry.Deployment", on_delete=models.PROTECT, related_name="usage_batches")
    batch_id = models.CharField(max_length=64)
    digest = models.CharField(
        max_length=64, help_text="sha256 of the batch's events as checked and stored (compliance.usage_checks.CheckedBatch.digest)."
    )
    received_at = models.DateTimeField()
    events = models.PositiveIntegerField()
    first_event_at = models.DateTimeField()
    last_event_at = models.DateTimeField()

    class Meta:
        ordering = ["deployment", "-received_at"]
        verbose_name_plural = "usage batches"
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "batch_id"], name="%(app_label)s_%(class)s_once", violation_error_message="This batch was received already."
            ),
        ]

    def __str__(self) -> str:
        return f"Usage batch {self.batch_id} of deployment {self.deployment_id}"

    edit_refused = ("A received usage batch is never edited; send a new batch.", "usage_batch_immutable")


class UsageEvent(NeverEdited):
    """One inference of a deployed system (Art. 12(2)-(3)): when, which version, what it showed the
    clinician (outputs and the uncertainty displayed), whether the clinician overrode it, and what the
    installation noticed about the input. ``case_key`` is the installation's pseudonym of the case and
    ``note`` the clinician's free text: the personal fields, emptied after the deployment's retention."""

    # No database foreign keys: checking three per row halved COPY's speed, and the one writer
    # (``usage_batch_ingest``) takes the deployment from the token, the batch whose receipt it
    # writes in the same transaction and the version it has checked. Deleting a referenced row is still refused (PROTECT, in Django).
    deployment = models.ForeignKey("registry.Deployment", on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False)
    batch = models.ForeignKey(UsageBatch, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False)
    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False)
    occurred_at = models.DateTimeField()
    case_key = models.CharField(max_length=64, blank=True)
    outputs = models.JSONField(help_text="Label to score, as displayed.")
    uncertainty = models.FloatField(null=True, blank=True, help_text="The uncertainty displayed with the output.")
    overridden = models.BooleanField(help_text="The clinician overrode the output.")
    quality_flags = models.JSONField(default=list, help_text="InputQuality codes.")
    out_of_envelope = models.BooleanField(default=False, help_text="A flag places the input outside the intended-use envelope.")
    note = models.TextField(blank=True, max_length=2000)

    class Meta:
        ordering = ["deployment", "occurred_at", "pk"]
        indexes = [models.Index(fields=["deployment", "occurred_at"], name="compliance_usage_dep_time_idx")]

    def __str__(self) -> str:
        return f"Usage event {self.pk} of deployment {self.deployment_id}"

    edit_refused = ("A usage event is never edited; only the retention purge empties its personal fields.", "usage_event_immutable")


class UsageWeek(models.Model):
    """One week of a deployment's usage, summed in the transaction that stores each batch, so that
    monitoring reads a row per week whatever the volume (as ``DeploymentWeek`` does for feedback)."""

    deployment = models.ForeignKey("registry.Deployment", on_delete=models.CASCADE, related_name="usage_weeks")
    week = models.DateField(help_text="The Monday the week starts on (UTC).")
    n = models.PositiveIntegerField(default=0)
    n_overridden = models.PositiveIntegerField(default=0)
    n_out_of_envelope = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["deployment", "week"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "week"],
                name="%(app_label)s_%(class)s_one_row",
                violation_error_message="One usage summary per deployment and week.",
            ),
        ]

    def __str__(self) -> str:
        return f"Usage in the week of {self.week} at {self.deployment_id}"


class RiskFile(models.Model):
    """A version's risk management file (AI Act Art. 9, ISO 14971:2019): its hazards with their
    estimates, controls and residual risks on the file's own matrix (``compliance.risk_matrix``),
    and the overall benefit-risk conclusion. A child version's file starts as a copy of its
    parent's (``carried_from``); approval needs every hazard controlled and verified, or its
    residual risk accepted by two officers (``compliance.risk_file``)."""

    version = models.OneToOneField("registry.ModelVersion", on_delete=models.PROTECT, related_name="risk_file")
    carried_from = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="carried_to", help_text="The parent version's file it started from."
    )
    matrix = models.JSONField(validators=[validate_json_safe], help_text="Probability and severity levels and the region of each cell.")
    benefit_risk = models.TextField(blank=True, max_length=4000, help_text="The overall benefit-risk conclusion (ISO 14971:2019 8; Art. 9(5)).")
    status = models.CharField(max_length=10, choices=RiskFileStatus.choices, default=RiskFileStatus.DRAFT)
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    approved_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status=RiskFileStatus.APPROVED) | models.Q(approved_by__isnull=False),
                name="%(app_label)s_%(class)s_approved_has_officer",
                violation_error_message="An approved risk file names the officer who approved it.",
            ),
        ]

    def __str__(self) -> str:
        return f"Risk file of {self.version}"


class Hazard(models.Model):
    """One line of the risk file: a hazard, the hazardous situation it leads to and the harm, with
    the estimate before and after its controls. A linked post-market signal re-opens the estimate
    (``reopened_by``) until an officer estimates it again (Art. 9(2)(c))."""

    risk_file = models.ForeignKey(RiskFile, on_delete=models.CASCADE, related_name="hazards")
    number = models.PositiveIntegerField(help_text="H1, H2, ... within the file; kept when carried to a child version.")
    carried_from = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    hazard = models.TextField(max_length=1000, help_text="The potential source of harm, e.g. a pneumothorax the model does not flag.")
    situation = models.TextField(max_length=1000, help_text="The hazardous situation, e.g. an unflagged study read last on a long worklist.")
    harm = models.TextField(max_length=1000, help_text="The harm, e.g. treatment of a tension pneumothorax delayed by hours.")
    probability = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    severity = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    residual_probability = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    residual_severity = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    rationale = models.TextField(blank=True, max_length=4000, help_text="How the estimates were made and on which data.")
    reopened_by = models.ForeignKey(
        "HazardSignal", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="The signal that re-opened the estimate."
    )
    acceptance_reason = models.TextField(blank=True, max_length=4000, help_text="Why the residual risk is accepted (ISO 14971:2019 7.4).")
    acceptance_proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    acceptance_confirmed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    accepted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["risk_file", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["risk_file", "number"], name="%(app_label)s_%(class)s_one_number", violation_error_message="This hazard number is taken."
            ),
        ]

    def __str__(self) -> str:
        return f"H{self.number} of {self.risk_file}"


class RiskControl(models.Model):
    """A risk control measure of a hazard (ISO 14971:2019 7.1) and the RadTrust evidence that
    verifies it (7.2): a validation run, an analysis of a run, a dossier field, or a training
    record or other document named by reference."""

    hazard = models.ForeignKey(Hazard, on_delete=models.CASCADE, related_name="controls")
    kind = models.CharField(max_length=30, choices=RiskControlKind.choices)
    description = models.TextField(max_length=2000)
    verification_kind = models.CharField(max_length=20, choices=VerificationKind.choices, blank=True)
    verification_run = models.ForeignKey("validation.ValidationRun", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    verification_section = models.CharField(max_length=40, blank=True, help_text="The analysis of the run, e.g. subgroups or robustness.")
    verification_field = models.CharField(max_length=60, blank=True, help_text="The dossier field's key.")
    verification_reference = models.CharField(max_length=300, blank=True, help_text="A training record or document: its number and title.")
    verified_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["hazard", "pk"]

    def __str__(self) -> str:
        return f"Control {self.pk} of {self.hazard}"


class HazardSignal(NeverEdited):
    """A post-market signal (an alert or an incident) linked to a hazard by an officer: it re-opens
    the hazard's estimate (AI Act Art. 9(2)(c)). Never edited."""

    hazard = models.ForeignKey(Hazard, on_delete=models.CASCADE, related_name="signals")
    alert = models.ForeignKey(Alert, on_delete=models.PROTECT, null=True, blank=True, related_name="hazard_links")
    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, null=True, blank=True, related_name="hazard_links")
    note = models.TextField(max_length=2000, help_text="What the signal shows about this hazard.")
    linked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    linked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["hazard", "-linked_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(alert__isnull=True, incident__isnull=False) | models.Q(alert__isnull=False, incident__isnull=True),
                name="%(app_label)s_%(class)s_one_signal",
                violation_error_message="Link either an alert or an incident.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.signal_label} linked to {self.hazard}"

    @property
    def signal_label(self) -> str:
        return f"alert {self.alert_id}" if self.alert_id else f"incident {self.incident_id}"

    edit_refused = ("A linked signal is never edited; link it again with a new note.", "hazard_signal_immutable")


class QmsStandard(models.Model):
    """A standard the provider's quality management system applies (AI Act Art. 17(1)(e), Annex IV 7),
    with its edition and harmonised status, both data an officer keeps up to date."""

    institution = models.ForeignKey("registry.Institution", on_delete=models.PROTECT, related_name="qms_standards")
    reference = models.CharField(max_length=60, help_text="e.g. IEC 62304")
    title = models.CharField(max_length=300)
    edition = models.CharField(max_length=60, help_text="e.g. 2006+A1:2015")
    harmonised_status = models.CharField(max_length=20, choices=HarmonisedStatus.choices)
    harmonised_reference = models.CharField(
        max_length=200, blank=True, help_text="Where the reference was published, e.g. the implementing decision."
    )
    scope = models.TextField(blank=True, max_length=2000, help_text="What it is applied to, in full or in part.")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["institution", "reference"]
        constraints = [
            models.UniqueConstraint(
                fields=["institution", "reference"],
                name="%(app_label)s_%(class)s_one_per_reference",
                violation_error_message="This standard is listed already.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference}:{self.edition}"


class QmsProcedure(models.Model):
    """A documented procedure of the provider's quality management system, its owner and review dates,
    and the points of AI Act Art. 17(1) it covers (``compliance.qms.ART_17``)."""

    institution = models.ForeignKey("registry.Institution", on_delete=models.PROTECT, related_name="qms_procedures")
    reference = models.CharField(max_length=40, help_text="The procedure's document number, e.g. SOP-07.")
    title = models.CharField(max_length=300)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    articles = models.JSONField(default=list, validators=[validate_json_safe], help_text='The letters of Art. 17(1) it covers, e.g. ["g", "h"].')
    reviewed_on = models.DateField(null=True, blank=True)
    next_review = models.DateField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["institution", "reference"]
        constraints = [
            models.UniqueConstraint(
                fields=["institution", "reference"],
                name="%(app_label)s_%(class)s_one_per_reference",
                violation_error_message="This procedure is listed already.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.title}"

    @property
    def overdue(self) -> bool:
        return self.next_review < timezone.localdate()
