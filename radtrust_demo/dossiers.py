"""The compliance part of ``manage.py demo``: the nodule model approved through the lifecycle guards
(a dossier signed by a second officer, justified trust exceptions), in use at two hospitals, twelve weeks
of clinician feedback in which one site's disagreement rises, the alert the sequential test
raises, and the incident an officer escalates from it.

The reports go through ``feedback_submit`` like any clinician's (so the monitor, the test
and the alert are the real ones); afterwards their timestamps are spread over the past
twelve weeks so that the weekly view has a history. Reuses what an earlier demo left.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.utils import timezone

from compliance.choices import AlertKind, DossierStatus
from compliance.documents import dossier_documents_render
from compliance.dossiers import dossier_open, dossier_save, dossier_sign, dossier_submit
from compliance.feedback import feedback_submit, weeks_rebuild
from compliance.incidents import incident_escalate
from compliance.models import Alert, Feedback, Incident
from compliance.trust.services import trust_assess, trust_exception_grant
from radtrust_demo.dossier_text import OFFICER_TEXT
from registry import services
from registry.choices import DeploymentStatus, VersionStatus
from registry.models import Deployment, Institution, ModelVersion, User

WEEKS = 12
# (site code, reports before the change, rate before, reports after, rate after)
STREAMS = {"st-anna": (100, 0.08, 240, 0.08), "city-general": (100, 0.08, 240, 0.30)}
ERRORS = ("false_positive", "false_negative", "wrong_localisation", "poor_image_handling")


def _deploy(version: ModelVersion, site: Institution, officer: User) -> Deployment:
    existing = Deployment.objects.filter(version=version, institution=site).exclude(status=DeploymentStatus.ENDED).first()
    if existing:
        return existing
    return services.deployment_create(
        actor=officer,
        version=version,
        institution=site,
        status=DeploymentStatus.ACTIVE,
        since=timezone.localdate() - timedelta(weeks=WEEKS),
        revalidation_cadence_days=90,
    )


def feedback_demo(*, version: ModelVersion, sites: dict[str, Institution], clinicians: dict[str, User], officer: User, out=print) -> dict:
    """Deploy the approved version, stream feedback, escalate the alert; returns what the summary prints."""
    deployments = {code: _deploy(version, sites[code], officer) for code in STREAMS}
    if version.status == VersionStatus.APPROVED:
        services.version_transition(actor=officer, version=version, to_status=VersionStatus.DEPLOYED)
    if not Feedback.objects.filter(deployment__in=deployments.values()).exists():
        out(f"Streaming {sum(a + c for a, _, c, _ in STREAMS.values())} clinician reports over {WEEKS} weeks ...")
        rng = np.random.default_rng(5)
        now = timezone.now()
        for code, (before, rate_before, after, rate_after) in STREAMS.items():
            rates = [rate_before] * before + [rate_after] * after
            ids = []
            for i, rate in enumerate(rates):
                disagree = rng.random() < rate
                partly = not disagree and rng.random() < 0.05
                feedback, _ = feedback_submit(
                    actor=clinicians[code],
                    deployment=deployments[code],
                    case_reference=f"CASE-{code[:2]}{i:04d}",
                    model_output=f"nodule {rng.uniform(0.05, 0.95):.2f}",
                    agreement="disagree" if disagree else "partly" if partly else "agree",
                    error_type=str(rng.choice(ERRORS)) if disagree or partly else "",
                    severity="moderate" if disagree and rng.random() < 0.3 else "low" if disagree else "none",
                    minutes_saved=int(rng.integers(-4, 6)),
                    explanation_helped=int(rng.integers(2, 6)),
                    uncertainty_helped=int(rng.integers(2, 6)),
                    fitted_workflow=int(rng.integers(3, 6)),
                )
                ids.append(feedback.pk)
            for i, pk in enumerate(ids):  # spread the history over the past weeks, oldest first
                Feedback.objects.filter(pk=pk).update(created_at=now - timedelta(weeks=WEEKS) * (1 - i / len(ids)))
        weeks_rebuild(deployment_ids=[d.pk for d in deployments.values()])  # the summaries follow the backdated history
    alert = Alert.objects.filter(kind=AlertKind.DISAGREEMENT_RISE, deployment__in=deployments.values()).order_by("pk").first()
    incident = None
    if alert is not None:
        incident = Incident.objects.filter(alert=alert).first() or incident_escalate(
            actor=officer,
            alert=alert,
            title=f"Rising disagreement with {version} at {alert.deployment.institution.code}",
            description=alert.message,
            incident_type="other",
            aware_on=timezone.localdate(),
        )
    return {"deployments": deployments, "alert": alert, "incident": incident}


# Why the demo's officer lets approval go ahead without a principle's evidence or minimum; recorded
# as justified exceptions, which the approval guard honours and the audit trail keeps.
EXCEPTION_REASONS = {
    "usability": "Clinician feedback only exists once the model is in use; the two-site rollout is monitored from day one "
    "(CUSUM on disagreement, usability ratings) and revalidated every 90 days.",
}
DEFAULT_EXCEPTION_REASON = (
    "Accepted for a supervised second-reader rollout: the shortfall is a documented limitation in the dossier and the "
    "instructions for use, and every deployment is revalidated every 90 days."
)


def _signed_dossier(version: ModelVersion, officer: User, reviewer: User, out):
    """The version's newest signed revision, or one the officer fills in and submits and the reviewer signs."""
    signed = version.dossiers.filter(status=DossierStatus.SIGNED).order_by("-revision").first()
    if signed is not None:
        return signed
    out(f"Dossier of {version}: {officer.username} fills it in and submits, {reviewer.username} signs ...")
    names = {
        "model": version.foundation_model.name,
        "version": version.version,
        "provider": version.foundation_model.provider.name,
        "parent": str(version.parent) if version.parent_id else "no parent (a first version)",
    }
    dossier = dossier_open(actor=officer, version=version)
    dossier = dossier_save(
        actor=officer, dossier=dossier, values={k: v.format(**names) for k, v in OFFICER_TEXT.items()}, edit_count=dossier.edit_count
    )
    dossier = dossier_submit(actor=officer, dossier=dossier)
    return dossier_sign(actor=reviewer, dossier=dossier).dossier


