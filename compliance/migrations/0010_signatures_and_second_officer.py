"""Electronic signatures a reviewer can verify, and the second officer (issue 17).

The last operation refuses DELETE of a signature on SQLite as well, with a trigger: PostgreSQL
has refused it since 0007. Django's test flush empties SQLite tables with DELETE, so the test
suite drops this one trigger in its test database (tests/conftest.py) and
tests/compliance/test_signature_records.py installs it again inside its transaction.

On SQLite, adding a column with a default rebuilds the table, and the rebuild drops its triggers:
the 0007 triggers of the dossier and signature tables are created again here. A later migration
that rebuilds one of these tables must do the same.
"""

import importlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

SQLITE_SIGNATURE_UNDELETABLE = (
    "CREATE TRIGGER compliance_dossiersignature_undeletable BEFORE DELETE ON compliance_dossiersignature FOR EACH ROW "
    "BEGIN SELECT RAISE(ABORT, 'A signature cannot be deleted.'); END;"
)


REBUILT_TABLES = ("compliance_dossier", "compliance_dossiersignature")


def _signature_undeletable(apps, schema_editor, *, forward: bool) -> None:
    if schema_editor.connection.vendor != "sqlite":
        return
    if not forward:
        schema_editor.execute("DROP TRIGGER compliance_dossiersignature_undeletable;", params=None)
        return
    immutable = importlib.import_module("compliance.migrations.0007_immutable_records")
    for create, _ in immutable.SQLITE:
        if create.split(" ON ", 1)[1].split(" ", 1)[0] in REBUILT_TABLES:
            schema_editor.execute(create.replace("CREATE TRIGGER", "CREATE TRIGGER IF NOT EXISTS", 1), params=None)
    schema_editor.execute(SQLITE_SIGNATURE_UNDELETABLE, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0009_change_control"),
        ("registry", "0012_data_use_grants"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="dossier",
            name="editors",
            field=models.JSONField(
                blank=True, default=list, help_text="Ids of the users who saved fields of this revision: none of them may sign it."
            ),
        ),
        migrations.AddField(
            model_name="dossiersignature",
            name="audit_hash",
            field=models.CharField(blank=True, help_text="That event's hash: the chain's head at signing.", max_length=64),
        ),
        migrations.AddField(
            model_name="dossiersignature",
            name="audit_seq",
            field=models.PositiveBigIntegerField(blank=True, help_text="The audit chain's newest event when the signature was made.", null=True),
        ),
        migrations.AddField(
            model_name="dossiersignature",
            name="authentication",
            field=models.CharField(blank=True, help_text="How the signer proved who they were at signing.", max_length=60),
        ),
        migrations.AddField(
            model_name="dossiersignature",
            name="institution",
            field=models.ForeignKey(
                blank=True,
                help_text="The institution signed for.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="registry.institution",
            ),
        ),
        migrations.AddField(
            model_name="dossiersignature",
            name="signer_name",
            field=models.CharField(blank=True, help_text="The signer's full name as it was at signing.", max_length=300),
        ),
        migrations.AddField(
            model_name="scoringpolicy",
            name="confirmed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="scoringpolicy",
            name="confirmed_by",
            field=models.ForeignKey(
                blank=True,
                help_text="The second officer who made it the active policy; empty while it waits, and for the built-in policy.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="trustexception",
            name="confirmed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="trustexception",
            name="confirmed_by",
            field=models.ForeignKey(
                blank=True,
                help_text="The second officer who confirmed it; until then the guard does not count it.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="scoringpolicy",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                help_text="The officer who proposed it.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="trustexception",
            name="granted_by",
            field=models.ForeignKey(
                help_text="The officer who proposed it.", on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL
            ),
        ),
        migrations.CreateModel(
            name="VersionApproval",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Waiting for a second officer"),
                            ("confirmed", "Confirmed by a second officer"),
                            ("declined", "Declined"),
                        ],
                        default="pending",
                        max_length=12,
                    ),
                ),
                ("proposed_at", models.DateTimeField(auto_now_add=True)),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                ("note", models.TextField(blank=True, help_text="Why it was declined.", max_length=4000)),
                (
                    "decided_by",
                    models.ForeignKey(
                        blank=True,
                        help_text="Who confirmed or declined it.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                ("proposed_by", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL)),
                ("version", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="approvals", to="registry.modelversion")),
            ],
            options={
                "ordering": ["-proposed_at", "-pk"],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("status", "pending")),
                        fields=("version",),
                        name="compliance_versionapproval_one_pending",
                        violation_error_message="This version has a proposed approval waiting already.",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("status", "pending"), ("decided_by__isnull", False), _connector="OR"),
                        name="compliance_versionapproval_decided_has_officer",
                        violation_error_message="A confirmed or declined approval names the officer who decided.",
                    ),
                ],
            },
        ),
        migrations.RunPython(
            lambda apps, editor: _signature_undeletable(apps, editor, forward=True),
            lambda apps, editor: _signature_undeletable(apps, editor, forward=False),
        ),
    ]
