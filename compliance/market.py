"""Placing a version on the market, its withdrawal, and what follows from them: where it may be
deployed and how long its documentation is kept.

1. ``market_place``: a compliance officer of the provider records that the version was placed on
   the EU market: the conformity assessment it rests on (``compliance.change_control``: route,
   MDR procedure, notified body and certificate where the class needs one), the EU declaration of
   conformity of a signed dossier revision (a draft has none), the CE-marking decision and the
   date. Four eyes: not the officer who recorded the assessment.
2. ``market_withdraw``: any officer of the provider records the withdrawal, with its date and reason.
3. ``clinical_investigation_record``: an officer of the provider records that the version is used at
   one institution within a clinical investigation (MDR Art. 62) before it is placed on the market.
4. ``deployment_market_check``: the registry's ``market`` evidence (``registry.guards``). A version is
   deployed only once placed on the market, or within a recorded clinical investigation at that
   institution; a withdrawn version never again.
5. ``retention_of``: ten years after placing on the market (AI Act Art. 18(1)) and at least ten years
   after the last device was placed on the market (MDR Art. 10(8)), which for a software version
   is its withdrawal; never from the day a document was rendered.

Every refusal names what is missing and who may act, changes nothing, and is written to the audit
trail; a recorded step is audited as it is created (``compliance.receivers``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import NoReturn

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance.change_control import conformity_assessment_problems
from compliance.choices import CeMarking, ConformityRoute, DocumentKind, DossierStatus
from compliance.duties import provider_officer_refusal, refuse, second_officer_refusal, who_may_act
from compliance.models import ClinicalInvestigation, ConformityAssessment, Document, MarketPlacement, MarketWithdrawal
from core.audit import audit_record
from core.errors import Conflict
from registry.choices import VersionStatus
from registry.models import Institution, ModelVersion

PLACEABLE = frozenset({VersionStatus.APPROVED, VersionStatus.DEPLOYED, VersionStatus.SUSPENDED})
MIN_REASON = 20  # characters: a withdrawal or an investigation says why in a sentence, not a word


def years_later(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _refuse_fields(version: ModelVersion, action: str, problems: dict[str, str]) -> NoReturn:
    """Write the field errors to the audit trail, then raise them (a 400 naming each field)."""
    audit_record(action=action, instance=version, changes={"refused": problems})
    raise ValidationError(problems)


def _date_problem(day: dt.date | None, *, not_before: tuple[dt.date, str] | None = None) -> str | None:
    if day is None:
        return "Give the date."
    if day > timezone.localdate():
        return "The date cannot be in the future."
    if not_before and day < not_before[0]:
        return f"The date cannot be before {not_before[1]} ({not_before[0]:%Y-%m-%d})."
    return None


# --- 1. placing on the market ----------------------------------------------------------------


def signed_declaration(version: ModelVersion) -> Document | None:
    """The EU declaration of conformity of the version's newest signed dossier revision, once rendered."""
    return (
        Document.objects.filter(dossier__version=version, dossier__status=DossierStatus.SIGNED, kind=DocumentKind.DECLARATION_OF_CONFORMITY)
        .select_related("dossier")
        .order_by("-dossier__revision")
        .first()
    )


def _declaration_problem(version: ModelVersion, declaration: Document | None) -> str | None:
    if declaration is None:
        newest = version.dossiers.order_by("-revision").first()
        state = f"its newest dossier revision is {newest.get_status_display().lower()}" if newest else "it has no dossier"
        return (
            f"No signed EU declaration of conformity of {version} is stored ({state}): a draft is never placed on the market. "
            "Have its dossier signed by a second officer and its documents rendered, then name the declaration."
        )
    if declaration.kind != DocumentKind.DECLARATION_OF_CONFORMITY or declaration.dossier.version_id != version.pk:
        return f"Document {declaration.pk} is not an EU declaration of conformity of {version}."
    if declaration.dossier.status != DossierStatus.SIGNED:
        return f"Revision {declaration.dossier.revision} is {declaration.dossier.get_status_display().lower()}, not signed: a draft declaration is never placed on the market."
    newest = signed_declaration(version)
    if newest is not None and newest.pk != declaration.pk:
        return f"Revision {newest.dossier.revision} supersedes revision {declaration.dossier.revision}: name its declaration (document {newest.pk})."
    return None


