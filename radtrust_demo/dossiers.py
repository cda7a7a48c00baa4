"""The compliance part of ``manage.py demo``: the nodule model approved through the lifecycle guards
(a dossier signed by a second officer, justified trust exceptions) and placed on the market before it
is deployed (its conformity assessment, signed declaration and CE marking), its fine-tuned version held back
as a substantial modification until its conformity assessment is recorded, in use at two hospitals, twelve weeks
of clinician feedback in which one site's disagreement rises, the alert the sequential test
raises, triaged as a trend (MDR Art. 88) rather than a serious incident, and a clinician's
flag of a suspected serious incident with its triage and initial report.

The reports go through ``feedback_submit`` like any clinician's (so the monitor, the test
and the alert are the real ones); afterwards their timestamps are spread over the past
twelve weeks so that the weekly view has a history. Reuses what an earlier demo left.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.utils import timezone

from compliance.approvals import version_approval_confirm, version_approval_propose
from compliance.change_control import change_control_guard, conformity_assessment_record
from compliance.choices import AlertKind, ApprovalStatus, CeMarking, ConformityRoute, DossierStatus, IncidentReportKind, IncidentTriage, MdrProcedure
from compliance.documents import dossier_documents_render
from compliance.dossiers import dossier_open, dossier_save, dossier_sign, dossier_submit
from compliance.feedback import feedback_submit, weeks_rebuild
from compliance.field_checks import gtin_check_digit
from compliance.incidents import incident_escalate
from compliance.market import market_place
from compliance.models import Alert, Feedback, Incident, MarketPlacement
from compliance.release_evidence import TEST, release_evidence_current, release_evidence_pin, version_run_role
from compliance.trust.services import trust_assess, trust_exception_confirm, trust_exception_grant
from compliance.vigilance import incident_report_record, incident_triage
from core.errors import Conflict
from radtrust_demo.dossier_text import OFFICER_TEXT
from radtrust_demo.risk import risk_file_demo
from registry import services
from registry.choices import DeploymentStatus, VersionStatus
from registry.models import Deployment, Institution, ModelVersion, User
from validation.choices import RunStatus
from validation.models import ValidationRun

WEEKS = 12
DEMO_POPULATION = "Adults with frontal chest radiographs at three sites on two detector vendors (generated for the demo)."
DEMO_NOTIFIED_BODY = "Demo Notified Body B.V., 0000 (fictitious)"
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
    trend = None
    if alert is not None:
        trend = Incident.objects.filter(alert=alert).first() or incident_triage(
            actor=officer,
            incident=incident_escalate(
                actor=officer,
                alert=alert,
                title=f"Rising disagreement with {version} at {alert.deployment.institution.code}",
                description=alert.message,
            ),
            outcome=IncidentTriage.TREND if version.foundation_model.mdr_class else IncidentTriage.SIGNAL,
            reason=(
                "More disagreements than at deployment, none reported as harm: a trend of incidents that are not serious "
                "(MDR Art. 88), handled by revalidation and the risk file, not a serious incident."
            ),
        )
    return {"deployments": deployments, "alert": alert, "incident": trend, "suspected": _suspected_incident_demo(deployments, clinicians, officer)}


def _suspected_incident_demo(deployments: dict[str, Deployment], clinicians: dict[str, User], officer: User) -> Incident:
    """A clinician flags a suspected serious incident on the feedback form; the officer triages it
    to its route (MDR Art. 87(5) for a device) and records the initial, still incomplete, report."""
    flagged = Incident.objects.filter(feedback__suspected_serious_incident=True, feedback__deployment__in=deployments.values()).first()
    if flagged is not None:
        return flagged
    feedback, _ = feedback_submit(
        actor=clinicians["city-general"],
        deployment=deployments["city-general"],
        case_reference="CASE-cg9f1e",
        model_output="no nodule 0.07",
        agreement="disagree",
        error_type="false_negative",
        severity="high",
        suspected_serious_incident=True,
        comment="A 14 mm nodule was missed; the follow-up CT found it grown and the treatment was delayed.",
    )
    incident = incident_triage(
        actor=officer,
        incident=Incident.objects.get(feedback=feedback),
        outcome=IncidentTriage.SERIOUS,
        incident_type="serious_deterioration",
        reason="Delayed treatment of a missed nodule: an unanticipated serious deterioration linked to the output.",
    )
    incident_report_record(
        actor=officer,
        incident=incident,
        kind=IncidentReportKind.INITIAL,
        submitted_on=timezone.localdate(),
        authority="Competent authority (MDR vigilance), demo",
        reference=f"DEMO-MIR-{incident.pk}",
        summary="Initial report, incomplete: the case is under investigation; the threshold at City General is being reviewed.",
    )
    return Incident.objects.get(pk=incident.pk)


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


def demo_credentials() -> dict[str, str]:
    """The demo users' passwords by user name, as ``manage.py demo`` keeps them in var/demo-credentials.txt."""
    path = Path(settings.VAR_DIR) / "demo-credentials.txt"
    return dict(line.split(" ", 1) for line in path.read_text().splitlines() if " " in line) if path.exists() else {}


