"""Pages of the validation app: the federated studies (each study's sites and outcomes, the pooled
figures, the meta-analyses and forest plots). Same services and access rules as the API."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from core.pages import page_window, requires
from validation import federated
from validation.choices import FederatedJobStatus

METRIC_TITLES = {"auroc": "AUROC", "sensitivity": "Sensitivity", "specificity": "Specificity"}


@requires("federated_study.outcomes")  # pages are for people: a site agent reads its studies through the API
def federated_study_list(request):
    page = page_window(request, federated.study_list(user=request.user).order_by("-created_at", "-pk"), size=25)
    now, rows = timezone.now(), []
    for study in page.items:
        jobs = list(study.jobs.all())  # prefetched with their institutions by the selector
        reported = sum(job.status == FederatedJobStatus.REPORTED for job in jobs)
        rows.append(
            {
                "study": study,
                "sites": sorted(job.institution.code for job in jobs),
                "reported": reported,
                "missing": len(jobs) - reported,
                "deadline_passed": now >= study.deadline,
            }
        )
    return render(request, "validation/federated_list.html", {"rows": rows, "page": page})


def _suppressed_strata(pooled: dict[str, Any] | None, site: str, label: str) -> list[str]:
    """The strata a site had cases in but suppressed (whole or for this label) before they left it."""
    if pooled is None:
        return []
    return [s["name"] for s in pooled["strata"] if site in s["labels"][label]["missing_sites"]]


@requires("federated_study.outcomes")
def federated_study_detail(request, pk: int):
    """A study as ``federated.study_pool`` gives it; the forest plots are the stored SVGs, served by the API."""
    study = get_object_or_404(federated.study_list(user=request.user), pk=pk)
    result = federated.study_pool(study)
    labels = study.spec["labels"]
    pooled = result["pooled"]
    names = {site["code"]: site["name"] for site in result["sites"]}
    site_rows = [
        {**row, "name": names.get(row["site"], row["site"]), "suppressed_strata": _suppressed_strata(pooled, row["site"], row["label"])}
        for row in result["site_results"]
    ]
    per_label = [
        {
            "label": label,
            "strata": [{**s, "figures": s["labels"][label]} for s in pooled["strata"]] if pooled else [],
            "meta": [
                {"metric": METRIC_TITLES.get(metric, metric), "i2_percent": None if analysis["i2"] is None else 100 * analysis["i2"], **analysis}
                for metric, analysis in result["meta_analysis"].get(label, {}).items()
            ],
            "sites": [row for row in site_rows if row["label"] == label],
            "charts": [chart for chart in result["charts"] if chart["label"] == label],
        }
        for label in labels
    ]
    return render(request, "validation/federated_detail.html", {"study": study, "result": result, "per_label": per_label})
