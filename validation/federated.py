"""Federated validation on the server: studies, site jobs, site reports and pooling (issue 8).

A study asks the agents of several sites to evaluate one version on their own patients under
one design. The server never sees a case: a site's agent (the institution's site agent account)
claims its job through the API, evaluates locally, and sends the aggregate its data owner
approved. How a report is accepted:

1. Only the job's own site agent may claim, report or fail it; the API shows an agent no other
   job, and of its studies only its own job.
2. The payload passes ``payload_check`` at the study's minimum cell (no per-case field, no
   small or recoverable cell) and follows the study's design (labels, thresholds, attributes,
   intersections, resamples). Every problem is listed at once and nothing is stored.
3. The same payload again returns the stored report (an agent retrying after a lost answer);
   a different payload for a reported job is a conflict. A report is never edited.

``study_pool`` pools what was reported (summed histograms per stratum, a random-effects
meta-analysis per label and metric, per-site rows, forest plots rendered once and stored with
the figures in a ``StudyPooling``) and lists every site that has not reported, as "not
reported" or, after the deadline, as "missed the deadline".
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from core.access import role_of, scope
from core.audit import audit_action
from core.choices import Role
from core.errors import Conflict
from radtrust_agent.pacs import PacsSpec
from radtrust_engine.artifacts import artifact_dir
from radtrust_engine.federated_check import payload_check
from radtrust_engine.federated_payload import (
    DEFAULT_MIN_PATIENTS,
    FILE_SUFFIX,
    MAX_ATTRIBUTES,
    MAX_INTERSECTIONS,
    MAX_LABELS,
    MAX_RESAMPLES,
    SiteSummary,
    name_problem,
)
from radtrust_engine.federated_pooling import pool_sites, site_meta_analysis
from radtrust_engine.hashing import canonical_sha256, sha256_matches
from radtrust_engine.pipeline import STRATIFIABLE
from registry.choices import VersionStatus
from registry.models import Deployment, Institution, ModelVersion
from registry.services import artifact_root
from validation.charts import study_forest_chart
from validation.choices import FederatedJobStatus, StudyStatus
from validation.models import FederatedJob, FederatedStudy, SiteReport, StudyPooling
from validation.services import manifest_name_check
from validation.signals import site_report_received

DEFAULT_ATTRIBUTES = ("sex", "age_band", "scanner_manufacturer")
SPEC_KEYS = ("labels", "attributes", "intersections", "min_patients", "thresholds", "n_resamples", "seed", "manifest", "dicomweb")
META_METRICS = ("auroc", "sensitivity", "specificity")
NOT_REPORTED, MISSED_DEADLINE, REPORTED = "not reported", "missed the deadline", "reported"
MAX_AGENT_BYTES = 16 * 1024
_CLOCK_SKEW = timedelta(minutes=10)
# An absolute path (POSIX, home or Windows drive) or a backslash; with FILE_SUFFIX, what no text from a site may name.
_PATH = re.compile(r"(^|[\s'\"(=:,])(/|~/|[A-Za-z]:[\\/])|\\")


def payload_sha256(payload: Any) -> str:
    """The hash a report is known by: sha256 of the payload as canonical JSON
    (``radtrust_engine.hashing``), the hash the site's agent recorded and its data owner approved.

    A report stored before canonical hashing keeps its legacy hash (plain ``json.dumps`` with
    sorted keys); ``report_submit`` recognises the same payload sent again by either hash."""
    return canonical_sha256(payload)


def _path_like(text: str, *, known: str = "") -> bool:
    """Whether ``text`` names a path or a data file; ``known`` (the study's manifest name) may appear."""
    text = text.replace(known, "") if known else text
    return bool(_PATH.search(text) or any(FILE_SUFFIX.search(word.rstrip(".")) for word in re.split(r"[\s,;:'\"()\[\]]+", text)))


# --- Reads ---------------------------------------------------------------------------------


def study_list(*, user) -> QuerySet[FederatedStudy]:
    """The studies the user may see, each with the jobs the user may see (a site agent: its own only)."""
    jobs = Prefetch("jobs", queryset=scope(user, FederatedJob.objects.select_related("institution")))
    return scope(user, FederatedStudy.objects.select_related("version__foundation_model", "created_by").prefetch_related(jobs))


def job_list(*, user) -> QuerySet[FederatedJob]:
    """The jobs a site's agent may see: its own institution's only (``core.access.scope``)."""
    return scope(user, FederatedJob.objects.select_related("study__version__foundation_model", "institution"))


def job_open(jobs: QuerySet[FederatedJob]) -> QuerySet[FederatedJob]:
    """The jobs a site can still work on: their study is open and its deadline ahead."""
    return jobs.filter(study__status=StudyStatus.OPEN, study__deadline__gt=timezone.now())


# --- The study design ----------------------------------------------------------------------


def _names(value: Any, what: str, problems: list[str], *, maximum: int) -> list[str]:
    """A list of distinct short names, or [] after saying what is wrong."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{what}: give a list of names")
        return []
    if len(set(value)) != len(value) or len(value) > maximum:
        problems.append(f"{what}: at most {maximum} names, each once")
    for v in value:
        if problem := name_problem(v):
            problems.append(f"{what}: {problem}")
    return value


def _integer(value: Any, what: str, problems: list[str], *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        problems.append(f"{what}: give a whole number {f'from {low} to {high}' if high is not None else f'of at least {low}'}")
    return value


def study_spec_clean(spec: Any, *, version: ModelVersion) -> dict[str, Any]:
    """The study design with its defaults filled in (labels and thresholds from the version's
    output schema); a ValidationError on ``spec`` lists every problem at once."""
    if not isinstance(spec, dict):
        raise ValidationError({"spec": ["Give the study design as an object."]})
    problems: list[str] = []
    if unknown := sorted(set(spec) - set(SPEC_KEYS)):
        problems.append(f"unknown keys {', '.join(unknown)}; a study design has {', '.join(SPEC_KEYS)}")
    schema = version.output_schema or {}
    classes = list(schema.get("class_names") or [])
    labels = _names(spec.get("labels", classes), "labels", problems, maximum=MAX_LABELS)
    if not labels:
        problems.append("labels: name at least one class the version outputs")
    for label in labels:
        if label not in classes:
            problems.append(f"labels: {label!r} is not a class of this version (its classes: {', '.join(classes) or 'none'})")
    attributes = _names(spec.get("attributes", list(DEFAULT_ATTRIBUTES)), "attributes", problems, maximum=MAX_ATTRIBUTES)
    problems += [
        f"attributes: {a!r} is not an attribute a manifest records (choose from {', '.join(STRATIFIABLE)})"
        for a in attributes
        if a not in STRATIFIABLE
    ]
    intersections = spec.get("intersections", [])
    if not isinstance(intersections, list) or len(intersections) > MAX_INTERSECTIONS:
        problems.append(f"intersections: give a list of at most {MAX_INTERSECTIONS} attribute pairs")
        intersections = []
    pairs = set()
    for pair in intersections:
        if not isinstance(pair, list) or len(pair) != 2 or pair[0] == pair[1] or any(a not in attributes for a in pair):
            problems.append(f"intersections: {pair!r} is not a pair of two different attributes of the study")
        elif tuple(pair) in pairs:
            problems.append(f"intersections: {pair!r} is listed twice")
        else:
            pairs.add(tuple(pair))
    min_patients = _integer(spec.get("min_patients", DEFAULT_MIN_PATIENTS), "min_patients", problems, low=DEFAULT_MIN_PATIENTS)
    defaults = schema.get("thresholds") if isinstance(schema.get("thresholds"), dict) else {}
    given = spec.get("thresholds", {})
    if not isinstance(given, dict):
        problems.append("thresholds: give an object of label: threshold")
        given = {}
    for label in given:
        if label not in labels:
            problems.append(f"thresholds: {label!r} is not a label of the study")
    thresholds = {label: given.get(label, defaults.get(label, 0.5)) for label in labels}
    for label, t in thresholds.items():
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < 1:
            problems.append(f"thresholds: the threshold of {label!r} must be a number between 0 and 1, not {t!r}")
    n_resamples = _integer(spec.get("n_resamples", 1000), "n_resamples", problems, low=0, high=MAX_RESAMPLES)
    seed = _integer(spec.get("seed", 0), "seed", problems, low=0)
    manifest = spec.get("manifest", "manifest.csv")
    try:
        manifest = manifest_name_check(manifest if isinstance(manifest, str) else "")
    except ValidationError as exc:
        problems.append(f"manifest: {exc.message_dict['manifest'][0]} (relative to the agent's data root)")
    # A query each site's agent runs on its own PACS in place of the manifest (radtrust_agent.pacs).
    dicomweb = spec.get("dicomweb")
    if dicomweb is not None:
        try:
            dicomweb = PacsSpec.from_dict(dicomweb).to_dict()
        except ValueError as exc:
            problems.append(f"dicomweb: {exc}")
    if problems:
        raise ValidationError({"spec": problems})
    return {
        "labels": labels,
        "attributes": attributes,
        "intersections": intersections,
        "min_patients": min_patients,
        "thresholds": {k: float(v) for k, v in thresholds.items()},
        "n_resamples": n_resamples,
        "seed": seed,
        "manifest": manifest,
        **({"dicomweb": dicomweb} if dicomweb is not None else {}),
    }


def _design_problems(payload: Any, spec: Mapping[str, Any]) -> list[str]:
    """How a payload departs from the study's design (its shape is ``payload_check``'s business)."""
    if not isinstance(payload, dict):
        return []
    problems = []
    labels = payload.get("labels")
    if isinstance(labels, dict):
        if set(labels) != set(spec["labels"]):
            problems.append(f"labels: the study evaluates {sorted(spec['labels'])}, the payload reports {sorted(map(str, labels))}")
        for label, threshold in spec["thresholds"].items():
            block = labels.get(label)
            if isinstance(block, dict) and block.get("threshold") != threshold:
                problems.append(f"labels.{label}.threshold: the study's threshold is {threshold}, the payload's {block.get('threshold')!r}")
    for key in ("attributes", "intersections", "n_resamples"):
        if key in payload and payload[key] != spec[key]:
            problems.append(f"{key}: the study's design has {spec[key]!r}, the payload {payload[key]!r}")
    return problems


def _agent_problems(agent: Any) -> list[str]:
    """The agent's description (version, device, seconds, timings) is small and names no path."""
    if not isinstance(agent, dict):
        return ["give an object (agent version, device, seconds, timings)"]
    if len(json.dumps(agent)) > MAX_AGENT_BYTES:
        return [f"larger than {MAX_AGENT_BYTES // 1024} KiB; send the agent's version, device and timings only"]
    problems: list[str] = []

    def walk(node: Any, where: str, depth: int) -> None:
        if depth > 4:
            problems.append(f"{where}: nested too deep")
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(key, f"{where}.{key}", depth + 1)
                walk(value, f"{where}.{key}", depth + 1)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]", depth + 1)
        elif isinstance(node, str) and (len(node) > 200 or "\x00" in node or _path_like(node)):
            problems.append(f"{where}: {node[:40]!r} is too long or names a path or file; no path leaves a site")
        elif isinstance(node, float) and not math.isfinite(node):
            problems.append(f"{where}: not a finite number")

    walk(agent, "agent", 0)
    return problems


