"""Serious-incident reporting rules: which law, which paragraph, how many days.

Plain Python (no Django): models, services, pages, the API and the PDF report all
read the one table below, so what the docs show is what the deadlines use.

How a rule is chosen (``reporting_rule``):

1. Medical device or not: an AI system that is, or is a safety component of, a
   device under the MDR (Regulation (EU) 2017/745) reports under AI Act Art. 73
   only infringements of obligations protecting fundamental rights (Art. 73(10),
   the incidents of Art. 3(49)(c)); every other serious incident goes to MDR
   vigilance (MDR Art. 87(1)(a)).
2. AI Act Art. 73: 15 days (73(2)); 2 days for a widespread infringement or a
   serious and irreversible disruption of critical infrastructure (73(3)); 10 days
   for a death (73(4)).
3. MDR Art. 87: 15 days (87(3)); 2 days for a serious public-health threat
   (87(4)); 10 days for a death or an unanticipated serious deterioration of a
   person's health (87(5)).

Each limit reads "immediately ..., and not later than N days after" awareness: the
deadline is the latest lawful date, not a target. Both laws allow an incomplete
first report (AI Act Art. 73(5)).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

INCIDENT_TYPES: dict[str, str] = {
    "death": "Death of a person",
    "serious_deterioration": "Unexpected serious deterioration of a person's health",
    "public_health_threat": "Serious public-health threat",
    "fundamental_rights": "Infringement of obligations protecting fundamental rights",
    "widespread_infringement": "Widespread infringement",
    "critical_infrastructure": "Serious and irreversible disruption of critical infrastructure",
    "property_or_environment": "Serious harm to property or the environment",
    "other": "Any other serious incident or malfunction",
}

AI_ACT = "ai_act_art73"
MDR = "mdr_art87"
ROUTE_LABELS: dict[str, str] = {AI_ACT: "AI Act Art. 73", MDR: "MDR Art. 87 vigilance"}


@dataclass(frozen=True)
class ReportingRule:
    """Where and how fast one type of serious incident is reported, for one kind of system."""

    medical_device: bool
    incident_type: str
    route: str
    route_label: str
    days: int
    legal_basis: str
    note: str

    @property
    def incident_type_label(self) -> str:
        return INCIDENT_TYPES[self.incident_type]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "incident_type_label": self.incident_type_label}


def _rule(medical_device: bool, incident_type: str, route: str, days: int, legal_basis: str, note: str) -> ReportingRule:
    return ReportingRule(medical_device, incident_type, route, ROUTE_LABELS[route], days, legal_basis, note)


_NOT_FR = "Not a fundamental-rights infringement, so AI Act Art. 73(10) sends it to MDR vigilance"

RULES: tuple[ReportingRule, ...] = (
    # Medical devices under the MDR.
    _rule(
        True,
        "death",
        MDR,
        10,
        "MDR Art. 87(5)",
        "A death linked to the device: report once a causal link is established or suspected, at the latest on day 10.",
    ),
    _rule(
        True, "serious_deterioration", MDR, 10, "MDR Art. 87(5)", "An unanticipated serious deterioration of a person's health linked to the device."
    ),
    _rule(
        True,
        "public_health_threat",
        MDR,
        2,
        "MDR Art. 87(4)",
        "A serious public-health threat (MDR Art. 2(66)): report immediately, at the latest on day 2.",
    ),
    _rule(
        True,
        "fundamental_rights",
        AI_ACT,
        15,
        "AI Act Art. 73(2), 73(10)",
        "The one kind of incident a medical device still reports under the AI Act, to the authority the Member State chose.",
    ),
    _rule(True, "widespread_infringement", MDR, 15, "MDR Art. 87(3)", f"{_NOT_FR} at the general 15-day limit."),
    _rule(True, "critical_infrastructure", MDR, 15, "MDR Art. 87(3)", f"{_NOT_FR} at the general 15-day limit."),
    _rule(True, "property_or_environment", MDR, 15, "MDR Art. 87(3)", f"{_NOT_FR} at the general 15-day limit."),
    _rule(
        True,
        "other",
        MDR,
        15,
        "MDR Art. 87(3)",
        "Any other serious incident with the device, once a causal link is established or reasonably possible.",
    ),
    # AI systems outside the MDR.
    _rule(
        False, "death", AI_ACT, 10, "AI Act Art. 73(4)", "A death: report once a causal link is established or suspected, at the latest on day 10."
    ),
    _rule(
        False,
        "serious_deterioration",
        AI_ACT,
        15,
        "AI Act Art. 73(2)",
        "Serious harm to a person's health (Art. 3(49)(a)) short of death has no shorter AI Act limit.",
    ),
    _rule(
        False, "public_health_threat", AI_ACT, 15, "AI Act Art. 73(2)", "The AI Act has no public-health-threat limit, so the general 15 days apply."
    ),
    _rule(
        False,
        "fundamental_rights",
        AI_ACT,
        15,
        "AI Act Art. 73(2)",
        "An infringement of obligations protecting fundamental rights (Art. 3(49)(c)) that is not widespread.",
    ),
    _rule(
        False,
        "widespread_infringement",
        AI_ACT,
        2,
        "AI Act Art. 73(3)",
        "A widespread infringement (Art. 3(61)): report immediately, at the latest on day 2.",
    ),
    _rule(
        False,
        "critical_infrastructure",
        AI_ACT,
        2,
        "AI Act Art. 73(3)",
        "A serious and irreversible disruption of critical infrastructure (Art. 3(49)(b)): at the latest on day 2.",
    ),
    _rule(False, "property_or_environment", AI_ACT, 15, "AI Act Art. 73(2)", "Serious harm to property or the environment (Art. 3(49)(d))."),
    _rule(False, "other", AI_ACT, 15, "AI Act Art. 73(2)", "Any other serious incident, once a causal link is established or reasonably likely."),
)

_BY_KEY: dict[tuple[bool, str], ReportingRule] = {(r.medical_device, r.incident_type): r for r in RULES}


def reporting_rule(*, medical_device: bool, incident_type: str) -> ReportingRule:
    """The rule for this kind of system and incident; an unknown type is refused, never defaulted."""
    if incident_type not in INCIDENT_TYPES:
        raise ValueError(f"Unknown incident type {incident_type!r}; valid types: {', '.join(INCIDENT_TYPES)}.")
    return _BY_KEY[(bool(medical_device), incident_type)]


def reporting_deadline(*, medical_device: bool, incident_type: str, aware_on: date) -> date:
    """The last date on which the report is still on time: ``aware_on`` plus the rule's days.

    Calendar days, weekends and holidays included; the day of awareness is day 0. Both
    laws say "immediately, and not later than N days after" awareness, so this is the
    latest lawful date, not the target: reporting earlier is always expected.
    """
    return aware_on + timedelta(days=reporting_rule(medical_device=medical_device, incident_type=incident_type).days)


def is_overdue(deadline: date, *, reported_on: date | None, today: date) -> bool:
    """Still unreported after its deadline; on the deadline day itself it is not yet late."""
    return reported_on is None and today > deadline


def reported_late(deadline: date, reported_on: date) -> bool:
    """Reported, but after the deadline: closed as far as overdue lists go, still a finding for the audit."""
    return reported_on > deadline


def _display_key(rule: ReportingRule) -> tuple[bool, int, int]:
    return (not rule.medical_device, rule.days, list(INCIDENT_TYPES).index(rule.incident_type))


def rules_table() -> list[dict[str, Any]]:
    """The rules as JSON-safe rows: medical devices first, then by days, then in ``INCIDENT_TYPES`` order."""
    return [rule.to_dict() for rule in sorted(RULES, key=_display_key)]


def rules_markdown() -> str:
    """The same table as Markdown, for the README and the docs."""
    lines = ["| System | Incident type | Route | Legal basis | Days |", "|---|---|---|---|---:|"]
    for row in rules_table():
        system = "Medical device (MDR)" if row["medical_device"] else "Outside the MDR"
        lines.append(f"| {system} | {row['incident_type_label']} | {row['route_label']} | {row['legal_basis']} | {row['days']} |")
    return "\n".join(lines) + "\n"
