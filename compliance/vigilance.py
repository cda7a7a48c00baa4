"""Vigilance as a process (AI Act Art. 73, MDR Art. 87-88): intake from anywhere, the date of
awareness, triage to a route, reports to the authority, decisions that take two officers,
field safety corrective actions and the investigation lock.

1. Intake: a clinician's "suspected serious incident" flag on a feedback, an officer's
   escalation of a feedback or an alert, or an officer's record of a call or an e-mail
   (``IncidentIntake``) each open an ``Incident``. A high-severity feedback raises an alert at
   once, whoever reads it next.
2. Awareness is derived, never typed: the earliest linked record (the feedback, the alert and
   the feedback behind it, the call). It changes only with a written reason
   (``AwarenessCorrection``), and the deadline follows it.
3. Triage decides what it is: a serious incident on the route of ``incident_rules``, a trend
   (MDR Art. 88) or a post-market signal; the reason is kept.
4. Reports (initial, follow-up, final) are separate records; nothing overwrites another. The
   first one's date is the incident's ``reported_on``.
5. Until the authority is informed, the version's artifact, intended purpose and class are
   locked (``lock_refusal``); closing a serious incident unreported or lifting the lock takes
   two officers with a reason (``IncidentDecision``).

Every write is audited by the receivers of ``compliance.receivers``.
"""

from __future__ import annotations

from datetime import date, datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from compliance.choices import (
    AlertKind,
    AlertSeverity,
    CorrectiveActionKind,
    IncidentDecisionKind,
    IncidentReportKind,
    IncidentStatus,
    IncidentTriage,
    IntakeChannel,
    Severity,
)
from compliance.incident_rules import INCIDENT_TYPES, SIGNAL_RULE, TREND_RULE, reporting_deadline, reporting_rule
from compliance.models import (
    Alert,
    AwarenessCorrection,
    CorrectiveAction,
    Feedback,
    FieldSafetyNotice,
    Incident,
    IncidentDecision,
    IncidentIntake,
    IncidentReport,
)
from core.access import role_of
from core.audit import audit_action
from core.choices import Role
from core.errors import Conflict

# What the investigation lock keeps as it was, per record (AI Act Art. 73(6)).
LOCKED_FIELDS = {
    "registry.modelversion": {"artifact_sha256": "the model file", "artifact_files": "the model file"},
    "registry.foundationmodel": {"intended_purpose": "the intended purpose", "risk_class": "the AI Act risk class", "mdr_class": "the MDR class"},
}
_NOT_SERIOUS = (IncidentTriage.TREND, IncidentTriage.SIGNAL)


def _text(value: str, field: str, *, limit: int, what: str) -> str:
    value = (value or "").strip()
    if not value:
        raise ValidationError({field: what})
    if len(value) > limit:
        raise ValidationError({field: f"Keep it to {limit:,} characters."})
    return value


def _day(moment: datetime) -> date:
    return timezone.localtime(moment).date()


# --- 1-2. Intake and awareness -------------------------------------------------------------


def awareness_from_records(*, feedback: Feedback | None = None, alert: Alert | None = None, intake: IncidentIntake | None = None) -> date:
    """The date the provider became aware: the earliest record linked to the incident."""
    moments = [r.created_at for r in (feedback, alert) if r is not None]
    if alert is not None and alert.feedback_id:
        moments.append(alert.feedback.created_at)
    if intake is not None:
        moments.append(intake.received_at)
    if not moments:
        raise ValidationError({"source": "An incident comes from a feedback, an alert or a recorded call or message."})
    return _day(min(moments))


