"""What waits for one person, and the overview of every model they may see: the home page's reads.

A task is listed only where the person could act on it: a dossier in review is offered for
signature to an officer of the provider who neither edited nor submitted it (the four-eyes rule
of ``compliance.dossiers``), a proposed approval or trust exception to an officer of the provider
other than its proposer. Everything is read through ``core.access.scope``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from django.db.models import Count, Min, OuterRef, Q, Subquery
from django.utils import timezone

from compliance.choices import AlertSeverity, AlertStatus, ApprovalStatus, DossierStatus, IncidentStatus
from compliance.models import Alert, Dossier, Incident, TrustAssessment, TrustException, VersionApproval
from core.access import may, role_of, scope
from core.choices import Role
from registry.models import FoundationModel, ModelVersion

OPEN_INCIDENT = (IncidentStatus.OPEN, IncidentStatus.INVESTIGATING)
SEVERITY_ORDER = {AlertSeverity.CRITICAL: 0, AlertSeverity.WARNING: 1, AlertSeverity.INFO: 2}


@dataclass
class MyTasks:
    """The home page's "my tasks": each list holds model instances the template links to."""

    dossiers_to_sign: list[Dossier] = field(default_factory=list)
    dossiers_to_revise: list[Dossier] = field(default_factory=list)
    incidents_due: list[Incident] = field(default_factory=list)
    alerts_to_acknowledge: list[Alert] = field(default_factory=list)
    approvals_to_confirm: list[VersionApproval] = field(default_factory=list)
    exceptions_to_confirm: list[TrustException] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(v) for v in vars(self).values())


def my_tasks(user, *, limit: int = 20) -> MyTasks:
    """The tasks waiting for ``user`` (see the module docstring); officers get most, auditors none."""
    tasks = MyTasks()
    if role_of(user) != Role.COMPLIANCE_OFFICER:
        if may(user, "alert.revalidate", write=True):
            tasks.alerts_to_acknowledge = _open_alerts(user, limit)
        return tasks
    own = Q(version__foundation_model__provider_id=user.institution_id)
    in_review = scope(user, Dossier.objects.select_related("version__foundation_model", "submitted_by")).filter(own, status=DossierStatus.IN_REVIEW)
    tasks.dossiers_to_sign = [d for d in in_review.exclude(submitted_by=user)[: limit * 2] if user.pk not in (d.editors or [])][:limit]
    tasks.dossiers_to_revise = list(
        scope(user, Dossier.objects.select_related("version__foundation_model"))
        .filter(own, status=DossierStatus.CHANGES_REQUESTED)
        .filter(Q(author=user) | Q(submitted_by=user))[:limit]
    )
    tasks.incidents_due = list(
        scope(user, Incident.objects.select_related("version__foundation_model", "deployment__institution"))
        .filter(status__in=OPEN_INCIDENT)
        .order_by("deadline", "pk")[:limit]
    )
    tasks.alerts_to_acknowledge = _open_alerts(user, limit)
    tasks.approvals_to_confirm = list(
        scope(user, VersionApproval.objects.select_related("version__foundation_model", "proposed_by"))
        .filter(own, status=ApprovalStatus.PENDING)
        .exclude(proposed_by=user)[:limit]
    )
    tasks.exceptions_to_confirm = list(
        scope(user, TrustException.objects.select_related("version__foundation_model", "granted_by"))
        .filter(own, confirmed_by__isnull=True)
        .exclude(granted_by=user)[:limit]
    )
    return tasks


def _open_alerts(user, limit: int) -> list[Alert]:
    """Open alerts, the most severe first, then the newest."""
    alerts = scope(user, Alert.objects.select_related("version__foundation_model", "deployment__institution")).filter(status=AlertStatus.OPEN)
    return sorted(alerts.order_by("-created_at")[: limit * 3], key=lambda a: SEVERITY_ORDER.get(a.severity, 3))[:limit]


@dataclass
class VersionRow:
    version: ModelVersion
    trust: TrustAssessment | None
    open_alerts: int
    critical_alerts: int
    next_deadline: date | None
    overdue: bool


@dataclass
class ModelRow:
    model: FoundationModel
    versions: list[VersionRow]


def model_overview(user) -> list[ModelRow]:
    """Every model and version the user may see, newest version first, with its newest trust
    assessment, its open alerts and the nearest deadline of its open incidents (four queries)."""
    newest_assessment = TrustAssessment.objects.filter(version=OuterRef("pk")).order_by("-computed_at", "-pk").values("pk")[:1]
    versions = list(
        scope(user, ModelVersion.objects.select_related("foundation_model__provider"))
        .annotate(
            assessment_id=Subquery(newest_assessment),
            open_alerts=Count("alerts", filter=~Q(alerts__status=AlertStatus.RESOLVED), distinct=True),
            critical_alerts=Count(
                "alerts", filter=~Q(alerts__status=AlertStatus.RESOLVED) & Q(alerts__severity=AlertSeverity.CRITICAL), distinct=True
            ),
        )
        .order_by("foundation_model__name", "-created_at", "-pk")
    )
    ids = [v.pk for v in versions]
    deadlines = dict(
        Incident.objects.filter(version_id__in=ids, status__in=OPEN_INCIDENT)
        .values_list("version_id")
        .annotate(first=Min("deadline"))
        .values_list("version_id", "first")
    )
    assessments = TrustAssessment.objects.defer("chart_svg").in_bulk([v.assessment_id for v in versions if v.assessment_id])
    today = timezone.localdate()
    rows: dict[int, ModelRow] = {}
    for v in versions:
        row = rows.setdefault(v.foundation_model_id, ModelRow(model=v.foundation_model, versions=[]))
        deadline = deadlines.get(v.pk)
        row.versions.append(
            VersionRow(
                version=v,
                trust=assessments.get(v.assessment_id),
                open_alerts=v.open_alerts,
                critical_alerts=v.critical_alerts,
                next_deadline=deadline,
                overdue=bool(deadline and deadline < today),
            )
        )
    return list(rows.values())
