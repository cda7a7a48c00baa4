"""Collect a version's evidence from the database into ``VersionEvidence`` (plain dataclasses),
the only input of the scoring rules.

Only this version's succeeded runs are used, and only on datasets linked to it by provenance;
a failed run or another version's run never reaches the rules. The audit chain is verified
as part of gathering, so "audit chain intact" is a fact checked at that moment. Federated
studies of this version are read as pooled from their current reports (``study_pooling``
pools a set of reports once and keeps it).
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Max, Q
from django.utils import timezone

from compliance.choices import Agreement
from compliance.dossier_fields import FIELDS, field_problem, is_required
from compliance.models import RATING_QUESTIONS, DeploymentWeek, UsageBatch, UsageLogging
from compliance.selectors import sum_weeks
from compliance.trust.evidence import (
    DatasetEvidence,
    DeploymentEvidence,
    DossierEvidence,
    FederatedStudyEvidence,
    FeedbackEvidence,
    RatingEvidence,
    RunEvidence,
    VersionEvidence,
)
from core.audit import audit_verify_chain
from core.choices import Role
from radtrust_engine.report import RunReport
from registry.choices import DeploymentStatus
from registry.datasheets import datasheet_completeness
from registry.models import Deployment, ModelVersion, User
from validation.baselines import version_baseline
from validation.choices import OutputsSource, RunStatus
from validation.federated import study_pooling
from validation.models import FederatedStudy, ValidationRun
from validation.revalidation import revalidation_overdue_from

RECENT_DAYS = 90


def _lineage(version: ModelVersion) -> tuple[dict, ...]:
    chain, seen, current = [], set(), version
    while current is not None and current.pk not in seen:
        seen.add(current.pk)
        roles = set(current.provenance.values_list("role", flat=True))
        chain.append({"version_id": current.pk, "label": str(current), "training_provenance": bool(roles & {"pretraining", "fine_tuning"})})
        current = current.parent
    return tuple(chain)


def _feedback(version: ModelVersion) -> FeedbackEvidence:
    """The version's feedback from the maintained weekly summaries (a row per deployment and week,
    not a scan of every report)."""
    totals = sum_weeks(DeploymentWeek.objects.filter(deployment__version=version))

    def rating(name: str) -> RatingEvidence:
        return RatingEvidence(*totals.moments(name))

    return FeedbackEvidence(
        n=totals.n,
        n_agree=totals.n_agree,
        n_partly=totals.n_partly,
        n_disagree=totals.n_disagree,
        ratings={r: rating(r) for r in RATING_QUESTIONS},
        minutes_saved=rating("minutes_saved"),
    )


def _deployments(version: ModelVersion) -> tuple[DeploymentEvidence, ...]:
    """Each open deployment, with this version's local validation there: a succeeded run on data its
    institution stewards (any dataset, not only those linked by provenance)."""
    runs = list(ValidationRun.objects.filter(version=version, status=RunStatus.SUCCEEDED).select_related("dataset").order_by("finished_at", "pk"))
    today = timezone.localdate()
    since_recent = timezone.now() - timedelta(days=RECENT_DAYS)
    result = []
    deployments = (
        Deployment.objects.filter(version=version)
        .exclude(status=DeploymentStatus.ENDED)
        .select_related("institution")
        .annotate(
            recent=Count("feedback", filter=Q(feedback__created_at__gte=since_recent)),
            overrides=Count("feedback", filter=Q(feedback__agreement__in=[Agreement.DISAGREE, Agreement.PARTLY])),
        )
    )
    clinicians = dict(
        User.objects.filter(institution__deployments__version=version, is_active=True, groups__name=Role.CLINICIAN)
        .values_list("institution_id")
        .annotate(n=Count("pk", distinct=True))
    )
    logging = {lg.deployment_id: lg for lg in UsageLogging.objects.filter(deployment__version=version)}
    last_logged = dict(UsageBatch.objects.filter(deployment__version=version).values_list("deployment_id").annotate(last=Max("last_event_at")))
    for d in deployments:
        local = [r for r in runs if r.dataset.institution_id == d.institution_id]
        usage = logging.get(d.pk)
        before = [r for r in local if d.since and r.finished_at and timezone.localtime(r.finished_at).date() <= d.since]
        chosen = (before or local or [None])[0]
        result.append(
            DeploymentEvidence(
                id=d.pk,
                institution=d.institution.code,
                status=d.status,
                since=d.since.isoformat() if d.since else None,
                local_run_id=chosen.pk if chosen else None,
                local_run_before_go_live=bool(before),
                revalidation_overdue=d.status == DeploymentStatus.ACTIVE and revalidation_overdue_from(d, today=today) is not None,
                recent_feedback=d.recent,
                clinicians=clinicians.get(d.institution_id, 0),
                overrides=d.overrides,
                usage_logger=usage is not None and usage.account_id is not None,
                usage_days_since=max(0, (today - timezone.localtime(last_logged[d.pk]).date()).days) if d.pk in last_logged else None,
                usage_retention_days=usage.retention_days if usage else None,
            )
        )
    return tuple(result)


def _dossier(version: ModelVersion) -> DossierEvidence | None:
    """The newest revision's completeness: frozen at submission, or the officer fields of a draft."""
    dossier = version.dossiers.order_by("-revision").first()
    if dossier is None:
        return None
    if dossier.snapshot:
        done = dossier.snapshot["completeness"]
        missing = [key for section in done["sections"].values() for key in section["missing"]]
        ratio, frozen = done["overall"]["ratio"], True
    else:
        device = bool(version.foundation_model.mdr_class)
        required = [key for key, f in FIELDS.items() if is_required(f, medical_device=device) and f.source == "officer"]
        missing = [key for key in required if field_problem(FIELDS[key], dossier.values.get(key))]  # an answer, not any text
        ratio, frozen = 1 - len(missing) / len(required), False
    values = (dossier.snapshot.get("values") if dossier.snapshot else dossier.values) or {}
    answered = tuple(key for key, f in FIELDS.items() if f.editable and key in values and not field_problem(f, values[key]))
    return DossierEvidence(
        id=dossier.pk, revision=dossier.revision, status=dossier.status, ratio=ratio, missing=tuple(missing), frozen=frozen, answered=answered
    )


