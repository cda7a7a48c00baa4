"""How a model is doing at one hospital, in words a clinician reads between two cases.

Per deployment at the clinician's institution (in use or suspended): how often the radiologists
there agreed with it, with its 95% interval; the open alerts said in a sentence; a suspension
with when and why (the corrective action that suspended it); and each exception an officer
granted to the trust guard, with the officers' reason, instead of a bare low score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from compliance.choices import AlertSeverity, AlertStatus, CorrectiveActionKind
from compliance.models import Alert, CorrectiveAction, DeploymentMonitor, TrustException
from compliance.monitoring import disagreement_rate_ci
from registry.choices import DeploymentStatus
from registry.models import Deployment

MIN_REPORTS_FOR_RATE = 10  # under this, a rate says more about chance than about the model


@dataclass
class DeploymentStatusInWords:
    deployment: Deployment
    agreement: str
    alerts: str
    alerts_serious: bool
    suspended: bool
    suspension: str = ""
    exceptions: list[str] = field(default_factory=list)


def agreement_in_words(monitor: DeploymentMonitor | None) -> str:
    """ "Radiologists here agreed with it in 91% of 230 cases (95% interval 87% to 94%)", or why not yet."""
    n = monitor.n_feedback if monitor else 0
    if n < MIN_REPORTS_FOR_RATE:
        return f"Too few reports so far to say how often radiologists here agree with it ({n} of the {MIN_REPORTS_FOR_RATE} needed)."
    disagreements = monitor.n_disagree + 0.5 * monitor.n_partly
    low, high = disagreement_rate_ci(disagreements, n)
    rate = 1 - disagreements / n
    return (
        f"Radiologists here agreed with it in {rate:.0%} of {n:,} reported cases "
        f"(95% interval {1 - high:.0%} to {1 - low:.0%}; a partial agreement counts as half)."
    )


def alerts_in_words(alerts: list[Alert]) -> tuple[str, bool]:
    """A sentence on the open alerts, and whether any is critical."""
    if not alerts:
        return "No open alerts: the monitoring has found nothing that needs a look.", False
    critical = [a for a in alerts if a.severity == AlertSeverity.CRITICAL]
    handled = sum(a.status == AlertStatus.ACKNOWLEDGED for a in alerts)
    first = critical[0] if critical else alerts[0]
    text = f"{len(alerts)} open alert{'s' if len(alerts) != 1 else ''}"
    if critical:
        text += f", {len(critical)} critical"
    text += f". The most important: {first.subject} ({first.message[:160]})."
    text += " The compliance officers are looking into it." if handled else " The compliance officers have been told."
    return text, bool(critical)


def _suspension_in_words(deployment: Deployment, action: CorrectiveAction | None) -> str:
    if action is None:
        return "It is suspended: do not rely on its output until the compliance officers resume it."
    when: datetime = action.taken_at
    return (
        f"Suspended since {when:%d %b %Y} by the compliance officers after incident “{action.incident.title}”: "
        f"{action.description} Do not rely on its output until it is resumed."
    )


def status_in_words(institution_id: int) -> list[DeploymentStatusInWords]:
    """The panel's content for every deployment in use or suspended at ``institution_id``."""
    deployments = list(
        Deployment.objects.select_related("version__foundation_model", "monitor")
        .filter(institution_id=institution_id, status__in=[DeploymentStatus.ACTIVE, DeploymentStatus.SUSPENDED])
        .order_by("version__foundation_model__name", "pk")
    )
    ids = [d.pk for d in deployments]
    alerts: dict[int, list[Alert]] = {}
    for alert in Alert.objects.filter(deployment_id__in=ids).exclude(status=AlertStatus.RESOLVED).order_by("-created_at"):
        alerts.setdefault(alert.deployment_id, []).append(alert)
    suspensions: dict[int, CorrectiveAction] = {}
    for action in (
        CorrectiveAction.objects.select_related("incident")
        .filter(incident__deployment_id__in=ids, kind=CorrectiveActionKind.SUSPEND_DEPLOYMENT)
        .order_by("incident__deployment_id", "-taken_at")
    ):
        suspensions.setdefault(action.incident.deployment_id, action)
    exceptions: dict[int, list[str]] = {}
    for exc in TrustException.objects.filter(version_id__in={d.version_id for d in deployments}, confirmed_by__isnull=False).order_by("principle"):
        principle = exc.principle.replace("_", " ")
        exceptions.setdefault(exc.version_id, []).append(
            f"The evidence on {principle} is below what the policy asks; two compliance officers accepted this because: {exc.justification}"
        )
    rows = []
    for d in deployments:
        alert_text, serious = alerts_in_words(alerts.get(d.pk, []))
        suspended = d.status == DeploymentStatus.SUSPENDED
        rows.append(
            DeploymentStatusInWords(
                deployment=d,
                agreement=agreement_in_words(getattr(d, "monitor", None)),
                alerts=alert_text,
                alerts_serious=serious,
                suspended=suspended,
                suspension=_suspension_in_words(d, suspensions.get(d.pk)) if suspended else "",
                exceptions=exceptions.get(d.version_id, []),
            )
        )
    return rows
