"""Writes of the trust scores: policies, assessments, recomputation requests, exceptions, and
the approval guard that reads them.

1. ``trust_assess`` gathers the version's evidence now, scores it under the active policy,
   renders the radar chart once, and stores a new ``TrustAssessment`` (never an update).
2. ``trust_request`` asks for a recomputation after the current transaction commits. The
   task waits ``RADTRUST_TRUST_DEBOUNCE_SECONDS`` (feedback comes in bursts) and skips if an
   assessment newer than the request exists already: one recomputation covers a burst.
3. ``trust_guard`` (registered as the ``trust`` evidence check of approval) refuses while a
   principle has insufficient evidence or is under the policy's minimum, unless an officer
   granted a justified exception for it (audited).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from compliance.models import ScoringPolicy, TrustAssessment, TrustException
from compliance.trust.assess import assess, assessment_to_dict
from compliance.trust.gather import version_evidence
from compliance.trust.policy import DEFAULT_POLICY, PRINCIPLES, PolicyError, validate_policy
from core.audit import audit_action
from core.errors import Conflict
from radtrust_engine.hashing import canonical_sha256
from registry.choices import DeploymentStatus
from registry.models import Deployment, ModelVersion
from validation.charts import radar_chart
from validation.choices import RunStatus
from validation.models import ValidationRun
from validation.revalidation import revalidation_overdue_from


def policy_active() -> ScoringPolicy:
    """The policy new assessments use; version 1 (``DEFAULT_POLICY``) is stored on first use."""
    policy = ScoringPolicy.objects.filter(active=True).first()
    if policy is not None:
        return policy
    with transaction.atomic():
        policy, _ = ScoringPolicy.objects.get_or_create(
            version=DEFAULT_POLICY["version"],
            defaults={"name": DEFAULT_POLICY["name"], "definition": DEFAULT_POLICY},
        )
        if not ScoringPolicy.objects.filter(active=True).exists():
            policy.active = True
            with audit_action("activate"):
                policy.save(update_fields=["active"])
    return policy


def policy_create(*, actor, name: str, definition: dict) -> ScoringPolicy:
    """Store a new policy version and make it the active one; older assessments keep theirs."""
    try:
        validate_policy(definition)
    except PolicyError as exc:
        raise ValidationError({"definition": str(exc)}) from None
    with transaction.atomic():
        latest = ScoringPolicy.objects.select_for_update().order_by("-version").first()
        number = (latest.version if latest else 0) + 1
        for previous in ScoringPolicy.objects.filter(active=True):
            previous.active = False
            with audit_action("deactivate"):
                previous.save(update_fields=["active"])
        policy = ScoringPolicy(version=number, name=name.strip()[:120], definition={**definition, "version": number}, active=True, created_by=actor)
        policy.save()
    return policy


def _digest(evidence) -> str:
    """sha256 of the evidence's canonical JSON (``radtrust_engine.hashing``; dates and other
    non-JSON values written as ``str``). A fingerprint shown with the assessment, never re-verified:
    assessments made before canonical hashing keep the digest of their day."""
    return canonical_sha256(evidence.to_dict(), default=str)  # each run's report as stored


def trust_assess(*, version: ModelVersion, trigger: str) -> TrustAssessment:
    """Score ``version`` on its evidence as it is now and keep the result."""
    policy = policy_active()
    evidence = version_evidence(version)
    principles = assessment_to_dict(assess(evidence, policy.definition))
    chart = radar_chart(str(version), {name: p["score"] for name, p in principles.items()})
    return TrustAssessment.objects.create(
        version=version,
        policy=policy,
        trigger=trigger[:60],
        principles=principles,
        evidence_digest=_digest(evidence),
        chart_svg=chart.svg,
    )


def trust_request(*, version_id: int, trigger: str, debounce: bool = True) -> None:
    """Recompute the version's assessment after this transaction commits (debounced, see step 2).

    A debounced request is sent only by the first caller of a window (a cache key that lives
    as long as the delay), so a burst of feedback sends one message, not one per report."""
    from compliance.tasks import trust_recompute  # the tasks module imports this one

    requested_at = timezone.now().isoformat()
    delay = settings.RADTRUST_TRUST_DEBOUNCE_SECONDS if debounce else 0

    def send() -> None:
        if delay and not cache.add(f"trust-request:{version_id}", requested_at, timeout=delay):
            return  # a request of this window is on its way and will see this change
        trust_recompute.apply_async((version_id, trigger, requested_at), countdown=delay)

    transaction.on_commit(send)


def trust_recompute(*, version_id: int, trigger: str, requested_at: str) -> int | None:
    """The task's body: the new assessment's id, or None when a newer one covers the request."""
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        return None
    if TrustAssessment.objects.filter(version=version, computed_at__gte=datetime.fromisoformat(requested_at)).exists():
        return None
    return trust_assess(version=version, trigger=trigger).pk


def latest_assessment(version: ModelVersion) -> TrustAssessment | None:
    return version.trust_assessments.order_by("-computed_at", "-pk").first()


def trust_exception_grant(*, actor, version: ModelVersion, principle: str, justification: str) -> TrustException:
    if principle not in PRINCIPLES:
        raise ValidationError({"principle": f"Choose one of: {', '.join(PRINCIPLES)}."})
    if len(justification.strip()) < 20:
        raise ValidationError({"justification": "Explain why approval may go ahead without this evidence (20 characters or more)."})
    try:
        with transaction.atomic():
            return TrustException.objects.create(version=version, principle=principle, justification=justification.strip(), granted_by=actor)
    except IntegrityError:
        raise Conflict(f"{principle} already has an exception for {version}.", code="duplicate_exception") from None


def trust_guard(version: ModelVersion) -> str | None:
    """The approval guard: why the newest assessment does not allow approval, or None."""
    assessment = latest_assessment(version)
    if assessment is None:
        return "No trust assessment exists for this version yet; it is computed when a validation run finishes."
    excepted = set(version.trust_exceptions.values_list("principle", flat=True))
    problems = []
    for name, principle in assessment.principles.items():
        if name in excepted:
            continue
        if principle["status"] == "insufficient_evidence":
            problems.append(f"{name} has insufficient evidence")
        elif principle.get("below_minimum"):
            problems.append(f"{name} scores {principle['score']} under the policy's minimum of {principle['minimum']}")
    if problems:
        return f"Trust assessment {assessment.pk}: " + "; ".join(problems) + ". Add the evidence, or have an officer record a justified exception."
    return None


def trust_overdue_requests() -> list[int]:
    """Ask for a recomputation of every version with an active deployment whose revalidation is
    overdue and whose newest assessment predates that (so it still says on time)."""
    today = timezone.localdate()
    versions = []
    for deployment in Deployment.objects.filter(status=DeploymentStatus.ACTIVE).select_related("version"):
        if deployment.version_id in versions:
            continue
        overdue_from = revalidation_overdue_from(deployment, today=today)
        if overdue_from is None:
            continue
        latest = latest_assessment(deployment.version)
        if latest is None or latest.computed_at < overdue_from:
            versions.append(deployment.version_id)
            trust_request(version_id=deployment.version_id, trigger="revalidation_overdue", debounce=False)
    return versions


def trust_missed_requests(*, now: datetime | None = None) -> list[int]:
    """Ask again for the assessment of every version whose newest succeeded run is newer than its
    newest assessment: the request sent after the run was lost (a broker that was down, a worker
    that died). Only runs that finished a sweep period ago or more count, so a request still on
    its way is not doubled; a second request is harmless anyway (``trust_recompute`` skips one
    that a newer assessment covers)."""
    now = now or timezone.now()
    settled = now - timedelta(seconds=settings.RADTRUST_TRUST_SWEEP_SECONDS)
    newest_run = ValidationRun.objects.filter(version=OuterRef("pk"), status=RunStatus.SUCCEEDED).order_by("-finished_at").values("finished_at")[:1]
    newest_assessment = TrustAssessment.objects.filter(version=OuterRef("pk")).order_by("-computed_at").values("computed_at")[:1]
    missed = list(
        ModelVersion.objects.annotate(run_at=Subquery(newest_run), assessed_at=Subquery(newest_assessment))
        .filter(run_at__lt=settled)
        .filter(Q(assessed_at__isnull=True) | Q(assessed_at__lt=F("run_at")))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for version_id in missed:
        trust_request(version_id=version_id, trigger="run_finished", debounce=False)
    return missed