def incident_open(
    *,
    actor,
    version,
    deployment=None,
    title: str,
    description: str,
    feedback: Feedback | None = None,
    alert: Alert | None = None,
    intake: IncidentIntake | None = None,
    incident_type: str = "",
    aware_on: date | None = None,
    awareness_reason: str = "",
) -> Incident:
    """Open an incident from one source, aware from its earliest record. With a type it is
    triaged as a serious incident at once (an officer's escalation); without, it waits for triage.
    A date of awareness other than the derived one needs ``awareness_reason`` (kept, audited)."""
    if incident_type and incident_type not in INCIDENT_TYPES:
        raise ValidationError({"incident_type": f"Choose one of: {', '.join(INCIDENT_TYPES)}."})
    title = _text(title, "title", limit=200, what="Give the incident a title.")
    description = _text(description, "description", limit=10000, what="Describe what happened.")
    derived = awareness_from_records(feedback=feedback, alert=alert, intake=intake)
    if aware_on is not None and aware_on != derived:
        _check_awareness(aware_on, derived=derived, reason=awareness_reason)
    incident = Incident(
        version=version,
        deployment=deployment,
        feedback=feedback,
        alert=alert,
        intake=intake,
        title=title,
        description=description,
        medical_device=bool(version.foundation_model.mdr_class),
        aware_on=derived,
        created_by=actor,
    )
    if incident_type:
        _apply_route(incident, incident_type)
        incident.triage, incident.triaged_by, incident.triaged_at = IncidentTriage.SERIOUS, actor, timezone.now()
        incident.triage_reason = "Escalated by a compliance officer as a serious incident."
    try:
        with transaction.atomic(), audit_action("flag" if role_of(actor) == Role.CLINICIAN else "escalate"):
            incident.save()
            if aware_on is not None and aware_on != derived:
                _correct_awareness(actor=actor, incident=incident, aware_on=aware_on, reason=awareness_reason)
    except IntegrityError:
        raise Conflict("This record has been escalated already.", code="already_escalated") from None
    return incident


def _check_awareness(aware_on: date, *, derived: date, reason: str) -> None:
    if aware_on > timezone.localdate():
        raise ValidationError({"aware_on": "The date of awareness cannot be in the future."})
    if not (reason or "").strip():
        raise ValidationError(
            {"aware_on": f"The date of awareness is that of the earliest linked record ({derived:%d %B %Y}); give a written reason to change it."}
        )


def _apply_route(incident: Incident, incident_type: str) -> None:
    rule = reporting_rule(medical_device=incident.medical_device, incident_type=incident_type)
    incident.incident_type, incident.route, incident.legal_basis = incident_type, rule.route, rule.legal_basis
    incident.deadline = reporting_deadline(medical_device=incident.medical_device, incident_type=incident_type, aware_on=incident.aware_on)


def incident_flag_from_feedback(*, feedback: Feedback) -> Incident:
    """The clinician's "suspected serious incident" flag: an incident waiting for an officer's triage."""
    return incident_open(
        actor=feedback.clinician,
        version=feedback.version,
        deployment=feedback.deployment,
        feedback=feedback,
        title=f"Suspected serious incident on {feedback.case_reference}",
        description=feedback.comment or f"Flagged by the clinician; model output: {feedback.model_output}.",
    )


def alert_raise_for_feedback(*, feedback: Feedback) -> Alert | None:
    """A report that the output could have harmed the patient raises a critical alert at once."""
    if feedback.severity != Severity.HIGH:
        return None
    with audit_action("raise"):
        return Alert.objects.create(
            version_id=feedback.version_id,
            deployment_id=feedback.deployment_id,
            feedback=feedback,
            kind=AlertKind.HIGH_SEVERITY_REPORT,
            severity=AlertSeverity.CRITICAL,
            subject=feedback.case_reference,
            message=(
                f"A clinician at {feedback.institution.name} reported that the output on {feedback.case_reference} "
                f"could have harmed the patient ({feedback.get_agreement_display().lower()}"
                f"{', ' + feedback.get_error_type_display().lower() if feedback.error_type else ''})."
            ),
            evidence={"feedback": feedback.pk, "severity": feedback.severity, "suspected_serious_incident": feedback.suspected_serious_incident},
        )


def feedback_vigilance(*, feedback: Feedback) -> None:
    """What a newly stored feedback starts: the alert for a high severity, the incident for a flag."""
    alert_raise_for_feedback(feedback=feedback)
    if feedback.suspected_serious_incident:
        incident_flag_from_feedback(feedback=feedback)


