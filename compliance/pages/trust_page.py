"""A version's trust page: the radar chart, each principle's criteria with their evidence, and the
history of assessments with what moved. Same selectors and access rules as the API.

The chart is an ``<img>`` served by its own view, never SVG inlined into the page: an image cannot
run script, whatever the SVG holds.
"""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import get_object_or_404, render

from compliance import selectors
from compliance.trust.assess import assessment_diff
from core.access import scope
from core.headers import svg_response
from core.pages import requires
from registry.models import ModelVersion


@requires("trust_assessment")
def version_trust(request, pk: int):
    version = get_object_or_404(scope(request.user, ModelVersion.objects.select_related("foundation_model")), pk=pk)
    history = list(selectors.trust_assessment_list(user=request.user).filter(version=version).order_by("-computed_at", "-pk")[:20])
    latest = selectors.trust_assessment_list(user=request.user).defer(None).filter(pk=history[0].pk).first() if history else None
    changes = assessment_diff(history[1].principles, history[0].principles) if len(history) > 1 else []
    return render(request, "compliance/trust.html", {"version": version, "assessment": latest, "history": history, "changes": changes})


@requires("trust_assessment")
def trust_chart(request, pk: int):
    """An assessment's radar chart as an SVG image, under the file policy of ``core.headers``."""
    chart = selectors.trust_assessment_list(user=request.user).defer(None).filter(pk=pk).values_list("chart_svg", flat=True).first()
    if not chart:
        raise Http404("This assessment has no chart.")
    return svg_response(chart)
