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


class ApprovalStatus(models.TextChoices):
    """A version approval proposed by one officer: waiting for a second, put into effect by them, or declined."""

    PENDING = "pending", "Waiting for a second officer"
    CONFIRMED = "confirmed", "Confirmed by a second officer"
    DECLINED = "declined", "Declined"


class DocumentKind(models.TextChoices):
    TECHNICAL_DOCUMENTATION = "technical_documentation", "Technical documentation (Annex IV)"
    INSTRUCTIONS_FOR_USE = "instructions_for_use", "Instructions for use (Art. 13)"
    DECLARATION_OF_CONFORMITY = "declaration_of_conformity", "EU declaration of conformity, draft (Annex V)"
    MODEL_CARD_MARKDOWN = "model_card_md", "Model card (Markdown, Hugging Face format)"
    MODEL_CARD_JSON = "model_card_json", "Model card (JSON)"
    CHANGE_LOG_MARKDOWN = "change_log_md", "Change log (Markdown)"
    CHANGE_LOG_JSON = "change_log_json", "Change log (JSON)"
    GPAI_TECHNICAL = "gpai_annex_xi", "General-purpose model technical documentation (Annex XI)"
    GPAI_DOWNSTREAM = "gpai_annex_xii", "Information for downstream providers (Annex XII)"
    TRAINING_CONTENT_SUMMARY = "training_summary", "Public summary of training content (Art. 53(1)(d))"


class ChangeClass(models.TextChoices):
    NONE = "none", "No change"
    EDITORIAL = "editorial", "Editorial change only: the documentation changed, the system did not"
    WITHIN_PLAN = "within_plan", "Within the pre-determined change plan (Annex IV 2(f))"
    SUBSTANTIAL = "substantial", "Substantial modification: new conformity assessment (Art. 43(4))"


class ConformityRoute(models.TextChoices):
    """How a version's conformity was assessed (AI Act Art. 43)."""

    INTERNAL_CONTROL = "internal_control", "Internal control (AI Act Annex VI)"
    NOTIFIED_BODY = "notified_body", "Quality management system and technical documentation assessed by a notified body (AI Act Annex VII)"
    MDR_NOTIFIED_BODY = "mdr_notified_body", "Within the MDR conformity assessment by a notified body (AI Act Art. 43(3))"


class AlertKind(models.TextChoices):
    PERFORMANCE_DEGRADATION = "performance_degradation", "Performance degradation"
    INPUT_DRIFT = "input_drift", "Input drift"
    OUTPUT_DRIFT = "output_drift", "Output drift"
    PREVALENCE_SHIFT = "prevalence_shift", "Label-prevalence shift"
    DISAGREEMENT_RISE = "disagreement_rise", "Clinician disagreement rising"


class AlertSeverity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"
