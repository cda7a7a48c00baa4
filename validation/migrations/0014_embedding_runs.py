import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("validation", "0013_sharded_runs")]

    operations = [
        migrations.AddField(
            model_name="validationrun",
            name="comparator",
            field=models.ForeignKey(
                blank=True,
                help_text="Another version's run on the same dataset whose embeddings this run's data-efficiency curves are compared with.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="comparing_runs",
                to="validation.validationrun",
            ),
        ),
    ]
