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


class OutputsSource(models.TextChoices):
    """Where a run's model outputs came from: RadTrust ran the verified artifact, or the outputs
    were produced elsewhere and uploaded (the report and the trust score say so)."""

    RADTRUST = "radtrust", "RadTrust ran the model"
    UPLOADED = "uploaded", "Outputs uploaded: RadTrust did not run the model"


class ReportReference(models.TextChoices):
    """What a report-generation run compares the generated reports with
    (``radtrust_engine.report_runs.Reference``: the same values)."""

    LABELS = "labels", "The dataset manifest's reference findings"
    REPORTS = "reports", "Reference reports, read by the same finding extractor"


class FailureReason(models.TextChoices):
    """Why a run failed or was cancelled: ``ValidationRun.error_reason``, a stable code beside the
    message (``ValidationRun.error``) that says what to fix. Blank while a run has not failed.

    The engine's codes are ``radtrust_engine.failures.FailureCode`` (the engine imports no Django);
    this list holds exactly those and the server's own, and a test checks that the two agree.

    ==========================  ======  ==============================================================================
    Code                        Set by  When
    ==========================  ======  ==============================================================================
    ``bad_manifest``            engine  The manifest is missing, unreadable or invalid (a column, a row, a path), or
                                        its sha256 differs from the one the datasheet records.
    ``bad_input``               engine  The images do not fit the model (shape after preprocessing), or a
                                        segmentation mask cannot be read or fitted.
    ``unreadable_images``       engine  More images could not be read than the suite's ``max_unreadable_share``
                                        allows; the message lists the first of them.
    ``output_schema_mismatch``  engine  The model's output does not have the classes its version's output schema names.
    ``non_finite_output``       engine  The model returned NaN or infinite values for some cases.
    ``artifact_mismatch``       engine  The stored artifact no longer matches the hashes recorded at registration;
                                        it was not loaded.
    ``runner_error``            engine  Inference failed in another way the runner recognises (ONNX Runtime, device).
    ``bad_config``              server  The version's preprocessing spec or the run's suite config is invalid.
    ``time_limit``              server  The run exceeded ``RADTRUST_RUN_TIME_LIMIT_SECONDS``.
    ``worker_lost``             server  The worker stopped sending heartbeats and the run had no attempts left.
    ``cancelled``               server  A user cancelled the run, before or while a worker ran it.
    ``internal_error``          server  An unexpected error; the message names the exception, the worker's log has
                                        the traceback.
    ``upload_changed``          server  A file uploaded for the run (generated or reference reports) is missing from
                                        storage or no longer matches the sha256 recorded when it was accepted.
    ``schema_changed``          server  The version's output schema changed after generated reports were accepted
                                        against the manifest's labels, and no longer names a finding the
                                        unchanged manifest holds.
    ==========================  ======  ==============================================================================
    """

    # Raised by the engine (radtrust_engine.failures.FailureCode).
    BAD_MANIFEST = "bad_manifest", "Invalid dataset manifest"
    BAD_INPUT = "bad_input", "Images do not fit the model"
    UNREADABLE_IMAGES = "unreadable_images", "Too many unreadable images"
    OUTPUT_SCHEMA_MISMATCH = "output_schema_mismatch", "Model output does not match its output schema"
    NON_FINITE_OUTPUT = "non_finite_output", "Model returned NaN or infinite outputs"
    ARTIFACT_MISMATCH = "artifact_mismatch", "Model artifact failed verification"
    RUNNER_ERROR = "runner_error", "Inference failed"
    # Set by the server.
    BAD_CONFIG = "bad_config", "Invalid preprocessing spec or suite config"
    TIME_LIMIT = "time_limit", "Time limit exceeded"
    WORKER_LOST = "worker_lost", "Worker lost, no attempts left"
    CANCELLED = "cancelled", "Cancelled"
    INTERNAL_ERROR = "internal_error", "Internal error"
    UPLOAD_CHANGED = "upload_changed", "Uploaded file missing or changed"
    SCHEMA_CHANGED = "schema_changed", "Output schema changed since the upload"


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
