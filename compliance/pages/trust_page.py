"""A version's trust page: the radar chart, each principle's criteria with their evidence, the
exceptions two officers confirmed, and the history of assessments with what moved. Same
selectors and access rules as the API.

The chart is an ``<img>`` served by its own view, never SVG inlined into the page: an image cannot
run script, whatever the SVG holds.
"""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import get_object_or_404, render

from compliance import selectors
from compliance.models import TrustException
from compliance.trust.assess import assessment_diff
from compliance.trust.rule_kit import status_label
from core.access import may, scope
from core.headers import svg_response
from core.pages import requires
from registry.models import ModelVersion


@requires("trust_assessment")
def version_trust(request, pk: int):
    version = get_object_or_404(scope(request.user, ModelVersion.objects.select_related("foundation_model")), pk=pk)
    history = list(selectors.trust_assessment_list(user=request.user).filter(version=version).order_by("-computed_at", "-pk")[:20])
    latest = selectors.trust_assessment_list(user=request.user).defer(None).filter(pk=history[0].pk).first() if history else None
    changes = assessment_diff(history[1].principles, history[0].principles) if len(history) > 1 else []
    principles = _in_words(latest.principles) if latest else {}
    exceptions = {
        e.principle: e
        for e in TrustException.objects.filter(version=version, confirmed_by__isnull=False).select_related("granted_by", "confirmed_by")
    }
    for name, p in principles.items():
        p["exception"] = exceptions.get(name)
    context = {
        "version": version,
        "assessment": latest,
        "principles": principles,
        "history": history,
        "changes": changes,
        "may_see_datasets": may(request.user, "dataset", write=False),
        "may_see_monitoring": may(request.user, "monitoring", write=False),
    }
    return render(request, "compliance/trust.html", context)


def _in_words(principles: dict) -> dict:
    """The stored principles with each criterion's status in words beside its code."""
    return {
        name: {**p, "criteria": [{**c, "status_label": status_label(c.get("status"))} for c in p.get("criteria", [])]}
        for name, p in principles.items()
    }


@requires("trust_assessment")
def trust_chart(request, pk: int):
    """An assessment's radar chart as an SVG image, under the file policy of ``core.headers``."""
    chart = selectors.trust_assessment_list(user=request.user).defer(None).filter(pk=pk).values_list("chart_svg", flat=True).first()
    if not chart:
        raise Http404("This assessment has no chart.")
    return svg_response(chart)