# --- Studies -------------------------------------------------------------------------------


def study_create(
    *,
    actor,
    version: ModelVersion,
    name: str,
    spec: Any,
    deadline: datetime,
    institutions: Sequence[Institution],
    deployment: Deployment | None = None,
) -> FederatedStudy:
    """Open a study of ``version`` at ``institutions`` with one pending job per site.

    ``deployment`` makes it that deployment's scheduled revalidation, run by the site's own
    agent: the study then has exactly that site and version.
    """
    if version.status == VersionStatus.RETIRED:
        raise Conflict("A retired version is not validated any more.", code="version_retired")
    errors: dict[str, list[str]] = {}
    try:
        spec = study_spec_clean(spec, version=version)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if not (name or "").strip():
        errors["name"] = ["Give the study a name."]
    if deadline <= timezone.now():
        errors["deadline"] = ["The deadline must lie in the future."]
    sites = list(dict.fromkeys(institutions))
    if not sites:
        errors["sites"] = ["Name at least one participating institution."]
    elif len(sites) != len(institutions):
        errors["sites"] = ["Each institution takes part once."]
    if deployment is not None and (deployment.version_id != version.pk or sites != [deployment.institution]):
        errors["deployment"] = ["A revalidation study evaluates the deployment's version at the deployment's site only."]
    if errors:
        raise ValidationError(errors)
    study = FederatedStudy(version=version, name=name.strip(), spec=spec, deadline=deadline, created_by=actor)
    study.full_clean()
    with transaction.atomic():
        study.save()
        for institution in sites:
            FederatedJob.objects.create(study=study, institution=institution, deployment=deployment)
    return study


