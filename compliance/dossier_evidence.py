"""The evidence a dossier shows read-only beside the fields officers write: one provider per
source named in ``compliance.dossier_fields.EVIDENCE_SOURCES``, each reading the registry, runs,
trust scores and feedback as they are now and returning JSON-safe data (or None when there
is none yet). A submitted dossier freezes what these returned."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.timezone import localdate

from compliance.change_log import change_log_build
from compliance.choices import AlertStatus
from compliance.inherited_items import inherited_items
from compliance.models import DeploymentWeek
from compliance.qms import qms_register
from compliance.release_evidence import POST_MARKET, pinned_runs, post_market_reason, release_evidence_current, version_run_role
from compliance.risk_file import risk_file_summary
from compliance.selectors import sum_weeks
from compliance.trust.services import latest_assessment
from core.audit import audit_verify_chain
from radtrust_engine.report import LabelResult, RunReport
from radtrust_engine.stratification import SubgroupResult
from registry.choices import DeploymentStatus
from registry.datasheets import datasheet_completeness
from registry.models import ModelVersion
from validation.choices import RunStatus

Provider = Callable[[ModelVersion], Any]


def _model_description(version: ModelVersion) -> dict:
    m = version.foundation_model
    return {
        "name": m.name,
        "provider": m.provider.name,
        "intended_purpose": m.intended_purpose,
        "intended_users": m.intended_users,
        "instructions_for_use": m.instructions_for_use,
        "known_limitations": m.known_limitations,
        "body_region": m.body_region,
        "modality": m.modality,
        "task": m.task,
        "risk_class": m.risk_class,
        "mdr_class": m.mdr_class,
        "licence": m.licence,
        "general_purpose": m.general_purpose,
    }


def _version_identity(version: ModelVersion) -> dict:
    lineage, current = [], version.parent
    while current is not None and len(lineage) < 50:
        lineage.append(str(current))
        current = current.parent
    return {
        "version": str(version),
        "artifact_sha256": version.artifact_sha256,
        "opset": version.opset,
        "parameters": version.parameter_count,
        "inputs": version.inputs,
        "outputs": version.outputs,
        "output_schema": version.output_schema,
        "preprocessing": version.preprocessing,
        "lineage": lineage,
        "status": version.status,
    }


def _provenance(version: ModelVersion) -> list | None:
    provider_id = version.foundation_model.provider_id
    rows = [
        {
            "dataset": p.dataset.name,
            "dataset_id": p.dataset_id,
            "role": p.role,
            "steward": p.dataset.institution.code,
            "datasheet_completeness": datasheet_completeness(p.dataset).ratio,
            "known_limitations": p.dataset.known_limitations,
            "data_use": [_data_use(g) for g in p.dataset.use_grants.filter(grantee_id=provider_id).order_by("valid_from", "pk")],
        }
        for p in version.provenance.select_related("dataset__institution").order_by("role", "dataset__name")
    ]
    return rows or None


def _data_use(grant) -> str:
    """The steward's data-use agreement under which the provider used another institution's dataset
    (Art. 10), as one line: the dossier page shows it in the provenance table's cell."""
    purpose = f"{grant.get_purpose_display()} ({grant.purpose_detail})" if grant.purpose_detail else grant.get_purpose_display()
    text = f"{grant.agreement_reference}: {purpose}, {grant.valid_from.isoformat()} to {grant.valid_until.isoformat()}"
    return f"{text}, revoked on {localdate(grant.revoked_at):%Y-%m-%d}: {grant.revocation_reason}" if grant.revoked_at else text


def _runs(version: ModelVersion):
    return version.validation_runs.filter(status=RunStatus.SUCCEEDED).select_related("dataset", "deployment__institution").order_by("-finished_at")


def _validation_runs(version: ModelVersion) -> list | None:
    """The test logs: every run on the version's test data, each saying whether it is declared."""
    role = version_run_role(version)
    rows = [
        {
            "run": r.pk,
            "dataset": r.dataset.name,
            "finished_at": r.finished_at.isoformat() if r.finished_at else None,
            "role": role(r),
            "artifact_sha256": r.artifact_sha256,
            "manifest_sha256": r.manifest_sha256,
            "summary": r.summary,
        }
        for r in _runs(version).defer("results")[:40]
        if role(r) != POST_MARKET
    ][:20]
    return rows or None


