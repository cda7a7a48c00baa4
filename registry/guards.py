"""The version lifecycle: allowed transitions, who may make them, and the guards.

A guard returns ``None`` when the transition may go ahead, or the reason it may
not. Evidence that lives in later parts of the system (a passing validation run,
a signed dossier, the conformity assessment of a substantial modification) is
asked for through ``EVIDENCE``: the app that owns the evidence registers its
check in its ``AppConfig.ready``; until one is registered the guard refuses and
says what is missing.
"""

from __future__ import annotations

from collections.abc import Callable

from core.choices import Role
from registry.choices import DeploymentStatus, ProvenanceRole, VersionStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    VersionStatus.DRAFT: frozenset({VersionStatus.IN_VALIDATION, VersionStatus.RETIRED}),
    VersionStatus.IN_VALIDATION: frozenset({VersionStatus.UNDER_REVIEW, VersionStatus.DRAFT, VersionStatus.RETIRED}),
    VersionStatus.UNDER_REVIEW: frozenset({VersionStatus.APPROVED, VersionStatus.IN_VALIDATION, VersionStatus.RETIRED}),
    VersionStatus.APPROVED: frozenset({VersionStatus.DEPLOYED, VersionStatus.RETIRED}),
    VersionStatus.DEPLOYED: frozenset({VersionStatus.SUSPENDED, VersionStatus.RETIRED}),
    VersionStatus.SUSPENDED: frozenset({VersionStatus.DEPLOYED, VersionStatus.RETIRED}),
    VersionStatus.RETIRED: frozenset(),
}

# Who may move a version into each status; ``REVIEW_RETURN_ROLES`` adds the officer who
# sends a version under review back to validation (changes requested).
TRANSITION_ROLES: dict[str, frozenset[str]] = {
    VersionStatus.DRAFT: frozenset({Role.ML_ENGINEER}),
    VersionStatus.IN_VALIDATION: frozenset({Role.ML_ENGINEER}),
    VersionStatus.UNDER_REVIEW: frozenset({Role.ML_ENGINEER}),
    VersionStatus.APPROVED: frozenset({Role.COMPLIANCE_OFFICER}),
    VersionStatus.DEPLOYED: frozenset({Role.COMPLIANCE_OFFICER}),
    VersionStatus.SUSPENDED: frozenset({Role.COMPLIANCE_OFFICER}),
    VersionStatus.RETIRED: frozenset({Role.COMPLIANCE_OFFICER}),
}
REVIEW_RETURN_ROLES = frozenset({Role.ML_ENGINEER, Role.COMPLIANCE_OFFICER})


def roles_for(current: str, target: str) -> frozenset[str]:
    """The roles that may move a version from ``current`` to ``target``."""
    if (current, target) == (VersionStatus.UNDER_REVIEW, VersionStatus.IN_VALIDATION):
        return REVIEW_RETURN_ROLES
    return TRANSITION_ROLES.get(target, frozenset())


Guard = Callable[[object], str | None]

# name -> check(version) -> None or reason (``market``: check(version, institution)); filled in by
# the apps that own the evidence.
EVIDENCE: dict[str, Callable[..., str | None]] = {}
_MISSING_EVIDENCE = {
    "validation": "No passing validation run is recorded for this version; run and pass validation first.",
    "dossier": "No signed dossier is recorded for this version; a second compliance officer must sign it first.",
    "trust": "No trust assessment is recorded for this version yet.",
    "change_control": "Change control cannot tell whether this version is a substantial modification of its parent (AI Act Art. 43(4)) yet.",
    "second_officer": "Approval takes two compliance officers of the provider: one proposes it, a different one confirms it.",
    "risk_file": "No approved risk management file (AI Act Art. 9) is recorded for this version.",
    "market": "No placing on the market can be recorded for this version yet, so it may not be deployed (outside a clinical investigation).",
}


def register_evidence_check(name: str, check: Callable[..., str | None]) -> None:
    """Called by the validation and compliance apps to supply the evidence guards."""
    if name not in _MISSING_EVIDENCE:
        raise ValueError(f"Unknown evidence check {name!r}")
    EVIDENCE[name] = check


def _evidence(name: str) -> Guard:
    def guard(version) -> str | None:
        check = EVIDENCE.get(name)
        return check(version) if check else _MISSING_EVIDENCE[name]

    guard.__name__ = f"{name}_evidence"
    return guard


def training_provenance_linked(version) -> str | None:
    roles = set(version.provenance.values_list("role", flat=True))
    if not roles & {ProvenanceRole.PRETRAINING, ProvenanceRole.FINE_TUNING}:
        return "Link the dataset(s) this version was pre-trained or fine-tuned on (provenance) before validation."
    return None


def open_deployment_exists(version) -> str | None:
    if not version.deployments.filter(status__in=[DeploymentStatus.PLANNED, DeploymentStatus.ACTIVE]).exists():
        return "Create a deployment at an institution before marking the version deployed."
    return None


def no_unreported_incident(version) -> str | None:
    """Art. 73(6): the system is not altered in a way that affects the investigation before the authority is told."""
    if version.incidents.filter(reported_on__isnull=True).exclude(status="closed").exists():
        return "An incident on this version has not been reported to the authority yet; report or close it before retiring the version."
    return None


GUARDS: dict[str, tuple[Guard, ...]] = {
    VersionStatus.IN_VALIDATION: (training_provenance_linked,),
    VersionStatus.RETIRED: (no_unreported_incident,),
    VersionStatus.UNDER_REVIEW: (_evidence("validation"),),
    VersionStatus.APPROVED: (
        _evidence("validation"),
        _evidence("dossier"),
        _evidence("trust"),
        _evidence("change_control"),
        _evidence("risk_file"),
        _evidence("second_officer"),
    ),
    VersionStatus.DEPLOYED: (open_deployment_exists,),
}


def transition_refusals(version, target: str) -> list[str]:
    """Every reason the version may not move to ``target`` now (empty: it may)."""
    if target not in TRANSITIONS:
        return [f"{target!r} is not a lifecycle status."]
    if target not in TRANSITIONS[version.status]:
        allowed = ", ".join(sorted(TRANSITIONS[version.status])) or "none (it is final)"
        return [f"A {version.get_status_display().lower()} version cannot become {target}; allowed next: {allowed}."]
    return [reason for guard in GUARDS.get(target, ()) if (reason := guard(version))]


def deployment_refusal(version, institution) -> str | None:
    """Why the version may not be newly deployed (created or activated) at the institution, or None:
    compliance's ``market`` evidence (placed on the market and not withdrawn, or within a clinical
    investigation there)."""
    check = EVIDENCE.get("market")
    return check(version, institution) if check else _MISSING_EVIDENCE["market"]
