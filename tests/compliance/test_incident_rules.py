"""The serious-incident rules table: routes, days, paragraphs, deadlines and its Markdown view."""

from __future__ import annotations

import json
from datetime import date

import pytest

from compliance.incident_rules import (
    INCIDENT_TYPES,
    RULES,
    is_overdue,
    reported_late,
    reporting_deadline,
    reporting_rule,
    rules_markdown,
    rules_table,
)

AWARE = date(2026, 3, 2)


def test_incident_types_are_the_agreed_codes_in_order():
    assert list(INCIDENT_TYPES) == [
        "death",
        "serious_deterioration",
        "public_health_threat",
        "fundamental_rights",
        "widespread_infringement",
        "critical_infrastructure",
        "property_or_environment",
        "other",
    ]


def test_every_combination_has_exactly_one_rule():
    keys = [(r.medical_device, r.incident_type) for r in RULES]
    assert len(keys) == len(set(keys)) == 2 * len(INCIDENT_TYPES)
    for medical_device in (True, False):
        for incident_type in INCIDENT_TYPES:
            rule = reporting_rule(medical_device=medical_device, incident_type=incident_type)
            assert (rule.medical_device, rule.incident_type) == (medical_device, incident_type)


def test_rules_are_consistent_and_fit_the_incident_columns():
    for rule in RULES:
        assert rule.route in {"ai_act_art73", "mdr_art87", "mdr_not_serious"} and len(rule.route) <= 20
        prefix = {"ai_act_art73": "AI Act Art. 73(", "mdr_art87": "MDR Art. 87(1)(a), 87(", "mdr_not_serious": "AI Act Art. 73(10); MDR"}
        assert rule.legal_basis.startswith(prefix[rule.route])
        assert rule.days in ({None} if rule.route == "mdr_not_serious" else {2, 10, 15})
        assert len(rule.legal_basis) <= 60 and rule.note.endswith(".") and rule.legal_basis in rule.label


def test_outside_the_mdr_everything_goes_under_the_ai_act():
    assert {reporting_rule(medical_device=False, incident_type=t).route for t in INCIDENT_TYPES} == {"ai_act_art73"}


def _check(medical_device: bool, incident_type: str, route: str, days: int, legal_basis: str) -> None:
    rule = reporting_rule(medical_device=medical_device, incident_type=incident_type)
    assert (rule.route, rule.days, rule.legal_basis) == (route, days, legal_basis)


def test_non_mdr_death_goes_to_ai_act_in_10_days():
    _check(False, "death", "ai_act_art73", 10, "AI Act Art. 73(4)")


def test_non_mdr_widespread_infringement_goes_to_ai_act_in_2_days():
    _check(False, "widespread_infringement", "ai_act_art73", 2, "AI Act Art. 73(3)")


def test_non_mdr_critical_infrastructure_goes_to_ai_act_in_2_days():
    _check(False, "critical_infrastructure", "ai_act_art73", 2, "AI Act Art. 73(3)")


def test_non_mdr_other_goes_to_ai_act_in_15_days():
    _check(False, "other", "ai_act_art73", 15, "AI Act Art. 73(2)")


def test_non_mdr_fundamental_rights_goes_to_ai_act_in_15_days():
    _check(False, "fundamental_rights", "ai_act_art73", 15, "AI Act Art. 73(2)")


def test_non_mdr_serious_deterioration_has_no_shorter_ai_act_limit():
    _check(False, "serious_deterioration", "ai_act_art73", 15, "AI Act Art. 73(2)")


def test_non_mdr_public_health_threat_has_no_shorter_ai_act_limit():
    _check(False, "public_health_threat", "ai_act_art73", 15, "AI Act Art. 73(2)")


def test_non_mdr_property_or_environment_goes_to_ai_act_in_15_days():
    _check(False, "property_or_environment", "ai_act_art73", 15, "AI Act Art. 73(2)")


