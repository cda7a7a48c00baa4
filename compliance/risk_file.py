"""The risk management file of a version (AI Act Art. 9, ISO 14971:2019), as officers keep it.

1. ``risk_file_open``: a version's file, opened once. A child version starts from a copy of its
   parent's file (hazards, estimates and controls, with the link to where each came from); the
   controls' verifications and the acceptances are not copied, because they were evidence about
   another version. A new child is given its copy when it is registered (``compliance.receivers``).
2. ``hazard_add``, ``hazard_estimate``, ``risk_control_add``, ``risk_control_verify``: the lines of
   the file. A verification names RadTrust evidence of this version: a succeeded validation run, an
   analysis section of one, a dossier field with an answer, or a training record by reference.
3. ``hazard_signal_link``: a post-market alert or incident re-opens the hazard's estimate (Art.
   9(2)(c)) until it is estimated again; an approved file goes back to draft.
4. ``hazard_acceptance_propose`` / ``hazard_acceptance_confirm``: a residual risk accepted with a
   reason by two compliance officers of the provider.
5. ``risk_file_approve``: needs every hazard controlled and verified with an acceptable residual
   risk, or accepted by two officers, and a benefit-risk conclusion. ``risk_file_check`` is the
   approval guard's evidence: a version is approved only with an approved file.

Every change is audited (the models are registered with the audit trail); every change of a line
sends an approved file back to draft, so approval always covers the file as it stands.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from compliance.choices import RiskFileStatus, VerificationKind
from compliance.dossier_fields import FIELDS, field_problem
from compliance.duties import officer_refusal, refuse, second_officer_refusal, who_may_act
from compliance.models import Alert, Hazard, HazardSignal, Incident, RiskControl, RiskFile
from compliance.risk_matrix import DEFAULT_MATRIX, REGIONS, MatrixError, RiskMatrix, matrix_clean
from core.audit import audit_action
from core.errors import Conflict
from radtrust_engine.report import LabelResult, RunReport
from registry.models import ModelVersion
from validation.choices import RunStatus
from validation.models import ValidationRun

# The analyses a validation run's report can hold, by the key of each label's result.
RUN_SECTIONS = {
    "subgroups": "Subgroup performance and fairness gaps",
    "robustness": "Robustness under perturbations",
    "generalisation": "Generalisation across sites and scanners",
    "calibration": "Calibration",
    "uncertainty": "Uncertainty and referral",
    "explainability": "Saliency faithfulness",
}


@dataclass(frozen=True)
class HazardState:
    """Where a hazard stands for approval: ``ready`` when it does not block it, and why in words."""

    code: str
    text: str
    ready: bool


def matrix_of(risk_file: RiskFile) -> RiskMatrix:
    return matrix_clean(risk_file.matrix)


def hazard_state(hazard: Hazard, matrix: RiskMatrix, controls: list[RiskControl]) -> HazardState:
    """The first thing that keeps ``hazard`` from approval, or what makes it ready."""
    if hazard.reopened_by_id:
        return HazardState("reopened", f"Estimate re-opened by {hazard.reopened_by.signal_label}: estimate it again.", False)
    if hazard.acceptance_confirmed_by_id:
        return HazardState("accepted", f"Residual risk accepted by two officers: {hazard.acceptance_reason}", True)
    if matrix.region(hazard.probability, hazard.severity) is None:
        return HazardState("not_estimated", "Probability and severity not estimated.", False)
    if not controls:
        return HazardState("uncontrolled", "No risk control.", False)
    unverified = [c for c in controls if not c.verified_by_id]
    if unverified:
        return HazardState("unverified", f"{len(unverified)} of {len(controls)} controls not verified.", False)
    residual = matrix.region(hazard.residual_probability, hazard.residual_severity)
    if residual is None:
        return HazardState("residual_not_estimated", "Residual risk not estimated.", False)
    if residual != "acceptable":
        pending = " (acceptance proposed, waiting for a second officer)" if hazard.acceptance_proposed_by_id else ""
        return HazardState("residual_not_acceptable", f"Residual risk {REGIONS[residual].lower()}: two officers must accept it{pending}.", False)
    return HazardState("controlled", "Controlled and verified; residual risk acceptable.", True)


def _officer(actor, risk_file: RiskFile, what: str) -> None:
    provider = risk_file.version.foundation_model.provider
    refusal = officer_refusal(actor, provider, what)
    if refusal:
        refuse(risk_file, "risk_file_refused", refusal)


def _fresh(risk_file: RiskFile) -> RiskFile:
    return RiskFile.objects.select_related("version__foundation_model__provider").get(pk=risk_file.pk)


def _back_to_draft(risk_file: RiskFile) -> None:
    """Any change of the file's lines withdraws its approval: approval covers the file as it stands."""
    if risk_file.status == RiskFileStatus.APPROVED:
        risk_file.status, risk_file.approved_by, risk_file.approved_at = RiskFileStatus.DRAFT, None, None
        with audit_action("reopen"):
            risk_file.save(update_fields=["status", "approved_by", "approved_at", "updated_at"])