def incident_intake_record(
    *, actor, version, deployment=None, channel: str, reporter: str, description: str, received_at: datetime, title: str
) -> Incident:
    """An officer's record of a call, an e-mail or a letter, and the incident it opens for triage."""
    if channel not in {IntakeChannel.PHONE, IntakeChannel.EMAIL, IntakeChannel.LETTER, IntakeChannel.OTHER}:
        raise ValidationError({"channel": "Say whether it came by telephone, e-mail, letter or another way."})
    if received_at > timezone.now():
        raise ValidationError({"received_at": "It cannot have been received in the future."})
    if deployment is not None and deployment.version_id != version.pk:
        raise ValidationError({"deployment": "The deployment runs another version."})
    with transaction.atomic():
        intake = IncidentIntake.objects.create(
            version=version,
            deployment=deployment,
            channel=channel,
            reporter=_text(reporter, "reporter", limit=200, what="Say who reported it."),
            description=_text(description, "description", limit=10000, what="Write down what was reported."),
            received_at=received_at,
            recorded_by=actor,
        )
        return incident_open(actor=actor, version=version, deployment=deployment, intake=intake, title=title, description=intake.description)


def incident_awareness_change(*, actor, incident: Incident, aware_on: date, reason: str) -> Incident:
    """Change the date of awareness with a written reason; the deadline moves with it."""
    with transaction.atomic():
        locked = Incident.objects.select_for_update().get(pk=incident.pk)
        if locked.aware_on == aware_on:
            raise ValidationError({"aware_on": "That is the date of awareness already."})
        _check_awareness(aware_on, derived=locked.aware_on, reason=reason)
        _correct_awareness(actor=actor, incident=locked, aware_on=aware_on, reason=reason)
    return locked


def _correct_awareness(*, actor, incident: Incident, aware_on: date, reason: str) -> None:
    AwarenessCorrection.objects.create(
        incident=incident,
        previous=incident.aware_on,
        aware_on=aware_on,
        reason=_text(reason, "reason", limit=4000, what="Say why."),
        changed_by=actor,
    )
    incident.aware_on = aware_on
    if incident.incident_type:
        _apply_route(incident, incident.incident_type)
    with audit_action("awareness"):
        incident.save(update_fields=["aware_on", "deadline", "updated_at"])


# --- 3. Triage -----------------------------------------------------------------------------


def incident_triage(*, actor, incident: Incident, outcome: str, reason: str, incident_type: str = "") -> Incident:
    """Decide what a possible incident is: a serious incident of ``incident_type`` (its route and
    deadline from the rules), a trend (MDR Art. 88, devices only) or a post-market signal."""
    reason = _text(reason, "reason", limit=4000, what="Say why it is triaged this way.")
    with transaction.atomic():
        locked = Incident.objects.select_for_update().get(pk=incident.pk)
        if locked.status == IncidentStatus.CLOSED:
            raise Conflict("The incident is closed.", code="incident_closed")
        if locked.reports.exists():
            raise Conflict("The incident has been reported; a change of route goes into a follow-up report.", code="incident_reported")
        if outcome == IncidentTriage.SERIOUS:
            if incident_type not in INCIDENT_TYPES:
                raise ValidationError({"incident_type": f"Choose the type of serious incident: {', '.join(INCIDENT_TYPES)}."})
            _apply_route(locked, incident_type)
        elif outcome in _NOT_SERIOUS:
            if outcome == IncidentTriage.TREND and not locked.medical_device:
                raise ValidationError({"outcome": "Trend reporting (MDR Art. 88) is for medical devices; this is a post-market signal."})
            locked.incident_type, locked.route, locked.deadline = "", "", None
            locked.legal_basis = (TREND_RULE if outcome == IncidentTriage.TREND else SIGNAL_RULE)[0]
        else:
            raise ValidationError({"outcome": "Triage to a serious incident, a trend or a post-market signal."})
        locked.triage, locked.triage_reason, locked.triaged_by, locked.triaged_at = outcome, reason, actor, timezone.now()
        with audit_action("triage"):
            locked.save()
    return locked


