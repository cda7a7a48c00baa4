from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("validation", "0010_run_sends_and_sweep_lock")]

    operations = [
        migrations.AddField(
            model_name="validationrun",
            name="outputs_source",
            field=models.CharField(
                choices=[("radtrust", "RadTrust ran the model"), ("uploaded", "Outputs uploaded: RadTrust did not run the model")],
                default="radtrust",
                help_text="Whether RadTrust ran the model or the outputs were produced elsewhere and uploaded.",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="validationrun",
            name="predictions_sha256",
            field=models.CharField(blank=True, help_text="The uploaded predictions file's hash (uploaded outputs only).", max_length=64),
        ),
        migrations.AddField(
            model_name="validationrun",
            name="predictions_name",
            field=models.CharField(blank=True, help_text="The uploaded predictions file's name (uploaded outputs only).", max_length=300),
        ),
    ]
