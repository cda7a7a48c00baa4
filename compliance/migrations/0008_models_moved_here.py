"""Alerts and trust scoring move here from validation; the audit trail moves to core. Tables keep their names."""

import django.db.models.deletion
import registry.validators
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('compliance', '0007_immutable_records'),
        ('core', '0001_initial'),
        
        ('registry', '0008_deployment_revalidation_by'),
        ('validation', '0007_caseflag_cutoff_unreachable'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    # State only: the tables stay where they are (the models name them with db_table).
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Alert',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(choices=[('performance_degradation', 'Performance degradation'), ('input_drift', 'Input drift'), ('output_drift', 'Output drift'), ('prevalence_shift', 'Label-prevalence shift'), ('disagreement_rise', 'Clinician disagreement rising')], max_length=30)),
                        ('severity', models.CharField(choices=[('info', 'Info'), ('warning', 'Warning'), ('critical', 'Critical')], max_length=10)),
                        ('subject', models.CharField(help_text='What moved: a label and metric, a feature.', max_length=200)),
                        ('message', models.TextField()),
                        ('evidence', models.JSONField(default=dict, validators=[registry.validators.validate_json_safe])),
                        ('status', models.CharField(choices=[('open', 'Open'), ('acknowledged', 'Acknowledged'), ('resolved', 'Resolved')], default='open', max_length=12)),
                        ('note', models.TextField(blank=True, help_text='What was done about it.')),
                        ('handled_at', models.DateTimeField(blank=True, null=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('baseline_run', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='validation.validationrun')),
                        ('deployment', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='alerts', to='registry.deployment')),
                        ('handled_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('run', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='alerts', to='validation.validationrun')),
                        ('version', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='alerts', to='registry.modelversion')),
                    ],
                    options={
                        'db_table': 'validation_alert',
                        'ordering': ['-created_at', '-pk'],
                    },
                ),
                migrations.CreateModel(
                    name='ScoringPolicy',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('version', models.PositiveIntegerField(unique=True)),
                        ('name', models.CharField(max_length=120)),
                        ('definition', models.JSONField(help_text='Principles, criteria, rules, weights, thresholds (compliance.trust.policy).', validators=[registry.validators.validate_json_safe])),
                        ('active', models.BooleanField(default=False, help_text='The policy new assessments use; one at a time.')),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'validation_scoringpolicy',
                        'ordering': ['-version'],
                    },
                ),
                migrations.CreateModel(
                    name='TrustAssessment',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('trigger', models.CharField(help_text='What asked for it: run_finished, feedback, datasheet_changed, revalidation_overdue, manual.', max_length=60)),
                        ('principles', models.JSONField(help_text='Per principle: score (or null), status, strength, summary and criteria.')),
                        ('evidence_digest', models.CharField(help_text='sha256 of the evidence it was computed from.', max_length=64)),
                        ('chart_svg', models.TextField(blank=True, help_text='The six-axis radar chart, rendered once.')),
                        ('computed_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('policy', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='assessments', to='compliance.scoringpolicy')),
                        ('version', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='trust_assessments', to='registry.modelversion')),
                    ],
                    options={
                        'db_table': 'validation_trustassessment',
                        'ordering': ['-computed_at', '-pk'],
                    },
                ),
                migrations.CreateModel(
                    name='TrustException',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('principle', models.CharField(max_length=20)),
                        ('justification', models.TextField(max_length=4000)),
                        ('granted_at', models.DateTimeField(auto_now_add=True)),
                        ('granted_by', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('version', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='trust_exceptions', to='registry.modelversion')),
                    ],
                    options={
                        'db_table': 'validation_trustexception',
                        'ordering': ['-granted_at'],
                    },
                ),
                migrations.DeleteModel(
                    name='AuditEvent',
                ),
                migrations.DeleteModel(
                    name='AuditHead',
                ),
                migrations.AlterField(
                    model_name='incident',
                    name='alert',
                    field=models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='incident', to='compliance.alert'),
                ),
                migrations.AddIndex(
                    model_name='alert',
                    index=models.Index(fields=['status', 'severity'], name='validation_alert_status'),
                ),
                migrations.AddConstraint(
                    model_name='alert',
                    constraint=models.UniqueConstraint(condition=models.Q(('run__isnull', False)), fields=('run', 'kind', 'subject'), name='validation_alert_once_per_run_finding', violation_error_message='A run raises each finding once.'),
                ),
                migrations.AddConstraint(
                    model_name='scoringpolicy',
                    constraint=models.UniqueConstraint(condition=models.Q(('active', True)), fields=('active',), name='validation_scoringpolicy_one_active', violation_error_message='One scoring policy is active at a time.'),
                ),
                migrations.AddIndex(
                    model_name='trustassessment',
                    index=models.Index(fields=['version', 'computed_at'], name='trust_version_time'),
                ),
                migrations.AddConstraint(
                    model_name='trustexception',
                    constraint=models.UniqueConstraint(fields=('version', 'principle'), name='validation_trustexception_once', violation_error_message='This principle already has an exception for this version.'),
                ),
            ],
        ),
    ]
