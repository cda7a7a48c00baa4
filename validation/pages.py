"""Pages of the validation app: a run's progress and report, two runs side by side, and the
federated studies (each study's sites and outcomes, the pooled figures, the meta-analyses and
forest plots). Same selectors and access rules as the API."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from core.access import may, may_see_case_outputs, role_of
from core.choices import Role
from core.errors import BadQuery
from core.pages import page_window, requires
from validation import federated, selectors
from validation.choices import FederatedJobStatus, RunFileKind, RunStatus
from validation.models import ValidationRun
from validation.report_generation_tables import report_generation_section
from validation.report_tables import chart_section, compare_rows, drift_rows, efficiency_tables, group_name, grouping_name, report_tables
from validation.report_views import report_without_cases
from validation.task_tables import detection_section, reader_section, volume_section

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
    return [_stratum(s) for s in pooled["strata"] if site in s["labels"][label]["missing_sites"]]


def _stratum(stratum: dict[str, Any]) -> str:
    """``sex=F, age_band=65+`` as "Sex female, age band 65+"; the whole population as "Overall"."""
    return group_name(stratum["attributes"], stratum["values"]) or "Overall"


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
            "strata": [{**s, "name": _stratum(s), "figures": s["labels"][label]} for s in pooled["strata"]] if pooled else [],
            "meta": [
                {"metric": METRIC_TITLES.get(metric, metric), "i2_percent": None if analysis["i2"] is None else 100 * analysis["i2"], **analysis}
                for metric, analysis in result["meta_analysis"].get(label, {}).items()
            ],
            "sites": [row for row in site_rows if row["label"] == label],
            "charts": [chart for chart in result["charts"] if chart["label"] == label],
        }
        for label in labels
    ]
    design = result["design"]
    strata = [grouping_name([a]) for a in design.get("attributes", [])] + [grouping_name(pair) for pair in design.get("intersections", [])]
    context = {"study": study, "result": result, "per_label": per_label, "strata": strata}
    return render(request, "validation/federated_detail.html", context)


# --- Runs ---------------------------------------------------------------------------------


def _run_for(request, pk: int) -> tuple[ValidationRun, bool]:
    """The run and whether the user reads only its summary: engineers, officers and auditors read runs
    as the API scopes them; a clinician the headline figures of a version in use at their hospital."""
    if may(request.user, "validation_run", write=False):
        return get_object_or_404(selectors.run_detail(user=request.user), pk=pk), False
    if role_of(request.user) == Role.CLINICIAN:
        return get_object_or_404(selectors.run_summary_list(user=request.user), pk=pk), True
    raise PermissionDenied("Your role does not allow this page.")


def _progress(run: ValidationRun) -> dict[str, Any]:
    device = run.device or {}
    return {
        "status": run.status,
        "status_label": run.get_status_display(),
        "stage": run.stage,
        "stage_label": run.get_stage_display(),
        "percent": round(run.progress * 100),
        "worker": run.worker or "waiting for a worker",
        "device": device.get("name") or device.get("kind") or "not yet known",
        "finished": run.finished,
    }


@login_required
def run_progress(request, pk: int):
    """What the run page polls while the run is going (``run_progress.js``)."""
    run, _ = _run_for(request, pk)
    return JsonResponse(_progress(run))


@login_required
def run_detail(request, pk: int):
    run, summary_only = _run_for(request, pk)
    results = run.results if summary_only or may_see_case_outputs(request.user, run) else report_without_cases(run.results)
    files = (
        [] if summary_only else list(selectors.run_file_list(user=request.user).filter(run=run, kind__in=[RunFileKind.CHART, RunFileKind.SALIENCY]))
    )
    charts: dict[str, list] = {}
    for f in files:
        if f.kind == RunFileKind.CHART:
            charts.setdefault(chart_section(f.name), []).append(f)
    drift_note, drift_findings = drift_rows(results)
    mlflow_url = settings.RADTRUST_MLFLOW_RUN_URL.format(run_id=run.mlflow_run_id) if run.mlflow_run_id and settings.RADTRUST_MLFLOW_RUN_URL else ""
    context = {
        "run": run,
        "summary_only": summary_only,
        "progress": _progress(run),
        "labels": report_tables(results, summary_only=summary_only) if run.results else [],
        "charts": charts,
        "saliency": [f for f in files if f.kind == RunFileKind.SALIENCY],
        "drift_note": drift_note,
        "drift_findings": drift_findings,
        "efficiency": None if summary_only else efficiency_tables(results),
        "alerts": [] if summary_only else list(run.alerts.select_related("incident")),
        "mlflow_url": mlflow_url,
        "skipped": len((results or {}).get("skipped") or []),
        "task_sections": [
            s
            for s in (
                detection_section(results, summary_only=summary_only),
                report_generation_section(results, summary_only=summary_only),
                volume_section(results, summary_only=summary_only),
                None if summary_only else reader_section(results),
            )
            if s is not None
        ],
        "skipped_cases": [] if summary_only else [s for s in (results or {}).get("skipped") or [] if isinstance(s, dict)],
    }
    return render(request, "validation/run_detail.html", context)


@requires("validation_run")
def run_list(request):
    """Every run the user may see, newest first; ``?status=`` narrows it, and two ticked runs open side by side."""
    status = request.GET.get("status", "")
    if status and status not in RunStatus.values:
        raise BadQuery("status", f"Show runs by status: {', '.join(RunStatus.values)}.")
    rows = selectors.run_list(user=request.user)
    if status:
        rows = rows.filter(status=status)
    page = page_window(request, rows.order_by("-created_at", "-pk"), size=50, status=status)
    return render(request, "validation/run_list.html", {"page": page, "status": status, "statuses": RunStatus.choices})


@requires("validation_run")
def run_compare(request):
    """Two runs' overall figures side by side (``?a=&b=``: run numbers)."""
    runs = []
    for key in ("a", "b"):
        raw = request.GET.get(key, "")
        if not (raw.isascii() and raw.isdigit() and len(raw) < 12):
            raise BadQuery(key, "Name two runs by their numbers: ?a=1&b=2.")
        try:
            runs.append(selectors.run_detail(user=request.user).get(pk=int(raw)))
        except ValidationRun.DoesNotExist:
            raise Http404(f"No run {raw} that you may see.") from None
    first, second = runs
    return render(request, "validation/run_compare.html", {"a": first, "b": second, "rows": compare_rows(first.results, second.results)})