def risk_file_open(*, actor, version: ModelVersion) -> RiskFile:
    """The version's file, opened now if it has none: from a copy of the nearest ancestor's file, or empty (step 1)."""
    existing = RiskFile.objects.filter(version=version).first()
    if existing is not None:
        return existing
    provider = version.foundation_model.provider
    refusal = officer_refusal(actor, provider, f"open the risk file of {version}")
    if refusal:
        refuse(version, "risk_file_refused", refusal)
    return _open(version=version, actor=actor)


def _ancestor_file(version: ModelVersion) -> RiskFile | None:
    seen, current = {version.pk}, version.parent
    while current is not None and current.pk not in seen:
        found = RiskFile.objects.filter(version=current).first()
        if found is not None:
            return found
        seen.add(current.pk)
        current = current.parent
    return None


@transaction.atomic
def _open(*, version: ModelVersion, actor) -> RiskFile:
    source = _ancestor_file(version)
    risk_file = RiskFile.objects.create(
        version=version,
        carried_from=source,
        matrix=source.matrix if source else DEFAULT_MATRIX,
        benefit_risk=source.benefit_risk if source else "",
        created_by=actor,
    )
    for old in source.hazards.prefetch_related("controls") if source else ():
        new = Hazard.objects.create(
            risk_file=risk_file,
            number=old.number,
            carried_from=old,
            **{
                f: getattr(old, f)
                for f in ("hazard", "situation", "harm", "probability", "severity", "residual_probability", "residual_severity", "rationale")
            },
        )
        for control in old.controls.all():
            RiskControl.objects.create(hazard=new, kind=control.kind, description=control.description)
    return risk_file


def risk_file_carry_forward(*, version: ModelVersion) -> RiskFile | None:
    """A newly registered child version's copy of its parent's file; None when no ancestor has one."""
    if version.parent_id is None or version.created_by_id is None or RiskFile.objects.filter(version=version).exists():
        return None
    return _open(version=version, actor=version.created_by) if _ancestor_file(version) else None


def _checked_levels(matrix: RiskMatrix, **levels: int | None) -> dict:
    for name, level in levels.items():
        axis = matrix.severity if "severity" in name else matrix.probability
        if level is not None and not 1 <= level <= len(axis):
            raise ValidationError({name: f"Choose a level from 1 to {len(axis)} ({', '.join(x['label'] for x in axis)})."})
    return levels


def risk_file_update(*, actor, risk_file: RiskFile, benefit_risk: str | None = None, matrix: dict | None = None) -> RiskFile:
    """Write the benefit-risk conclusion, or change the matrix of a file whose hazards all fit it."""
    risk_file = _fresh(risk_file)
    _officer(actor, risk_file, f"change the risk file of {risk_file.version}")
    with transaction.atomic():
        if matrix is not None:
            try:
                cleaned = matrix_clean(matrix)
            except MatrixError as error:
                raise ValidationError({"matrix": str(error)}) from None
            for h in risk_file.hazards.all():
                try:
                    _checked_levels(cleaned, probability=h.probability, severity=h.severity)
                    _checked_levels(cleaned, residual_probability=h.residual_probability, residual_severity=h.residual_severity)
                except ValidationError:
                    raise ValidationError(
                        {"matrix": f"H{h.number} is estimated on a level this matrix does not have; estimate it again first."}
                    ) from None
            risk_file.matrix = cleaned.to_dict()
        if benefit_risk is not None:
            risk_file.benefit_risk = benefit_risk.strip()[:4000]
        risk_file.save()
        _back_to_draft(risk_file)
    return risk_file


