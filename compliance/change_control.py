"""Change control under AI Act Art. 43(4), failing safe.

1. ``change_plan_propose``: a compliance officer of the model's provider records a new version of
   its change plan (Annex IV 2(f)). It is not in force yet.
2. ``change_plan_approve``: a second, different officer of the same provider puts it in force. A
   dossier submitted afterwards freezes it, and it judges only versions registered after that
   dossier is signed (``compliance.change_rules.change_plan_in_force``): never retroactively.
3. ``conformity_assessment_record``: an officer of the provider records the conformity assessment
   (route, MDR procedure, notified body, certificate, date): every version needs one before it is
   placed on the market (``compliance.market``), a substantial modification before approval.
4. ``change_control_guard``: the approval guard's ``change_control`` evidence. A version whose
   change log classifies it as substantial is not approved before its assessment is recorded.

A refusal says who may act, changes nothing, and is written to the audit trail (``compliance.duties``).
"""

from __future__ import annotations

import re
from datetime import date

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance.change_log import change_log_build
from compliance.change_rules import SUBSTANTIAL, change_rules_effective, change_rules_validate
from compliance.choices import ConformityRoute, MdrProcedure
from compliance.duties import provider_officer_refusal, refuse, second_officer_refusal, who_may_act
from compliance.models import ChangePlan, ChangePlanApproval, ConformityAssessment
from core.errors import Conflict
from registry.choices import MdrClass
from registry.models import FoundationModel, ModelVersion

NOTIFIED_BODY_NUMBER = re.compile(r"\b\d{4}\b")
MDR_NOTIFIED_BODY_CLASSES = frozenset({MdrClass.IIA, MdrClass.IIB, MdrClass.III})


# --- 1-2: change plans -------------------------------------------------------------------------


def change_plan_propose(*, actor, foundation_model: FoundationModel | None, rules, rationale: str) -> ChangePlan:
    """Record the next version of the model's change plan, with the full rule set (so later
    defaults never change what it says); it waits for a second officer's approval."""
    if foundation_model is None:
        raise ValidationError(
            {"foundation_model": "Name the model: a change plan is part of one AI system's technical documentation (Annex IV 2(f))."}
        )
    refusal = provider_officer_refusal(actor, foundation_model, "propose the change plan")
    if refusal:
        refuse(foundation_model, "change_plan_refused", refusal)
    errors = change_rules_validate(rules)
    if errors:
        raise ValidationError({"rules": [f"{path}: {message}" for path, message in sorted(errors.items())]})
    if not (rationale or "").strip():
        raise ValidationError({"rationale": "Say which change plan text (Annex IV 2(f)) these rules implement."})
    latest = ChangePlan.objects.filter(foundation_model=foundation_model).order_by("-version").first()
    plan = ChangePlan(
        foundation_model=foundation_model,
        version=(latest.version if latest else 0) + 1,
        rules=change_rules_effective(rules),
        rationale=rationale.strip(),
        created_by=actor,
    )
    try:
        with transaction.atomic():
            plan.save()
    except IntegrityError:
        raise Conflict("Another change plan version was added at the same time; reload and try again.", code="change_plan_race") from None
    return plan


def _approval_refusal(actor, plan: ChangePlan) -> tuple[str, type[Exception]] | None:
    model = plan.foundation_model
    if model is None:
        return f"{plan} applied to every model (the first release's plans); such a plan is never in force. Propose a plan for the model.", Conflict
    refusal = second_officer_refusal(actor, first=plan.created_by, institution=model.provider, what=f"approve {plan}")
    if refusal:
        return refusal, PermissionDenied
    approval = ChangePlanApproval.objects.filter(plan=plan).select_related("approved_by").first()
    if approval is not None:
        return f"{plan} was approved already, by {approval.approved_by.username} on {approval.approved_at:%Y-%m-%d}.", Conflict
    newer = ChangePlan.objects.filter(foundation_model=model, version__gt=plan.version, approval__isnull=False).order_by("-version").first()
    if newer is not None:
        return (
            f"Change plan {newer.version} of {model.name} is newer and in force already; propose a new version rather than approve an older one.",
            Conflict,
        )
    return None


def change_plan_approve(*, actor, plan: ChangePlan) -> ChangePlanApproval:
    """A second officer of the provider puts the proposed plan in force (step 2)."""
    refused = _approval_refusal(actor, plan)
    if refused:
        refuse(plan, "approve_refused", *refused)
    try:
        with transaction.atomic():
            return ChangePlanApproval.objects.create(plan=plan, approved_by=actor)
    except IntegrityError:
        raise Conflict(f"{plan} was approved by another officer at the same time.", code="change_plan_approved") from None


# --- 3: conformity assessments -------------------------------------------------------------------


MDR_PROCEDURES = {
    MdrClass.NONE: frozenset({MdrProcedure.NONE}),
    MdrClass.I: frozenset({MdrProcedure.ANNEX_II_III}),
    **dict.fromkeys(MDR_NOTIFIED_BODY_CLASSES, frozenset({MdrProcedure.ANNEX_IX, MdrProcedure.ANNEX_X, MdrProcedure.ANNEX_XI})),
}


