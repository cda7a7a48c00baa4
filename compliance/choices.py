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
    RESUME_DEPLOYMENT = "resume_deployment", "Lift the suspension of the deployment"
    FIELD_SAFETY_ACTION = "field_safety_action", "Field safety corrective action (MDR Art. 87(1)(b))"
    FIELD_SAFETY_NOTICE = "field_safety_notice", "Field safety notice to users"
    OTHER = "other", "Other measure"


class IncidentTriage(models.TextChoices):
    """What a possible incident turned out to be (``compliance.incident_rules``)."""

    PENDING = "pending", "Awaiting triage"
    SERIOUS = "serious", "Serious incident"
    TREND = "trend", "Trend (MDR Art. 88), not a serious incident"
    SIGNAL = "signal", "Post-market signal, not a serious incident"


class IntakeChannel(models.TextChoices):
    """How a possible incident reached the provider."""

    FEEDBACK = "feedback", "Clinician feedback in RadTrust"
    ALERT = "alert", "Monitoring alert"
    PHONE = "phone", "Telephone call"
    EMAIL = "email", "E-mail"
    LETTER = "letter", "Letter or form"
    OTHER = "other", "Other (say which in the description)"


class IncidentReportKind(models.TextChoices):
    """One report to the authority (AI Act Art. 73(5), MDR Art. 87(6), MDR Art. 88)."""

    INITIAL = "initial", "Initial report (may be incomplete)"
    FOLLOW_UP = "follow_up", "Follow-up report"
    FINAL = "final", "Final report"


class IncidentDecisionKind(models.TextChoices):
    """A decision about an incident that takes two compliance officers."""

    CLOSE_UNREPORTED = "close_unreported", "Close a serious incident without reporting it"
    LIFT_LOCK = "lift_lock", "Allow changes to the system before the authority is informed"


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


class MdrProcedure(models.TextChoices):
    """The MDR conformity assessment procedure (Art. 52) a medical device's assessment followed; the AI
    Act requirements are assessed within it (AI Act Art. 43(3))."""

    NONE = "", "Not a medical device"
    ANNEX_II_III = "annex_ii_iii", "MDR Annexes II and III: technical documentation under the manufacturer's responsibility (class I, Art. 52(7))"
    ANNEX_IX = "annex_ix", "MDR Annex IX: quality management system and technical documentation assessed by a notified body"
    ANNEX_X = "annex_x", "MDR Annex X: type examination by a notified body (with Annex XI)"
    ANNEX_XI = "annex_xi", "MDR Annex XI: product conformity verification by a notified body"


class CeMarking(models.TextChoices):
    """The CE-marking decision recorded when a version is placed on the market (MDR Art. 20, AI Act Art. 48)."""

    AFFIXED = "affixed", "CE marking affixed (no notified body involved)"
    AFFIXED_WITH_NUMBER = "affixed_with_number", "CE marking affixed with the notified body's identification number (MDR Art. 20(5))"


class AlertKind(models.TextChoices):
    PERFORMANCE_DEGRADATION = "performance_degradation", "Performance degradation"
    INPUT_DRIFT = "input_drift", "Input drift"
    OUTPUT_DRIFT = "output_drift", "Output drift"
    PREVALENCE_SHIFT = "prevalence_shift", "Label-prevalence shift"
    DISAGREEMENT_RISE = "disagreement_rise", "Clinician disagreement rising"
    HIGH_SEVERITY_REPORT = "high_severity_report", "Clinician report of possible harm"


class AlertSeverity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class InputQuality(models.TextChoices):
    """What a deployed installation noticed about an input it ran on (a usage-log event's quality flags).
    The first two place the input outside the intended-use envelope the version was validated for."""

    OUT_OF_ENVELOPE = "out_of_envelope", "Outside the intended-use envelope (population, modality, protocol)"
    UNSUPPORTED_DEVICE = "unsupported_device", "Acquired on a scanner or protocol the version was not validated on"
    LOW_QUALITY = "low_quality", "Poor image quality (noise, motion, exposure)"
    ARTEFACT = "artefact", "Artefact in the image (metal, positioning, foreign body)"
    MISSING_METADATA = "missing_metadata", "Metadata missing or inconsistent"


class RiskFileStatus(models.TextChoices):
    DRAFT = "draft", "Draft: being estimated and controlled"
    APPROVED = "approved", "Approved"


class RiskControlKind(models.TextChoices):
    """The ISO 14971:2019 7.1 options, in their order of priority."""

    INHERENT_SAFETY = "inherent_safety", "Inherent safety by design"
    PROTECTIVE_MEASURE = "protective_measure", "Protective measure in the system or its use"
    INFORMATION_FOR_SAFETY = "information_for_safety", "Information for safety and training of users"


class VerificationKind(models.TextChoices):
    """The RadTrust evidence that shows a risk control works (ISO 14971:2019 7.2)."""

    RUN = "run", "A validation run"
    RUN_SECTION = "run_section", "An analysis of a validation run"
    DOSSIER_FIELD = "dossier_field", "A field of the version's dossier"
    REFERENCE = "reference", "A training record or other document"


class HarmonisedStatus(models.TextChoices):
    HARMONISED_MDR = "harmonised_mdr", "Harmonised under the MDR (reference published in the Official Journal)"
    HARMONISED_AI_ACT = "harmonised_ai_act", "Harmonised under the AI Act"
    NOT_HARMONISED = "not_harmonised", "Not harmonised: applied as state of the art"


class TrustTrigger(models.TextChoices):
    """What asked for a trust assessment (``TrustAssessment.trigger``, kept as its code)."""

    RUN_FINISHED = "run_finished", "A validation run finished"
    SITE_REPORT = "site_report", "A federated site reported"
    FEEDBACK = "feedback", "Clinician feedback"
    DATASHEET_CHANGED = "datasheet_changed", "A datasheet changed"
    PROVENANCE_CHANGED = "provenance_changed", "Provenance changed"
    DOSSIER_CHANGED = "dossier_changed", "The dossier changed"
    REVALIDATION_OVERDUE = "revalidation_overdue", "Revalidation overdue"
    MANUAL = "manual", "Asked for by a user"
    DEMO = "demo", "Demo data"
    BENCH = "bench", "Benchmark"
