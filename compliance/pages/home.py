"""The home page (each role's landing page) and what the base template shows on every page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from compliance import incidents as incident_services
from compliance.my_tasks import model_overview, my_tasks
from compliance.pages.navigation import navigation, role_label
from core.access import PEOPLE, role_of
from core.choices import Role
from core.notifications import unread_count


def page_context(request) -> dict:
    """The user's role (read once per request), the header's links and, on every officer page, the overdue incidents."""
    user = getattr(request, "user", None)
    role = role_of(user)
    context = {"role": role, "role_label": role_label(role), "nav_links": navigation(user, role)}
    if role is not None or getattr(user, "is_superuser", False):
        context["unread_notifications"] = unread_count(user)
    if role != Role.COMPLIANCE_OFFICER and not getattr(user, "is_superuser", False):
        return context
    return context | {"overdue_incidents": list(incident_services.overdue_incidents().only("pk", "title", "deadline")[:20])}


@login_required
def home(request):
    """Clinicians start at the models in use at their hospital; engineers, officers and auditors at
    every model and version they may see, with what waits for them; service accounts at the admin."""
    role = role_of(request.user)
    if role == Role.CLINICIAN:
        return redirect("pages:clinician-home")
    if role not in PEOPLE and not request.user.is_superuser:
        return redirect("admin:index")
    return render(request, "compliance/home.html", {"models": model_overview(request.user), "tasks": my_tasks(request.user)})