def study_close(*, actor, study: FederatedStudy) -> FederatedStudy:
    """Close a study: no site claims or reports any more; the pooled figures stay as reported."""
    with transaction.atomic():
        locked = FederatedStudy.objects.select_for_update().get(pk=study.pk)
        if locked.status == StudyStatus.CLOSED:
            raise Conflict("The study is closed already.", code="study_closed")
        locked.status = StudyStatus.CLOSED
        with audit_action("close"):
            locked.save(update_fields=["status"])
    return locked


# --- A site's job --------------------------------------------------------------------------


def _site_agent_check(actor, job: FederatedJob, what: str) -> None:
    """Only the site agent account of the job's own institution works on a job."""
    if role_of(actor) != Role.SITE_AGENT or actor.institution_id != job.institution_id:
        raise PermissionDenied(f"Only the site agent of the job's own institution may {what}.")


def _locked_job(actor, job: FederatedJob) -> FederatedJob:
    """The job's row locked for this transaction, after checking the caller is the job's own site agent."""
    _site_agent_check(actor, job, "act on it")
    return FederatedJob.objects.select_for_update().select_related("study", "institution").get(pk=job.pk)


def _still_open(study: FederatedStudy) -> None:
    if study.status != StudyStatus.OPEN:
        raise Conflict("The study is closed; it takes no more work.", code="study_closed")
    if timezone.now() >= study.deadline:
        raise Conflict(f"The study's deadline ({study.deadline.isoformat()}) has passed.", code="deadline_passed")