def _assessment_problem(version: ModelVersion, assessment: ConformityAssessment | None) -> str | None:
    if assessment is None:
        return (
            f"No conformity assessment of {version} is recorded: record its route, MDR procedure, notified body and certificate "
            f"first (/api/model-versions/{version.pk}/conformity-assessments/)."
        )
    fields = {k: getattr(assessment, k) for k in ("route", "mdr_procedure", "notified_body", "certificate_reference", "assessed_on")}
    problems = conformity_assessment_problems(version=version, **fields)
    if problems:
        return (
            f"The conformity assessment recorded on {assessment.assessed_on:%Y-%m-%d} does not hold: {' '.join(problems.values())} Record a new one."
        )
    return None


def market_place(*, actor, version: ModelVersion, ce_marking: str, placed_on: dt.date | None, declaration: Document | None = None) -> MarketPlacement:
    """Record the placing on the market of ``version`` (step 1); the declaration defaults to that
    of its newest signed revision, the assessment is the newest recorded."""
    model = version.foundation_model
    refusal = provider_officer_refusal(actor, model, f"place {version} on the market")
    if refusal:
        refuse(version, "market_placement_refused", refusal)
    if version.status not in PLACEABLE:
        refuse(
            version,
            "market_placement_refused",
            f"Only an approved version is placed on the market; {version} is {version.get_status_display().lower()}.",
            Conflict,
            code="not_approved",
        )
    placed = MarketPlacement.objects.filter(version=version).first()
    if placed is not None:
        refuse(
            version,
            "market_placement_refused",
            f"{version} was placed on the market already, on {placed.placed_on:%Y-%m-%d}.",
            Conflict,
            code="placed",
        )
    assessment = version.conformity_assessments.select_related("recorded_by").order_by("-assessed_on", "-pk").first()
    declaration = declaration or signed_declaration(version)
    problems = {}
    if (problem := _assessment_problem(version, assessment)) is not None:
        problems["conformity_assessment"] = problem
    if (problem := _declaration_problem(version, declaration)) is not None:
        problems["declaration"] = problem
    if ce_marking not in CeMarking.values:
        problems["ce_marking"] = f"Choose one of {', '.join(CeMarking.values)}."
    elif assessment is not None:
        expected = CeMarking.AFFIXED if assessment.route == ConformityRoute.INTERNAL_CONTROL else CeMarking.AFFIXED_WITH_NUMBER
        if ce_marking != expected:
            problems["ce_marking"] = f"The assessment's route ({assessment.get_route_display()}) calls for: {expected.label}."
    floor = (assessment.assessed_on, "the conformity assessment") if assessment else None
    if (problem := _date_problem(placed_on, not_before=floor)) is not None:
        problems["placed_on"] = problem
    if problems:
        _refuse_fields(version, "market_placement_refused", problems)
    refusal = second_officer_refusal(
        actor,
        first=assessment.recorded_by,
        institution=model.provider,
        what=f"place {version} on the market",
        did="recorded its conformity assessment",
    )
    if refusal:
        refuse(version, "market_placement_refused", refusal)
    try:
        with transaction.atomic():
            return MarketPlacement.objects.create(
                version=version,
                conformity_assessment=assessment,
                declaration=declaration,
                ce_marking=ce_marking,
                placed_on=placed_on,
                recorded_by=actor,
            )
    except IntegrityError:
        raise Conflict(f"{version} was placed on the market by another officer at the same time.", code="placed") from None


# --- 2. withdrawal ---------------------------------------------------------------------------


