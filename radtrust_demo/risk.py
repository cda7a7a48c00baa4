"""The risk management file and the QMS register of ``manage.py demo``: the officer lists the nodule
model's hazards, estimates them on the default matrix, adds controls verified by the version's own
evidence (a validation run, a training record), two officers accept the one residual risk that
stays in the benefit-risk review region, and the file is approved before the dossier is submitted,
so the technical documentation prints its risk table and the instructions for use its residual
risks. A fine-tuned version starts from a copy of its parent's file and verifies the controls again.
Reuses what an earlier demo left.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from compliance.choices import RiskControlKind, RiskFileStatus, VerificationKind
from compliance.models import QmsProcedure
from compliance.qms import qms_procedure_save, qms_standards_seed
from compliance.risk_file import (
    hazard_acceptance_confirm,
    hazard_acceptance_propose,
    hazard_add,
    hazard_estimate,
    hazard_state,
    matrix_of,
    risk_control_add,
    risk_control_verify,
    risk_file_approve,
    risk_file_open,
    risk_file_update,
)
from registry.models import ModelVersion, User
from validation.choices import RunStatus
from validation.models import ValidationRun

# (hazard, hazardous situation, harm, (probability, severity), (residual p, s), control kind, control)
HAZARDS = (
    (
        "A nodule the model does not flag (false negative)",
        "The radiologist relies on the absent flag when reading a long worklist",
        "Delayed diagnosis of lung cancer",
        (3, 4),
        (2, 2),
        RiskControlKind.PROTECTIVE_MEASURE,
        "Operating threshold fixed on the declared validation runs for a sensitivity of at least 0.85; uncertain cases referred for a second read.",
    ),
    (
        "Automation bias: the output is accepted without an independent read",
        "A reader signs off a false-positive flag without looking at the image",
        "Unnecessary follow-up CT and patient anxiety",
        (3, 2),
        (2, 2),
        RiskControlKind.INFORMATION_FOR_SAFETY,
        "Readers complete the automation-bias training module before first use; the instructions tell them to read before viewing the output.",
    ),
    (
        "Lower sensitivity in patients aged 65 and over",
        "An older patient's nodule is missed more often than a younger patient's",
        "Unequal delay of diagnosis between age groups",
        (3, 3),
        (2, 3),
        RiskControlKind.INFORMATION_FOR_SAFETY,
        "The instructions state the performance per age band and ask for extra care in patients aged 65 and over.",
    ),
)
TRAINING_RECORD = "TR-014 Automation-bias training for readers, completion records 2026"
BENEFIT_RISK = (
    "Flagging nodules on a worklist shortens the time to a specialist read for most patients; with the controls in place the residual risks "
    "(a missed nodule, unnecessary follow-up, unequal sensitivity by age) are outweighed by that benefit (ISO 14971:2019 8)."
)
ACCEPTANCE = "The age gap stays within the benefit-risk review region; the instructions warn readers, and post-market monitoring watches it."
PROCEDURES = (
    ("SOP-01", "Regulatory strategy and change control", ["a", "e"]),
    ("SOP-04", "Risk management (ISO 14971)", ["g"]),
    ("SOP-07", "Post-market monitoring and vigilance", ["h", "i", "j"]),
)


def qms_demo(*, institution, officer: User) -> None:
    """The provider's register: the standards RadTrust ships with and three procedures owned by the officer."""
    qms_standards_seed(actor=officer, institution=institution)
    today = timezone.localdate()
    for reference, title, articles in PROCEDURES:
        if not QmsProcedure.objects.filter(institution=institution, reference=reference).exists():
            procedure = QmsProcedure(
                institution=institution,
                reference=reference,
                title=title,
                owner=officer,
                articles=articles,
                reviewed_on=today - timedelta(days=200),
                next_review=today + timedelta(days=165),
            )
            qms_procedure_save(actor=officer, procedure=procedure)


def risk_file_demo(*, version: ModelVersion, officer: User, reviewer: User, out=print) -> None:
    """Open, complete and approve the version's risk file (before its dossier is submitted)."""
    qms_demo(institution=version.foundation_model.provider, officer=officer)
    risk_file = risk_file_open(actor=officer, version=version)
    if risk_file.status == RiskFileStatus.APPROVED:
        return
    carried = f" (carried forward from {risk_file.carried_from.version})" if risk_file.carried_from_id else ""
    out(f"Risk file of {version}{carried}: {officer.username} estimates and controls {len(HAZARDS)} hazards ...")
    if not risk_file.hazards.exists():
        for hazard, situation, harm, _, _, kind, control in HAZARDS:
            added = hazard_add(actor=officer, risk_file=risk_file, hazard=hazard, situation=situation, harm=harm)
            risk_control_add(actor=officer, hazard=added, kind=kind, description=control)
    run = ValidationRun.objects.filter(version=version, status=RunStatus.SUCCEEDED).order_by("-finished_at", "-pk").first()
    matrix = matrix_of(risk_file)
    for hazard, (_, _, _, (p, s), (rp, rs), _, _) in zip(risk_file.hazards.order_by("number"), HAZARDS, strict=False):
        if hazard.probability is None or hazard.reopened_by_id:
            hazard = hazard_estimate(
                actor=officer, hazard=hazard, probability=p, severity=s, residual_probability=rp, residual_severity=rs, rationale="Demo estimate."
            )
        for control in hazard.controls.filter(verified_by__isnull=True):
            if run is not None and control.kind == RiskControlKind.PROTECTIVE_MEASURE:
                risk_control_verify(actor=officer, control=control, kind=VerificationKind.RUN, run=run)
            else:
                risk_control_verify(actor=officer, control=control, kind=VerificationKind.REFERENCE, reference=TRAINING_RECORD)
        if hazard_state(hazard, matrix, list(hazard.controls.all())).code == "residual_not_acceptable":
            hazard = hazard_acceptance_propose(actor=officer, hazard=hazard, reason=ACCEPTANCE)
            hazard_acceptance_confirm(actor=reviewer, hazard=hazard)
            out(f"H{hazard.number}: residual risk accepted by {officer.username} and {reviewer.username}.")
    if len(risk_file.benefit_risk) < 50:
        risk_file = risk_file_update(actor=officer, risk_file=risk_file, benefit_risk=BENEFIT_RISK)
    risk_file_approve(actor=officer, risk_file=risk_file)
    out(f"Risk file of {version} approved by {officer.username}.")
