"""Operational (usage) logs of deployed systems: logging per deployment, batches, events and weekly sums."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0014_risk_file_qms"),
        ("registry", "0011_agent_accounts_become_site_agents"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="UsageBatch",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("batch_id", models.CharField(max_length=64)),
                ("digest", models.CharField(help_text="sha256 of the batch's events, canonical JSON.", max_length=64)),
                ("received_at", models.DateTimeField()),
                ("events", models.PositiveIntegerField()),
                ("first_event_at", models.DateTimeField()),
                ("last_event_at", models.DateTimeField()),
                (
                    "deployment",
                    models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="usage_batches", to="registry.deployment"),
                ),
            ],
            options={
                "verbose_name_plural": "usage batches",
                "ordering": ["deployment", "-received_at"],
            },
        ),
        migrations.CreateModel(
            name="UsageEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("occurred_at", models.DateTimeField()),
                ("case_key", models.CharField(blank=True, max_length=64)),
                ("outputs", models.JSONField(help_text="Label to score, as displayed.")),
                ("uncertainty", models.FloatField(blank=True, help_text="The uncertainty displayed with the output.", null=True)),
                ("overridden", models.BooleanField(help_text="The clinician overrode the output.")),
                ("quality_flags", models.JSONField(default=list, help_text="InputQuality codes.")),
                ("out_of_envelope", models.BooleanField(default=False, help_text="A flag places the input outside the intended-use envelope.")),
                ("note", models.TextField(blank=True, max_length=2000)),
                (
                    "batch",
                    models.ForeignKey(
                        db_index=False, db_constraint=False, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="compliance.usagebatch"
                    ),
                ),
                (
                    "deployment",
                    models.ForeignKey(
                        db_index=False, db_constraint=False, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="registry.deployment"
                    ),
                ),
                (
                    "version",
                    models.ForeignKey(
                        db_index=False, db_constraint=False, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="registry.modelversion"
                    ),
                ),
            ],
            options={
                "ordering": ["deployment", "occurred_at", "pk"],
            },
        ),
        migrations.CreateModel(
            name="UsageLogging",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "retention_days",
                    models.PositiveIntegerField(
                        default=183, help_text="Days the case keys and notes of usage events are kept (at least 183: six months)."
                    ),
                ),
                (
                    "purged_before",
                    models.DateTimeField(blank=True, help_text="Events before this time have had their personal fields deleted.", null=True),
                ),
                (
                    "account",
                    models.OneToOneField(
                        blank=True,
                        help_text="The deployment logger.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="usage_logging",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "deployment",
                    models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name="usage_logging", to="registry.deployment"),
                ),
            ],
        ),
        migrations.CreateModel(
            name="UsageWeek",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("week", models.DateField(help_text="The Monday the week starts on (UTC).")),
                ("n", models.PositiveIntegerField(default=0)),
                ("n_overridden", models.PositiveIntegerField(default=0)),
                ("n_out_of_envelope", models.PositiveIntegerField(default=0)),
                ("deployment", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="usage_weeks", to="registry.deployment")),
            ],
            options={
                "ordering": ["deployment", "week"],
            },
        ),
        migrations.AddConstraint(
            model_name="usagebatch",
            constraint=models.UniqueConstraint(
                fields=("deployment", "batch_id"), name="compliance_usagebatch_once", violation_error_message="This batch was received already."
            ),
        ),
        migrations.AddIndex(
            model_name="usageevent",
            index=models.Index(fields=["deployment", "occurred_at"], name="compliance_usage_dep_time_idx"),
        ),
        migrations.AddConstraint(
            model_name="usagelogging",
            constraint=models.CheckConstraint(
                condition=models.Q(("retention_days__gte", 183)),
                name="compliance_usagelogging_six_months",
                violation_error_message="Usage logs are kept at least six months (183 days), AI Act Art. 19(1) and 26(6).",
            ),
        ),
        migrations.AddConstraint(
            model_name="usageweek",
            constraint=models.UniqueConstraint(
                fields=("deployment", "week"),
                name="compliance_usageweek_one_row",
                violation_error_message="One usage summary per deployment and week.",
            ),
        ),
    ]