def approval_demo(*, version: ModelVersion, engineer: User, officer: User, reviewer: User, out=print) -> list[str]:
    """Take the version to approved through the lifecycle guards: a signed dossier, a fresh trust
    assessment, and a justified exception for each principle that would block; returns those."""
    if version.status in {VersionStatus.APPROVED, VersionStatus.DEPLOYED}:
        return list(version.trust_exceptions.values_list("principle", flat=True))
    _signed_dossier(version, officer, reviewer, out)
    assessment = trust_assess(version=version, trigger="demo")
    excepted = set(version.trust_exceptions.values_list("principle", flat=True))
    for name, principle in assessment.principles.items():
        if name not in excepted and (principle["status"] == "insufficient_evidence" or principle.get("below_minimum")):
            trust_exception_grant(actor=officer, version=version, principle=name, justification=EXCEPTION_REASONS.get(name, DEFAULT_EXCEPTION_REASON))
            excepted.add(name)
    path = [VersionStatus.IN_VALIDATION, VersionStatus.UNDER_REVIEW, VersionStatus.APPROVED]
    for status in path[path.index(version.status) + 1 if version.status in path else 0 :]:
        services.version_transition(actor=officer if status == VersionStatus.APPROVED else engineer, version=version, to_status=status)
    version.refresh_from_db()  # the caller's object (the services worked on their own copies)
    out(
        f"{version} approved by {officer.username} (signed dossier, trust assessment {assessment.pk}"
        + (f", justified exceptions for {', '.join(sorted(excepted))})" if excepted else ")")
    )
    return sorted(excepted)


def dossier_demo(*, versions: list[ModelVersion], officer: User, reviewer: User, out=print) -> list[dict]:
    """Each version's signed dossier (signing it where the demo has not yet) and the documents
    rendered from its frozen snapshot."""
    results = []
    for version in versions:
        dossier = _signed_dossier(version, officer, reviewer, out)
        results.append({"dossier": dossier, "documents": dossier_documents_render(actor=officer, dossier=dossier)})
    return results
