import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import registry.validators


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0013_vigilance"),
        ("registry", "0014_dicomweb_sources"),
        ("validation", "0013_sharded_runs"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Hazard",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("number", models.PositiveIntegerField(help_text="H1, H2, ... within the file; kept when carried to a child version.")),
                ("hazard", models.TextField(help_text="The potential source of harm, e.g. a pneumothorax the model does not flag.", max_length=1000)),
                (
                    "situation",
                    models.TextField(help_text="The hazardous situation, e.g. an unflagged study read last on a long worklist.", max_length=1000),
                ),
                ("harm", models.TextField(help_text="The harm, e.g. treatment of a tension pneumothorax delayed by hours.", max_length=1000)),
                ("probability", models.PositiveSmallIntegerField(blank=True, null=True, validators=[django.core.validators.MinValueValidator(1)])),
                ("severity", models.PositiveSmallIntegerField(blank=True, null=True, validators=[django.core.validators.MinValueValidator(1)])),
                (
                    "residual_probability",
                    models.PositiveSmallIntegerField(blank=True, null=True, validators=[django.core.validators.MinValueValidator(1)]),
                ),
                (
                    "residual_severity",
                    models.PositiveSmallIntegerField(blank=True, null=True, validators=[django.core.validators.MinValueValidator(1)]),
                ),
                ("rationale", models.TextField(blank=True, help_text="How the estimates were made and on which data.", max_length=4000)),
                (
                    "acceptance_reason",
                    models.TextField(blank=True, help_text="Why the residual risk is accepted (ISO 14971:2019 7.4).", max_length=4000),
                ),
                ("accepted_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "acceptance_confirmed_by",
                    models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL
                    ),
                ),
                (
                    "acceptance_proposed_by",
                    models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL
                    ),
                ),
                (
                    "carried_from",
                    models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="compliance.hazard"),
                ),
            ],
            options={
                "ordering": ["risk_file", "number"],
            },
        ),
        migrations.CreateModel(
            name="HazardSignal",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("note", models.TextField(help_text="What the signal shows about this hazard.", max_length=2000)),
                ("linked_at", models.DateTimeField(auto_now_add=True)),
                (
                    "alert",
                    models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="hazard_links", to="compliance.alert"
                    ),
                ),
                ("hazard", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="signals", to="compliance.hazard")),
                (
                    "incident",
                    models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="hazard_links", to="compliance.incident"
                    ),
                ),
                ("linked_by", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "ordering": ["hazard", "-linked_at", "-pk"],
            },
        ),
        migrations.AddField(
            model_name="hazard",
            name="reopened_by",
            field=models.ForeignKey(
                blank=True,
                help_text="The signal that re-opened the estimate.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="compliance.hazardsignal",
            ),
        ),
        migrations.CreateModel(
            name="QmsProcedure",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("reference", models.CharField(help_text="The procedure's document number, e.g. SOP-07.", max_length=40)),
                ("title", models.CharField(max_length=300)),
                (
                    "articles",
                    models.JSONField(
                        default=list,
                        help_text='The letters of Art. 17(1) it covers, e.g. ["g", "h"].',
                        validators=[registry.validators.validate_json_safe],
                    ),
                ),
                ("reviewed_on", models.DateField(blank=True, null=True)),
                ("next_review", models.DateField()),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "institution",
                    models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="qms_procedures", to="registry.institution"),
                ),
                ("owner", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "ordering": ["institution", "reference"],
            },
        ),
        migrations.CreateModel(
            name="QmsStandard",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("reference", models.CharField(help_text="e.g. IEC 62304", max_length=60)),
                ("title", models.CharField(max_length=300)),
                ("edition", models.CharField(help_text="e.g. 2006+A1:2015", max_length=60)),
                (
                    "harmonised_status",
                    models.CharField(
                        choices=[
                            ("harmonised_mdr", "Harmonised under the MDR (reference published in the Official Journal)"),
                            ("harmonised_ai_act", "Harmonised under the AI Act"),
                            ("not_harmonised", "Not harmonised: applied as state of the art"),
                        ],
                        max_length=20,
                    ),
                ),
                (
                    "harmonised_reference",
                    models.CharField(blank=True, help_text="Where the reference was published, e.g. the implementing decision.", max_length=200),
                ),
                ("scope", models.TextField(blank=True, help_text="What it is applied to, in full or in part.", max_length=2000)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "institution",
                    models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="qms_standards", to="registry.institution"),
                ),
                (
                    "updated_by",
                    models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL
                    ),
                ),
            ],
            options={
                "ordering": ["institution", "reference"],
            },
        ),
        migrations.CreateModel(
            name="RiskControl",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("inherent_safety", "Inherent safety by design"),
                            ("protective_measure", "Protective measure in the system or its use"),
                            ("information_for_safety", "Information for safety and training of users"),
                        ],
                        max_length=30,
                    ),
                ),
                ("description", models.TextField(max_length=2000)),
                (
                    "verification_kind",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("run", "A validation run"),
                            ("run_section", "An analysis of a validation run"),
                            ("dossier_field", "A field of the version's dossier"),
                            ("reference", "A training record or other document"),
                        ],
                        max_length=20,
                    ),
                ),
                (
                    "verification_section",
                    models.CharField(blank=True, help_text="The analysis of the run, e.g. subgroups or robustness.", max_length=40),
                ),
                ("verification_field", models.CharField(blank=True, help_text="The dossier field's key.", max_length=60)),
                (
                    "verification_reference",
                    models.CharField(blank=True, help_text="A training record or document: its number and title.", max_length=300),
                ),
                ("verified_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("hazard", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="controls", to="compliance.hazard")),
                (
                    "verification_run",
                    models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="validation.validationrun"
                    ),
                ),
                (
                    "verified_by",
                    models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL
                    ),
                ),
            ],
            options={
                "ordering": ["hazard", "pk"],
            },
        ),
        migrations.CreateModel(
            name="RiskFile",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "matrix",
                    models.JSONField(
                        help_text="Probability and severity levels and the region of each cell.", validators=[registry.validators.validate_json_safe]
                    ),
                ),
                (
                    "benefit_risk",
                    models.TextField(blank=True, help_text="The overall benefit-risk conclusion (ISO 14971:2019 8; Art. 9(5)).", max_length=4000),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[("draft", "Draft: being estimated and controlled"), ("approved", "Approved")], default="draft", max_length=10
                    ),
                ),
                ("approved_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "approved_by",
                    models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL
                    ),
                ),
                (
                    "carried_from",
                    models.ForeignKey(
                        blank=True,
                        help_text="The parent version's file it started from.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="carried_to",
                        to="compliance.riskfile",
                    ),
                ),
                ("created_by", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL)),
                ("version", models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name="risk_file", to="registry.modelversion")),
            ],
        ),
        migrations.AddField(
            model_name="hazard",
            name="risk_file",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="hazards", to="compliance.riskfile"),
        ),
        migrations.AddConstraint(
            model_name="hazardsignal",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("alert__isnull", True), ("incident__isnull", False)),
                    models.Q(("alert__isnull", False), ("incident__isnull", True)),
                    _connector="OR",
                ),
                name="compliance_hazardsignal_one_signal",
                violation_error_message="Link either an alert or an incident.",
            ),
        ),
        migrations.AddConstraint(
            model_name="qmsprocedure",
            constraint=models.UniqueConstraint(
                fields=("institution", "reference"),
                name="compliance_qmsprocedure_one_per_reference",
                violation_error_message="This procedure is listed already.",
            ),
        ),
        migrations.AddConstraint(
            model_name="qmsstandard",
            constraint=models.UniqueConstraint(
                fields=("institution", "reference"),
                name="compliance_qmsstandard_one_per_reference",
                violation_error_message="This standard is listed already.",
            ),
        ),
        migrations.AddConstraint(
            model_name="riskfile",
            constraint=models.CheckConstraint(
                condition=models.Q(models.Q(("status", "approved"), _negated=True), ("approved_by__isnull", False), _connector="OR"),
                name="compliance_riskfile_approved_has_officer",
                violation_error_message="An approved risk file names the officer who approved it.",
            ),
        ),
        migrations.AddConstraint(
            model_name="hazard",
            constraint=models.UniqueConstraint(
                fields=("risk_file", "number"), name="compliance_hazard_one_number", violation_error_message="This hazard number is taken."
            ),
        ),
    ]