def hazard_add(*, actor, risk_file: RiskFile, hazard: str, situation: str, harm: str) -> Hazard:
    """Add a hazard with its hazardous situation and harm; it is estimated next (step 2)."""
    risk_file = _fresh(risk_file)
    _officer(actor, risk_file, f"add a hazard to the risk file of {risk_file.version}")
    texts = {"hazard": hazard.strip(), "situation": situation.strip(), "harm": harm.strip()}
    missing = {k: "Describe it in a sentence." for k, v in texts.items() if not v}
    if missing:
        raise ValidationError(missing)
    with transaction.atomic():
        locked = RiskFile.objects.select_for_update().get(pk=risk_file.pk)
        number = (locked.hazards.order_by("-number").values_list("number", flat=True).first() or 0) + 1
        created = Hazard.objects.create(risk_file=locked, number=number, **texts)
        _back_to_draft(locked)
    return created


def hazard_estimate(
    *,
    actor,
    hazard: Hazard,
    probability: int,
    severity: int,
    residual_probability: int | None = None,
    residual_severity: int | None = None,
    rationale: str = "",
) -> Hazard:
    """Estimate the risk before and after control. It closes a re-opened estimate and withdraws an
    acceptance, which was of the risk as estimated before."""
    hazard = Hazard.objects.select_related("risk_file__version__foundation_model__provider").get(pk=hazard.pk)
    risk_file = hazard.risk_file
    _officer(actor, risk_file, f"estimate H{hazard.number} of {risk_file.version}")
    levels = _checked_levels(
        matrix_of(risk_file),
        probability=probability,
        severity=severity,
        residual_probability=residual_probability,
        residual_severity=residual_severity,
    )
    if (residual_probability is None) != (residual_severity is None):
        raise ValidationError({"residual_severity": "Estimate the residual probability and severity together."})
    for name, value in levels.items():
        setattr(hazard, name, value)
    hazard.rationale = rationale.strip()[:4000] or hazard.rationale
    hazard.reopened_by = None
    hazard.acceptance_reason, hazard.acceptance_proposed_by, hazard.acceptance_confirmed_by, hazard.accepted_at = "", None, None, None
    with transaction.atomic(), audit_action("estimate"):
        hazard.save()
        _back_to_draft(risk_file)
    return hazard


def risk_control_add(*, actor, hazard: Hazard, kind: str, description: str) -> RiskControl:
    hazard = Hazard.objects.select_related("risk_file__version__foundation_model__provider").get(pk=hazard.pk)
    _officer(actor, hazard.risk_file, f"add a control to H{hazard.number} of {hazard.risk_file.version}")
    if not description.strip():
        raise ValidationError({"description": "Describe the control measure."})
    with transaction.atomic():
        control = RiskControl(hazard=hazard, kind=kind, description=description.strip())
        control.full_clean(exclude=["hazard"])
        control.save()
        _back_to_draft(hazard.risk_file)
    return control


def _has_section(result: LabelResult, section: str) -> bool:
    return bool(result.subgroups) if section == "subgroups" else result.computed(section) is not None


def _verification_problem(version: ModelVersion, kind: str, run, section: str, field: str, reference: str) -> dict | None:
    """What is wrong with the named evidence, or None: it must be this version's and exist."""
    if kind not in VerificationKind.values:
        return {"verification_kind": f"Choose one of: {', '.join(VerificationKind.labels)}."}
    if kind in {VerificationKind.RUN, VerificationKind.RUN_SECTION}:
        if run is None or run.version_id != version.pk or run.status != RunStatus.SUCCEEDED:
            return {"run": f"Name a succeeded validation run of {version}."}
        if kind == VerificationKind.RUN_SECTION:
            if section not in RUN_SECTIONS:
                return {"section": f"Choose one of: {', '.join(RUN_SECTIONS)}."}
            if not any(_has_section(result, section) for result in RunReport.from_dict(run.results).results.values()):
                return {"section": f"Run {run.pk} has no {RUN_SECTIONS[section].lower()} analysis."}
    if kind == VerificationKind.DOSSIER_FIELD:
        dossier = version.dossiers.order_by("-revision").first()
        if field not in FIELDS or not FIELDS[field].editable:
            return {"field": "Name a dossier field an officer writes, by its key (e.g. 14_4d_override)."}
        if dossier is None or field_problem(FIELDS[field], (dossier.values or {}).get(field)):
            return {"field": f"The dossier of {version} does not answer {FIELDS[field].title!r} yet."}
    if kind == VerificationKind.REFERENCE and len(reference.strip()) < 5:
        return {"reference": "Name the training record or document: its number and title."}
    return None


