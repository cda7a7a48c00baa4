"""Enumerations of the compliance domain: clinician feedback and serious incidents."""

from django.db import models


class Agreement(models.TextChoices):
    AGREE = "agree", "Agree"
    PARTLY = "partly", "Partly agree"
    DISAGREE = "disagree", "Disagree"


class ErrorType(models.TextChoices):
    FALSE_POSITIVE = "false_positive", "False positive"
    FALSE_NEGATIVE = "false_negative", "False negative"
    WRONG_LOCALISATION = "wrong_localisation", "Wrong localisation"
    WRONG_CLASS = "wrong_class", "Wrong class"
    POOR_IMAGE_HANDLING = "poor_image_handling", "Poor image handling"
    OTHER = "other", "Other"


class Severity(models.TextChoices):
    """The clinical consequence the clinician judges the model's output could have had."""

    NONE = "none", "None"
    LOW = "low", "Low: no effect on care"
    MODERATE = "moderate", "Moderate: could have delayed care"
    HIGH = "high", "High: could have harmed the patient"


class IncidentStatus(models.TextChoices):
    OPEN = "open", "Open"
    INVESTIGATING = "investigating", "Investigating"
    REPORTED = "reported", "Reported to the authority"
    CLOSED = "closed", "Closed"


class CorrectiveActionKind(models.TextChoices):
    SUSPEND_DEPLOYMENT = "suspend_deployment", "Suspend the deployment"
    FIELD_SAFETY_NOTICE = "field_safety_notice", "Field safety notice to users"
    OTHER = "other", "Other measure"


class DossierStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    IN_REVIEW = "in_review", "In review"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"
    SIGNED = "signed", "Signed"
