"""The home page (each role's landing page) and what the base template shows on every page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect

from compliance import incidents as incident_services
from core.access import may, role_of
from core.choices import Role


def page_context(request) -> dict:
    """The user's role (read once per request) and, on every officer page, the overdue incidents."""
    user = getattr(request, "user", None)
    role = role_of(user)
    if role != Role.COMPLIANCE_OFFICER and not getattr(user, "is_superuser", False):
        return {"role": role}
    return {"role": role, "overdue_incidents": list(incident_services.overdue_incidents().only("pk", "title", "deadline")[:20])}


@login_required
def home(request):
    role = role_of(request.user)
    if role == Role.CLINICIAN:
        return redirect("pages:clinician-home")
    if may(request.user, "monitoring", write=False):
        return redirect("pages:monitoring-list")
    return redirect("admin:index")
