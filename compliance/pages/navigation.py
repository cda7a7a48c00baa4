"""What the header offers each role: the pages of its job, in the order it does them.

One list per role, so a new user finds from the first page where each task lives. Links that
lead into Django's admin are offered to staff accounts only (the admin refuses everyone else).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from core.choices import Role


@dataclass(frozen=True)
class NavLink:
    label: str
    url_name: str
    anchor: str = ""
    staff_only: bool = False


_COMMON_OFFICE = (NavLink("Alerts", "pages:alert-list"), NavLink("Incidents", "pages:incident-list"))

MENUS: dict[str, tuple[NavLink, ...]] = {
    Role.ML_ENGINEER: (
        NavLink("Models", "pages:home", "#models"),
        NavLink("Register a dataset", "engineer:dataset-new"),
        NavLink("Validation runs", "runs:list"),
        NavLink("Monitoring", "pages:monitoring-list"),
        NavLink("Usage logs", "pages:usage-log-list"),
        *_COMMON_OFFICE,
        NavLink("Feedback", "pages:feedback-list"),
        NavLink("Federated studies", "federated:list"),
        NavLink("Data use", "registry:data-use-list"),
        NavLink("API docs", "api-docs"),
    ),
    Role.COMPLIANCE_OFFICER: (
        NavLink("My tasks", "pages:home", "#tasks"),
        NavLink("Dossiers", "pages:dossier-list"),
        NavLink("Approvals", "pages:home", "#approvals"),
        NavLink("Validation runs", "runs:list"),
        *_COMMON_OFFICE,
        NavLink("Monitoring", "pages:monitoring-list"),
        NavLink("Usage logs", "pages:usage-log-list"),
        NavLink("Feedback", "pages:feedback-list"),
        NavLink("Data use", "registry:data-use-list"),
        NavLink("QMS register", "pages:qms-register"),
        NavLink("Audit trail", "audit-list"),
    ),
    Role.CLINICIAN: (
        NavLink("Give feedback", "pages:feedback-quick"),
        NavLink("How is the model doing?", "pages:clinician-home", "#how-is-it-doing"),
        NavLink("My feedback", "pages:feedback-list"),
    ),
    Role.AUDITOR: (
        NavLink("Audit trail", "audit-list"),
        NavLink("Documents", "pages:dossier-list"),
        NavLink("Models", "pages:home", "#models"),
        NavLink("Incidents", "pages:incident-list"),
        NavLink("Monitoring", "pages:monitoring-list"),
        NavLink("Usage logs", "pages:usage-log-list"),
    ),
}


def navigation(user, role: str | None) -> list[tuple[str, str]]:
    """(label, url) of each link the user's role needs, plus the admin for staff."""
    if not getattr(user, "is_authenticated", False):
        return []
    staff = bool(getattr(user, "is_staff", False) or getattr(user, "is_superuser", False))
    links = [(link.label, reverse(link.url_name) + link.anchor) for link in MENUS.get(role, ()) if staff or not link.staff_only]
    if staff:
        links.append(("Admin", reverse("admin:index")))
    return links


def role_label(role: str | None) -> str:
    """The role as people say it (``Compliance officer``, not ``compliance_officer``)."""
    return Role(role).label if role in Role.values else "No role"