def _post_market_runs(version: ModelVersion) -> list | None:
    """Runs that are monitoring, never the declared performance: revalidations and drift checks."""
    role = version_run_role(version)
    rows = [
        {
            "run": r.pk,
            "dataset": r.dataset.name,
            "finished_at": r.finished_at.isoformat() if r.finished_at else None,
            "why": post_market_reason(r),
            "summary": r.summary,
        }
        for r in _runs(version).defer("results")[:40]
        if role(r) == POST_MARKET
    ][:20]
    return rows or None


def _report_runs(version: ModelVersion) -> tuple[list, bool]:
    """The runs whose reports the analyses are read from: the declared ones, or before any is pinned
    the newest runs on the version's test data (never a post-market run); and whether they are declared."""
    pin = release_evidence_current(version)
    if pin is not None:
        return pinned_runs(pin), True
    role = version_run_role(version)
    return [r for r in _runs(version)[:40] if role(r) != POST_MARKET][:20], False


def _report_section(version: ModelVersion, pick: Callable[[LabelResult], Any]) -> dict | None:
    """The ``pick`` of the first report that has it, per label (``_report_runs``); None when none has it."""
    runs, declared = _report_runs(version)
    for run in runs:
        report = RunReport.from_dict(run.results)
        found = {label: section for label, result in report.results.items() if (section := pick(result))}
        if found:
            return {"run": run.pk, "dataset": run.dataset.name, "declared": declared, "labels": found}
    return None


def _detection_volumes(version: ModelVersion) -> dict | None:
    """The lesion detection or 3D segmentation results of the first report run that has them
    (``_report_runs``): aggregates only, no per-volume row or case name."""
    runs, declared = _report_runs(version)
    for run in runs:
        report = RunReport.from_dict(run.results)
        if report.detection is None and report.volumes is None:
            continue
        detection = None
        if report.detection is not None:
            detection = {k: report.detection.get(k) for k in ("overall", "size_strata", "subgroups", "config", "dimensions", "calibration")}
            detection["overall"] = {k: v for k, v in (detection["overall"] or {}).items() if k != "curve"}
        volumes = None if report.volumes is None else {k: report.volumes.get(k) for k in ("n_volumes", "n_patients", "structures", "settings")}
        return {
            "run": run.pk,
            "dataset": run.dataset.name,
            "declared": declared,
            "task": report.task,
            "detection": detection,
            "volumes": volumes,
            "readers": report.readers,
            "skipped": len(report.skipped),
        }
    return None


def _declared_performance(version: ModelVersion) -> dict | None:
    """The pinned release evidence: who pinned it for which population, the operating point, and per
    run and label the overall metrics and the figures per group with their confidence intervals."""
    pin = release_evidence_current(version)
    if pin is None:
        return None
    runs = []
    for run in pinned_runs(pin):
        report = RunReport.from_dict(run.results)
        labels = {
            label: {
                "threshold": result.threshold,
                "confidence": result.confidence,
                "n_patients": result.overall.n_patients,
                "n_positive": result.overall.n_positive,
                "overall": {name: e.to_dict() for name, e in (result.overall.metrics or {}).items()},
                **(_subgroups(result) or {}),
            }
            for label, result in report.results.items()
        }
        runs.append(
            {
                "run": run.pk,
                "dataset": run.dataset.name,
                "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                "n_patients": report.dataset.n_patients,
                "labels": labels,
            }
        )
    return {
        "pin": pin.pk,
        "pinned_by": pin.pinned_by.username,
        "pinned_at": pin.pinned_at.isoformat(),
        "population": pin.population,
        "operating_points": pin.operating_points,
        "runs": runs,
    }


def _subgroups(result: LabelResult) -> dict | None:
    if not result.subgroups:
        return None
    return {
        "min_patients": result.min_patients,
        "subgroups": [_subgroup_row(s) for s in result.subgroups],
        "gaps": [g.to_dict() for g in result.gaps],
    }


def _subgroup_row(subgroup: SubgroupResult) -> dict:
    """A subgroup as the dossier shows it: who, how many patients, and its metrics unless suppressed
    (then why, and neither)."""
    metrics = None if subgroup.metrics is None else {name: e.to_dict() for name, e in subgroup.metrics.items()}
    return {
        "grouping": subgroup.grouping,
        "name": subgroup.name,
        "n_patients": subgroup.n_patients,
        "suppressed": subgroup.suppressed,
        "reason": subgroup.reason,
        "metrics": metrics,
    }


