import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("validation", "0012_detection_volumes")]

    operations = [
        migrations.CreateModel(
            name="RunShard",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("index", models.PositiveIntegerField(help_text="The shard's place in the run's plan, from 0.")),
                ("n_images", models.PositiveIntegerField(help_text="Manifest rows in the shard.")),
                (
                    "plan_images",
                    models.PositiveIntegerField(
                        help_text="The plan's images per shard (RADTRUST_SHARD_IMAGES when planned): every worker cuts the same shards."
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("succeeded", "Succeeded"),
                            ("failed", "Failed"),
                            ("cancelled", "Cancelled"),
                        ],
                        default="queued",
                        max_length=12,
                    ),
                ),
                ("attempt", models.PositiveIntegerField(default=0)),
                ("max_attempts", models.PositiveIntegerField(default=3)),
                ("worker", models.CharField(blank=True, max_length=200)),
                ("lease_until", models.DateTimeField(blank=True, null=True)),
                ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                ("sent_at", models.DateTimeField(blank=True, help_text="When the shard's task was last sent.", null=True)),
                ("scores_name", models.CharField(blank=True, help_text="The stored scores file (storage name) once scored.", max_length=300)),
                ("scores_sha256", models.CharField(blank=True, max_length=64)),
                (
                    "error_reason",
                    models.CharField(blank=True, help_text="A FailureReason code, carried to the run if the shard fails it.", max_length=40),
                ),
                ("error", models.TextField(blank=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("run", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="shards", to="validation.validationrun")),
            ],
            options={
                "ordering": ["run", "index"],
                "indexes": [models.Index(fields=["status", "lease_until"], name="validation_shard_status_lease")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("run", "index"), name="validation_runshard_one_per_index", violation_error_message="A run has one shard per index."
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("status", "succeeded"), _negated=True), models.Q(("scores_name", ""), _negated=True), _connector="OR"
                        ),
                        name="validation_runshard_succeeded_has_scores",
                        violation_error_message="A scored shard names its scores file.",
                    ),
                ],
            },
        ),
    ]