def test_unknown_type_is_refused_naming_the_valid_types():
    with pytest.raises(ValueError, match="'injury'") as caught:
        reporting_rule(medical_device=True, incident_type="injury")
    assert all(code in str(caught.value) for code in INCIDENT_TYPES)
    with pytest.raises(ValueError, match="valid types"):
        reporting_deadline(medical_device=False, incident_type="", aware_on=AWARE)


def test_deadline_counts_calendar_days_from_awareness_as_day_0():
    assert reporting_deadline(medical_device=False, incident_type="other", aware_on=AWARE) == date(2026, 3, 17)
    assert reporting_deadline(medical_device=True, incident_type="public_health_threat", aware_on=AWARE) == date(2026, 3, 4)


def test_deadline_crosses_a_month_and_a_year_end():
    assert reporting_deadline(medical_device=True, incident_type="death", aware_on=date(2026, 4, 25)) == date(2026, 5, 5)
    assert reporting_deadline(medical_device=True, incident_type="other", aware_on=date(2026, 12, 20)) == date(2027, 1, 4)


def test_deadline_counts_the_leap_day():
    assert reporting_deadline(medical_device=False, incident_type="widespread_infringement", aware_on=date(2028, 2, 28)) == date(2028, 3, 1)
    assert reporting_deadline(medical_device=False, incident_type="widespread_infringement", aware_on=date(2027, 2, 28)) == date(2027, 3, 2)
    assert reporting_deadline(medical_device=False, incident_type="death", aware_on=date(2028, 2, 25)) == date(2028, 3, 6)


def test_not_overdue_on_the_deadline_day_itself():
    deadline = date(2026, 3, 17)
    assert not is_overdue(deadline, reported_on=None, today=deadline)
    assert not is_overdue(deadline, reported_on=None, today=date(2026, 3, 10))


def test_overdue_the_day_after_an_unreported_deadline():
    assert is_overdue(date(2026, 3, 17), reported_on=None, today=date(2026, 3, 18))


def test_reported_in_time_is_neither_overdue_nor_late():
    deadline = date(2026, 3, 17)
    assert not is_overdue(deadline, reported_on=deadline, today=date(2026, 4, 1))
    assert not reported_late(deadline, deadline) and not reported_late(deadline, date(2026, 3, 5))


def test_reported_late_is_no_longer_overdue_but_is_late():
    deadline = date(2026, 3, 17)
    assert not is_overdue(deadline, reported_on=date(2026, 3, 20), today=date(2026, 4, 1))
    assert reported_late(deadline, date(2026, 3, 20))


def test_rules_table_is_json_safe_and_in_display_order():
    rows = rules_table()
    assert json.loads(json.dumps(rows)) == rows and len(rows) == len(RULES)
    assert set(rows[0]) == {"medical_device", "incident_type", "incident_type_label", "route", "route_label", "days", "legal_basis", "note", "label"}
    order = list(INCIDENT_TYPES)
    keys = [(not r["medical_device"], 99 if r["days"] is None else r["days"], order.index(r["incident_type"])) for r in rows]
    assert keys == sorted(keys)
    assert [r["incident_type"] for r in rows[:4]] == ["public_health_threat", "widespread_infringement", "death", "serious_deterioration"]
    assert rows[0]["incident_type_label"] == "Serious public-health threat"


def test_rules_markdown_has_a_header_and_one_line_per_rule():
    lines = rules_markdown().splitlines()
    assert lines[0] == "| System | Incident type | Route | Legal basis | Days |"
    assert set(lines[1]) <= set("|-: ")
    assert len(lines) == 2 + len(RULES) + 3  # and the field safety corrective action, the trend and the signal
    assert all(line.startswith("|") and line.endswith("|") and line.count("|") == 6 for line in lines)
    assert lines[2] == "| Medical device (MDR) | Serious public-health threat | MDR Art. 87 vigilance | MDR Art. 87(1)(a), 87(4) | 2 |"
    assert "| Outside the MDR | Death of a person | AI Act Art. 73 | AI Act Art. 73(4) | 10 |" in lines