def _robustness(result: LabelResult) -> dict | None:
    robustness, generalisation = result.robustness, result.generalisation
    if not (robustness or generalisation):
        return None
    return {"worst_case": (robustness or {}).get("worst_case"), "generalisation": generalisation}


def _calibration_uncertainty(result: LabelResult) -> dict | None:
    calibration, uncertainty = result.calibration, result.uncertainty
    if not (calibration or uncertainty):
        return None
    return {
        "calibration": {k: (calibration or {}).get(k) for k in ("ece", "brier", "n_bins", "strategy")},
        "uncertainty": {k: (uncertainty or {}).get(k) for k in ("referral", "n_flagged", "n_cases", "measure")},
    }


def _explainability(result: LabelResult) -> dict | None:
    section = result.explainability
    if not section or "error" in section:
        return None
    return {k: section.get(k) for k in ("n_cases", "n_explained", "methods", "random_baseline", "pooled", "interpretation")}


def _trust_scores(version: ModelVersion) -> dict | None:
    assessment = latest_assessment(version)
    if assessment is None:
        return None
    return {
        "assessment": assessment.pk,
        "policy": assessment.policy.version,
        "computed_at": assessment.computed_at.isoformat(),
        "principles": {n: {k: p[k] for k in ("score", "status", "strength", "summary")} for n, p in assessment.principles.items()},
    }


def _deployments(version: ModelVersion) -> list | None:
    rows = [
        {
            "deployment": d.pk,
            "institution": d.institution.name,
            "status": d.status,
            "since": d.since.isoformat() if d.since else None,
            "revalidation_cadence_days": d.revalidation_cadence_days,
            "revalidation_state": d.revalidation_state,
        }
        for d in version.deployments.select_related("institution").exclude(status=DeploymentStatus.ENDED)
    ]
    return rows or None


def _post_market_feedback(version: ModelVersion) -> dict | None:
    totals = sum_weeks(DeploymentWeek.objects.filter(deployment__version=version))
    alerts = version.alerts.exclude(status=AlertStatus.RESOLVED).count()
    if not totals.n and not alerts:
        return None
    return {"feedback": {"n": totals.n, "disagree": totals.n_disagree, "partly": totals.n_partly}, "open_alerts": alerts}


def _incidents(version: ModelVersion) -> list:
    return [
        {
            "incident": i.pk,
            "title": i.title,
            "type": i.incident_type,
            "legal_basis": i.legal_basis,
            "deadline": i.deadline.isoformat() if i.deadline else None,
            "status": i.status,
            "reported_on": i.reported_on.isoformat() if i.reported_on else None,
        }
        for i in version.incidents.order_by("pk")
    ]


def _change_log(version: ModelVersion) -> dict | None:
    """The change log against the parent; None for a first version (field 6 is empty then)."""
    return change_log_build(version).to_dict() if version.parent_id else None


def _audit(version: ModelVersion) -> dict:
    verdict = audit_verify_chain()
    return {"chain_intact": verdict.ok, "events_checked": verdict.checked, "broken_at": verdict.broken_seq, "reason": verdict.reason}


PROVIDERS: dict[str, Provider] = {
    "model_description": _model_description,
    "version_identity": _version_identity,
    "provenance": _provenance,
    "validation_runs": _validation_runs,
    "subgroup_performance": lambda v: _report_section(v, _subgroups),
    "robustness": lambda v: _report_section(v, _robustness),
    "detection_volumes": _detection_volumes,
    "calibration_uncertainty": lambda v: _report_section(v, _calibration_uncertainty),
    "explainability": lambda v: _report_section(v, _explainability),
    "trust_scores": _trust_scores,
    "deployments": _deployments,
    "post_market_feedback": _post_market_feedback,
    "incidents": _incidents,
    "change_log": _change_log,
    "declared_performance": _declared_performance,
    "post_market_runs": _post_market_runs,
    "audit": _audit,
    "risk_file": risk_file_summary,
    "inherited_items": inherited_items,
    "qms_register": lambda v: qms_register(v.foundation_model.provider),
}


def dossier_evidence(version: ModelVersion, sources: set[str] | None = None) -> dict[str, Any]:
    """Every provider's data for ``version`` (or those in ``sources``), read now."""
    return {name: provider(version) for name, provider in PROVIDERS.items() if sources is None or name in sources}
