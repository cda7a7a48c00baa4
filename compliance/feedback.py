"""Clinician feedback on deployed models, and the post-market monitoring it feeds (AI Act Art. 72).

1. ``feedback_submit`` stores one report per filled-in form (``submission_key``):
   a double submit returns the first row. A clinician reports only on a
   deployment in use at their own institution, of a version not retired; the
   case is named by a pseudonymous reference (``case_reference_check``).
2. In the same transaction the deployment's ``DeploymentMonitor`` is locked
   and updated: counts, and the sequential test. The first
   ``RADTRUST_MONITOR_BASELINE_FEEDBACK`` reports measure the rate at
   deployment (Phase I); the test's in-control rate p0 is that rate, within
   [2%, 50%] (``compliance.monitoring.in_control_rate``), and the design keeps
   the rate's 95% interval and the false-alarm interval at its ends
   (``phase_one``) for the officer. Each later report is one observation of
   the CUSUM of ``compliance.monitoring`` (disagree 1, partly 0.5, agree 0).
3. When the CUSUM crosses its threshold, one ``Alert`` (kind
   ``disagreement_rise``) is raised with the evidence and a proposed
   revalidation; no second alert until an officer resolves it, which restarts
   the test (``monitor_reset``).
4. A clinician edits their own feedback for ``RADTRUST_FEEDBACK_EDIT_HOURS``;
   after that it is frozen. An edit that changes the agreement moves the
   counts; the sequential test keeps what it saw when the report arrived (a
   sequential decision is not rewritten after the fact).
"""

from __future__ import annotations

import re
import uuid
from datetime import date, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncWeek
from django.utils import timezone

from compliance.choices import Agreement, AlertKind, AlertSeverity, ErrorType, Severity, TrustTrigger
from compliance.models import SUMMED_FIELDS, Alert, DeploymentMonitor, DeploymentWeek, Feedback
from compliance.monitoring import CusumDesign, CusumState, cusum_reset, cusum_update, design_cusum, disagreement_rate_ci, in_control_rate, phase_one
from compliance.trust.services import trust_request
from compliance.vigilance import feedback_vigilance
from core.audit import audit_action
from core.errors import Conflict
from registry.choices import DeploymentStatus, VersionStatus
from registry.models import Deployment

OBSERVATION = {Agreement.AGREE: 0.0, Agreement.PARTLY: 0.5, Agreement.DISAGREE: 1.0}
_AGREEMENT_OF = {value: agreement for agreement, value in OBSERVATION.items()}
_COUNTER = {Agreement.AGREE: "n_agree", Agreement.PARTLY: "n_partly", Agreement.DISAGREE: "n_disagree"}
EDITABLE = (
    "case_reference",
    "model_output",
    "agreement",
    "error_type",
    "severity",
    "minutes_saved",
    "explanation_helped",
    "uncertainty_helped",
    "fitted_workflow",
    "comment",
)

_PSEUDONYM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{3,63}$")
_DIGIT_RUN = re.compile(r"\d{6,}")
_HEX = re.compile(r"^[0-9a-fA-F]{16,64}$")
_DATE = re.compile(r"(19|20)\d{2}[-./]?(0[1-9]|1[0-2])[-./]?(0[1-9]|[12]\d|3[01])|(0[1-9]|[12]\d|3[01])[-./](0[1-9]|1[0-2])[-./](19|20)\d{2}")
_NAME = re.compile(r"^[A-Z][a-z]+([._-][A-Z][a-z]+)+$")
PSEUDONYM_HINT = "Use the pseudonymous case reference from the reading list (for example CASE-7f3a9c), never a name, birth date or patient number."


def case_reference_check(value: str) -> str:
    """The reference, stripped, if it looks pseudonymous; a ``ValidationError`` saying why not otherwise.

    Refused: spaces or other characters (names, free text), e-mail addresses, runs
    of six or more digits (record, accession and national identification numbers,
    unless the whole reference is a hexadecimal pseudonym of 16 or more characters),
    dates (birth dates), and capitalised words joined by dots or dashes (names).
    """
    value = (value or "").strip()
    if not _PSEUDONYM.match(value):
        reason = "It must be 4 to 64 letters, digits, dots, dashes or underscores, without spaces."
    elif _DATE.search(value):
        reason = "It contains a date, which may be a birth date."
    elif _DIGIT_RUN.search(value) and not _HEX.match(value):
        reason = "It contains a long run of digits, which looks like a patient or accession number."
    elif _NAME.match(value):
        reason = "It looks like a person's name."
    else:
        return value
    raise ValidationError({"case_reference": f"{reason} {PSEUDONYM_HINT}"})


