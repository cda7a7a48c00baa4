"""A version's trust page: the radar chart, each principle's criteria with their evidence, and the
history of assessments with what moved. Same selectors and access rules as the API."""

from __future__ import annotations

from django.shortcuts import get_object_or_404, render

from compliance import selectors
from compliance.trust.assess import assessment_diff
from core.access import scope
from core.pages import requires
from registry.models import ModelVersion


@requires("trust_assessment")
def version_trust(request, pk: int):
    version = get_object_or_404(scope(request.user, ModelVersion.objects.select_related("foundation_model")), pk=pk)
    history = list(selectors.trust_assessment_list(user=request.user).filter(version=version).order_by("-computed_at", "-pk")[:20])
    latest = selectors.trust_assessment_list(user=request.user).defer(None).filter(pk=history[0].pk).first() if history else None
    changes = assessment_diff(history[1].principles, history[0].principles) if len(history) > 1 else []
    chart = latest.chart_svg[latest.chart_svg.find("<svg") :] if latest else ""  # inline: without the XML prolog
    return render(
        request, "compliance/trust.html", {"version": version, "assessment": latest, "chart": chart, "history": history, "changes": changes}
    )