def market_withdraw(*, actor, version: ModelVersion, withdrawn_on: dt.date | None, reason: str) -> MarketWithdrawal:
    """Record that ``version`` was withdrawn from the market (step 2): it is never newly deployed again."""
    refusal = provider_officer_refusal(actor, version.foundation_model, f"withdraw {version} from the market")
    if refusal:
        refuse(version, "market_withdrawal_refused", refusal)
    placement = MarketPlacement.objects.filter(version=version).first()
    if placement is None:
        refuse(
            version, "market_withdrawal_refused", f"{version} was never placed on the market, so it cannot be withdrawn.", Conflict, code="not_placed"
        )
    if MarketWithdrawal.objects.filter(placement=placement).exists():
        refuse(
            version,
            "market_withdrawal_refused",
            f"{version} was withdrawn already, on {placement.withdrawal.withdrawn_on:%Y-%m-%d}.",
            Conflict,
            code="withdrawn",
        )
    problems = {}
    if (problem := _date_problem(withdrawn_on, not_before=(placement.placed_on, "the placing on the market"))) is not None:
        problems["withdrawn_on"] = problem
    if len((reason or "").strip()) < MIN_REASON:
        problems["reason"] = "Say why it was withdrawn (a sentence: the risk, the replacement, the field safety notice)."
    if problems:
        _refuse_fields(version, "market_withdrawal_refused", problems)
    try:
        with transaction.atomic():
            return MarketWithdrawal.objects.create(placement=placement, withdrawn_on=withdrawn_on, reason=reason.strip(), recorded_by=actor)
    except IntegrityError:
        raise Conflict(f"{version} was withdrawn by another officer at the same time.", code="withdrawn") from None


# --- 3. clinical investigations --------------------------------------------------------------


def clinical_investigation_record(
    *, actor, version: ModelVersion, institution: Institution | None, reference: str, reason: str
) -> ClinicalInvestigation:
    """Record that ``version`` is used at ``institution`` within a clinical investigation (step 3),
    which lets it be deployed there before it is placed on the market."""
    refusal = provider_officer_refusal(actor, version.foundation_model, f"record a clinical investigation of {version}")
    if refusal:
        refuse(version, "clinical_investigation_refused", refusal)
    if MarketPlacement.objects.filter(version=version).exists():
        refuse(
            version,
            "clinical_investigation_refused",
            f"{version} is placed on the market already: it is deployed without an investigation record (and, once withdrawn, not at all).",
            Conflict,
            code="placed",
        )
    problems = {}
    if institution is None:
        problems["institution"] = "Name the institution where the investigation uses the version."
    elif ClinicalInvestigation.objects.filter(version=version, institution=institution).exists():
        problems["institution"] = f"{version} is recorded in a clinical investigation at {institution.name} already."
    if not (reference or "").strip():
        problems["reference"] = "Give the investigation's identifier (CIV-ID) or the ethics committee's approval reference."
    if len((reason or "").strip()) < MIN_REASON:
        problems["reason"] = "Say, in a sentence, what the investigation is and why the version is used there before it is placed on the market."
    if problems:
        _refuse_fields(version, "clinical_investigation_refused", problems)
    try:
        with transaction.atomic():
            return ClinicalInvestigation.objects.create(
                version=version, institution=institution, reference=reference.strip(), reason=reason.strip(), recorded_by=actor
            )
    except IntegrityError:
        raise Conflict(f"{version} is recorded in a clinical investigation at {institution.name} already.", code="duplicate") from None


# --- 4. the deployment guard -----------------------------------------------------------------


def market_missing(version: ModelVersion) -> list[str]:
    """The steps ``version`` still lacks before it may be placed on the market, in words."""
    missing = []
    if not version.conformity_assessments.exists():
        missing.append("its conformity assessment (route, MDR procedure, notified body and certificate)")
    if signed_declaration(version) is None:
        missing.append("a signed EU declaration of conformity (the declaration of a signed dossier revision; a draft does not count)")
    missing.append("the placing on the market itself (CE-marking decision and date, recorded by a second officer)")
    return missing