def job_claim(*, actor, job: FederatedJob) -> FederatedJob:
    """The site's agent takes its job (again after a failure); claiming a claimed job is a no-op,
    so an agent that lost the answer may simply claim again."""
    with transaction.atomic():
        job = _locked_job(actor, job)
        if job.status == FederatedJobStatus.CLAIMED:
            return job
        if job.status == FederatedJobStatus.REPORTED:
            raise Conflict("This job has been reported already.", code="already_reported")
        _still_open(job.study)
        job.status, job.claimed_at, job.attempts, job.error = FederatedJobStatus.CLAIMED, timezone.now(), job.attempts + 1, ""
        with audit_action("claim"):
            job.save(update_fields=["status", "claimed_at", "attempts", "error", "updated_at"])
    return job


def job_artifact_file(*, actor, job: FederatedJob, name: str) -> tuple[Path, str] | None:
    """Where the stored file ``name`` of the job's version lies and its sha256, for the agent of
    the job's site once it holds the job; None when the artifact has no such file."""
    _site_agent_check(actor, job, "fetch its model")
    if job.status != FederatedJobStatus.CLAIMED:
        raise Conflict(f"The job is {job.status}; the site's agent claims it before fetching the model.", code="not_claimed")
    version = job.study.version
    entry = next((f for f in version.artifact_files if f["name"] == name), None)
    if entry is None:
        return None
    return artifact_dir(artifact_root(), version.artifact_sha256) / entry["name"], entry["sha256"]


def job_fail(*, actor, job: FederatedJob, reason: str) -> FederatedJob:
    """The agent could not evaluate (an artifact hash mismatch, a missing manifest): the reason is
    kept on the job, audited and shown to officers; the site may claim the job again."""
    reason = (reason or "").strip()
    if not reason or len(reason) > 2000:
        raise ValidationError({"reason": ["Say in at most 2000 characters why the job failed."]})
    if _path_like(reason, known=job.study.spec.get("manifest", "")):
        raise ValidationError({"reason": ["Leave paths and file names (other than the study's manifest) out of the reason: no path leaves a site."]})
    with transaction.atomic():
        job = _locked_job(actor, job)
        if job.status == FederatedJobStatus.REPORTED:
            raise Conflict("This job has been reported already.", code="already_reported")
        job.status, job.error = FederatedJobStatus.FAILED, reason
        with audit_action("fail"):
            job.save(update_fields=["status", "error", "updated_at"])
    return job


