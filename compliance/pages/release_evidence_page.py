"""Pinning the release evidence from the dossier page: the officer ticks the runs on the intended
population, names the population, and the service (the API's) pins them or says why not."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from compliance import selectors
from compliance.release_evidence import POST_MARKET, release_evidence_current, release_evidence_pin, version_run_role
from core.access import may
from core.pages import requires
from validation.choices import RunStatus
from validation.selectors import run_list


def release_evidence_panel(request, dossier) -> dict:
    """What the dossier page shows about the version's release evidence: the pin in force and every
    succeeded run, with whether it may be declared (post-market runs never may)."""
    version = dossier.version
    role = version_run_role(version)
    runs = run_list(user=request.user).filter(version=version, status=RunStatus.SUCCEEDED).select_related("dataset").order_by("-finished_at")
    pin = release_evidence_current(version)
    rows = []
    for run in runs[:50]:
        kind = role(run)
        rows.append({"run": run, "role": kind, "eligible": kind != POST_MARKET})
    return {
        "current": pin,
        "current_runs": list(pin.runs.select_related("dataset").order_by("pk")) if pin else [],
        "runs": rows,
        "may_pin": may(request.user, "dossier", write=True),
    }


@requires("dossier", write=True)
@require_POST
def release_evidence_pin_page(request, pk: int):
    dossier = get_object_or_404(selectors.dossier_list(user=request.user), pk=pk)  # another institution's is not found
    chosen = [int(v) for v in request.POST.getlist("runs") if v.isdigit()]
    runs = list(run_list(user=request.user).filter(pk__in=chosen, version=dossier.version).select_related("dataset"))
    try:
        pin = release_evidence_pin(actor=request.user, version=dossier.version, runs=runs, population=request.POST.get("population", ""))
    except (ValidationError, PermissionDenied) as exc:
        reasons = [m for ms in exc.message_dict.values() for m in ms] if isinstance(exc, ValidationError) else [str(exc)]
        for reason in reasons:
            messages.error(request, reason)
    else:
        messages.success(
            request,
            f"Release evidence pinned: {', '.join(f'run {r.pk}' for r in runs)}, at {', '.join(f'{k} {v:.3g}' for k, v in pin.operating_points.items())}.",
        )
    return redirect(reverse("pages:dossier-detail", args=[dossier.pk]) + "#release-evidence")