def risk_control_verify(
    *, actor, control: RiskControl, kind: str, run: ValidationRun | None = None, section: str = "", field: str = "", reference: str = ""
) -> RiskControl:
    """Record the evidence that a control works (ISO 14971:2019 7.2)."""
    control = RiskControl.objects.select_related("hazard__risk_file__version__foundation_model__provider").get(pk=control.pk)
    risk_file = control.hazard.risk_file
    _officer(actor, risk_file, f"verify a control of H{control.hazard.number} of {risk_file.version}")
    problem = _verification_problem(risk_file.version, kind, run, section, field, reference)
    if problem:
        raise ValidationError(problem)
    control.verification_kind = kind
    control.verification_run = run if kind in {VerificationKind.RUN, VerificationKind.RUN_SECTION} else None
    control.verification_section = section if kind == VerificationKind.RUN_SECTION else ""
    control.verification_field = field if kind == VerificationKind.DOSSIER_FIELD else ""
    control.verification_reference = reference.strip() if kind == VerificationKind.REFERENCE else ""
    control.verified_by, control.verified_at = actor, timezone.now()
    with transaction.atomic(), audit_action("verify"):
        control.save()
        _back_to_draft(risk_file)
    return control


def verification_text(control: RiskControl) -> str:
    """Where the evidence for a control is, in words; "not verified" until it is."""
    kind = control.verification_kind
    if not control.verified_by_id:
        return "not verified"
    if kind == VerificationKind.RUN:
        return f"Validation run {control.verification_run_id}"
    if kind == VerificationKind.RUN_SECTION:
        return f"{RUN_SECTIONS.get(control.verification_section, control.verification_section)}, validation run {control.verification_run_id}"
    if kind == VerificationKind.DOSSIER_FIELD:
        field = FIELDS.get(control.verification_field)
        return f"Dossier: {field.title if field else control.verification_field}"
    return control.verification_reference


def hazard_signal_link(*, actor, hazard: Hazard, note: str, alert: Alert | None = None, incident: Incident | None = None) -> HazardSignal:
    """Link a post-market signal to a hazard; its estimate is re-opened until estimated again (step 3)."""
    hazard = Hazard.objects.select_related("risk_file__version__foundation_model__provider").get(pk=hazard.pk)
    risk_file = hazard.risk_file
    _officer(actor, risk_file, f"link a signal to H{hazard.number} of {risk_file.version}")
    if (alert is None) == (incident is None):
        raise ValidationError({"alert": "Link either an alert or an incident."})
    signal = alert or incident
    if signal.version_id != risk_file.version_id:
        raise ValidationError({"alert" if alert else "incident": f"Link a signal about {risk_file.version}."})
    if not note.strip():
        raise ValidationError({"note": "Say what the signal shows about this hazard."})
    with transaction.atomic():
        link = HazardSignal.objects.create(hazard=hazard, alert=alert, incident=incident, note=note.strip(), linked_by=actor)
        hazard.reopened_by = link
        with audit_action("reopen_estimate"):
            hazard.save(update_fields=["reopened_by", "updated_at"])
        _back_to_draft(risk_file)
    return link


def hazard_acceptance_propose(*, actor, hazard: Hazard, reason: str) -> Hazard:
    """The first officer proposes accepting the hazard's residual risk, saying why (step 4)."""
    hazard = Hazard.objects.select_related("risk_file__version__foundation_model__provider").get(pk=hazard.pk)
    _officer(actor, hazard.risk_file, f"accept the residual risk of H{hazard.number}")
    if len(reason.strip()) < 20:
        raise ValidationError({"reason": "Say why the residual risk is acceptable: the benefit that outweighs it."})
    if hazard.reopened_by_id:
        raise Conflict(
            f"H{hazard.number}'s estimate was re-opened by {hazard.reopened_by.signal_label}; estimate it again first.", code="hazard_reopened"
        )
    hazard.acceptance_reason, hazard.acceptance_proposed_by, hazard.acceptance_confirmed_by, hazard.accepted_at = reason.strip(), actor, None, None
    with transaction.atomic(), audit_action("propose_acceptance"):
        hazard.save()
        _back_to_draft(hazard.risk_file)
    return hazard


def hazard_acceptance_confirm(*, actor, hazard: Hazard) -> Hazard:
    """A second officer of the provider confirms the proposed acceptance (step 4)."""
    hazard = Hazard.objects.select_related("risk_file__version__foundation_model__provider", "acceptance_proposed_by").get(pk=hazard.pk)
    if not hazard.acceptance_proposed_by_id:
        raise Conflict(f"Nobody proposed accepting the residual risk of H{hazard.number}.", code="no_acceptance_proposed")
    provider = hazard.risk_file.version.foundation_model.provider
    refusal = second_officer_refusal(actor, first=hazard.acceptance_proposed_by, institution=provider, what=f"confirm accepting H{hazard.number}")
    if refusal:
        refuse(hazard, "acceptance_refused", refusal)
    hazard.acceptance_confirmed_by, hazard.accepted_at = actor, timezone.now()
    with transaction.atomic(), audit_action("confirm_acceptance"):
        hazard.save(update_fields=["acceptance_confirmed_by", "accepted_at", "updated_at"])
    return hazard