def _signed_dossier(version: ModelVersion, officer: User, reviewer: User, out):
    """The version's newest signed revision, or one the officer fills in and submits and the reviewer signs."""
    signed = version.dossiers.filter(status=DossierStatus.SIGNED).order_by("-revision").first()
    if signed is not None:
        return signed
    out(f"Dossier of {version}: {officer.username} fills it in and submits, {reviewer.username} signs ...")
    release_evidence_demo(version=version, officer=officer, out=out)
    dossier = dossier_open(actor=officer, version=version)
    dossier = dossier_save(actor=officer, dossier=dossier, values=officer_values(version), edit_count=dossier.edit_count)
    dossier = dossier_submit(actor=officer, dossier=dossier)
    password = demo_credentials()[reviewer.username]  # the signer gives their password again
    return dossier_sign(actor=reviewer, dossier=dossier, password=password, snapshot_sha256=dossier.snapshot_sha256).dossier


def officer_values(version: ModelVersion) -> dict[str, str]:
    """What the demo's officer writes in the version's dossier (``radtrust_demo.dossier_text``)."""
    names = {
        "model": version.foundation_model.name,
        "version": version.version,
        "provider": version.foundation_model.provider.name,
        "changes": f"Fine-tuned from {version.parent} on data where site c and patients aged 65 and over are well represented; the change log "
        "classifies it as a substantial modification, so it needs its own conformity assessment (Art. 43(4))."
        if version.parent_id
        else "First version: there is no earlier version to compare with.",
        "udi_di": demo_udi_di(version),
    }
    return {key: text.format(**names) for key, text in OFFICER_TEXT.items()}


def demo_udi_di(version: ModelVersion) -> str:
    """A well-formed, fictitious GS1 UDI-DI per version (a new one for each software version, MDR Annex VI Part C 6.5.2)."""
    body = f"0409876500{int(version.version.replace('.', '')) % 1000:03d}"
    return body + str(gtin_check_digit(body))


def release_evidence_demo(*, version: ModelVersion, officer: User, out=print) -> None:
    """The officer pins the version's runs on its test data (the newest per dataset) as its declared
    performance; the go-live baseline and the drift checks on later data stay post-market evidence."""
    if release_evidence_current(version) is not None:
        return
    role = version_run_role(version)
    newest: dict[int, ValidationRun] = {}
    for run in version.validation_runs.filter(status=RunStatus.SUCCEEDED).select_related("dataset").order_by("-finished_at"):
        if role(run) == TEST:
            newest.setdefault(run.dataset_id, run)
    pin = release_evidence_pin(actor=officer, version=version, runs=list(newest.values()), population=DEMO_POPULATION)
    thresholds = ", ".join(f"{label} {threshold:.3g}" for label, threshold in pin.operating_points.items())
    out(
        f"{officer.username} pins {', '.join(f'run {r.pk} on {r.dataset.name}' for r in newest.values())} as the release evidence of {version} "
        f"(operating threshold {thresholds}); the other runs stay post-market evidence."
    )


def approval_demo(*, version: ModelVersion, engineer: User, officer: User, reviewer: User, out=print) -> list[str]:
    """Take the version to approved through the lifecycle guards with four eyes: a dossier the
    officer writes and the reviewer signs, a fresh trust assessment, a justified exception the
    officer proposes and the reviewer confirms for each principle that would block, and the
    approval the officer proposes and the reviewer confirms; returns the excepted principles."""
    if version.status in {VersionStatus.APPROVED, VersionStatus.DEPLOYED}:
        return list(version.trust_exceptions.values_list("principle", flat=True))
    risk_file_demo(version=version, officer=officer, reviewer=reviewer, out=out)  # approved before the dossier freezes it
    _signed_dossier(version, officer, reviewer, out)
    assessment = trust_assess(version=version, trigger="demo")
    exceptions = {e.principle: e for e in version.trust_exceptions.all()}
    for name, principle in assessment.principles.items():
        if name not in exceptions and (principle["status"] == "insufficient_evidence" or principle.get("below_minimum")):
            reason = EXCEPTION_REASONS.get(name, DEFAULT_EXCEPTION_REASON)
            exceptions[name] = trust_exception_grant(actor=officer, version=version, principle=name, justification=reason)
    for exception in exceptions.values():
        if exception.confirmed_by_id is None:
            trust_exception_confirm(actor=reviewer, exception=exception)
    path = [VersionStatus.IN_VALIDATION, VersionStatus.UNDER_REVIEW]
    for status in path[path.index(version.status) + 1 if version.status in path else 0 :]:
        services.version_transition(actor=engineer, version=version, to_status=status)
    version.refresh_from_db()  # the transitions worked on their own copies; the proposal reads the status
    approval = version.approvals.filter(status=ApprovalStatus.PENDING).first() or version_approval_propose(actor=officer, version=version)
    version_approval_confirm(actor=reviewer, approval=approval)
    version.refresh_from_db()  # the caller's object (the services worked on their own copies)
    excepted = sorted(exceptions)
    out(
        f"{version} approved: proposed by {officer.username}, confirmed by {reviewer.username} (signed dossier, trust assessment {assessment.pk}"
        + (f", justified exceptions for {', '.join(excepted)}, each confirmed by a second officer)" if excepted else ")")
    )
    return excepted


