"""Enumerations every app shares."""

from django.db import models


class Role(models.TextChoices):
    """The Django groups that carry each role's permissions; the access policy in ``core.access`` reads it.

    ``WORKER`` is the central Celery workers' service role (they read the database, not the API);
    ``SITE_AGENT`` is a hospital's agent (``manage.py agent_token``): it sees its own site's
    federated jobs, their studies and the models they run, nothing else, so that no hospital's
    data reaches another hospital's account. ``DEPLOYMENT_LOGGER`` is a deployed installation
    (``manage.py usage_logger_token``): it sends its one deployment's usage logs and reads nothing.
    """

    ML_ENGINEER = "ml_engineer", "ML engineer"
    COMPLIANCE_OFFICER = "compliance_officer", "Compliance officer"
    CLINICIAN = "clinician", "Clinician"
    AUDITOR = "auditor", "Auditor"
    WORKER = "worker", "Worker"
    SITE_AGENT = "site_agent", "Site agent"
    DEPLOYMENT_LOGGER = "deployment_logger", "Deployment logger"


class TokenRevocation(models.TextChoices):
    """Why an API token stopped working before it expired."""

    REVOKED = "revoked", "Revoked by its owner or an officer"
    SIGNED_OUT = "signed_out", "Signed out with the token"
    PASSWORD_CHANGED = "password_changed", "Its user's password changed"


class NotificationKind(models.TextChoices):
    """What a notification is about (``core.notifications``)."""

    DOSSIER_REVIEW = "dossier_review", "Dossier waiting for your review"
    CRITICAL_ALERT = "critical_alert", "Critical alert"
    INCIDENT_DEADLINE = "incident_deadline", "Incident deadline approaching"
    HIGH_SEVERITY_REPORT = "high_severity_report", "High-severity clinician report"
    DEPLOYMENT_SUSPENDED = "deployment_suspended", "Model suspended at your hospital"
    DEPLOYMENT_RESUMED = "deployment_resumed", "Model back in use at your hospital"
