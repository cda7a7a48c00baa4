"""Reads of feedback, monitoring and incidents, scoped by ``registry.access``.

The monitoring read (``deployment_monitoring``) costs the same whatever the number
of reports: it reads the deployment's maintained weekly summaries
(``DeploymentWeek``, a row per week) and its ``DeploymentMonitor`` row (counts and
the sequential test), both kept up to date in the transaction that stores a report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q, QuerySet

from compliance.choices import ErrorType, Severity
from compliance.models import DeploymentMonitor, DeploymentWeek, Dossier, Feedback, Incident
from registry.access import scope
from registry.choices import DeploymentStatus
from registry.models import Deployment

RATINGS = ("explanation_helped", "uncertainty_helped", "fitted_workflow")
RATING_QUESTIONS = {
    "explanation_helped": "The explanation helped me",
    "uncertainty_helped": "The uncertainty flag helped me",
    "fitted_workflow": "The output fitted my workflow",
}


def feedback_list(*, user) -> QuerySet[Feedback]:
    """Feedback the user may read: clinicians their own only; engineers on their models; officers and auditors all."""
    return scope(user, Feedback.objects.select_related("deployment__institution", "version__foundation_model", "clinician", "incident"))


def incident_list(*, user) -> QuerySet[Incident]:
    return scope(user, Incident.objects.select_related("version__foundation_model", "deployment__institution", "created_by"))


def monitored_deployments(*, user) -> QuerySet[Deployment]:
    """Deployments in use or suspended, with their monitor and open-alert count, for the overview."""
    from validation.choices import AlertStatus

    return (
        scope(user, Deployment.objects.select_related("version__foundation_model", "institution", "monitor"))
        .filter(status__in=[DeploymentStatus.ACTIVE, DeploymentStatus.SUSPENDED])
        .annotate(open_alerts=Count("alerts", filter=~Q(alerts__status=AlertStatus.RESOLVED), distinct=True))
        .order_by("institution__code", "version__foundation_model__name", "pk")
    )


@dataclass
class Monitoring:
    """What the officer's monitoring page and ``/api/deployments/N/monitoring/`` show for one deployment."""

    deployment: Deployment
    monitor: DeploymentMonitor | None
    weeks: list[dict[str, Any]] = field(default_factory=list)
    error_types: list[dict[str, Any]] = field(default_factory=list)
    severities: list[dict[str, Any]] = field(default_factory=list)
    ratings: list[dict[str, Any]] = field(default_factory=list)
    minutes_saved: dict[str, Any] = field(default_factory=dict)
    alerts: list[Any] = field(default_factory=list)
    runs: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        monitor = self.monitor
        return {
            "deployment": self.deployment.pk,
            "counts": None if monitor is None else {
                "feedback": monitor.n_feedback, "agree": monitor.n_agree, "partly": monitor.n_partly, "disagree": monitor.n_disagree,
            },
            "sequential_test": None if monitor is None else {
                "baseline_rate": monitor.baseline_rate, "design": monitor.design, "state": monitor.state,
                "tested": monitor.tested_n,
            },
            "weeks": self.weeks,
            "error_types": self.error_types,
            "severities": self.severities,
            "ratings": self.ratings,
            "minutes_saved": self.minutes_saved,
            "alerts": [a.pk for a in self.alerts],
            "runs": [r.pk for r in self.runs],
        }


def _mean_ci(n: int, mean: float | None, mean_sq: float | None) -> tuple[float | None, float | None]:
    """Normal-approximation 95% interval of a mean from its first two moments (None below 2 ratings)."""
    if n < 2 or mean is None or mean_sq is None:
        return None, None
    variance = max(mean_sq - mean * mean, 0.0) * n / (n - 1)
    half = 1.959963984540054 * (variance / n) ** 0.5
    return mean - half, mean + half


def deployment_monitoring(deployment: Deployment) -> Monitoring:
    """Disagreement per week with its Wilson CI, error types, severities, ratings, time, alerts and runs."""
    from compliance.monitoring import disagreement_rate_ci
    from validation.choices import AlertStatus
    from validation.models import Alert, ValidationRun

    weeks, errors, severities, sums = [], {}, {}, {}
    for week in DeploymentWeek.objects.filter(deployment=deployment, n__gt=0).order_by("week"):
        k = week.n_disagree + 0.5 * week.n_partly
        low, high = disagreement_rate_ci(k, week.n)
        weeks.append({
            "week": week.week.isoformat(), "n": week.n, "disagree": week.n_disagree, "partly": week.n_partly,
            "rate": k / week.n, "ci_low": low, "ci_high": high,
        })
        for key, count in week.error_types.items():
            errors[key] = errors.get(key, 0) + count
        for key, count in week.severities.items():
            severities[key] = severities.get(key, 0) + count
        for key, (n, total, squares) in week.sums.items():
            before = sums.get(key, (0, 0, 0))
            sums[key] = (before[0] + n, before[1] + total, before[2] + squares)

    def moments(name: str) -> tuple[int, float | None, float | None]:
        n, total, squares = sums.get(name, (0, 0, 0))
        return (n, total / n, squares / n) if n else (0, None, None)

    ratings = []
    for r in RATINGS:
        n, mean, mean_sq = moments(r)
        low, high = _mean_ci(n, mean, mean_sq)
        ratings.append({"question": r, "text": RATING_QUESTIONS[r], "n": n, "mean": mean, "ci_low": low, "ci_high": high})
    minutes_n, minutes_mean, minutes_sq = moments("minutes_saved")
    low, high = _mean_ci(minutes_n, minutes_mean, minutes_sq)
    alerts = list(
        Alert.objects.filter(Q(deployment=deployment) | Q(version_id=deployment.version_id, deployment__isnull=True))
        .exclude(status=AlertStatus.RESOLVED).select_related("run", "baseline_run").order_by("-created_at")[:50]
    )
    run_ids = {a.run_id for a in alerts if a.run_id} | {a.baseline_run_id for a in alerts if a.baseline_run_id}
    runs = list(
        ValidationRun.objects.filter(Q(deployment=deployment) | Q(pk__in=run_ids)).select_related("dataset").defer("results")
        .order_by("-created_at")[:20]
    )
    return Monitoring(
        deployment=deployment,
        monitor=DeploymentMonitor.objects.filter(deployment=deployment).first(),
        weeks=weeks,
        error_types=[{"error_type": e.value, "label": e.label, "n": errors.get(e.value, 0)} for e in ErrorType],
        severities=[{"severity": s.value, "label": s.label, "n": severities.get(s.value, 0)} for s in Severity],
        ratings=ratings,
        minutes_saved={"n": minutes_n, "mean": minutes_mean, "ci_low": low, "ci_high": high},
        alerts=alerts,
        runs=runs,
    )


def dossier_list(*, user) -> QuerySet[Dossier]:
    return scope(user, Dossier.objects.select_related("version__foundation_model", "author", "submitted_by", "signature__signer"))
