"""Approving a version with four eyes.

1. ``version_approval_propose``: a compliance officer of the model's provider proposes approving a
   version under review. Nothing moves yet.
2. ``version_approval_confirm``: a different officer of the provider confirms it, and in the same
   transaction the version moves to approved through the lifecycle guards (validation, dossier,
   trust, change control, and ``approval_check``). If a guard refuses, nothing is confirmed.
3. ``version_approval_decline``: an officer of the provider (the proposer too: a withdrawal)
   declines a waiting proposal, with a note.
4. ``approval_check``: the approval guard's ``second_officer`` evidence: a confirmed proposal, or
   who must act. So a version cannot be approved by one officer through the transition endpoint.

Proposals, confirmations and declines are audited, and so is every refusal.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance.choices import ApprovalStatus
from compliance.duties import officer_refusal, refuse, second_officer_refusal, who_may_act
from compliance.models import VersionApproval
from core.audit import audit_action, audit_record
from core.errors import Conflict
from registry.choices import VersionStatus
from registry.models import ModelVersion
from registry.services import version_transition


def version_approval_propose(*, actor, version: ModelVersion) -> VersionApproval:
    """Propose approving ``version`` (step 1)."""
    refusal = officer_refusal(actor, version.foundation_model.provider, f"propose approving {version}")
    if refusal:
        refuse(version, "approval_refused", refusal)
    if version.status != VersionStatus.UNDER_REVIEW:
        refuse(
            version,
            "approval_refused",
            f"Only a version under review can be approved; {version} is {version.get_status_display().lower()}.",
            Conflict,
            code="not_under_review",
        )
    try:
        with transaction.atomic():
            return VersionApproval.objects.create(version=version, proposed_by=actor)
    except IntegrityError:
        pending = version.approvals.filter(status=ApprovalStatus.PENDING).select_related("proposed_by").first()
        who = pending.proposed_by.username if pending else "another officer"
        raise Conflict(f"Approving {version} was proposed already by {who}; confirm or decline that proposal.", code="approval_pending") from None


def _fresh(approval: VersionApproval) -> VersionApproval:
    """The proposal as stored now: the caller's copy may predate another officer's decision."""
    return VersionApproval.objects.select_related("version__foundation_model__provider", "proposed_by", "decided_by").get(pk=approval.pk)


def _decision_refusal(actor, approval: VersionApproval, what: str) -> tuple[str, type[Exception], dict] | None:
    if approval.status != ApprovalStatus.PENDING:
        decided = f" by {approval.decided_by.username}" if approval.decided_by_id else ""
        return f"This proposal was {approval.status}{decided} already; propose again if needed.", Conflict, {"code": "approval_decided"}
    provider = approval.version.foundation_model.provider
    if what == "confirm":
        refusal = second_officer_refusal(actor, first=approval.proposed_by, institution=provider, what=f"confirm approving {approval.version}")
    else:
        refusal = officer_refusal(actor, provider, f"decline approving {approval.version}")
    return (refusal, PermissionDenied, {}) if refusal else None


def version_approval_confirm(*, actor, approval: VersionApproval) -> VersionApproval:
    """A second officer confirms, and the version is approved through the guards (step 2)."""
    approval = _fresh(approval)
    refused = _decision_refusal(actor, approval, "confirm")
    if refused:
        message, error, details = refused
        refuse(approval, "confirm_refused", message, error, **details)
    try:
        with transaction.atomic():
            locked = VersionApproval.objects.select_for_update().get(pk=approval.pk)
            if locked.status != ApprovalStatus.PENDING:
                raise Conflict("Another officer decided on this proposal at the same time.", code="approval_decided")
            locked.status, locked.decided_by, locked.decided_at = ApprovalStatus.CONFIRMED, actor, timezone.now()
            with audit_action("confirm"):
                locked.save(update_fields=["status", "decided_by", "decided_at"])
            version_transition(actor=actor, version=locked.version, to_status=VersionStatus.APPROVED)
    except Conflict as refused_by_guard:  # nothing was confirmed; the guards' reasons stay in the trail
        audit_record(action="confirm_refused", instance=approval, changes={"refused": str(refused_by_guard)})
        raise
    return locked


def version_approval_decline(*, actor, approval: VersionApproval, note: str) -> VersionApproval:
    """Decline (or withdraw) a waiting proposal, saying why (step 3)."""
    if not note.strip():
        raise ValidationError({"note": "Say why approval is declined."})
    approval = _fresh(approval)
    refused = _decision_refusal(actor, approval, "decline")
    if refused:
        message, error, details = refused
        refuse(approval, "decline_refused", message, error, **details)
    with transaction.atomic():
        locked = VersionApproval.objects.select_for_update().get(pk=approval.pk)
        if locked.status != ApprovalStatus.PENDING:
            raise Conflict("Another officer decided on this proposal at the same time.", code="approval_decided")
        locked.status, locked.decided_by, locked.decided_at, locked.note = ApprovalStatus.DECLINED, actor, timezone.now(), note.strip()[:4000]
        with audit_action("decline"):
            locked.save(update_fields=["status", "decided_by", "decided_at", "note"])
    return locked


def approval_check(version: ModelVersion) -> str | None:
    """The approval guard's ``second_officer`` evidence (step 4): None once a second officer confirmed."""
    if version.approvals.filter(status=ApprovalStatus.CONFIRMED).exists():
        return None
    provider = version.foundation_model.provider
    pending = version.approvals.filter(status=ApprovalStatus.PENDING).select_related("proposed_by").first()
    if pending is not None:
        return (
            f"Approving {version} was proposed by {pending.proposed_by.username} and waits for a second compliance officer of "
            f"{provider.name} to confirm it at /api/version-approvals/{pending.pk}/confirm/ (who may: "
            f"{who_may_act(provider, excluding=[pending.proposed_by_id])})."
        )
    return (
        f"Approval takes two compliance officers of {provider.name}: one proposes it (POST /api/version-approvals/), "
        f"a different one confirms it, which approves the version (who may: {who_may_act(provider)})."
    )