# --- 4. Reports ----------------------------------------------------------------------------


def incident_report_record(
    *, actor, incident: Incident, kind: str, submitted_on: date, authority: str, reference: str, summary: str
) -> IncidentReport:
    """Record one report to the authority. The first is the initial report (it may be incomplete);
    follow-ups come after it; one final report ends the series. The first one's date becomes
    ``reported_on`` and lifts the investigation lock."""
    if kind not in IncidentReportKind.values:
        raise ValidationError({"kind": "An initial, follow-up or final report."})
    with transaction.atomic():
        locked = Incident.objects.select_for_update().get(pk=incident.pk)
        if locked.triage == IncidentTriage.PENDING:
            raise Conflict("Triage the incident first: the route decides the authority and the deadline.", code="incident_untriaged")
        if locked.triage == IncidentTriage.SIGNAL:
            raise Conflict("A post-market signal is not reported to the authority as an incident.", code="not_reportable")
        if locked.status == IncidentStatus.CLOSED and kind != IncidentReportKind.FINAL:
            raise Conflict("The incident is closed; only its final report can still be recorded.", code="incident_closed")
        kinds = set(locked.reports.values_list("kind", flat=True))
        if IncidentReportKind.FINAL in kinds:
            raise Conflict("The final report has been recorded; nothing follows it.", code="report_final")
        if not kinds and kind != IncidentReportKind.INITIAL:
            raise ValidationError({"kind": "The first report is the initial report (it may be incomplete)."})
        if kinds and kind == IncidentReportKind.INITIAL:
            raise ValidationError({"kind": "The initial report has been recorded; send a follow-up or the final report."})
        if submitted_on < locked.aware_on or submitted_on > timezone.localdate():
            raise ValidationError({"submitted_on": f"The report date lies between the date of awareness ({locked.aware_on:%d %B %Y}) and today."})
        report = IncidentReport.objects.create(
            incident=locked,
            kind=kind,
            submitted_on=submitted_on,
            authority=_text(authority, "authority", limit=200, what="Name the authority it went to."),
            reference=_text(reference, "reference", limit=120, what="Give the authority's reference (or yours, until they give one)."),
            summary=_text(summary, "summary", limit=10000, what="Say what the report said."),
            recorded_by=actor,
        )
        if locked.reported_on is None:
            locked.reported_on, locked.authority_reference = submitted_on, report.reference
            if locked.status != IncidentStatus.CLOSED:
                locked.status = IncidentStatus.REPORTED
            with audit_action(IncidentStatus.REPORTED):
                locked.save(update_fields=["reported_on", "authority_reference", "status", "updated_at"])
    return report


def needs_two_officers_to_close(incident: Incident) -> bool:
    """A serious incident (or one not yet triaged) that the authority has not been told of."""
    return incident.triage not in _NOT_SERIOUS and incident.reported_on is None


# --- 5. Two officers: closing unreported, lifting the lock ---------------------------------


def incident_decision_propose(*, actor, incident: Incident, kind: str, reason: str) -> IncidentDecision:
    """The first officer proposes closing unreported or lifting the lock, with a reason."""
    if kind not in IncidentDecisionKind.values:
        raise ValidationError({"kind": "Propose closing unreported or lifting the investigation lock."})
    reason = _text(reason, "reason", limit=4000, what="Say why; the second officer and the auditors read it.")
    if incident.status == IncidentStatus.CLOSED:
        raise Conflict("The incident is closed.", code="incident_closed")
    if not needs_two_officers_to_close(incident):
        raise Conflict("The authority has been informed or it is not a serious incident: this needs no second officer.", code="not_needed")
    if incident.decisions.filter(kind=kind, confirmed_by__isnull=True).exists():
        raise Conflict("This is proposed already and waits for a second officer.", code="decision_pending")
    with audit_action("propose"):
        return IncidentDecision.objects.create(incident=incident, kind=kind, reason=reason, proposed_by=actor)


