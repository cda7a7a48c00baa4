"""The dossier catalogue: Annex IV, Art. 10(2), 13(3), 14(4), Annex V and MDR Annex IV are all
covered with their articles, keys are unique slugs, evidence fields name known providers, and
completeness (an answer, not any text) and value validation do what the dossier workflow relies on."""

from __future__ import annotations

import re

import pytest

from compliance.dossier_fields import (
    EVIDENCE_SOURCES,
    FIELDS,
    SECTIONS,
    DossierField,
    DossierSection,
    completeness,
    field,
    field_problem,
    validate_values,
)
from tests.factories import dossier_officer_values

EXPECTED_SECTIONS = {
    "annex_iv_1": "Annex IV 1",
    "annex_iv_2": "Annex IV 2",
    "annex_iv_3": "Annex IV 3",
    "annex_iv_4": "Annex IV 4",
    "annex_iv_5": "Annex IV 5; Art. 9",
    "annex_iv_6": "Annex IV 6",
    "annex_iv_7": "Annex IV 7",
    "annex_iv_8": "Annex IV 8; Annex V; MDR Annex IV",
    "mdr_identification": "MDR Art. 27, 31; Annex VI, VIII",
    "annex_iv_9": "Annex IV 9; Art. 72",
    "art_10_2": "Art. 10(2)",
    "art_13_3": "Art. 13(3)",
    "art_14_4": "Art. 14(4)",
}


def _articles() -> set[str]:
    return {f.article for f in FIELDS.values()}


def test_every_section_is_present_in_order_with_its_article():
    assert [(s.key, s.article) for s in SECTIONS] == list(EXPECTED_SECTIONS.items())
    assert all(s.title and s.fields for s in SECTIONS)


@pytest.mark.parametrize(
    "prefix, letters",
    [
        ("Annex IV 1", "abcdefgh"),
        ("Annex IV 2", "abcdefgh"),
        ("Art. 10(2)", "abcdefgh"),
        ("Art. 13(3)", "abcdef"),
        ("Art. 14(4)", "abcde"),
    ],
)
def test_every_lettered_point_has_a_field(prefix, letters):
    missing = [letter for letter in letters if not any(a.startswith(f"{prefix}({letter})") for a in _articles())]
    assert missing == []


def _cited(provision: str) -> bool:
    """Whether some field answers ``provision`` (articles may cite several provisions, separated by "; ")."""
    return any(provision in a.split("; ") for a in _articles())


def test_instructions_for_use_cover_b_i_to_vii_and_the_declaration_annex_v_1_to_8_and_mdr_annex_iv_1_to_10():
    for roman in ("i", "ii", "iii", "iv", "v", "vi", "vii"):
        assert _cited(f"Art. 13(3)(b)({roman})")
    for point in range(1, 9):
        assert _cited(f"Annex V({point})"), point
    for point in range(1, 11):
        assert _cited(f"MDR Annex IV({point})"), point
    for point in "abcd":
        assert _cited(f"Art. 9(2)({point})")


def test_change_plan_and_test_logs_exist():
    assert FIELDS["2f_change_plan"].article == "Annex IV 2(f)" and FIELDS["2f_change_plan"].source == "officer"
    logs = [f for f in FIELDS.values() if f.article == "Annex IV 2(g)"]
    assert {f.source for f in logs} == {"officer", "evidence"}
    assert FIELDS["2g_validation_runs"].evidence == "validation_runs" and FIELDS["2g_validation_runs"].required