def substantial_approval_demo(*, version: ModelVersion, engineer: User, officer: User, reviewer: User, out=print) -> dict:
    """Change control for a version derived from an approved one: no change plan was pre-determined
    when it was registered, so its changes are a substantial modification (Art. 43(4)) and approval
    is refused until its new conformity assessment is recorded; then it is approved. Returns the
    refusal (empty when an earlier demo got past it) and the assessment."""
    refusal = ""
    expected = None if version.conformity_assessments.exists() else change_control_guard(version)
    if expected is not None and version.status not in {VersionStatus.APPROVED, VersionStatus.DEPLOYED}:
        try:
            approval_demo(version=version, engineer=engineer, officer=officer, reviewer=reviewer, out=out)
        except Conflict as refused:
            if expected not in str(refused):
                raise  # refused for another reason than change control
            refusal = str(refused)
            out(f"Approval of {version} refused: {refusal}")
        _assess(version, officer, out)
        version.refresh_from_db()  # the refused attempt moved it on to under review
    approval_demo(version=version, engineer=engineer, officer=officer, reviewer=reviewer, out=out)
    return {"refusal": refusal, "assessment": version.conformity_assessments.order_by("-pk").first()}


def _assess(version: ModelVersion, officer: User, out) -> None:
    """The officer records the version's conformity assessment: a class IIa device, assessed by the
    (fictitious) notified body under MDR Annex IX, the AI Act requirements within it (Art. 43(3))."""
    conformity_assessment_record(
        actor=officer,
        version=version,
        route=ConformityRoute.MDR_NOTIFIED_BODY,
        mdr_procedure=MdrProcedure.ANNEX_IX,
        notified_body=DEMO_NOTIFIED_BODY,
        certificate_reference=f"DEMO-CE-{version.foundation_model.pk:04d}-{version.version}",
        assessed_on=timezone.localdate(),
    )
    out(f"{officer.username} records the conformity assessment of {version} by {DEMO_NOTIFIED_BODY} (MDR Annex IX) ...")


def market_demo(*, version: ModelVersion, officer: User, reviewer: User, out=print) -> MarketPlacement:
    """Place an approved version on the market before it is deployed: its conformity assessment (the
    officer records one where none is), the signed declaration of its signed dossier, the CE marking
    with the notified body's number and today's date, recorded by the reviewer, a second officer.
    Without it the deployment is refused (``compliance.market.deployment_market_check``)."""
    placed = MarketPlacement.objects.filter(version=version).first()
    if placed is not None:
        return placed
    if not version.conformity_assessments.exists():
        _assess(version, officer, out)
    dossier_documents_render(actor=officer, dossier=_signed_dossier(version, officer, reviewer, out))
    placement = market_place(actor=reviewer, version=version, ce_marking=CeMarking.AFFIXED_WITH_NUMBER, placed_on=timezone.localdate())
    out(
        f"{reviewer.username} records {version} placed on the market on {placement.placed_on:%-d %b %Y} "
        f"({placement.get_ce_marking_display()}; signed declaration of revision {placement.declaration.dossier.revision})."
    )
    return placement


def dossier_demo(*, versions: list[ModelVersion], officer: User, reviewer: User, out=print) -> list[dict]:
    """Each version's signed dossier (signing it where the demo has not yet) and the documents
    rendered from its frozen snapshot."""
    results = []
    for version in versions:
        dossier = _signed_dossier(version, officer, reviewer, out)
        results.append({"dossier": dossier, "documents": dossier_documents_render(actor=officer, dossier=dossier)})
    return results
