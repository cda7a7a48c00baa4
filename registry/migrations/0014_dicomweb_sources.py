import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0013_adaptations"),
    ]

    operations = [
        migrations.CreateModel(
            name="DicomwebSource",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("base_url", models.URLField(help_text="The DICOMweb root, e.g. https://pacs.example.org/dicom-web.", max_length=500)),
                (
                    "credentials_env",
                    models.CharField(
                        blank=True,
                        help_text="Prefix of the environment variables that hold the user and password.",
                        max_length=60,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^[A-Z][A-Z0-9_]{0,59}$", "Use an environment variable prefix in capitals, digits and _, such as RADTRUST_PACS."
                            )
                        ],
                    ),
                ),
                (
                    "modality",
                    models.CharField(
                        blank=True,
                        max_length=16,
                        validators=[django.core.validators.RegexValidator("^[A-Z0-9]*$", "A DICOM modality code, e.g. CR or CT.")],
                    ),
                ),
                ("body_part", models.CharField(blank=True, help_text="BodyPartExamined, e.g. CHEST.", max_length=16)),
                (
                    "study_dates",
                    models.CharField(
                        blank=True,
                        max_length=17,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^(\\d{8})?(-(\\d{8})?)?$",
                                "Give a DICOM date or range: 20240101, 20240101-20241231, 20240101- (from) or -20241231 (until).",
                            )
                        ],
                    ),
                ),
                ("series_description", models.CharField(blank=True, max_length=64)),
                ("accession_numbers", models.JSONField(blank=True, default=list, help_text="Only these studies (optional).")),
                ("labels", models.JSONField(help_text="The labels table, keyed by StudyInstanceUID or SOPInstanceUID.")),
                (
                    "labels_sha256",
                    models.CharField(
                        max_length=64, validators=[django.core.validators.RegexValidator("^[0-9a-f]{64}$", "A sha256 is 64 lower-case hex digits.")]
                    ),
                ),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL
                    ),
                ),
                ("dataset", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name="dicomweb", to="registry.dataset")),
            ],
            options={
                "verbose_name": "DICOMweb source",
            },
        ),
        migrations.CreateModel(
            name="DicomwebManifest",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "sha256",
                    models.CharField(
                        max_length=64, validators=[django.core.validators.RegexValidator("^[0-9a-f]{64}$", "A sha256 is 64 lower-case hex digits.")]
                    ),
                ),
                ("base_url", models.URLField(max_length=500)),
                ("query", models.JSONField(help_text="The QIDO-RS query it was resolved with.")),
                ("content", models.JSONField(help_text="The instances (study, series and SOP Instance UIDs, patient) with their labels.")),
                ("n_instances", models.PositiveIntegerField()),
                ("unlabelled", models.PositiveIntegerField(default=0, help_text="Instances the query matched that the labels table does not cover.")),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("dataset", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="dicomweb_manifests", to="registry.dataset")),
            ],
            options={
                "ordering": ["-created_at", "-pk"],
                "constraints": [models.UniqueConstraint(fields=("dataset", "sha256"), name="registry_dicomwebmanifest_one_per_hash")],
            },
        ),
    ]