def report_submit(
    *,
    actor,
    job: FederatedJob,
    payload: Any,
    approved_by: str,
    approved_at: datetime,
    agent: Any = None,
) -> tuple[SiteReport, bool]:
    """Store the aggregate a site's data owner approved; ``(report, created)``.

    The same payload again gives the stored report (``created`` False); see the module
    docstring for what is checked.
    """
    agent = {} if agent is None else agent
    digest = payload_sha256(payload)
    with transaction.atomic():
        job = _locked_job(actor, job)
        stored = SiteReport.objects.filter(job=job).first()
        if stored is not None:
            if stored.payload_sha256 == digest or sha256_matches(payload, stored.payload_sha256):
                return stored, False
            raise Conflict(
                "This job has been reported already with a different payload; a report is never replaced.",
                code="already_reported",
                details={"payload_sha256": stored.payload_sha256},
            )
        _still_open(job.study)
        if job.status != FederatedJobStatus.CLAIMED:
            raise Conflict(f"The job is {job.status}; the site's agent claims it before reporting.", code="not_claimed")
        spec = job.study.spec
        errors: dict[str, list[str]] = {}
        if problems := payload_check(payload, min_patients=spec["min_patients"]) + _design_problems(payload, spec):
            errors["payload"] = problems
        approved_by = (approved_by or "").strip()
        if not approved_by or len(approved_by) > 200 or _path_like(approved_by):
            errors["approved_by"] = ["Name the site's data owner who approved the payload (at most 200 characters)."]
        if approved_at > timezone.now() + _CLOCK_SKEW:
            errors["approved_at"] = ["The approval lies in the future; check the site's clock."]
        if problems := _agent_problems(agent):
            errors["agent"] = problems
        if errors:
            raise ValidationError(errors)
        report = SiteReport.objects.create(
            job=job,
            payload=payload,
            payload_sha256=digest,
            approved_by=approved_by,
            approved_at=approved_at,
            submitted_by=actor,
            agent=agent,
        )
        job.status, job.error = FederatedJobStatus.REPORTED, ""
        with audit_action("report"):
            job.save(update_fields=["status", "error", "updated_at"])
        # Receivers: the revalidation a deployment's job answers, the version's rescoring.
        site_report_received.send(sender=FederatedJob, job=job)
    return report, True


# --- Pooling -------------------------------------------------------------------------------


def _in_design_order(summary: SiteSummary, spec: Mapping[str, Any]) -> SiteSummary:
    """The study's label order (a JSON column may reorder object keys), so every site pools alike."""
    return replace(summary, thresholds={label: summary.thresholds[label] for label in spec["labels"]})


def _site_rows(summaries: Mapping[str, SiteSummary]) -> list[dict[str, Any]]:
    """Each site's overall figures per label, as it reported them (with its own bootstrap CIs)."""
    rows = []
    for site, summary in summaries.items():
        overall = summary.stratum()
        for label in summary.labels:
            row: dict[str, Any] = {"site": site, "label": label, "n_patients": overall.n_patients, "n_cases": overall.n_cases}
            block = None if overall.suppressed else overall.labels[label]
            if block is None or block.suppressed:
                row.update(suppressed=True, reason=(block.reason if block else overall.reason))
            else:
                row.update(
                    suppressed=False,
                    reason=None,
                    positive_cases=block.positive_cases,
                    negative_cases=block.negative_cases,
                    **{m: e.to_dict() for m, e in block.metrics.items()},
                )
            rows.append(row)
    return rows


