"""Enumerations every app shares."""

from django.db import models


class Role(models.TextChoices):
    """The Django groups that carry each role's permissions; the access policy in ``core.access`` reads it.

    ``WORKER`` is the central Celery workers' service role (they read the database, not the API);
    ``SITE_AGENT`` is a hospital's agent (``manage.py agent_token``): it sees its own site's
    federated jobs, their studies and the models they run, nothing else, so that no hospital's
    data reaches another hospital's account.
    """

    ML_ENGINEER = "ml_engineer", "ML engineer"
    COMPLIANCE_OFFICER = "compliance_officer", "Compliance officer"
    CLINICIAN = "clinician", "Clinician"
    AUDITOR = "auditor", "Auditor"
    WORKER = "worker", "Worker"
    SITE_AGENT = "site_agent", "Site agent"


class TokenRevocation(models.TextChoices):
    """Why an API token stopped working before it expired."""

    REVOKED = "revoked", "Revoked by its owner or an officer"
    SIGNED_OUT = "signed_out", "Signed out with the token"
    PASSWORD_CHANGED = "password_changed", "Its user's password changed"
