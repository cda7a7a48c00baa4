"""Faster usage-log ingestion: the batch digest is now written by ``CheckedBatch.digest`` (the same
value as before: sha256 of the events' COPY lines), as the events are checked and copied chunk by chunk."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("compliance", "0016_usage_scale")]

    operations = [
        migrations.AlterField(
            model_name="usagebatch",
            name="digest",
            field=models.CharField(
                help_text="sha256 of the batch's events as checked and stored (compliance.usage_checks.CheckedBatch.digest).", max_length=64
            ),
        ),
    ]
