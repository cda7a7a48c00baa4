"""Reads of feedback, monitoring and incidents, scoped by ``core.access``.

The monitoring read (``deployment_monitoring``) costs the same whatever the number
of reports: it reads the deployment's maintained weekly summaries
(``DeploymentWeek``, a row per week) and its ``DeploymentMonitor`` row (counts and
the sequential test), both kept up to date in the transaction that stores a report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import F, Func, OuterRef, Q, QuerySet, Subquery

from compliance.choices import AlertStatus, ErrorType, Severity
from compliance.models import (
    RATING_QUESTIONS,
    Alert,
    DeploymentMonitor,
    DeploymentWeek,
    Dossier,
    Feedback,
    Incident,
    QmsProcedure,
    QmsStandard,
    ScoringPolicy,
    TrustAssessment,
    TrustException,
    VersionApproval,
)
from compliance.monitoring import disagreement_rate_ci
from compliance.usage_logs import UsageSummary, usage_summary
from core.access import role_of, scope
from core.choices import Role
from radtrust_engine.stats import mean_interval
from registry.choices import DeploymentStatus
from registry.models import Deployment
from validation.models import ValidationRun


def feedback_list(*, user) -> QuerySet[Feedback]:
    """Feedback the user may read: clinicians their own only; engineers on their models; officers and auditors all."""
    return scope(user, Feedback.objects.select_related("deployment__institution", "version__foundation_model", "clinician", "incident"))


def incident_list(*, user) -> QuerySet[Incident]:
    return scope(user, Incident.objects.select_related("version__foundation_model", "deployment__institution", "created_by"))


def deployment_alerts(*, deployment, version) -> Q:
    """The alerts of a deployment: its own, and those raised on its version as a whole (a run on test
    data). One rule for the monitoring list's count and the monitoring page's list, so the two agree."""
    return Q(deployment=deployment) | Q(version=version, deployment__isnull=True)


def _open_alerts_count():
    """A subquery of the open (not resolved) alerts of the outer deployment."""
    rows = Alert.objects.filter(deployment_alerts(deployment=OuterRef("pk"), version=OuterRef("version"))).exclude(status=AlertStatus.RESOLVED)
    return rows.order_by().annotate(n=Func(F("pk"), function="COUNT")).values("n")


def monitored_deployments(*, user) -> QuerySet[Deployment]:
    """Deployments in use or suspended, with their monitor and open-alert count, for the overview."""
    return (
        scope(user, Deployment.objects.select_related("version__foundation_model", "institution", "monitor"))
        .filter(status__in=[DeploymentStatus.ACTIVE, DeploymentStatus.SUSPENDED])
        .annotate(open_alerts=Subquery(_open_alerts_count()))
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
    usage: UsageSummary | None = None  # the deployed system's own logs: volume, overrides, inputs outside the envelope

    def to_dict(self) -> dict[str, Any]:
        monitor = self.monitor
        return {
            "deployment": self.deployment.pk,
            "counts": None
            if monitor is None
            else {
                "feedback": monitor.n_feedback,
                "agree": monitor.n_agree,
                "partly": monitor.n_partly,
                "disagree": monitor.n_disagree,
            },
            "sequential_test": None
            if monitor is None
            else {
                "baseline_rate": monitor.baseline_rate,
                "design": monitor.design,
                "state": monitor.state,
                "tested": monitor.tested_n,
            },
            "weeks": self.weeks,
            "error_types": self.error_types,
            "severities": self.severities,
            "ratings": self.ratings,
            "minutes_saved": self.minutes_saved,
            "alerts": [a.pk for a in self.alerts],
            "runs": [r.pk for r in self.runs],
            "usage": None if self.usage is None else self.usage.to_dict(),
        }


@dataclass
class WeekTotals:
    """Weekly summaries added up: the counts, error types, severities, and per rating and minutes
    saved [answers, sum, sum of squares]."""

    n: int = 0
    n_agree: int = 0
    n_partly: int = 0
    n_disagree: int = 0
    error_types: dict[str, int] = field(default_factory=dict)
    severities: dict[str, int] = field(default_factory=dict)
    sums: dict[str, list[float]] = field(default_factory=dict)

    def moments(self, name: str) -> tuple[int, float | None, float | None]:
        """Answers, mean and mean of squares of one summed field (None without answers)."""
        n, total, squares = self.sums.get(name, (0, 0, 0))
        return (int(n), total / n, squares / n) if n else (0, None, None)


def sum_weeks(weeks) -> WeekTotals:
    """Add up ``DeploymentWeek`` rows (of one deployment, or of every deployment of a version)."""
    totals = WeekTotals()
    for week in weeks:
        totals.n += week.n
        totals.n_agree += week.n_agree
        totals.n_partly += week.n_partly
        totals.n_disagree += week.n_disagree
        for key, count in week.error_types.items():
            totals.error_types[key] = totals.error_types.get(key, 0) + count
        for key, count in week.severities.items():
            totals.severities[key] = totals.severities.get(key, 0) + count
        for key, values in week.sums.items():
            before = totals.sums.get(key, [0, 0, 0])
            totals.sums[key] = [a + b for a, b in zip(before, values)]
    return totals


def deployment_monitoring(deployment: Deployment) -> Monitoring:
    """Disagreement per week with its Wilson CI, error types, severities, ratings, time, alerts and runs."""
    weeks = list(DeploymentWeek.objects.filter(deployment=deployment, n__gt=0).order_by("week"))
    totals = sum_weeks(weeks)
    rows = []
    for week in weeks:
        k = week.n_disagree + 0.5 * week.n_partly
        low, high = disagreement_rate_ci(k, week.n)
        rows.append(
            {
                "week": week.week.isoformat(),
                "n": week.n,
                "disagree": week.n_disagree,
                "partly": week.n_partly,
                "rate": k / week.n,
                "ci_low": low,
                "ci_high": high,
            }
        )
    ratings = []
    for r, text in RATING_QUESTIONS.items():
        n, mean, mean_sq = totals.moments(r)
        low, high = mean_interval(n, mean, mean_sq)
        ratings.append({"question": r, "text": text, "n": n, "mean": mean, "ci_low": low, "ci_high": high})
    minutes_n, minutes_mean, minutes_sq = totals.moments("minutes_saved")
    low, high = mean_interval(minutes_n, minutes_mean, minutes_sq)
    alerts = list(
        Alert.objects.filter(deployment_alerts(deployment=deployment, version=deployment.version_id))
        .exclude(status=AlertStatus.RESOLVED)
        .select_related("run", "baseline_run")
        .order_by("-created_at")[:50]
    )
    run_ids = {a.run_id for a in alerts if a.run_id} | {a.baseline_run_id for a in alerts if a.baseline_run_id}
    runs = list(
        ValidationRun.objects.filter(Q(deployment=deployment) | Q(pk__in=run_ids))
        .select_related("dataset")
        .defer("results")
        .order_by("-created_at")[:20]
    )
    return Monitoring(
        deployment=deployment,
        monitor=DeploymentMonitor.objects.filter(deployment=deployment).first(),
        weeks=rows,
        error_types=[{"error_type": e.value, "label": e.label, "n": totals.error_types.get(e.value, 0)} for e in ErrorType],
        severities=[{"severity": s.value, "label": s.label, "n": totals.severities.get(s.value, 0)} for s in Severity],
        ratings=ratings,
        minutes_saved={"n": minutes_n, "mean": minutes_mean, "ci_low": low, "ci_high": high},
        alerts=alerts,
        runs=runs,
        usage=usage_summary(deployment),
    )


def dossier_list(*, user) -> QuerySet[Dossier]:
    return scope(user, Dossier.objects.select_related("version__foundation_model", "author", "submitted_by", "signature__signer"))


def alert_list(*, user) -> QuerySet[Alert]:
    return scope(user, Alert.objects.select_related("version__foundation_model", "deployment__institution", "handled_by"))


def trust_assessment_list(*, user) -> QuerySet[TrustAssessment]:
    """Assessments the user may see (clinicians: versions deployed at their site); the chart is loaded for one only."""
    return scope(user, TrustAssessment.objects.select_related("version__foundation_model", "policy")).defer("chart_svg")


def scoring_policy_list(*, user) -> QuerySet[ScoringPolicy]:
    return scope(user, ScoringPolicy.objects.all())


def trust_exception_list(*, user) -> QuerySet[TrustException]:
    return scope(user, TrustException.objects.select_related("version__foundation_model__provider", "granted_by", "confirmed_by"))


def version_approval_list(*, user) -> QuerySet[VersionApproval]:
    return scope(user, VersionApproval.objects.select_related("version__foundation_model__provider", "proposed_by", "decided_by"))


def usage_logged_deployments(*, user) -> QuerySet[Deployment]:
    """Deployments whose usage logs the user may read and export: the deployment's own scope, and for
    a compliance officer only the deployments of their hospital (the deployer's officer) or of the
    versions their institution provides (the provider's officer). The logs carry case pseudonyms and
    clinicians' notes: no other hospital's officer reads them. Auditors read every deployment's."""
    deployments = scope(user, Deployment.objects.select_related("version__foundation_model", "institution"))
    if role_of(user) == Role.COMPLIANCE_OFFICER and not user.is_superuser:
        inst = user.institution_id
        deployments = deployments.filter(Q(institution_id=inst) | Q(version__foundation_model__provider_id=inst))
    return deployments


def qms_standard_list(*, user) -> QuerySet[QmsStandard]:
    return scope(user, QmsStandard.objects.select_related("institution"))


def qms_procedure_list(*, user) -> QuerySet[QmsProcedure]:
    return scope(user, QmsProcedure.objects.select_related("institution", "owner"))
