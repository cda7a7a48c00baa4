import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("core", "0004_audit_personal_hash"), migrations.swappable_dependency(settings.AUTH_USER_MODEL)]

    operations = [
        migrations.CreateModel(
            name="Notification",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("dossier_review", "Dossier waiting for your review"),
                            ("critical_alert", "Critical alert"),
                            ("incident_deadline", "Incident deadline approaching"),
                            ("high_severity_report", "High-severity clinician report"),
                            ("deployment_suspended", "Model suspended at your hospital"),
                            ("deployment_resumed", "Model back in use at your hospital"),
                        ],
                        max_length=24,
                    ),
                ),
                ("key", models.CharField(help_text="The event notified, e.g. dossier:12:review:<snapshot>; once per recipient.", max_length=120)),
                ("title", models.CharField(max_length=200)),
                ("body", models.TextField(blank=True, max_length=2000)),
                ("link", models.CharField(blank=True, help_text="The page where the recipient acts on it.", max_length=300)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("read_at", models.DateTimeField(blank=True, null=True)),
                ("emailed_at", models.DateTimeField(blank=True, null=True)),
                (
                    "recipient",
                    models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="notifications", to=settings.AUTH_USER_MODEL),
                ),
            ],
            options={
                "ordering": ["-created_at", "-pk"],
                "indexes": [models.Index(fields=["recipient", "read_at"], name="core_notification_unread")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("recipient", "key"),
                        name="core_notification_once_per_event",
                        violation_error_message="This person was notified of this event already.",
                    )
                ],
            },
        ),
    ]
