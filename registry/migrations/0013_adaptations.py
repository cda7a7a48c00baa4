import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import registry.validators


class Migration(migrations.Migration):
    dependencies = [("registry", "0012_data_use_grants")]

    operations = [
        migrations.CreateModel(
            name="Adaptation",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "method",
                    models.CharField(
                        choices=[
                            ("linear_probe", "Linear probe (base frozen, a new linear head)"),
                            ("full_fine_tune", "Full fine-tune (every weight trained)"),
                            ("partial_fine_tune", "Partial fine-tune (some layers trained)"),
                            ("adapter", "Adapter or LoRA (small added weights trained)"),
                            ("prompt", "Prompt or few-shot (no weight trained)"),
                        ],
                        max_length=20,
                    ),
                ),
                (
                    "task",
                    models.CharField(
                        help_text="The task the base was adapted to, in words (e.g. pneumothorax on adult chest films).", max_length=300
                    ),
                ),
                (
                    "labels",
                    models.JSONField(
                        default=list, help_text="The labels the adaptation predicts.", validators=[registry.validators.validate_json_safe]
                    ),
                ),
                ("labelled_cases", models.PositiveIntegerField(default=0, help_text="Labelled cases used (0 for a prompt without examples).")),
                ("labelled_patients", models.PositiveIntegerField(default=0, help_text="Distinct patients among the labelled cases.")),
                ("frozen_parts", models.TextField(blank=True, help_text="What stayed as in the base (e.g. the whole encoder, blocks 1-10).")),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL
                    ),
                ),
                (
                    "labelled_dataset",
                    models.ForeignKey(
                        blank=True,
                        help_text="The labelled data used to adapt.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="adaptations",
                        to="registry.dataset",
                    ),
                ),
                (
                    "version",
                    models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name="adaptation", to="registry.modelversion"),
                ),
            ],
            options={
                "ordering": ["-created_at", "-pk"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("labelled_patients__lte", models.F("labelled_cases"))),
                        name="registry_adaptation_patients_within_cases",
                        violation_error_message="There cannot be more labelled patients than labelled cases.",
                    )
                ],
            },
        ),
    ]
