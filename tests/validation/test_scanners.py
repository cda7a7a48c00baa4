"""Scanner makers and models under one spelling each, so strata do not split by how a header spells them."""

from __future__ import annotations

import pytest

from radtrust_engine.scanners import manufacturer_key, manufacturer_name, model_name
from radtrust_engine.stratification import attribute_values, category_labels

# Spellings seen in public DICOM files and vendor documentation, by the maker they name.
SPELLINGS = {
    "GE HealthCare": ["GE MEDICAL SYSTEMS", "GE Medical Systems", "G.E. Medical Systems", "GE Healthcare", "GE HealthCare", "GEMS"],
    "Philips": ["Philips Medical Systems", "PHILIPS", "Philips Healthcare", "Philips Medical Systems Nederland B.V."],
    "Siemens Healthineers": ["SIEMENS", "Siemens Healthineers", "Siemens Healthcare GmbH", "Siemens AG"],
    "Canon Medical Systems": ["TOSHIBA", "Toshiba Medical Systems", "TOSHIBA_MEC", "Canon Medical Systems Corporation"],
    "Fujifilm": ["FUJIFILM Corporation", "FUJI PHOTO FILM Co., ltd.", "Fujifilm"],
    "Agfa": ["Agfa", "AGFA", "Agfa-Gevaert"],
    "Carestream": ["Carestream Health", "KODAK", "Eastman Kodak Company"],
}


@pytest.mark.parametrize(("maker", "spelling"), [(maker, s) for maker, spellings in SPELLINGS.items() for s in spellings])
def test_every_spelling_of_a_maker_is_one_name(maker, spelling):
    assert manufacturer_name(spelling) == maker


def test_makers_stay_apart():
    names = {manufacturer_name(spellings[0]) for spellings in SPELLINGS.values()}
    assert len(names) == len(SPELLINGS)


def test_an_unknown_maker_meets_itself_and_nobody_else():
    assert manufacturer_name("Acme Imaging Inc.") == manufacturer_name("ACME IMAGING") == "Acme"
    assert manufacturer_name("Acme Imaging Inc.") != manufacturer_name("Apex Imaging")
    assert manufacturer_key("Nordic X-Ray, Ltd.") == "nordic x ray"


@pytest.mark.parametrize("missing", [None, "", "   "])
def test_a_missing_maker_stays_missing(missing):
    assert manufacturer_name(missing) is None
    assert model_name(missing) is None


def test_model_names_differ_only_in_spelling_meet():
    assert model_name("Optima  XR220amx") == model_name("OPTIMA XR220AMX") == "OPTIMA XR220AMX"
    assert model_name("Ingenia 1.5T") != model_name("Ingenia 3.0T")


def test_strata_group_the_spellings_and_keep_unknown_apart():
    attributes = {
        "scanner_manufacturer": ["GE MEDICAL SYSTEMS", "GE Medical Systems", "G.E. Medical Systems", "PHILIPS", "Philips Healthcare", None],
        "age": [30, 50, None, 70, 10, 45],
    }
    rows = list(range(6))
    makers = category_labels(attribute_values(attributes, "scanner_manufacturer", rows, (18, 40, 65)), 6, "scanner_manufacturer")
    assert list(makers) == ["GE HealthCare"] * 3 + ["Philips"] * 2 + ["unknown"]
    bands = attribute_values(attributes, "age_band", rows, (18, 40, 65))
    assert bands == ["18-39", "40-64", "unknown", "65+", "<18", "40-64"]
    assert attributes["scanner_manufacturer"][0] == "GE MEDICAL SYSTEMS"  # the raw value is kept
