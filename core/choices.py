"""Enumerations every app shares."""

from django.db import models


class Role(models.TextChoices):
    """The Django groups that carry each role's permissions; the access policy in ``core.access`` reads it."""

    ML_ENGINEER = "ml_engineer", "ML engineer"
    COMPLIANCE_OFFICER = "compliance_officer", "Compliance officer"
    CLINICIAN = "clinician", "Clinician"
    AUDITOR = "auditor", "Auditor"
    WORKER = "worker", "Worker"