def deployment_market_check(version: ModelVersion, institution: Institution) -> str | None:
    """Why ``version`` may not be newly deployed at ``institution``, or None (step 4)."""
    placement = MarketPlacement.objects.filter(version=version).select_related("withdrawal").first()
    withdrawal = getattr(placement, "withdrawal", None) if placement else None
    if withdrawal is not None:
        return (
            f"{version} was withdrawn from the market on {withdrawal.withdrawn_on:%Y-%m-%d} ({withdrawal.reason}); "
            "a withdrawn version is never newly deployed. Deploy a version on the market instead."
        )
    if placement is not None or ClinicalInvestigation.objects.filter(version=version, institution=institution).exists():
        return None
    provider = version.foundation_model.provider
    return (
        f"{version} is not placed on the market, so it may not be deployed at {institution.name}. Missing: {'; '.join(market_missing(version))}. "
        f"A compliance officer of {provider.name} ({who_may_act(provider)}) records them at /api/model-versions/{version.pk}/market/; "
        f"or, for use within a clinical investigation at {institution.name}, records the investigation at "
        f"/api/model-versions/{version.pk}/clinical-investigations/."
    )


# --- 5. retention ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Retention:
    """How long a version's technical documentation and documents are kept, and why."""

    until: dt.date | None  # None: open, until ten years after a withdrawal not yet recorded
    basis: str

    def kept_on(self, day: dt.date) -> bool:
        return self.until is None or day < self.until


def retention_of(version: ModelVersion) -> Retention:
    """Ten years after placing on the market (AI Act Art. 18(1)) and after withdrawal, the last day
    a software version was placed on the market (MDR Art. 10(8)) (step 5)."""
    years = settings.RADTRUST_DOCUMENT_RETENTION_YEARS
    placement = MarketPlacement.objects.filter(version=version).select_related("withdrawal").first()
    if placement is None:
        return Retention(
            None, f"Not placed on the market: kept, and counted from the placing on the market once it is ({years} years, AI Act Art. 18)."
        )
    art18 = years_later(placement.placed_on, years)
    withdrawal = getattr(placement, "withdrawal", None)
    if withdrawal is None:
        return Retention(
            None,
            f"On the market since {placement.placed_on:%-d %b %Y}: kept at least until {art18:%-d %b %Y} (AI Act Art. 18) and until "
            f"{years} years after its withdrawal (MDR Art. 10(8)).",
        )
    until = max(art18, years_later(withdrawal.withdrawn_on, years))
    return Retention(
        until,
        f"Placed on the market on {placement.placed_on:%-d %b %Y}, withdrawn on {withdrawal.withdrawn_on:%-d %b %Y}: kept until "
        f"{until:%-d %b %Y}, {years} years after the withdrawal (MDR Art. 10(8); AI Act Art. 18).",
    )


def retention_floor(version: ModelVersion) -> dt.date:
    """The earliest day a document of ``version`` may be deleted, as far as is known now: the end of
    its retention once withdrawn, else ten years after placing on the market (after today, before it
    is placed). Stored on the document; ``retention_of`` decides, and keeps it longer while open."""
    until = retention_of(version).until
    if until is not None:
        return until
    placed_on = MarketPlacement.objects.filter(version=version).values_list("placed_on", flat=True).first()
    return years_later(placed_on or timezone.localdate(), settings.RADTRUST_DOCUMENT_RETENTION_YEARS)


def market_steps(version: ModelVersion) -> dict:
    """What a page or the API shows of the version's steps towards and on the market."""
    placement = MarketPlacement.objects.filter(version=version).select_related("withdrawal", "conformity_assessment", "declaration__dossier").first()
    return {
        "assessments": list(version.conformity_assessments.select_related("recorded_by").order_by("-assessed_on", "-pk")),
        "declaration": signed_declaration(version),
        "placement": placement,
        "withdrawal": getattr(placement, "withdrawal", None) if placement else None,
        "investigations": list(version.clinical_investigations.select_related("institution", "recorded_by").order_by("pk")),
        "retention": retention_of(version),
        "missing": [] if placement else market_missing(version),
    }
