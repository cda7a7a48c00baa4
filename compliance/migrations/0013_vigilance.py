"""Vigilance (issue 18): intake from anywhere, awareness with reasons, triage, reports as separate
records, two-officer decisions, field safety notices; a feedback's suspected-serious-incident flag and
the alert a high-severity report raises."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0012_market_steps"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="alert",
            name="feedback",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="alerts", to="compliance.feedback"
            ),
        ),
        migrations.AddField(
            model_name="feedback",
            name="suspected_serious_incident",
            field=models.BooleanField(
                default=False,
                db_default=False,  # rows written by COPY (the feedback bench, imports) need not name it
                help_text="The clinician suspects a serious incident: it opens an incident for triage (compliance.vigilance).",
            ),
        ),
        # Incidents before triage existed were escalated as serious incidents by an officer.
        migrations.AddField(
            model_name="incident",
            name="triage",
            field=models.CharField(
                choices=[
                    ("pending", "Awaiting triage"),
                    ("serious", "Serious incident"),
                    ("trend", "Trend (MDR Art. 88), not a serious incident"),
                    ("signal", "Post-market signal, not a serious incident"),
                ],
                default="serious",
                max_length=10,
            ),
        ),
        migrations.AlterField(
            model_name="incident",
            name="triage",
            field=models.CharField(
                choices=[
                    ("pending", "Awaiting triage"),
                    ("serious", "Serious incident"),
                    ("trend", "Trend (MDR Art. 88), not a serious incident"),
                    ("signal", "Post-market signal, not a serious incident"),
                ],
                default="pending",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="incident",
            name="triage_reason",
            field=models.TextField(blank=True, max_length=4000),
        ),
        migrations.AddField(
            model_name="incident",
            name="triaged_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="incident",
            name="triaged_by",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL
            ),
        ),
        migrations.AlterField(
            model_name="alert",
            name="kind",
            field=models.CharField(
                choices=[
                    ("performance_degradation", "Performance degradation"),
                    ("input_drift", "Input drift"),
                    ("output_drift", "Output drift"),
                    ("prevalence_shift", "Label-prevalence shift"),
                    ("disagreement_rise", "Clinician disagreement rising"),
                    ("high_severity_report", "Clinician report of possible harm"),
                ],
                max_length=30,
            ),
        ),
        migrations.AlterField(
            model_name="correctiveaction",
            name="kind",
            field=models.CharField(
                choices=[
                    ("suspend_deployment", "Suspend the deployment"),
                    ("resume_deployment", "Lift the suspension of the deployment"),
                    ("field_safety_action", "Field safety corrective action (MDR Art. 87(1)(b))"),
                    ("field_safety_notice", "Field safety notice to users"),
                    ("other", "Other measure"),
                ],
                max_length=24,
            ),
        ),
        migrations.AlterField(
            model_name="incident",
            name="aware_on",
            field=models.DateField(help_text="When the provider became aware: the earliest linked record, changed only with a reason."),
        ),
        migrations.AlterField(
            model_name="incident",
            name="deadline",
            field=models.DateField(
                blank=True, help_text="The latest date the authority must be told; none while untriaged or where no report is due.", null=True
            ),
        ),
        migrations.AlterField(
            model_name="incident",
            name="incident_type",
            field=models.CharField(
                blank=True,
                choices=[
                    ("death", "Death of a person"),
                    ("serious_deterioration", "Unanticipated serious deterioration of a person's health"),
                    ("public_health_threat", "Serious public-health threat"),
                    ("fundamental_rights", "Infringement of obligations protecting fundamental rights"),
                    ("widespread_infringement", "Widespread infringement of fundamental-rights obligations"),
                    ("critical_infrastructure", "Serious and irreversible disruption of critical infrastructure"),
                    ("property_or_environment", "Serious harm to property or the environment"),
                    ("other", "Any other serious incident (for a device: an anticipated serious deterioration, or one not yet classified)"),
                ],
                max_length=30,
            ),
        ),
        migrations.AlterField(
            model_name="incident",
            name="legal_basis",
            field=models.CharField(blank=True, max_length=60),
        ),
        migrations.AlterField(
            model_name="incident",
            name="route",
            field=models.CharField(blank=True, max_length=20),
        ),
        migrations.CreateModel(
            name="AwarenessCorrection",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("previous", models.DateField()),
                ("aware_on", models.DateField()),
                ("reason", models.TextField(max_length=4000)),
                ("changed_at", models.DateTimeField(auto_now_add=True)),
                ("changed_by", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL)),
                (
                    "incident",
                    models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="awareness_corrections", to="compliance.incident"),
                ),
            ],
            options={
                "ordering": ["changed_at", "pk"],
            },
        ),
        migrations.CreateModel(
            name="FieldSafetyNotice",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("text", models.TextField(max_length=10000)),
                ("recipients", models.TextField(help_text="Who it went to: institutions, roles, distribution list.", max_length=4000)),
                ("issued_on", models.DateField()),
                ("recorded_at", models.DateTimeField(auto_now_add=True)),
                ("action", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="notices", to="compliance.correctiveaction")),
                ("recorded_by", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "abstract": False,
            },
        ),
        migrations.CreateModel(
            name="IncidentDecision",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("close_unreported", "Close a serious incident without reporting it"),
                            ("lift_lock", "Allow changes to the system before the authority is informed"),
                        ],
                        max_length=20,
                    ),
                ),
                ("reason", models.TextField(max_length=4000)),
                ("proposed_at", models.DateTimeField(auto_now_add=True)),
                ("confirmed_at", models.DateTimeField(blank=True, null=True)),
                (
                    "confirmed_by",
                    models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL
                    ),
                ),
                ("incident", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="decisions", to="compliance.incident")),
                ("proposed_by", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "ordering": ["proposed_at", "pk"],
            },
        ),
        migrations.CreateModel(
            name="IncidentIntake",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "channel",
                    models.CharField(
                        choices=[
                            ("feedback", "Clinician feedback in RadTrust"),
                            ("alert", "Monitoring alert"),
                            ("phone", "Telephone call"),
                            ("email", "E-mail"),
                            ("letter", "Letter or form"),
                            ("other", "Other (say which in the description)"),
                        ],
                        max_length=10,
                    ),
                ),
                ("reporter", models.CharField(help_text="Who reported it: name and role, or the institution's vigilance contact.", max_length=200)),
                ("description", models.TextField(max_length=10000)),
                (
                    "received_at",
                    models.DateTimeField(help_text="When the call or message reached the provider: the earliest the provider was aware."),
                ),
                ("recorded_at", models.DateTimeField(auto_now_add=True)),
                (
                    "deployment",
                    models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="registry.deployment"),
                ),
                ("recorded_by", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL)),
                (
                    "version",
                    models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="incident_intakes", to="registry.modelversion"),
                ),
            ],
            options={
                "abstract": False,
            },
        ),
        migrations.AddField(
            model_name="incident",
            name="intake",
            field=models.OneToOneField(
                blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="incident", to="compliance.incidentintake"
            ),
        ),
        migrations.CreateModel(
            name="IncidentReport",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "kind",
                    models.CharField(
                        choices=[("initial", "Initial report (may be incomplete)"), ("follow_up", "Follow-up report"), ("final", "Final report")],
                        max_length=10,
                    ),
                ),
                ("submitted_on", models.DateField(help_text="When it was sent to the authority.")),
                ("authority", models.CharField(help_text="The authority it went to, e.g. BfArM (competent authority, MDR).", max_length=200)),
                ("reference", models.CharField(help_text="The authority's reference, or the provider's if none was given yet.", max_length=120)),
                ("summary", models.TextField(help_text="What the report said: findings so far, root cause, actions.", max_length=10000)),
                ("recorded_at", models.DateTimeField(auto_now_add=True)),
                ("incident", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="reports", to="compliance.incident")),
                ("recorded_by", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "ordering": ["submitted_on", "pk"],
            },
        ),
        migrations.AddConstraint(
            model_name="incidentdecision",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("confirmed_by__isnull", True), models.Q(("confirmed_by", models.F("proposed_by")), _negated=True), _connector="OR"
                ),
                name="compliance_incidentdecision_four_eyes",
                violation_error_message="A second officer confirms, never the one who proposed it.",
            ),
        ),
        migrations.AddConstraint(
            model_name="incidentreport",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "initial")),
                fields=("incident",),
                name="compliance_incidentreport_one_initial",
                violation_error_message="An incident has one initial report; later ones are follow-ups.",
            ),
        ),
        migrations.AddConstraint(
            model_name="incidentreport",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "final")),
                fields=("incident",),
                name="compliance_incidentreport_one_final",
                violation_error_message="An incident has one final report.",
            ),
        ),
    ]