def _mdr_procedure_problem(version: ModelVersion, mdr_procedure: str) -> str | None:
    """Why ``mdr_procedure`` is not a procedure of the model's MDR class (Art. 52), or None."""
    model = version.foundation_model
    allowed = MDR_PROCEDURES.get(model.mdr_class, frozenset())
    if mdr_procedure in allowed:
        return None
    if model.mdr_class == MdrClass.NONE:
        return f"{model.name} is not a medical device: leave the MDR procedure empty."
    labels = " or ".join(str(MdrProcedure(p).label) for p in sorted(allowed))
    return f"{model.name} is a class {model.mdr_class} medical device: choose {labels} (MDR Art. 52; the AI Act requirements are assessed within it, Art. 43(3))."


def conformity_assessment_problems(
    *, version: ModelVersion, route: str, notified_body: str, certificate_reference: str, assessed_on: date | None, mdr_procedure: str = ""
) -> dict[str, str]:
    """What is wrong with a conformity assessment record, by field; empty when it may be recorded."""
    problems: dict[str, str] = {}
    mdr_class = version.foundation_model.mdr_class
    if (problem := _mdr_procedure_problem(version, mdr_procedure)) is not None:
        problems["mdr_procedure"] = problem
    if route not in ConformityRoute.values:
        problems["route"] = f"Choose one of {', '.join(ConformityRoute.values)}."
    elif mdr_class in MDR_NOTIFIED_BODY_CLASSES and route != ConformityRoute.MDR_NOTIFIED_BODY:
        problems["route"] = (
            f"{version.foundation_model.name} is a class {mdr_class} medical device: its conformity is assessed by a notified body "
            f"within the MDR procedure (AI Act Art. 43(3)); choose {ConformityRoute.MDR_NOTIFIED_BODY}."
        )
    elif mdr_class not in MDR_NOTIFIED_BODY_CLASSES and route == ConformityRoute.MDR_NOTIFIED_BODY:
        problems["route"] = (
            f"{version.foundation_model.name} is not a class IIa, IIb or III medical device; choose internal_control or notified_body."
        )
    if route != ConformityRoute.INTERNAL_CONTROL:
        needs = (
            f"A class {mdr_class} device is assessed by a notified body"
            if mdr_class in MDR_NOTIFIED_BODY_CLASSES
            else "This route involves a notified body"
        )
        if not NOTIFIED_BODY_NUMBER.search(notified_body or ""):
            problems["notified_body"] = (
                f"{needs}: give the notified body's name and its four-digit identification number, e.g. 'BSI Group The Netherlands B.V., 2797'."
            )
        if not (certificate_reference or "").strip():
            problems["certificate_reference"] = f"{needs}: give the reference of the certificate the notified body issued."
    if assessed_on is None:
        problems["assessed_on"] = "Give the date the assessment concluded."
    elif assessed_on > timezone.localdate():
        problems["assessed_on"] = "The assessment date cannot be in the future."
    elif version.created_at and assessed_on < timezone.localdate(version.created_at):
        problems["assessed_on"] = f"{version} was registered on {timezone.localdate(version.created_at)}; an assessment of it cannot be older."
    return problems


def conformity_assessment_record(
    *,
    actor,
    version: ModelVersion,
    route: str,
    assessed_on: date | None,
    notified_body: str = "",
    certificate_reference: str = "",
    mdr_procedure: str = "",
) -> ConformityAssessment:
    """Record the conformity assessment of ``version`` (step 3): its provider's officers only."""
    refusal = provider_officer_refusal(actor, version.foundation_model, "record the conformity assessment of a version")
    if refusal:
        refuse(version, "conformity_assessment_refused", refusal)
    fields = {
        "route": route,
        "notified_body": (notified_body or "").strip(),
        "certificate_reference": (certificate_reference or "").strip(),
        "mdr_procedure": mdr_procedure or "",
    }
    problems = conformity_assessment_problems(version=version, assessed_on=assessed_on, **fields)
    if problems:
        raise ValidationError(problems)
    return ConformityAssessment.objects.create(version=version, assessed_on=assessed_on, recorded_by=actor, **fields)


# --- 4: the approval guard -----------------------------------------------------------------------


def change_control_guard(version: ModelVersion) -> str | None:
    """Why ``version`` may not be approved under change control, or None (step 4)."""
    if version.parent_id is None or version.conformity_assessments.exists():
        return None
    classification = change_log_build(version).classification
    if classification["value"] != SUBSTANTIAL:
        return None
    reasons = [r["title"].lower() for r in classification["reasons"] if r["effect"] == SUBSTANTIAL]
    provider = version.foundation_model.provider
    return (
        f"{version} is a substantial modification of {version.parent} (AI Act Art. 43(4): {', '.join(reasons)}), and no conformity assessment "
        f"is recorded for it. A compliance officer of {provider.name} ({who_may_act(provider)}) records its new conformity assessment (route, "
        f"notified body, certificate, date) at /api/model-versions/{version.pk}/conformity-assessments/ or in the admin; then approve it."
    )