def _federated(version: ModelVersion) -> tuple[FederatedStudyEvidence, ...]:
    """The version's federated studies with at least one site report, newest first, each with the
    sites that reported and its AUROC meta-analysis per label."""
    studies = FederatedStudy.objects.filter(version=version, jobs__report__isnull=False).distinct().order_by("-created_at", "-pk")
    found = []
    for study in studies:
        pooling = study_pooling(study)
        result = pooling.result
        found.append(
            FederatedStudyEvidence(
                id=study.pk,
                name=study.name,
                pooling_id=pooling.pk,
                site_patients={row["site"]: row["n_patients"] for row in result["site_results"]},
                auroc={label: metrics["auroc"] for label, metrics in result["meta_analysis"].items()},
            )
        )
    return tuple(found)


def _tasks(version: ModelVersion) -> tuple[dict, ...] | None:
    """An adaptation's change on every task of its parent and base, as its change log pairs them."""
    from compliance.change_log import task_changes  # a real cycle: the change log shows the assessments this evidence feeds

    found = task_changes(version)
    return None if found is None else tuple(found)


def version_evidence(version: ModelVersion) -> VersionEvidence:
    """Everything the rules may use about ``version``, read now."""
    version = ModelVersion.objects.select_related("foundation_model__provider", "parent").get(pk=version.pk)
    model = version.foundation_model
    roles: dict[int, list[str]] = {}
    datasets = {}
    for link in version.provenance.select_related("dataset__institution"):
        roles.setdefault(link.dataset_id, []).append(link.role)
        datasets[link.dataset_id] = link.dataset
    dataset_evidence = []
    for dataset_id, dataset in datasets.items():
        completeness = datasheet_completeness(dataset)
        dataset_evidence.append(
            DatasetEvidence(
                id=dataset.pk,
                name=dataset.name,
                roles=tuple(sorted(roles[dataset_id])),
                institution=dataset.institution.code,
                completeness=completeness.ratio,
                missing_items=tuple(completeness.missing),
                demographics=dataset.demographics or {},
                scanners=tuple(dataset.scanners or ()),
                protocols=dataset.protocols or {},
            )
        )
    runs = list(
        ValidationRun.objects.filter(version=version, status=RunStatus.SUCCEEDED, dataset_id__in=list(datasets))
        .select_related("dataset__institution")
        .order_by("-finished_at", "-pk")
    )
    verdict = audit_verify_chain()
    baseline = version_baseline(version)
    return VersionEvidence(
        version_id=version.pk,
        label=str(version),
        artifact_sha256=version.artifact_sha256,
        artifact_format="onnx",
        model={
            "intended_purpose": model.intended_purpose,
            "intended_users": model.intended_users,
            "instructions_for_use": model.instructions_for_use,
            "known_limitations": model.known_limitations,
            "explainability_needs": model.explainability_needs,
            "body_region": model.body_region,
            "modality": model.modality,
            "output_schema": version.output_schema,
            "provider": model.provider.code,
        },
        lineage=_lineage(version),
        audit_chain_ok=verdict.ok,
        audit_events_checked=verdict.checked,
        audit_broken_reason=verdict.reason or "",
        datasets=tuple(dataset_evidence),
        runs=tuple(
            RunEvidence(
                id=r.pk,
                dataset_id=r.dataset_id,
                dataset_name=r.dataset.name,
                roles=tuple(sorted(roles[r.dataset_id])),
                institution=r.dataset.institution.code,
                finished_at=r.finished_at.isoformat() if r.finished_at else "",
                artifact_sha256=r.artifact_sha256,
                report=RunReport.from_dict(r.results),
                outputs_uploaded=r.outputs_source == OutputsSource.UPLOADED,
            )
            for r in runs
        ),
        deployments=_deployments(version),
        feedback=_feedback(version),
        baseline_run_id=baseline.pk if baseline else None,
        today=timezone.localdate().isoformat(),
        dossier=_dossier(version),
        federated=_federated(version),
        tasks=_tasks(version),
    )