def test_keys_are_unique_slugs_and_match_the_index():
    keys = [f.key for s in SECTIONS for f in s.fields]
    assert len(keys) == len(set(keys)) == len(FIELDS)
    assert all(re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", k) for k in keys)
    assert all(FIELDS[k].key == k for k in FIELDS)


def test_fields_are_well_formed():
    for f in FIELDS.values():
        assert f.title and f.article and f.guidance.strip(), f.key
        assert f.max_length > 0
        if f.source == "evidence":
            assert f.evidence in EVIDENCE_SOURCES, f.key
        else:
            assert f.source == "officer" and f.evidence is None, f.key
    assert all(description.strip() for description in EVIDENCE_SOURCES.values())


def test_both_kinds_of_field_are_required_somewhere():
    required = {f.source for f in FIELDS.values() if f.required}
    assert required == {"officer", "evidence"}


def test_a_bad_field_definition_fails_at_construction():
    with pytest.raises(ValueError, match="not in EVIDENCE_SOURCES"):
        DossierField(key="x_y", title="t", article="a", guidance="g", source="evidence", evidence="nope")
    with pytest.raises(ValueError, match="source must be"):
        DossierField(key="x_y", title="t", article="a", guidance="g", source="clinician")
    with pytest.raises(ValueError, match="slug"):
        DossierField(key="Bad Key", title="t", article="a", guidance="g")


def test_field_lookup_and_its_helpful_key_error():
    assert field("2f_change_plan") is FIELDS["2f_change_plan"]
    with pytest.raises(KeyError, match="2f_change_plan"):
        field("2f_change_pln")


def test_to_dict_is_json_ready():
    section = SECTIONS[0].to_dict()
    assert section["key"] == "annex_iv_1" and section["fields"][0]["key"] == SECTIONS[0].fields[0].key
    assert isinstance(SECTIONS[0], DossierSection)


def _section(result: dict, key: str) -> dict:
    return result["sections"][key]


STANDARDS = "ISO 14971:2019 (harmonised), IEC 62304:2006+A1:2015 and IEC 62366-1:2015, applied in full."


def test_completeness_of_an_empty_dossier():
    result = completeness({}, {})
    required = sum(1 for f in FIELDS.values() if f.required)
    assert result["overall"] == {"filled": 0, "required": required, "ratio": 0.0}
    assert _section(result, "annex_iv_7")["missing"] == ["7_standards"]


def test_the_mdr_identification_is_required_of_a_medical_device_only():
    device = _section(completeness({}, {}), "mdr_identification")
    assert device["missing"] == ["mdr_class_rule", "mdr_basic_udi_di", "mdr_udi_di", "mdr_srn"]
    assert _section(completeness({}, {}, medical_device=False), "mdr_identification") == {
        "filled": 0,
        "required": 0,
        "missing": [],
        "problems": {},
        "ratio": 1.0,
    }


def test_completeness_counts_required_officer_text_and_present_evidence_only():
    values = {
        "7_standards": STANDARDS,
        "6_changes": "   ",  # blank does not count
        "1f_illustrations": "Not applicable: software only.",  # optional: not counted
    }
    result = completeness(values, {"change_log": True, "validation_runs": False})
    assert _section(result, "annex_iv_7") == {"filled": 1, "required": 1, "missing": [], "problems": {}, "ratio": 1.0}
    assert _section(result, "annex_iv_6") == {"filled": 0, "required": 1, "missing": ["6_changes"], "problems": {}, "ratio": 0.0}
    assert result["overall"]["filled"] == 1


@pytest.mark.parametrize(
    "key, text, reason",
    [
        ("7_standards", "ISO 14971.", "Too short"),  # a one-line answer is not one
        ("8_v6_standards", "As listed under standards applied.", "Points elsewhere"),
        ("3_capabilities_limitations", "See section 3 of the clinical evaluation report for the details.", "Points elsewhere"),
        ("5_residual_risk", "TBD: the residual risks are being assessed by the risk-management team this quarter.", "placeholder"),
        ("mdr_srn", "DE-AR-000012345", "authorised representative"),
        ("mdr_udi_di", "04012345000015", "check digit"),
        ("mdr_basic_udi_di", "1987654Ad4X4bL5ttr2310cXK", "check characters"),
        ("mdr_class_rule", "Class IIa", "Annex VIII"),
        ("13_3e_lifetime", "As long as it is useful.", "duration"),
        ("1e_hardware", "Any modern workstation with a recent operating system will run it comfortably.", "memory"),
        ("13_3a_provider_address", "Berlin", "postal address"),
    ],
)
def test_a_field_is_filled_only_by_an_answer(key, text, reason):
    section = next(s.key for s in SECTIONS if any(f.key == key for f in s.fields))
    result = _section(completeness({key: text}, {}), section)
    assert key in result["missing"] and reason in result["problems"][key]


@pytest.mark.parametrize(
    "key, text",
    [
        ("7_standards", STANDARDS),
        ("8_v6_standards", f"{STANDARDS} See the standards list for the editions."),  # a reference may follow an answer
        ("6_changes", "First version"),
        ("mdr_srn", "DE-MF-000012345"),
        ("mdr_udi_di", "04012345000016"),
        ("mdr_basic_udi_di", "1987654Ad4X4bL5ttr2310c2K"),  # GS1's published example
        ("mdr_class_rule", "Class IIa under Annex VIII Rule 11 (software informing diagnosis)."),
        ("13_3e_lifetime", "Two years from release, or until a substantial modification."),
        ("1e_hardware", "2 CPU cores and 4 GiB memory; no GPU."),
        ("13_3a_provider_address", "Example Street 1, 10115 Berlin, Germany"),
    ],
)
def test_an_answer_fills_its_field(key, text):
    assert field_problem(FIELDS[key], text) is None


def test_identifiers_in_the_wrong_form_are_refused_at_save_and_substance_waits_for_submission():
    errors = validate_values({"mdr_udi_di": "04012345000015", "mdr_srn": "nope", "7_standards": "ISO."})
    assert set(errors) == {"mdr_udi_di", "mdr_srn"}  # a short draft answer is saved; submission refuses it
    assert "check digit" in errors["mdr_udi_di"] and "DE-MF-000012345" in errors["mdr_srn"]


def test_completeness_of_a_section_mixing_officer_and_evidence_fields():
    s3 = next(s for s in SECTIONS if s.key == "annex_iv_3")
    required = [f for f in s3.fields if f.required]
    officer = [f.key for f in required if f.source == "officer"]
    values = {officer[0]: "Misses small apical pneumothoraces and films with chest drains in place."}
    result = _section(completeness(values, {"declared_performance": True}), "annex_iv_3")
    filled = 1 + sum(1 for f in required if f.evidence == "declared_performance")
    assert result["filled"] == filled and result["required"] == len(required)
    assert result["ratio"] == round(filled / len(required), 4)
    assert officer[0] not in result["missing"] and officer[1] in result["missing"]


def test_a_fully_filled_dossier_is_complete():
    values = dossier_officer_values()
    result = completeness(values, dict.fromkeys(EVIDENCE_SOURCES, True))
    assert result["overall"]["ratio"] == 1.0
    assert all(s["missing"] == [] and s["ratio"] == 1.0 for s in result["sections"].values())


def test_validate_values_accepts_officer_text():
    assert validate_values({"7_standards": "ISO 14971:2019", "6_changes": ""}) == {}


def test_validate_values_names_each_problem():
    too_long = "x" * (FIELDS["7_standards"].max_length + 1)
    errors = validate_values(
        {
            "no_such_field": "x",
            "2f_change_pln": "x",
            "2g_validation_runs": "I typed over the evidence",
            "6_changes": 42,
            "5_residual_risk": None,
            "7_standards": too_long,
        }
    )
    assert set(errors) == {"no_such_field", "2f_change_pln", "2g_validation_runs", "6_changes", "5_residual_risk", "7_standards"}
    assert errors["no_such_field"].startswith("Unknown")
    assert "2f_change_plan" in errors["2f_change_pln"]
    assert "Read-only" in errors["2g_validation_runs"]
    assert "Must be text" in errors["6_changes"] and "NoneType" in errors["5_residual_risk"]
    assert "Too long" in errors["7_standards"]