def _check_content(fields: dict) -> None:
    if len(fields.get("comment") or "") > 2000:
        raise ValidationError({"comment": "Keep the comment to 2,000 characters."})
    agreement = fields.get("agreement")
    if agreement not in Agreement.values:
        raise ValidationError({"agreement": f"Choose one of: {', '.join(Agreement.values)}."})
    if agreement == Agreement.AGREE and fields.get("error_type"):
        raise ValidationError({"error_type": "Leave the error type empty when you agree with the model."})
    if agreement != Agreement.AGREE and not fields.get("error_type"):
        raise ValidationError({"error_type": "Say what kind of error the model made."})


def feedback_submit(*, actor, deployment: Deployment, submission_key: uuid.UUID | None = None, **fields) -> tuple[Feedback, bool]:
    """Store a clinician's report (see the module docstring); returns (feedback, created)."""
    if deployment.institution_id != actor.institution_id:
        raise PermissionDenied("You can report only on models deployed at your institution.")
    if deployment.status != DeploymentStatus.ACTIVE:
        raise ValidationError(
            {"deployment": f"This deployment is {deployment.get_status_display().lower()}, not in use: feedback goes to an active deployment."}
        )
    if deployment.version.status == VersionStatus.RETIRED:
        raise ValidationError({"deployment": "This model version is retired; feedback goes to the version in use."})
    fields["case_reference"] = case_reference_check(fields.get("case_reference", ""))
    _check_content(fields)
    submission_key = submission_key or uuid.uuid4()
    feedback = Feedback(
        deployment=deployment,
        version_id=deployment.version_id,
        institution_id=deployment.institution_id,
        clinician=actor,
        submission_key=submission_key,
        **{k: v for k, v in fields.items() if k in EDITABLE},
        suspected_serious_incident=bool(fields.get("suspected_serious_incident")),
    )
    feedback.full_clean(exclude=["deployment", "version", "institution", "clinician"], validate_unique=False, validate_constraints=False)
    with transaction.atomic():
        monitor = _locked_monitor(deployment)
        existing = Feedback.objects.filter(clinician=actor, submission_key=submission_key).first()
        if existing is not None:
            return existing, False
        feedback.save()
        feedback_vigilance(feedback=feedback)  # a high severity raises an alert, a flag opens an incident
        _week_add(feedback, +1)
        _observe(monitor, [OBSERVATION[feedback.agreement]], feedback.created_at)
        trust_request(version_id=feedback.version_id, trigger=TrustTrigger.FEEDBACK)
    return feedback, True


def feedback_update(*, actor, feedback: Feedback, fields: dict) -> Feedback:
    """Change one's own feedback while it is editable; the monitor follows an agreement change."""
    if feedback.clinician_id != actor.pk:
        raise PermissionDenied("You can change only your own feedback.")
    if timezone.now() > feedback_editable_until(feedback):
        raise Conflict(
            f"Feedback can be changed for {settings.RADTRUST_FEEDBACK_EDIT_HOURS} hours after it was given; this one is frozen.",
            code="feedback_frozen",
        )
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "This field cannot be changed."))
    if "case_reference" in fields:
        fields["case_reference"] = case_reference_check(fields["case_reference"])
    merged = {name: fields.get(name, getattr(feedback, name)) for name in EDITABLE}
    _check_content(merged)
    before = feedback.agreement
    previous = Feedback(**{name: getattr(feedback, name) for name in EDITABLE}, deployment_id=feedback.deployment_id, created_at=feedback.created_at)
    for name, value in merged.items():
        setattr(feedback, name, value)
    feedback.full_clean(exclude=["deployment", "version", "institution", "clinician"], validate_unique=False, validate_constraints=False)
    with transaction.atomic():
        monitor = _locked_monitor(feedback.deployment)
        feedback.save()
        _week_add(previous, -1)
        _week_add(feedback, +1)
        if before != feedback.agreement:
            _count(monitor, before, -1)
            _count(monitor, feedback.agreement, +1)
            monitor.save(update_fields=["n_agree", "n_partly", "n_disagree", "updated_at"])
    return feedback


