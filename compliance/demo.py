"""The feedback part of ``manage.py demo``: the nodule model in use at two hospitals, twelve weeks
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

from compliance.audit import audit_action
from compliance.feedback import feedback_submit, weeks_rebuild
from compliance.incidents import incident_escalate
from compliance.models import Feedback, Incident
from registry import services
from registry.choices import DeploymentStatus, VersionStatus
from registry.models import Deployment, Institution, ModelVersion, User
from validation.choices import AlertKind
from validation.models import Alert

WEEKS = 12
# (site code, reports before the change, rate before, reports after, rate after)
STREAMS = {"st-anna": (100, 0.08, 240, 0.08), "city-general": (100, 0.08, 240, 0.30)}
ERRORS = ("false_positive", "false_negative", "wrong_localisation", "poor_image_handling")


def _deploy(version: ModelVersion, site: Institution, officer: User) -> Deployment:
    existing = Deployment.objects.filter(version=version, institution=site).exclude(status=DeploymentStatus.ENDED).first()
    if existing:
        return existing
    return services.deployment_create(
        actor=officer, version=version, institution=site, status=DeploymentStatus.ACTIVE,
        since=timezone.localdate() - timedelta(weeks=WEEKS), revalidation_cadence_days=90,
    )


def feedback_demo(*, version: ModelVersion, sites: dict[str, Institution], clinicians: dict[str, User], officer: User, out=print) -> dict:
    """Deploy, stream feedback, escalate the alert; returns what the summary prints."""
    if version.status not in {VersionStatus.APPROVED, VersionStatus.DEPLOYED}:
        # Approval needs a signed dossier (the dossier workflow is a later issue); the demo says so and
        # records the shortcut in the audit trail instead of pretending it went through sign-off.
        out(f"Marking {version} deployed for the feedback demo (no dossier sign-off exists yet; audited as 'demo_override').")
        version.status = VersionStatus.DEPLOYED
        with audit_action("demo_override"):
            version.save(update_fields=["status", "updated_at"])
    deployments = {code: _deploy(version, sites[code], officer) for code in STREAMS}
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
                    actor=clinicians[code], deployment=deployments[code], case_reference=f"CASE-{code[:2]}{i:04d}",
                    model_output=f"nodule {rng.uniform(0.05, 0.95):.2f}",
                    agreement="disagree" if disagree else "partly" if partly else "agree",
                    error_type=str(rng.choice(ERRORS)) if disagree or partly else "",
                    severity="moderate" if disagree and rng.random() < 0.3 else "low" if disagree else "none",
                    minutes_saved=int(rng.integers(-4, 6)), explanation_helped=int(rng.integers(2, 6)),
                    uncertainty_helped=int(rng.integers(2, 6)), fitted_workflow=int(rng.integers(3, 6)),
                )
                ids.append(feedback.pk)
            for i, pk in enumerate(ids):  # spread the history over the past weeks, oldest first
                Feedback.objects.filter(pk=pk).update(created_at=now - timedelta(weeks=WEEKS) * (1 - i / len(ids)))
        weeks_rebuild(deployment_ids=[d.pk for d in deployments.values()])  # the summaries follow the backdated history
    alert = Alert.objects.filter(kind=AlertKind.DISAGREEMENT_RISE, deployment__in=deployments.values()).order_by("pk").first()
    incident = None
    if alert is not None:
        incident = Incident.objects.filter(alert=alert).first() or incident_escalate(
            actor=officer, alert=alert, title=f"Rising disagreement with {version} at {alert.deployment.institution.code}",
            description=alert.message, incident_type="other", aware_on=timezone.localdate(),
        )
    return {"deployments": deployments, "alert": alert, "incident": incident}
