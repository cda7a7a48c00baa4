"""Alerts and trust scoring moved to the compliance app (state only: their tables stay)."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('compliance', '0008_models_moved_here'),
        ('validation', '0007_caseflag_cutoff_unreachable'),
    ]

    # State only: the tables stay where they are (the models name them with db_table).
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name='scoringpolicy',
                    name='created_by',
                ),
                migrations.RemoveField(
                    model_name='trustassessment',
                    name='policy',
                ),
                migrations.RemoveField(
                    model_name='trustassessment',
                    name='version',
                ),
                migrations.RemoveField(
                    model_name='trustexception',
                    name='granted_by',
                ),
                migrations.RemoveField(
                    model_name='trustexception',
                    name='version',
                ),
                migrations.DeleteModel(
                    name='Alert',
                ),
                migrations.DeleteModel(
                    name='ScoringPolicy',
                ),
                migrations.DeleteModel(
                    name='TrustAssessment',
                ),
                migrations.DeleteModel(
                    name='TrustException',
                ),
            ],
        ),
    ]
