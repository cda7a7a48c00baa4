"""Every route and deadline of the vigilance rules against the legal text it cites.

The table below is written from the regulations, not from the code:

- AI Act (Regulation (EU) 2024/1689) Art. 73(2): report "not later than 15 days after" awareness;
  73(3): "widespread infringement or ... serious incident as defined in Article 3, point (49)(b)"
  (critical infrastructure): "not later than two days"; 73(4): "death of a person": "not later than
  10 days"; 73(10): for devices under Regulation (EU) 2017/745 "the notification of serious
  incidents shall be limited to those referred to in Article 3, point (49)(c)" (fundamental rights),
  everything else is reported under that Regulation.
- MDR (Regulation (EU) 2017/745) Art. 87(1)(a) serious incidents, 87(1)(b) field safety corrective
  actions; 87(3): "not later than 15 days"; 87(4): "serious public health threat": "not later than 2
  days"; 87(5): "death or an unanticipated serious deterioration in a person's state of health":
  "not later than 10 days"; Art. 2(65): a serious incident is death, serious deterioration of health
  or a serious public health threat, so property or infrastructure harm alone is none; Art. 88:
  trends of incidents that are not serious.
"""

from __future__ import annotations

from datetime import date

import pytest

from compliance.incident_rules import FIELD_SAFETY_RULE, SIGNAL_RULE, TREND_RULE, reporting_deadline, reporting_rule, rules_markdown

AWARE = date(2026, 12, 30)  # crosses a year end

# (medical device, incident type) -> (route, days, the paragraphs the label must cite, paragraphs it must not)
LEGAL_TEXT = {
    (False, "fundamental_rights"): ("ai_act_art73", 15, ["AI Act Art. 73(2)"], ["MDR"]),
    (False, "other"): ("ai_act_art73", 15, ["AI Act Art. 73(2)"], ["MDR"]),
    (False, "serious_deterioration"): ("ai_act_art73", 15, ["AI Act Art. 73(2)"], ["MDR"]),
    (False, "public_health_threat"): ("ai_act_art73", 15, ["AI Act Art. 73(2)"], ["MDR"]),
    (False, "property_or_environment"): ("ai_act_art73", 15, ["AI Act Art. 73(2)"], ["MDR"]),
    (False, "widespread_infringement"): ("ai_act_art73", 2, ["AI Act Art. 73(3)"], ["MDR"]),
    (False, "critical_infrastructure"): ("ai_act_art73", 2, ["AI Act Art. 73(3)"], ["MDR"]),
    (False, "death"): ("ai_act_art73", 10, ["AI Act Art. 73(4)"], ["MDR"]),
    # Devices: Art. 73(10) keeps only Art. 3(49)(c) under the AI Act, at the AI Act's own limits.
    (True, "fundamental_rights"): ("ai_act_art73", 15, ["73(2)", "73(10)"], ["MDR"]),
    (True, "widespread_infringement"): ("ai_act_art73", 2, ["73(3)", "73(10)"], ["MDR"]),
    (True, "death"): ("mdr_art87", 10, ["MDR Art. 87(1)(a)", "87(5)"], ["87(3)", "AI Act"]),
    (True, "serious_deterioration"): ("mdr_art87", 10, ["MDR Art. 87(1)(a)", "87(5)"], ["87(3)", "AI Act"]),
    (True, "public_health_threat"): ("mdr_art87", 2, ["MDR Art. 87(1)(a)", "87(4)"], ["87(3)", "AI Act"]),
    (True, "other"): ("mdr_art87", 15, ["MDR Art. 87(1)(a)", "87(3)"], ["AI Act"]),
    # Not MDR serious incidents (Art. 2(65)) and not fundamental rights: no serious-incident report, never 87(3).
    (True, "critical_infrastructure"): ("mdr_not_serious", None, ["73(10)", "2(65)", "88"], ["87("]),
    (True, "property_or_environment"): ("mdr_not_serious", None, ["73(10)", "2(65)", "88"], ["87("]),
}


@pytest.mark.parametrize(("medical_device", "incident_type"), sorted(LEGAL_TEXT))
def test_route_and_deadline_follow_the_legal_text(medical_device, incident_type):
    route, days, cites, never = LEGAL_TEXT[(medical_device, incident_type)]
    rule = reporting_rule(medical_device=medical_device, incident_type=incident_type)
    assert (rule.route, rule.days) == (route, days)
    for paragraph in cites:
        assert paragraph in rule.legal_basis and paragraph in rule.label
    for paragraph in never:
        assert paragraph not in rule.legal_basis
    deadline = reporting_deadline(medical_device=medical_device, incident_type=incident_type, aware_on=AWARE)
    assert deadline == (None if days is None else date.fromordinal(AWARE.toordinal() + days))


def test_the_table_covers_every_type_for_both_kinds_of_system():
    assert len(LEGAL_TEXT) == 16


def test_a_devices_widespread_rights_infringement_stays_under_the_ai_act_in_2_days():
    """The case issue 18 found routed to MDR Art. 87(3) with 15 days."""
    rule = reporting_rule(medical_device=True, incident_type="widespread_infringement")
    assert (rule.route_label, rule.days) == ("AI Act Art. 73", 2)
    assert reporting_deadline(medical_device=True, incident_type="widespread_infringement", aware_on=AWARE) == date(2027, 1, 1)


def test_field_safety_actions_trends_and_signals_cite_their_articles():
    assert FIELD_SAFETY_RULE[0] == "MDR Art. 87(1)(b), 87(8)" and "before it is undertaken" in FIELD_SAFETY_RULE[1]
    assert TREND_RULE[0] == "MDR Art. 88" and "not a serious incident" in TREND_RULE[1]
    assert "Art. 72" in SIGNAL_RULE[0] and "not a serious incident" in SIGNAL_RULE[1]
    table = rules_markdown()
    assert "| Medical device (MDR) | Trend of non-serious incidents | Trend report | MDR Art. 88 | — |" in table
    assert "Serious and irreversible disruption of critical infrastructure | Not an MDR serious incident" in table
