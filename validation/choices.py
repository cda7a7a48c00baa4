"""Enumerations of the validation domain."""

from django.db import models


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class RunStage(models.TextChoices):
    """Where a run is; the engine's stages (headers, inference, metrics) in between."""

    QUEUED = "queued", "Waiting for a worker"
    VERIFYING = "verifying", "Verifying the model artifact"
    MANIFEST = "manifest", "Reading the dataset manifest"
    HEADERS = "headers", "Reading DICOM headers"
    INFERENCE = "inference", "Running the model"
    METRICS = "metrics", "Computing metrics and confidence intervals"
    SAVING = "saving", "Saving results"
    DONE = "done", "Done"


class MlflowState(models.TextChoices):
    """Whether the run's evidence has been copied to its MLflow run."""

    NOT_YET = "not_yet", "Not yet (the run has no results)"
    PENDING = "pending", "Pending"
    LOGGED = "logged", "Logged"
    FAILED = "failed", "Failed, retrying"


FINISHED = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


class RunFileKind(models.TextChoices):
    CASE_TABLE = "case_table", "Per-case table (scores, labels, image statistics; no pixels)"
    CHART = "chart", "Chart (SVG)"
    SALIENCY = "saliency", "Saliency overlay (PNG)"


class StudyStatus(models.TextChoices):
    OPEN = "open", "Open (sites may report)"
    CLOSED = "closed", "Closed"


class FederatedJobStatus(models.TextChoices):
    """Where a site's part of a federated study is, as the server sees it."""

    PENDING = "pending", "Pending (the site's agent has not claimed it)"
    CLAIMED = "claimed", "Claimed (the site's agent is evaluating)"
    REPORTED = "reported", "Reported (aggregates received)"
    FAILED = "failed", "Failed (the agent reported why)"