def feedback_editable_until(feedback: Feedback):
    return feedback.created_at + timedelta(hours=settings.RADTRUST_FEEDBACK_EDIT_HOURS)


def worklist_deployments(*, institution_id: int, version: str = "", model: str = "") -> list[Deployment]:
    """The deployments in use at the institution that a worklist link names (``docs/operating.md``).

    ``version`` is a version's id or its semantic version (``1.2.0``), ``model`` the model's name
    (any case); either may be left out. One deployment is the one to report on; several, the
    clinician picks; none, nothing in use matches.
    """
    deployments = Deployment.objects.select_related("version__foundation_model").filter(institution_id=institution_id, status=DeploymentStatus.ACTIVE)
    version = (version or "").strip()
    if version.isdigit():
        deployments = deployments.filter(version_id=int(version))
    elif version:
        deployments = deployments.filter(version__version=version)
    if (model or "").strip():
        deployments = deployments.filter(version__foundation_model__name__iexact=model.strip())
    return list(deployments.order_by("version__foundation_model__name", "pk")[:50])


# --- The monitor ------------------------------------------------------------------------


def week_of(moment) -> date:
    """The Monday starting the week of ``moment`` (in the current time zone), as the summaries key it."""
    day = timezone.localtime(moment).date()
    return day - timedelta(days=day.weekday())


def _week_add(feedback: Feedback, sign: int) -> None:
    """Add (+1) or take back (-1) one report's contribution to its week (the monitor row is locked)."""
    week, _ = DeploymentWeek.objects.get_or_create(deployment_id=feedback.deployment_id, week=week_of(feedback.created_at))
    week.n += sign
    setattr(week, _COUNTER[feedback.agreement], getattr(week, _COUNTER[feedback.agreement]) + sign)
    if feedback.error_type:
        week.error_types[feedback.error_type] = week.error_types.get(feedback.error_type, 0) + sign
    week.severities[feedback.severity] = week.severities.get(feedback.severity, 0) + sign
    for name in SUMMED_FIELDS:
        value = getattr(feedback, name)
        if value is not None:
            n, total, squares = week.sums.get(name, [0, 0, 0])
            week.sums[name] = [n + sign, total + sign * value, squares + sign * value * value]
    week.save()


def weeks_rebuild(*, deployment_ids: list[int] | None = None) -> int:
    """Recompute the weekly summaries from the stored reports (after a bulk import or a backfill of
    timestamps); returns the number of week rows written."""
    rows = Feedback.objects.all() if deployment_ids is None else Feedback.objects.filter(deployment_id__in=deployment_ids)
    aggregates = {
        "n": Count("pk"),
        **{c: Count("pk", filter=Q(agreement=a)) for a, c in _COUNTER.items()},
        **{f"e_{e}": Count("pk", filter=Q(error_type=e)) for e in ErrorType.values},
        **{f"s_{v}": Count("pk", filter=Q(severity=v)) for v in Severity.values},
    }
    for name in SUMMED_FIELDS:
        aggregates |= {f"{name}_n": Count(name), f"{name}_sum": Sum(name), f"{name}_sq": Sum(F(name) * F(name))}
    weeks = []
    for row in rows.annotate(week=TruncWeek("created_at")).values("deployment_id", "week").annotate(**aggregates).order_by():
        weeks.append(
            DeploymentWeek(
                deployment_id=row["deployment_id"],
                week=timezone.localtime(row["week"]).date() if hasattr(row["week"], "hour") else row["week"],
                n=row["n"],
                **{c: row[c] for c in _COUNTER.values()},
                error_types={e: row[f"e_{e}"] for e in ErrorType.values if row[f"e_{e}"]},
                severities={v: row[f"s_{v}"] for v in Severity.values if row[f"s_{v}"]},
                sums={name: [row[f"{name}_n"], row[f"{name}_sum"] or 0, row[f"{name}_sq"] or 0] for name in SUMMED_FIELDS if row[f"{name}_n"]},
            )
        )
    with transaction.atomic():
        stale = DeploymentWeek.objects.all() if deployment_ids is None else DeploymentWeek.objects.filter(deployment_id__in=deployment_ids)
        stale.delete()
        DeploymentWeek.objects.bulk_create(weeks, batch_size=2000)
    return len(weeks)