def incident_decision_confirm(*, actor, decision: IncidentDecision) -> IncidentDecision:
    """A second officer confirms; closing takes effect now, with the reason as its closing note."""
    with transaction.atomic():
        locked = IncidentDecision.objects.select_for_update().select_related("incident").get(pk=decision.pk)
        if locked.confirmed_by_id is not None:
            raise Conflict("This was confirmed already.", code="decision_confirmed")
        if locked.proposed_by_id == actor.pk:
            raise PermissionDenied("A second compliance officer confirms, not the one who proposed it.")
        locked.confirmed_by, locked.confirmed_at = actor, timezone.now()
        with audit_action("confirm"):
            locked.save(update_fields=["confirmed_by", "confirmed_at"])
        if locked.kind == IncidentDecisionKind.CLOSE_UNREPORTED:
            incident = Incident.objects.select_for_update().get(pk=locked.incident_id)
            incident.status, incident.closing_note = IncidentStatus.CLOSED, f"Closed unreported by two officers: {locked.reason}"
            with audit_action("closed"):
                incident.save(update_fields=["status", "closing_note", "updated_at"])
    return locked


def locking_incidents(*, version_ids: list[int]) -> list[Incident]:
    """Open serious incidents (or untriaged ones) on these versions that the authority has not been told of
    and whose lock two officers have not lifted."""
    lifted = IncidentDecision.objects.filter(kind=IncidentDecisionKind.LIFT_LOCK, confirmed_by__isnull=False).values("incident_id")
    return list(
        Incident.objects.filter(version_id__in=version_ids, reported_on__isnull=True)
        .exclude(Q(status=IncidentStatus.CLOSED) | Q(triage__in=_NOT_SERIOUS) | Q(pk__in=lifted))
        .order_by("pk")
    )


def lock_refusal(instance) -> str | None:
    """Why saving this model version or foundation model would alter what an open investigation
    needs (AI Act Art. 73(6)), or None. Only changes of the locked fields are refused."""
    label = instance._meta.label_lower
    fields = LOCKED_FIELDS.get(label)
    if not fields or instance.pk is None:
        return None
    before = type(instance).objects.filter(pk=instance.pk).values(*fields).first()
    if before is None:
        return None
    changed = sorted({fields[f] for f in fields if before[f] != getattr(instance, f)})
    if not changed:
        return None
    version_ids = [instance.pk] if label == "registry.modelversion" else list(instance.versions.values_list("pk", flat=True))
    blocking = locking_incidents(version_ids=version_ids)
    if not blocking:
        return None
    numbers = ", ".join(f"#{i.pk}" for i in blocking)
    return (
        f"Incident {numbers} is under investigation and the authority has not been informed: {' and '.join(changed)} "
        "may not change until it is (AI Act Art. 73(6)), unless two officers lift the lock with a reason."
    )


# --- 6. Field safety corrective actions ------------------------------------------------------


def field_safety_action_record(
    *, actor, incident: Incident, description: str, notice_text: str, recipients: str, issued_on: date
) -> CorrectiveAction:
    """A field safety corrective action (MDR Art. 87(1)(b)) with the notice sent to its users."""
    if incident.status == IncidentStatus.CLOSED:
        raise Conflict("The incident is closed; open a new one for new measures.", code="incident_closed")
    if issued_on > timezone.localdate():
        raise ValidationError({"issued_on": "Record the notice once it has been sent."})
    with transaction.atomic():
        action = CorrectiveAction(
            incident=incident,
            kind=CorrectiveActionKind.FIELD_SAFETY_ACTION,
            description=_text(description, "description", limit=4000, what="Describe the corrective action."),
            taken_by=actor,
        )
        with audit_action("corrective_action"):
            action.save()
        FieldSafetyNotice.objects.create(
            action=action,
            text=_text(notice_text, "notice_text", limit=10000, what="Give the text of the field safety notice."),
            recipients=_text(recipients, "recipients", limit=4000, what="Say who received the notice."),
            issued_on=issued_on,
            recorded_by=actor,
        )
    return action
