"""The audit trail's models, moved here from the compliance app (their tables keep their names)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('compliance', '0007_immutable_records'),
    ]

    # State only: the tables stay where they are (the models name them with db_table).
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='AuditEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('seq', models.PositiveBigIntegerField(unique=True)),
                        ('occurred_at', models.DateTimeField()),
                        ('actor_id', models.BigIntegerField(blank=True, null=True)),
                        ('actor_username', models.CharField(max_length=150)),
                        ('request_id', models.CharField(blank=True, max_length=64)),
                        ('action', models.CharField(max_length=40)),
                        ('object_type', models.CharField(db_index=True, max_length=100)),
                        ('object_id', models.CharField(db_index=True, max_length=64)),
                        ('object_repr', models.CharField(max_length=300)),
                        ('changes', models.JSONField(default=dict)),
                        ('prev_hash', models.CharField(max_length=64)),
                        ('hash', models.CharField(max_length=64, unique=True)),
                    ],
                    options={
                        'db_table': 'compliance_auditevent',
                        'ordering': ['seq'],
                        'base_manager_name': 'objects',
                        'indexes': [models.Index(fields=['object_type', 'object_id', 'seq'], name='compliance_audit_object_idx')],
                    },
                ),
                migrations.CreateModel(
                    name='AuditHead',
                    fields=[
                        ('id', models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                        ('seq', models.PositiveBigIntegerField(default=0)),
                        ('hash', models.CharField(max_length=64)),
                    ],
                    options={
                        'db_table': 'compliance_audithead',
                        'constraints': [models.CheckConstraint(condition=models.Q(('id', 1)), name='compliance_audithead_singleton')],
                    },
                ),
            ],
        ),
    ]
