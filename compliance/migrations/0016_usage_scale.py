"""Usage logs at scale: each deployment's last batch and latest event kept on its logging (read in
one row by pages and monitoring), and the batch digest over the events as stored."""

from django.db import migrations, models
from django.db.models import Max


def latest_from_batches(apps, schema_editor):
    """Fill the two new fields from the batches already received."""
    UsageLogging = apps.get_model("compliance", "UsageLogging")
    UsageBatch = apps.get_model("compliance", "UsageBatch")
    latest = UsageBatch.objects.values("deployment_id").annotate(received=Max("received_at"), event=Max("last_event_at"))
    for row in latest:
        UsageLogging.objects.filter(deployment_id=row["deployment_id"]).update(last_received_at=row["received"], last_event_at=row["event"])


class Migration(migrations.Migration):
    dependencies = [("compliance", "0015_usage_logs")]

    operations = [
        migrations.AddField(
            model_name="usagelogging",
            name="last_event_at",
            field=models.DateTimeField(blank=True, help_text="The latest time of any event received.", null=True),
        ),
        migrations.AddField(
            model_name="usagelogging",
            name="last_received_at",
            field=models.DateTimeField(blank=True, help_text="When the last batch was received.", null=True),
        ),
        migrations.AlterField(
            model_name="usagebatch",
            name="digest",
            field=models.CharField(
                help_text="sha256 of the batch's events as checked and stored (compliance.usage_logs.batch_digest).", max_length=64
            ),
        ),
        migrations.RunPython(latest_from_batches, migrations.RunPython.noop),
    ]
