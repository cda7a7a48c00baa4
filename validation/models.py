"""Validation runs: a model version evaluated on a dataset by a worker, and the evidence it produced."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from core.errors import Conflict
from core.models import NeverEdited
from registry.validators import validate_json_safe
from validation.choices import (
    FINISHED,
    FailureReason,
    FederatedJobStatus,
    MlflowState,
    OutputsSource,
    ReportReference,
    RunFileKind,
    RunStage,
    RunStatus,
    StudyStatus,
)


class ValidationRun(models.Model):
    """One evaluation of a version on a dataset under a suite config (DESIGN.md §3).

    A worker claims the run (``attempt`` goes up by one, ``lease_until`` is set)
    and renews the lease with heartbeats while it works; only the holder of the
    current attempt may write results, so a redelivered task or a second worker
    never writes a second result. ``results`` hold aggregates only: no pixel
    data, no patient identifiers.
    """

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="validation_runs")
    dataset = models.ForeignKey("registry.Dataset", on_delete=models.PROTECT, related_name="validation_runs")
    manifest = models.CharField(max_length=300, default="manifest.csv", help_text="The manifest file, relative to the dataset's location.")
    config = models.JSONField(
        default=dict, blank=True, validators=[validate_json_safe], help_text="Suite config: attributes, intersections, resamples, seed, ..."
    )
    queue = models.CharField(max_length=60, default="gpu", help_text="Celery queue: gpu, or site.<code> for a site's own workers.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="validation_runs",
        null=True,
        blank=True,
        help_text="Empty for a scheduled revalidation, which the dispatcher queues.",
    )
    deployment = models.ForeignKey(
        "registry.Deployment",
        on_delete=models.PROTECT,
        related_name="revalidation_runs",
        null=True,
        blank=True,
        help_text="The deployment this run revalidates (scheduled revalidation).",
    )
    due_on = models.DateField(null=True, blank=True, help_text="The revalidation due date this run answers.")
    baseline = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        related_name="compared_runs",
        null=True,
        blank=True,
        help_text="The run this one's drift and degradation are measured against (the version's baseline when it was queued).",
    )
    is_baseline = models.BooleanField(default=False, help_text="The version's baseline run: later runs are compared with it.")
    comparator = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        related_name="comparing_runs",
        null=True,
        blank=True,
        help_text="Another version's run on the same dataset whose embeddings this run's data-efficiency curves are compared with.",
    )

    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED)
    stage = models.CharField(max_length=12, choices=RunStage.choices, default=RunStage.QUEUED)
    progress = models.FloatField(default=0.0, help_text="Share of the current run done, 0 to 1.")
    cancel_requested = models.BooleanField(default=False)

    attempt = models.PositiveIntegerField(default=0, help_text="How many times a worker has claimed this run.")
    max_attempts = models.PositiveIntegerField(default=3)
    worker = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the run was last sent to a worker queue; the sweeper re-sends a queued run once per unclaimed period from then.",
    )

    device = models.JSONField(default=dict, blank=True, help_text="Execution provider(s), device kind and name.")
    artifact_sha256 = models.CharField(max_length=64, blank=True, help_text="The artifact hash verified before loading.")
    manifest_sha256 = models.CharField(max_length=64, blank=True, help_text="The manifest hash read by the run.")
    outputs_source = models.CharField(
        max_length=10,
        choices=OutputsSource.choices,
        default=OutputsSource.RADTRUST,
        help_text="Whether RadTrust ran the model or the outputs were produced elsewhere and uploaded.",
    )
    predictions_sha256 = models.CharField(max_length=64, blank=True, help_text="The uploaded predictions file's hash (uploaded outputs only).")
    predictions_name = models.CharField(max_length=300, blank=True, help_text="The uploaded predictions file's name (uploaded outputs only).")
    error_reason = models.CharField(
        max_length=40,
        blank=True,
        choices=FailureReason.choices,
        help_text="Why the run failed or was cancelled, a stable code (validation.choices.FailureReason); blank otherwise.",
    )
    error = models.TextField(blank=True)
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per stage.")
    summary = models.JSONField(default=dict, blank=True, help_text="Headline figures: overall metrics with CIs, largest gaps.")
    results = models.JSONField(null=True, blank=True, help_text="The full report: overall, subgroup and gap results.")

    mlflow_state = models.CharField(max_length=10, choices=MlflowState.choices, default=MlflowState.NOT_YET)
    mlflow_run_id = models.CharField(max_length=64, blank=True)
    mlflow_error = models.TextField(blank=True)
    mlflow_sent_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the MLflow copy was last sent or tried; the sweeper re-sends a copy left pending or failed from then.",
    )
    mlflow_lease_until = models.DateTimeField(null=True, blank=True, help_text="A worker holds the MLflow copy until then.")

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "lease_until"], name="validation_run_status_lease")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=1),
                name="%(app_label)s_%(class)s_progress_range",
                violation_error_message="Progress is a share between 0 and 1.",
            ),
            models.UniqueConstraint(
                fields=["deployment", "due_on"],
                condition=models.Q(deployment__isnull=False),
                name="%(app_label)s_%(class)s_one_revalidation_per_due_date",
                violation_error_message="This deployment already has a revalidation run for that due date.",
            ),
            models.CheckConstraint(
                condition=models.Q(deployment__isnull=True) | models.Q(due_on__isnull=False),
                name="%(app_label)s_%(class)s_revalidation_has_due_date",
                violation_error_message="A revalidation run names the due date it answers.",
            ),
            models.UniqueConstraint(
                fields=["version"],
                condition=models.Q(is_baseline=True),
                name="%(app_label)s_%(class)s_one_baseline_per_version",
                violation_error_message="A version has one baseline run.",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=RunStatus.SUCCEEDED) | models.Q(results__isnull=False),
                name="%(app_label)s_%(class)s_succeeded_has_results",
                violation_error_message="A succeeded run carries its results.",
            ),
        ]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.version} on {self.dataset}"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class RunShard(models.Model):
    """A share of a large run's images, whole patients only, scored by one worker at a time
    (``validation.sharding``). It has its own lease and attempts, like a run, so a worker that
    dies costs its shard alone; the scores file is named here only once it is complete, in the
    transaction that closes the shard, and the run merges the files of all its shards."""

    run = models.ForeignKey(ValidationRun, on_delete=models.CASCADE, related_name="shards")
    index = models.PositiveIntegerField(help_text="The shard's place in the run's plan, from 0.")
    n_images = models.PositiveIntegerField(help_text="Manifest rows in the shard.")
    plan_images = models.PositiveIntegerField(
        help_text="The plan's images per shard (RADTRUST_SHARD_IMAGES when planned): every worker cuts the same shards."
    )
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED)
    attempt = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    worker = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="When the shard's task was last sent.")
    scores_name = models.CharField(max_length=300, blank=True, help_text="The stored scores file (storage name) once scored.")
    scores_sha256 = models.CharField(max_length=64, blank=True)
    error_reason = models.CharField(max_length=40, blank=True, help_text="A FailureReason code, carried to the run if the shard fails it.")
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "index"]
        indexes = [models.Index(fields=["status", "lease_until"], name="validation_shard_status_lease")]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "index"], name="%(app_label)s_%(class)s_one_per_index", violation_error_message="A run has one shard per index."
            ),
            models.CheckConstraint(
                condition=~models.Q(status=RunStatus.SUCCEEDED) | ~models.Q(scores_name=""),
                name="%(app_label)s_%(class)s_succeeded_has_scores",
                violation_error_message="A scored shard names its scores file.",
            ),
        ]

    def __str__(self) -> str:
        return f"Shard {self.index} of run {self.run_id}"


class ReportRunUpload(NeverEdited):
    """The files of a report-generation run as the request accepted them: the generated reports
    (their hash and name are the run's ``predictions_sha256`` and ``predictions_name``) and, when
    given, the reference reports. Stored before the run is queued, so the worker reads exactly what
    was checked, and checks each file against its sha256 before reading it
    (``validation.uploaded_reports``)."""

    run = models.OneToOneField(ValidationRun, on_delete=models.CASCADE, related_name="report_upload")
    reports_storage_name = models.CharField(max_length=400, help_text="Where the default storage keeps the generated reports.")
    reference = models.CharField(max_length=8, choices=ReportReference.choices, default=ReportReference.LABELS)
    reference_storage_name = models.CharField(max_length=400, blank=True, help_text="Where the default storage keeps the reference reports.")
    reference_sha256 = models.CharField(max_length=64, blank=True, help_text="The reference reports file's hash (reference reports only).")
    reference_name = models.CharField(max_length=300, blank=True, help_text="The reference reports file's name as uploaded.")
    uncertain_as_present = models.BooleanField(default=False, help_text="A hedged finding ('possible effusion') counts as asserted.")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(reference=ReportReference.LABELS, reference_sha256="", reference_storage_name="")
                | (models.Q(reference=ReportReference.REPORTS) & ~models.Q(reference_sha256="") & ~models.Q(reference_storage_name="")),
                name="%(app_label)s_%(class)s_reference_file_iff_reports",
                violation_error_message="Reference reports name their stored file and its hash; reference labels have none.",
            ),
        ]

    def __str__(self) -> str:
        return f"Uploaded reports of run {self.run_id}"


class SweepLock(models.Model):
    """One row per periodic sweep, held while a worker runs it, so that two workers never sweep
    at once. Taken with one conditional UPDATE, like a run's lease, and held for a limited time,
    so a worker that dies while sweeping lets the next sweep through (``validation.services.sweep_lock``)."""

    name = models.CharField(max_length=60, primary_key=True)
    held_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Sweep lock {self.name}"


class RunFile(models.Model):
    """A file a run produced beside its report: the per-case table later runs are compared
    with, a chart, a saliency overlay. Kept in the default storage (under MEDIA_ROOT), served
    only through views that check the run's access rules; no pixel data in the database."""

    # Each of these holds one row per case (scores, labels, a patient image's overlay): it stays with
    # the dataset's steward unless the steward shares it (``core.access.scope``). Charts are aggregates.
    PER_CASE_KINDS = (RunFileKind.CASE_TABLE, RunFileKind.SALIENCY)

    run = models.ForeignKey(ValidationRun, on_delete=models.CASCADE, related_name="files")
    kind = models.CharField(max_length=12, choices=RunFileKind.choices)
    name = models.CharField(max_length=300, help_text="Name within the run, e.g. charts/roc-nodule.svg.")
    storage_name = models.CharField(max_length=400, help_text="Where the default storage keeps it.")
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=60)
    title = models.CharField(max_length=300, blank=True)
    alt = models.TextField(blank=True, help_text="A text alternative for a chart or an overlay.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "kind", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "name"],
                name="%(app_label)s_%(class)s_unique_name",
                violation_error_message="A run has one file of each name.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} of run {self.run_id}"


class CaseFlag(models.Model):
    """A case the run's uncertainty analysis would refer to a human at the suite's target risk,
    kept so that pages can show which cases the model was unsure about."""

    run = models.ForeignKey(ValidationRun, on_delete=models.CASCADE, related_name="case_flags")
    label = models.CharField(max_length=100)
    row = models.PositiveIntegerField(help_text="The case's row in the manifest (1-based).")
    image_path = models.CharField(max_length=500)
    uncertainty = models.FloatField(help_text="Entropy of the mean TTA probability (nats).")
    probability = models.FloatField()
    tta_std = models.FloatField()
    cutoff = models.FloatField(
        null=True,
        blank=True,
        help_text="The uncertainty above which cases are referred; empty when the target risk was unreachable and every case is referred.",
    )

    class Meta:
        ordering = ["run", "label", "-uncertainty"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "label", "row"],
                name="%(app_label)s_%(class)s_unique_case",
                violation_error_message="A case is flagged once per label and run.",
            ),
        ]

    def __str__(self) -> str:
        return f"Row {self.row} ({self.label}) of run {self.run_id}"