def approval_blockers(risk_file: RiskFile) -> list[str]:
    """Every reason the file cannot be approved now (empty: it can)."""
    matrix = matrix_of(risk_file)
    hazards = list(risk_file.hazards.select_related("reopened_by").prefetch_related("controls"))
    blockers = []
    if not hazards:
        blockers.append("The file lists no hazard.")
    for hazard in hazards:
        state = hazard_state(hazard, matrix, list(hazard.controls.all()))
        if not state.ready:
            blockers.append(f"H{hazard.number}: {state.text}")
    if len(risk_file.benefit_risk.strip()) < 50:
        blockers.append("Write the overall benefit-risk conclusion (ISO 14971:2019 8).")
    return blockers


def risk_file_approve(*, actor, risk_file: RiskFile) -> RiskFile:
    """Approve the file as it stands (step 5): refused, with every reason, until it is complete."""
    risk_file = _fresh(risk_file)
    _officer(actor, risk_file, f"approve the risk file of {risk_file.version}")
    blockers = approval_blockers(risk_file)
    if blockers:
        refuse(risk_file, "approve_refused", "The risk file cannot be approved yet: " + " ".join(blockers), Conflict, code="risk_file_incomplete")
    risk_file.status, risk_file.approved_by, risk_file.approved_at = RiskFileStatus.APPROVED, actor, timezone.now()
    with audit_action("approve"):
        risk_file.save(update_fields=["status", "approved_by", "approved_at", "updated_at"])
    return risk_file


def risk_file_check(version: ModelVersion) -> str | None:
    """The approval guard's ``risk_file`` evidence: None once the version's risk file is approved."""
    risk_file = RiskFile.objects.filter(version=version).first()
    who = who_may_act(version.foundation_model.provider)
    if risk_file is None:
        return f"No risk management file (AI Act Art. 9) is open for {version}; a compliance officer opens and approves it ({who})."
    if risk_file.status != RiskFileStatus.APPROVED:
        blockers = approval_blockers(risk_file)
        return f"The risk management file of {version} is not approved" + (": " + " ".join(blockers[:3]) if blockers else f"; {who} may approve it.")
    return None


def risk_file_summary(version: ModelVersion) -> dict | None:
    """The file as the documents print it (frozen in the dossier snapshot): every hazard with its
    estimates in words, its controls and their verification, its residual risk and where it stands."""
    risk_file = RiskFile.objects.filter(version=version).select_related("approved_by", "carried_from__version").first()
    if risk_file is None:
        return None
    matrix = matrix_of(risk_file)
    hazards = risk_file.hazards.select_related("reopened_by").prefetch_related("controls", "signals")
    rows = []
    for h in hazards:
        controls = list(h.controls.all())
        state = hazard_state(h, matrix, controls)
        residual = matrix.region(h.residual_probability, h.residual_severity)
        rows.append(
            {
                "id": h.pk,
                "number": h.number,
                "hazard": h.hazard,
                "situation": h.situation,
                "harm": h.harm,
                "initial": matrix.estimate_text(h.probability, h.severity),
                "residual": matrix.estimate_text(h.residual_probability, h.residual_severity),
                "residual_acceptable": residual == "acceptable" or bool(h.acceptance_confirmed_by_id),
                "controls": [
                    {"id": c.pk, "kind": c.get_kind_display(), "description": c.description, "verification": verification_text(c)} for c in controls
                ],
                "state": state.text,
                "ready": state.ready,
                "signals": [f"{s.signal_label}: {s.note}" for s in h.signals.all()],
            }
        )
    return {
        "status": risk_file.get_status_display(),
        "approved_by": (risk_file.approved_by.get_full_name() or risk_file.approved_by.username) if risk_file.approved_by else None,
        "approved_at": risk_file.approved_at.isoformat() if risk_file.approved_at else None,
        "carried_from": str(risk_file.carried_from.version) if risk_file.carried_from else None,
        "benefit_risk": risk_file.benefit_risk,
        "matrix": risk_file.matrix,
        "hazards": rows,
    }
