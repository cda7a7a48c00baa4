"""Writes of the trust scores: policies, assessments, recomputation requests, exceptions, and
the approval guard that reads them.

1. ``trust_assess`` gathers the version's evidence now, scores it under the active policy,
   renders the radar chart once, and stores a new ``TrustAssessment`` (never an update).
2. ``trust_request`` asks for a recomputation after the current transaction commits. The
   task waits ``RADTRUST_TRUST_DEBOUNCE_SECONDS`` (feedback comes in bursts) and skips if an
   assessment newer than the request exists already: one recomputation covers a burst.
3. ``trust_guard`` (registered as the ``trust`` evidence check of approval) refuses while a
   principle has insufficient evidence or is under the policy's minimum, unless a justified
   exception for it is in force: proposed by one compliance officer of the provider
   (``trust_exception_grant``) and confirmed by a second one (``trust_exception_confirm``).
4. A new scoring policy is proposed inactive (``policy_create``) and becomes the active one when a
   second compliance officer of the proposer's institution confirms it (``policy_activate``).
   Proposals, confirmations, declines and every refusal are audited.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from compliance.choices import TrustTrigger
from compliance.duties import officer_refusal, refuse, second_officer_refusal, who_may_act
from compliance.models import ScoringPolicy, TrustAssessment, TrustException
from compliance.trust.assess import assess, assessment_to_dict
from compliance.trust.gather import version_evidence
from compliance.trust.policy import DEFAULT_POLICY, PRINCIPLES, PolicyError, validate_policy
from core.access import role_of
from core.audit import audit_action, audit_record
from core.choices import Role
from core.errors import Conflict
from radtrust_engine.hashing import canonical_sha256
from registry.choices import DeploymentStatus
from registry.models import Deployment, ModelVersion
from validation.charts import radar_chart
from validation.choices import RunStatus
from validation.models import ValidationRun
from validation.revalidation import revalidation_overdue_from


def policy_active() -> ScoringPolicy:
    """The policy new assessments use; the built-in one (``DEFAULT_POLICY``, its own version) is stored on first use."""
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
    """Propose a new policy version (step 4): stored inactive until a second officer activates it."""
    built_in = policy_active()  # stored first, so that a proposal never takes the built-in policy's version number
    if role_of(actor) != Role.COMPLIANCE_OFFICER or actor.institution_id is None:
        refuse(built_in, "policy_refused", "Only a compliance officer proposes a scoring policy.")
    try:
        validate_policy(definition)
    except PolicyError as exc:
        raise ValidationError({"definition": str(exc)}) from None
    with transaction.atomic():
        latest = ScoringPolicy.objects.select_for_update().order_by("-version").first()
        number = (latest.version if latest else 0) + 1
        policy = ScoringPolicy(version=number, name=name.strip()[:120], definition={**definition, "version": number}, active=False, created_by=actor)
        policy.save()
    return policy


def _activation_refusal(actor, policy: ScoringPolicy) -> tuple[str, type[Exception]] | None:
    proposer = policy.created_by
    if policy.active or policy.confirmed_by_id or policy.assessments.exists() or proposer is None or proposer.institution_id is None:
        return f"{policy} is or was in force already; a change is a new version, proposed by one officer and activated by another.", Conflict
    refusal = second_officer_refusal(actor, first=proposer, institution=proposer.institution, what="activate the scoring policy it proposed")
    return (refusal, PermissionDenied) if refusal else None


def policy_activate(*, actor, policy: ScoringPolicy) -> ScoringPolicy:
    """A second officer puts a proposed policy in force (step 4); the active one steps down; older assessments keep theirs."""
    refused = _activation_refusal(actor, policy)
    if refused:
        refuse(policy, "activate_refused", *refused)
    with transaction.atomic():
        locked = ScoringPolicy.objects.select_for_update().get(pk=policy.pk)
        if locked.confirmed_by_id:
            raise Conflict(f"{locked} was activated by another officer at the same time.", code="policy_activated")
        for previous in ScoringPolicy.objects.select_for_update().filter(active=True):
            previous.active = False
            with audit_action("deactivate"):
                previous.save(update_fields=["active"])
        locked.active, locked.confirmed_by, locked.confirmed_at = True, actor, timezone.now()
        with audit_action("activate"):
            locked.save(update_fields=["active", "confirmed_by", "confirmed_at"])
    return locked


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
    """Propose a justified exception (step 3); the guard counts it once a second officer confirms it."""
    refusal = officer_refusal(actor, version.foundation_model.provider, f"propose a justified exception for {version}")
    if refusal:
        refuse(version, "trust_exception_refused", refusal)
    if principle not in PRINCIPLES:
        raise ValidationError({"principle": f"Choose one of: {', '.join(PRINCIPLES)}."})
    if len(justification.strip()) < 20:
        raise ValidationError({"justification": "Explain why approval may go ahead without this evidence (20 characters or more)."})
    try:
        with transaction.atomic():
            return TrustException.objects.create(version=version, principle=principle, justification=justification.strip(), granted_by=actor)
    except IntegrityError:
        raise Conflict(f"{principle} already has an exception for {version}.", code="duplicate_exception") from None


def _exception_refusal(actor, exception: TrustException, what: str) -> str | None:
    provider = exception.version.foundation_model.provider
    if what == "decline":  # the proposer may withdraw it; any officer of the provider may decline it
        return officer_refusal(actor, provider, "decline a proposed exception for its versions")
    return second_officer_refusal(actor, first=exception.granted_by, institution=provider, what="confirm this exception")


def trust_exception_confirm(*, actor, exception: TrustException) -> TrustException:
    """A second officer of the provider puts the proposed exception in force (step 3)."""
    if exception.confirmed_by_id:
        refuse(exception, "confirm_refused", f"This exception was confirmed already, by {exception.confirmed_by.username}.", Conflict)
    refusal = _exception_refusal(actor, exception, "confirm")
    if refusal:
        refuse(exception, "confirm_refused", refusal)
    with transaction.atomic():
        locked = TrustException.objects.select_for_update().filter(pk=exception.pk, confirmed_by__isnull=True).first()
        if locked is None:
            raise Conflict("Another officer confirmed or declined this exception at the same time.", code="exception_decided")
        locked.confirmed_by, locked.confirmed_at = actor, timezone.now()
        with audit_action("confirm"):
            locked.save(update_fields=["confirmed_by", "confirmed_at"])
    return locked


def trust_exception_decline(*, actor, exception: TrustException, note: str) -> None:
    """Decline (or, by its proposer, withdraw) an exception that waits for confirmation: it is removed; the audit trail keeps it."""
    if not note.strip():
        raise ValidationError({"note": "Say why the exception is declined."})
    if exception.confirmed_by_id:
        refuse(exception, "decline_refused", "A confirmed exception stays with the approval it allowed; it cannot be declined.", Conflict)
    refusal = _exception_refusal(actor, exception, "decline")
    if refusal:
        refuse(exception, "decline_refused", refusal)
    with transaction.atomic():
        audit_record(action="decline", instance=exception, changes={"note": note.strip()[:4000]})
        exception.delete()


def trust_guard(version: ModelVersion) -> str | None:
    """The approval guard: why the newest assessment does not allow approval, or None."""
    assessment = latest_assessment(version)
    if assessment is None:
        return "No trust assessment exists for this version yet; it is computed when a validation run finishes."
    exceptions = {e.principle: e for e in version.trust_exceptions.select_related("granted_by")}
    problems = []
    for name, principle in assessment.principles.items():
        exception = exceptions.get(name)
        if exception is not None and exception.confirmed_by_id:
            continue
        if principle["status"] == "insufficient_evidence":
            problem = f"{name} has insufficient evidence"
        elif principle.get("below_minimum"):
            problem = f"{name} scores {principle['score']} under the policy's minimum of {principle['minimum']}"
        else:
            continue
        if exception is not None:
            problem += f" (its exception, proposed by {exception.granted_by.username}, waits for a second officer's confirmation)"
        problems.append(problem)
    if problems:
        provider = version.foundation_model.provider
        return (
            f"Trust assessment {assessment.pk}: "
            + "; ".join(problems)
            + f". Add the evidence, or have a compliance officer of {provider.name} propose a justified exception and a second one "
            f"confirm it ({who_may_act(provider)})."
        )
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
            trust_request(version_id=deployment.version_id, trigger=TrustTrigger.REVALIDATION_OVERDUE, debounce=False)
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
        trust_request(version_id=version_id, trigger=TrustTrigger.RUN_FINISHED, debounce=False)
    return missed
