"""Conformity assessment and placing on the market (issue 17 part 1): the MDR procedure of an
assessment, the placing on the market of a version, its withdrawal, and the clinical
investigations in which a version may be used before it is placed; each append-only below the
ORM as well (``core.append_only_sql``).

Adding the MDR procedure rebuilds the conformity assessment table on SQLite, which drops its
0009 trigger: it is created again after the column is added (and before it is removed, when
reversing).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from core.append_only_sql import append_only_restore, append_only_run

REBUILT = {"compliance_conformityassessment": "A recorded conformity assessment is never edited; record a new one."}
IMMUTABLE = {
    "compliance_marketplacement": "A placing on the market is never edited; withdraw the version instead.",
    "compliance_marketwithdrawal": "A withdrawal is never edited.",
    "compliance_clinicalinvestigation": "A clinical investigation record is never edited.",
}


def _restore(apps, schema_editor) -> None:
    append_only_restore(schema_editor, REBUILT)


def _run(apps, schema_editor, *, forward: bool) -> None:
    append_only_run(schema_editor, IMMUTABLE, forward=forward)


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0011_release_evidence"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, _restore),
        migrations.AddField(
            model_name="conformityassessment",
            name="mdr_procedure",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "Not a medical device"),
                    ("annex_ii_iii", "MDR Annexes II and III: technical documentation under the manufacturer's responsibility (class I, Art. 52(7))"),
                    ("annex_ix", "MDR Annex IX: quality management system and technical documentation assessed by a notified body"),
                    ("annex_x", "MDR Annex X: type examination by a notified body (with Annex XI)"),
                    ("annex_xi", "MDR Annex XI: product conformity verification by a notified body"),
                ],
                default="",
                help_text="The MDR procedure (Annex IX, X or XI; II and III for class I) for a medical device; empty otherwise.",
                max_length=20,
            ),
        ),
        migrations.RunPython(_restore, migrations.RunPython.noop),
        migrations.CreateModel(
            name="MarketPlacement",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "ce_marking",
                    models.CharField(
                        choices=[
                            ("affixed", "CE marking affixed (no notified body involved)"),
                            ("affixed_with_number", "CE marking affixed with the notified body's identification number (MDR Art. 20(5))"),
                        ],
                        max_length=20,
                    ),
                ),
                ("placed_on", models.DateField(help_text="The day the version was first made available on the EU market.")),
                ("recorded_at", models.DateTimeField(auto_now_add=True)),
                (
                    "conformity_assessment",
                    models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to="compliance.conformityassessment"),
                ),
                (
                    "declaration",
                    models.ForeignKey(
                        help_text="The signed EU declaration of conformity.",
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="compliance.document",
                    ),
                ),
                ("recorded_by", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL)),
                (
                    "version",
                    models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name="market_placement", to="registry.modelversion"),
                ),
            ],
            options={"abstract": False},
        ),
        migrations.CreateModel(
            name="MarketWithdrawal",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("withdrawn_on", models.DateField()),
                ("reason", models.TextField(max_length=4000)),
                ("recorded_at", models.DateTimeField(auto_now_add=True)),
                (
                    "placement",
                    models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name="withdrawal", to="compliance.marketplacement"),
                ),
                ("recorded_by", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={"abstract": False},
        ),
        migrations.CreateModel(
            name="ClinicalInvestigation",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "reference",
                    models.CharField(help_text="The investigation's identifier (CIV-ID) or the ethics committee's approval.", max_length=120),
                ),
                (
                    "reason",
                    models.TextField(help_text="Why the version is used at this site before it is placed on the market.", max_length=4000),
                ),
                ("recorded_at", models.DateTimeField(auto_now_add=True)),
                ("institution", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to="registry.institution")),
                ("recorded_by", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL)),
                (
                    "version",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="clinical_investigations", to="registry.modelversion"
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("version", "institution"),
                        name="compliance_clinicalinvestigation_one_per_site",
                        violation_error_message="This version is recorded in a clinical investigation at this institution already.",
                    )
                ],
            },
        ),
        migrations.RunPython(lambda apps, editor: _run(apps, editor, forward=True), lambda apps, editor: _run(apps, editor, forward=False)),
    ]
