"""Vigilance reporting rules: which law, which paragraph, how many days.

Plain Python (no Django): models, services, pages, the API, the MIR export and the docs
read the one table below, so what the docs show is what the deadlines use.

How a rule is chosen (``reporting_rule``):

1. Medical device or not. An AI system that is, or is a safety component of, a device
   under the MDR (Regulation (EU) 2017/745) reports under AI Act Art. 73 only the
   incidents of Art. 3(49)(c), infringements of obligations protecting fundamental
   rights (Art. 73(10)); a widespread one keeps the AI Act's 2 days (Art. 73(3)).
   Everything else goes to MDR vigilance, which knows only serious incidents in the
   sense of MDR Art. 2(65): death, serious deterioration of health, serious public
   health threat. Harm to property, the environment or critical infrastructure alone
   is none of them, so for a device it is recorded for post-market surveillance and
   trend reporting (MDR Art. 83, 88), never labelled MDR Art. 87(3).
2. AI Act Art. 73: 15 days (73(2)); 2 days for a widespread infringement or a
   serious and irreversible disruption of critical infrastructure (73(3)); 10 days
   for a death (73(4)).
3. MDR Art. 87(1)(a) serious incidents: 15 days (87(3)); 2 days for a serious
   public-health threat (87(4)); 10 days for a death or an unanticipated serious
   deterioration of a person's health (87(5)). MDR Art. 87(1)(b) field safety
   corrective actions are reported before they are undertaken (87(8)).
4. Not every signal is a serious incident: a statistically significant rise in
   incidents that are not serious or in expected side-effects is a trend (MDR Art.
   88); anything else is a post-market signal (AI Act Art. 72, MDR Art. 83).

Each limit reads "immediately ..., and not later than N days after" awareness: the
deadline is the latest lawful date, not a target. Both laws allow an incomplete first
report followed by others (AI Act Art. 73(5), MDR Art. 87(6)).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

INCIDENT_TYPES: dict[str, str] = {
    "death": "Death of a person",
    "serious_deterioration": "Unanticipated serious deterioration of a person's health",
    "public_health_threat": "Serious public-health threat",
    "fundamental_rights": "Infringement of obligations protecting fundamental rights",
    "widespread_infringement": "Widespread infringement of fundamental-rights obligations",
    "critical_infrastructure": "Serious and irreversible disruption of critical infrastructure",
    "property_or_environment": "Serious harm to property or the environment",
    "other": "Any other serious incident (for a device: an anticipated serious deterioration, or one not yet classified)",
}

AI_ACT = "ai_act_art73"
MDR = "mdr_art87"
MDR_NOT_SERIOUS = "mdr_not_serious"
ROUTE_LABELS: dict[str, str] = {
    AI_ACT: "AI Act Art. 73",
    MDR: "MDR Art. 87 vigilance",
    MDR_NOT_SERIOUS: "Not an MDR serious incident (post-market surveillance, MDR Art. 83 and 88)",
}


@dataclass(frozen=True)
class ReportingRule:
    """Where and how fast one type of serious incident is reported, for one kind of system.

    ``days`` is ``None`` where no serious-incident report is due (the route says why)."""

    medical_device: bool
    incident_type: str
    route: str
    route_label: str
    days: int | None
    legal_basis: str
    note: str

    @property
    def incident_type_label(self) -> str:
        return INCIDENT_TYPES[self.incident_type]

    @property
    def label(self) -> str:
        """The rule in one line, as an officer reads it: the article and the limit."""
        if self.days is None:
            return f"{self.legal_basis}: no serious-incident report is due"
        return f"{self.legal_basis}: report within {self.days} days of awareness"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "incident_type_label": self.incident_type_label, "label": self.label}


def _rule(medical_device: bool, incident_type: str, route: str, days: int | None, legal_basis: str, note: str) -> ReportingRule:
    return ReportingRule(medical_device, incident_type, route, ROUTE_LABELS[route], days, legal_basis, note)


_NOT_MDR_SERIOUS = (
    "Not a serious incident under MDR Art. 2(65) and not a fundamental-rights infringement, so neither MDR Art. 87 nor "
    "(by AI Act Art. 73(10)) Art. 73 applies: record it for post-market surveillance and trend reporting; if a person's "
    "health was also harmed, triage it as that type."
)

RULES: tuple[ReportingRule, ...] = (
    # Medical devices under the MDR.
    _rule(
        True, "death", MDR, 10, "MDR Art. 87(1)(a), 87(5)", "A death: report once a causal link is established or suspected, at the latest on day 10."
    ),
    _rule(
        True,
        "serious_deterioration",
        MDR,
        10,
        "MDR Art. 87(1)(a), 87(5)",
        "An unanticipated serious deterioration of a person's state of health: at the latest on day 10.",
    ),
    _rule(
        True,
        "public_health_threat",
        MDR,
        2,
        "MDR Art. 87(1)(a), 87(4)",
        "A serious public-health threat (MDR Art. 2(66)): report immediately, at the latest on day 2.",
    ),
    _rule(
        True,
        "fundamental_rights",
        AI_ACT,
        15,
        "AI Act Art. 73(2), 73(10)",
        "The one kind of incident (Art. 3(49)(c)) a medical device still reports under the AI Act, to its market surveillance authority.",
    ),
    _rule(
        True,
        "widespread_infringement",
        AI_ACT,
        2,
        "AI Act Art. 73(3), 73(10)",
        "A widespread fundamental-rights infringement stays under the AI Act for a device (Art. 73(10)): at the latest on day 2.",
    ),
    _rule(True, "critical_infrastructure", MDR_NOT_SERIOUS, None, "AI Act Art. 73(10); MDR Art. 2(65), 88", _NOT_MDR_SERIOUS),
    _rule(True, "property_or_environment", MDR_NOT_SERIOUS, None, "AI Act Art. 73(10); MDR Art. 2(65), 88", _NOT_MDR_SERIOUS),
    _rule(
        True,
        "other",
        MDR,
        15,
        "MDR Art. 87(1)(a), 87(3)",
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

# What is reported that is not a serious incident, and the field safety corrective action.
FIELD_SAFETY_RULE = (
    "MDR Art. 87(1)(b), 87(8)",
    "A field safety corrective action on a device: report it before it is undertaken, unless it is urgent.",
)
TREND_RULE = (
    "MDR Art. 88",
    "A statistically significant rise in incidents that are not serious, or in expected side-effects: a trend report, not a serious incident.",
)
SIGNAL_RULE = (
    "AI Act Art. 72; MDR Art. 83",
    "A post-market signal that is not a serious incident: handled in post-market surveillance (analysis, revalidation, risk file).",
)

_BY_KEY: dict[tuple[bool, str], ReportingRule] = {(r.medical_device, r.incident_type): r for r in RULES}


def reporting_rule(*, medical_device: bool, incident_type: str) -> ReportingRule:
    """The rule for this kind of system and incident; an unknown type is refused, never defaulted."""
    if incident_type not in INCIDENT_TYPES:
        raise ValueError(f"Unknown incident type {incident_type!r}; valid types: {', '.join(INCIDENT_TYPES)}.")
    return _BY_KEY[(bool(medical_device), incident_type)]


def reporting_deadline(*, medical_device: bool, incident_type: str, aware_on: date) -> date | None:
    """The last date on which the report is still on time: ``aware_on`` plus the rule's days
    (``None`` where no serious-incident report is due).

    Calendar days, weekends and holidays included; the day of awareness is day 0. Both
    laws say "immediately, and not later than N days after" awareness, so this is the
    latest lawful date, not the target: reporting earlier is always expected.
    """
    days = reporting_rule(medical_device=medical_device, incident_type=incident_type).days
    return None if days is None else aware_on + timedelta(days=days)


def is_overdue(deadline: date | None, *, reported_on: date | None, today: date) -> bool:
    """Still unreported after its deadline; on the deadline day itself it is not yet late."""
    return deadline is not None and reported_on is None and today > deadline


def reported_late(deadline: date | None, reported_on: date) -> bool:
    """Reported, but after the deadline: closed as far as overdue lists go, still a finding for the audit."""
    return deadline is not None and reported_on > deadline


def _display_key(rule: ReportingRule) -> tuple[bool, int, int]:
    return (not rule.medical_device, 99 if rule.days is None else rule.days, list(INCIDENT_TYPES).index(rule.incident_type))


def rules_table() -> list[dict[str, Any]]:
    """The rules as JSON-safe rows: medical devices first, then by days, then in ``INCIDENT_TYPES`` order."""
    return [rule.to_dict() for rule in sorted(RULES, key=_display_key)]


def rules_markdown() -> str:
    """The same table as Markdown, for the README and the docs, with the signals that are not serious incidents."""
    lines = ["| System | Incident type | Route | Legal basis | Days |", "|---|---|---|---|---:|"]
    for row in rules_table():
        system = "Medical device (MDR)" if row["medical_device"] else "Outside the MDR"
        days = "—" if row["days"] is None else row["days"]
        lines.append(f"| {system} | {row['incident_type_label']} | {row['route_label']} | {row['legal_basis']} | {days} |")
    lines.append(
        f"| Medical device (MDR) | Field safety corrective action | MDR Art. 87 vigilance | {FIELD_SAFETY_RULE[0]} | before it is undertaken |"
    )
    lines.append(f"| Medical device (MDR) | Trend of non-serious incidents | Trend report | {TREND_RULE[0]} | — |")
    lines.append(f"| Either | Post-market signal, not a serious incident | Post-market surveillance | {SIGNAL_RULE[0]} | — |")
    return "\n".join(lines) + "\n"