def _pooled_figures(study: FederatedStudy, reports: Sequence[SiteReport]) -> tuple[dict[str, Any], dict[str, str]]:
    """Pool the reports: the figures (JSON) and the forest plots (SVG by chart name)."""
    spec = study.spec
    summaries = {r.job.institution.code: _in_design_order(SiteSummary.from_dict(r.payload), spec) for r in reports}
    if not summaries:
        return {"pooled": None, "meta_analysis": {}, "site_results": [], "charts": [], "warnings": []}, {}
    pooled = pool_sites(summaries)
    meta = {
        label: {metric: site_meta_analysis(summaries, label=label, metric=metric).to_dict() for metric in META_METRICS} for label in spec["labels"]
    }
    charts, listed = {}, []
    for label, by_metric in meta.items():
        for metric, analysis in by_metric.items():
            if analysis["sites"]:
                chart = study_forest_chart(label, metric, analysis)
                charts[chart.name] = chart.svg
                listed.append(
                    {
                        "name": chart.name,
                        "title": chart.title,
                        "alt": chart.alt,
                        "label": label,
                        "metric": metric,
                        "sha256": hashlib.sha256(chart.svg.encode()).hexdigest(),
                    }
                )
    result = {
        "pooled": pooled.to_dict(),
        "meta_analysis": meta,
        "site_results": _site_rows(summaries),
        "charts": listed,
        "warnings": list(pooled.warnings),
    }
    return result, charts


def study_pooling(study: FederatedStudy) -> StudyPooling:
    """The pooling of the study's current reports, computed (and its charts rendered) once per set of reports."""
    reports = SiteReport.objects.filter(job__study=study).order_by("job__institution__code")
    digest = canonical_sha256(list(reports.values_list("job__institution__code", "payload_sha256")))
    existing = StudyPooling.objects.filter(study=study, reports_digest=digest).defer("charts").first()
    if existing is not None:
        return existing
    result, charts = _pooled_figures(study, list(reports.select_related("job__institution")))
    pooling, _ = StudyPooling.objects.get_or_create(study=study, reports_digest=digest, defaults={"result": result, "charts": charts})
    return pooling


def study_chart(study: FederatedStudy, name: str) -> str | None:
    """A forest plot's SVG from the study's newest pooling, as rendered then; None when it has none of that name."""
    pooling = study.poolings.order_by("-created_at", "-pk").first()
    return pooling.charts.get(name) if pooling is not None else None


def study_pool(study: FederatedStudy) -> dict[str, Any]:
    """Everything a page, the API or the PDF shows of a study: the pooled figures over the reported
    sites (overall and per stratum, per label, with completeness and the sites that suppressed a
    stratum), a random-effects meta-analysis per label and metric (a refusal with its reason when
    fewer than two sites have an estimate), the per-site rows, the forest plots, and every invited
    site with its outcome: reported, not reported or, after the deadline, missed the deadline."""
    pooling = study_pooling(study)
    passed = timezone.now() >= study.deadline
    sites = []
    jobs = study.jobs.select_related("institution", "report").defer("report__payload", "report__agent")
    for job in jobs.order_by("institution__code"):
        report = getattr(job, "report", None)  # a missing reverse one-to-one raises an AttributeError
        outcome = REPORTED if report is not None else (MISSED_DEADLINE if passed else NOT_REPORTED)
        sites.append(
            {
                "institution": job.institution_id,
                "code": job.institution.code,
                "name": job.institution.name,
                "job": job.pk,
                "job_status": job.status,
                "outcome": outcome,
                "error": job.error,
                "attempts": job.attempts,
                "claimed_at": job.claimed_at,
                "submitted_at": report and report.submitted_at,
                "approved_by": report and report.approved_by,
                "approved_at": report and report.approved_at,
                "payload_sha256": report and report.payload_sha256,
            }
        )
    reported = [s["code"] for s in sites if s["outcome"] == REPORTED]
    return {
        "study": study.pk,
        "name": study.name,
        "version": study.version_id,
        "status": study.status,
        "deadline": study.deadline,
        "deadline_passed": passed,
        "design": study.spec,
        "completeness": {"invited": len(sites), "reported": len(reported), "complete": len(reported) == len(sites)},
        "sites": sites,
        "reported": reported,
        "not_reported": [s["code"] for s in sites if s["outcome"] != REPORTED],
        "missed_deadline": [s["code"] for s in sites if s["outcome"] == MISSED_DEADLINE],
        "failed": [s["code"] for s in sites if s["job_status"] == FederatedJobStatus.FAILED],
        "pooling": {"id": pooling.pk, "reports_digest": pooling.reports_digest, "computed_at": pooling.created_at},
        **pooling.result,
    }
