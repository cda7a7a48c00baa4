"""Report-generation runs on the worker: the uploaded files a run reads (``ReportRunUpload``) and
the failure reasons for a file that changed in storage, and for an output schema that changed, since
the reports were accepted."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("validation", "0014_embedding_runs")]

    operations = [
        migrations.AlterField(
            model_name="validationrun",
            name="error_reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("bad_manifest", "Invalid dataset manifest"),
                    ("bad_input", "Images do not fit the model"),
                    ("unreadable_images", "Too many unreadable images"),
                    ("output_schema_mismatch", "Model output does not match its output schema"),
                    ("non_finite_output", "Model returned NaN or infinite outputs"),
                    ("artifact_mismatch", "Model artifact failed verification"),
                    ("runner_error", "Inference failed"),
                    ("bad_config", "Invalid preprocessing spec or suite config"),
                    ("time_limit", "Time limit exceeded"),
                    ("worker_lost", "Worker lost, no attempts left"),
                    ("cancelled", "Cancelled"),
                    ("internal_error", "Internal error"),
                    ("upload_changed", "Uploaded file missing or changed"),
                    ("schema_changed", "Output schema changed since the upload"),
                ],
                help_text="Why the run failed or was cancelled, a stable code (validation.choices.FailureReason); blank otherwise.",
                max_length=40,
            ),
        ),
        migrations.CreateModel(
            name="ReportRunUpload",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("reports_storage_name", models.CharField(help_text="Where the default storage keeps the generated reports.", max_length=400)),
                (
                    "reference",
                    models.CharField(
                        choices=[
                            ("labels", "The dataset manifest's reference findings"),
                            ("reports", "Reference reports, read by the same finding extractor"),
                        ],
                        default="labels",
                        max_length=8,
                    ),
                ),
                (
                    "reference_storage_name",
                    models.CharField(blank=True, help_text="Where the default storage keeps the reference reports.", max_length=400),
                ),
                (
                    "reference_sha256",
                    models.CharField(blank=True, help_text="The reference reports file's hash (reference reports only).", max_length=64),
                ),
                ("reference_name", models.CharField(blank=True, help_text="The reference reports file's name as uploaded.", max_length=300)),
                ("uncertain_as_present", models.BooleanField(default=False, help_text="A hedged finding ('possible effusion') counts as asserted.")),
                (
                    "run",
                    models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name="report_upload", to="validation.validationrun"),
                ),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("reference", "labels"), ("reference_sha256", ""), ("reference_storage_name", "")),
                            models.Q(
                                ("reference", "reports"),
                                models.Q(("reference_sha256", ""), _negated=True),
                                models.Q(("reference_storage_name", ""), _negated=True),
                            ),
                            _connector="OR",
                        ),
                        name="validation_reportrunupload_reference_file_iff_reports",
                        violation_error_message="Reference reports name their stored file and its hash; reference labels have none.",
                    )
                ],
            },
        ),
    ]