def _locked_monitor(deployment: Deployment) -> DeploymentMonitor:
    """The deployment's monitor row, created if missing, locked for this transaction (one writer at a time)."""
    DeploymentMonitor.objects.get_or_create(deployment=deployment)
    return DeploymentMonitor.objects.select_for_update().get(deployment=deployment)


def _count(monitor: DeploymentMonitor, agreement: str, step: int) -> None:
    name = _COUNTER[agreement]
    setattr(monitor, name, getattr(monitor, name) + step)


def _observe(monitor: DeploymentMonitor, observations: list[float], at) -> None:
    """Add observations (in order) to the counts and the test; raise the alert on a new alarm."""
    baseline_n = settings.RADTRUST_MONITOR_BASELINE_FEEDBACK
    seen = monitor.n_feedback
    for x in observations:
        monitor.n_feedback += 1
        _count(monitor, _AGREEMENT_OF[x], +1)
        if seen < baseline_n:
            monitor.baseline_sum += x
        seen += 1
    fresh: list[float] = []
    if monitor.baseline_rate is None:
        if monitor.n_feedback >= baseline_n:
            # the first ``baseline_n`` observations set p0; the rest of this batch feeds the test
            used = baseline_n - (monitor.n_feedback - len(observations))
            rate = monitor.baseline_sum / baseline_n
            monitor.baseline_rate = rate
            design = design_cusum(in_control_rate(monitor.baseline_sum, baseline_n))
            monitor.design = {**design.to_dict(), "phase_one": phase_one(monitor.baseline_sum, baseline_n, design).to_dict()}
            monitor.state = CusumState().to_dict()
            fresh = observations[used:]
    else:
        fresh = observations
    was_alarmed = bool(monitor.state.get("alarmed"))
    if fresh:
        monitor.tested_n += len(fresh)
        monitor.tested_sum += sum(fresh)
        state = cusum_update(CusumState.from_dict(monitor.state), fresh, _design(monitor))
        monitor.state = state.to_dict()
        if state.alarmed and not was_alarmed:
            _raise_alert(monitor, state)
    monitor.last_feedback_at = at
    monitor.save()


def _design(monitor: DeploymentMonitor):
    return CusumDesign(**{k: monitor.design[k] for k in ("p0", "p1", "h")})


def _raise_alert(monitor: DeploymentMonitor, state) -> None:
    deployment = monitor.deployment
    observed, k = monitor.tested_n, monitor.tested_sum
    low, high = disagreement_rate_ci(k, observed)
    rate = k / observed
    design = monitor.design
    with audit_action("raise"):
        Alert.objects.create(
            version_id=deployment.version_id,
            deployment=deployment,
            kind=AlertKind.DISAGREEMENT_RISE,
            severity=AlertSeverity.WARNING,
            subject="disagreement_rate",
            message=(
                f"Clinician disagreement at {deployment.institution.code} rose above the rate at deployment: "
                f"{rate:.1%} (95% CI {low:.1%} to {high:.1%}) over {observed} reports against {design['p0']:.1%}; "
                f"the CUSUM crossed h={design['h']:.2f}. Proposed: revalidate the deployment on the site's newest data."
            ),
            evidence={
                "test": "Bernoulli CUSUM",
                "design": design,
                "state": state.to_dict(),
                "observed_rate": rate,
                "ci_low": low,
                "ci_high": high,
                "n_since_reset": observed,
                "baseline_feedback": settings.RADTRUST_MONITOR_BASELINE_FEEDBACK,
                "proposed_action": "revalidation",
            },
        )


def monitor_reset(*, deployment_id: int) -> None:
    """Restart the test after an officer resolved its alert: later reports start from zero."""
    with transaction.atomic():
        monitor = DeploymentMonitor.objects.select_for_update().filter(deployment_id=deployment_id).first()
        if monitor is None or not monitor.state:
            return
        monitor.state = cusum_reset(CusumState.from_dict(monitor.state)).to_dict()
        monitor.tested_n, monitor.tested_sum = 0, 0.0
        monitor.save(update_fields=["state", "tested_n", "tested_sum", "updated_at"])