# --- Federated validation (validation.federated) ------------------------------------------


class FederatedStudy(models.Model):
    """A version evaluated by site agents at several institutions on their own patients, under one
    design (``spec``: labels, attributes, intersections, minimum cell, thresholds, resamples, seed,
    manifest); only aggregates travel, and the server pools them. Sites that have not reported by
    the deadline are listed as such."""

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="federated_studies")
    name = models.CharField(max_length=200)
    spec = models.JSONField(
        validators=[validate_json_safe], help_text="The study design every site evaluates (validation.federated.study_spec_clean)."
    )
    deadline = models.DateTimeField(help_text="Sites report before this moment; later ones are listed as having missed it.")
    status = models.CharField(max_length=10, choices=StudyStatus.choices, default=StudyStatus.OPEN)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "federated studies"

    def __str__(self) -> str:
        return f"Federated study {self.name} of {self.version}"


class FederatedJob(models.Model):
    """One site's part of a federated study: claimed, evaluated and reported by that site's agent
    (the institution's site agent account), which is the only caller that ever sees it."""

    study = models.ForeignKey(FederatedStudy, on_delete=models.PROTECT, related_name="jobs")
    institution = models.ForeignKey("registry.Institution", on_delete=models.PROTECT, related_name="federated_jobs")
    status = models.CharField(max_length=10, choices=FederatedJobStatus.choices, default=FederatedJobStatus.PENDING)
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="How many times the site's agent has claimed the job.")
    error = models.TextField(blank=True, max_length=2000, help_text="Why the agent could not evaluate (for example an artifact hash mismatch).")
    deployment = models.ForeignKey(
        "registry.Deployment",
        on_delete=models.PROTECT,
        related_name="federated_jobs",
        null=True,
        blank=True,
        help_text="The deployment whose scheduled revalidation this job is, run by the site's own agent.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["study", "institution__code"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "institution"],
                name="%(app_label)s_%(class)s_one_per_site",
                violation_error_message="A site has one job in a study.",
            ),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} of {self.study.name} at {self.institution.code}"


class SiteReportQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise Conflict("A site report is never edited; the site reports once per job.", code="report_immutable")


class SiteReport(NeverEdited):
    """The aggregates one site's agent sent for its job, as its data owner approved them: the
    payload checked against per-case data and small cells, its sha256, who approved it at the
    site and when. Never edited."""

    job = models.OneToOneField(FederatedJob, on_delete=models.PROTECT, related_name="report")
    payload = models.JSONField(help_text="The site summary (radtrust_engine.federated_payload), aggregates only.")
    payload_sha256 = models.CharField(max_length=64, help_text="sha256 of the payload as canonical JSON (sorted keys, no spaces).")
    approved_by = models.CharField(max_length=200, help_text="The site's data owner who released the payload.")
    approved_at = models.DateTimeField()
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    submitted_at = models.DateTimeField(auto_now_add=True)
    agent = models.JSONField(default=dict, blank=True, validators=[validate_json_safe], help_text="Agent version, device, seconds, engine timings.")

    objects = SiteReportQuerySet.as_manager()

    class Meta:
        ordering = ["job"]

    def __str__(self) -> str:
        return f"Report of job {self.job_id}"

    edit_refused = ("A site report is never edited; the site reports once per job.", "report_immutable")


class StudyPooling(models.Model):
    """What the server computed from one set of site reports (``reports_digest``): the pooled
    figures, the meta-analyses, the per-site rows, and the forest plots rendered once, so that
    pages and the PDF show the same figures and charts without recomputing them."""

    study = models.ForeignKey(FederatedStudy, on_delete=models.PROTECT, related_name="poolings")
    reports_digest = models.CharField(max_length=64, help_text="sha256 over the pooled sites and their payload hashes.")
    result = models.JSONField(help_text="Pooled strata, meta-analyses, per-site rows and chart metadata.")
    charts = models.JSONField(default=dict, blank=True, help_text="Forest plot SVG text by chart name.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "reports_digest"],
                name="%(app_label)s_%(class)s_once_per_reports",
                violation_error_message="These reports have been pooled already.",
            ),
        ]

    def __str__(self) -> str:
        return f"Pooling {self.pk} of {self.study.name}"
