"""Datasheets: validation of composition fields and the completeness figure."""

from __future__ import annotations

import pytest

from registry.datasheets import REQUIRED_ITEMS


def _create(api_client, user, institution, **fields):
    body = {"name": "CXR set", "institution": institution.pk, "modality": "DX", **fields}
    return api_client(user).post("/api/datasets/", body, format="json")


@pytest.mark.django_db
def test_a_bare_datasheet_reports_what_is_missing(institutions, personas, api_client):
    response = _create(api_client, personas["engineer"], institutions["vendor"])
    assert response.status_code == 201, response.content
    completeness = response.json()["completeness"]
    assert completeness["filled"] == ["modality"]
    assert len(completeness["missing"]) == len(REQUIRED_ITEMS) - 1
    assert completeness["ratio"] == round(1 / len(REQUIRED_ITEMS), 4)


@pytest.mark.django_db
def test_completeness_rises_as_fields_are_filled(institutions, personas, api_client):
    created = _create(
        api_client, personas["engineer"], institutions["vendor"], description="Adult CXR", source_institutions=[institutions["north"].pk]
    )
    completeness = created.json()["completeness"]
    assert {"description", "source_institutions", "modality"} <= set(completeness["filled"])
    patched = api_client(personas["engineer"]).patch(
        f"/api/datasets/{created.json()['id']}/", {"demographics": {"sex": {"F": 10, "M": 12}}}, format="json"
    )
    assert "demographics" in patched.json()["completeness"]["filled"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "field,value,fragment",
    [
        ("scanners", [{"model": "Skyra", "count": 3}], "manufacturer"),
        ("scanners", [{"manufacturer": "GE", "count": -1}], "non-negative"),
        ("scanners", {"GE": 3}, "list"),
        ("demographics", {"religion": {"x": 1}}, "Unknown demographic"),
        ("demographics", {"sex": {"F": "many"}}, "whole number"),
        ("protocols", ["PA"], "object"),
    ],
)
def test_malformed_composition_is_a_field_error(field, value, fragment, institutions, personas, api_client):
    response = _create(api_client, personas["engineer"], institutions["vendor"], **{field: value})
    assert response.status_code == 400
    assert fragment in str(response.json()[field])


@pytest.mark.django_db
def test_collection_period_must_be_ordered(institutions, personas, api_client):
    response = _create(api_client, personas["engineer"], institutions["vendor"], collection_start="2024-01-01", collection_end="2023-01-01")
    assert response.status_code == 400
    assert "end after it starts" in str(response.json())


@pytest.mark.django_db
def test_duplicate_name_is_a_field_error(institutions, personas, api_client):
    assert _create(api_client, personas["engineer"], institutions["vendor"]).status_code == 201
    response = _create(api_client, personas["engineer"], institutions["vendor"])
    assert response.status_code == 400
    assert "name" in response.json()


@pytest.mark.django_db
def test_steward_institution_cannot_be_changed(institutions, personas, api_client):
    dataset_id = _create(api_client, personas["officer"], institutions["vendor"]).json()["id"]
    response = api_client(personas["officer"]).patch(f"/api/datasets/{dataset_id}/", {"institution": institutions["north"].pk}, format="json")
    assert response.status_code == 400
    assert "cannot be changed" in str(response.json()["institution"])


@pytest.mark.django_db
@pytest.mark.parametrize("protocols,fragment", [('{"PA\\u0000": 1}', "NUL"), ('{"PA": 1e999}', "valid JSON")])
def test_values_a_json_column_cannot_store_are_field_errors(protocols, fragment, institutions, personas, api_client):
    body = f'{{"name": "CXR set", "institution": {institutions["vendor"].pk}, "modality": "DX", "protocols": {protocols}}}'
    response = api_client(personas["engineer"]).post("/api/datasets/", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert fragment in str(response.json()["protocols"])


def test_the_json_validator_names_where_the_bad_value_is():
    from django.core.exceptions import ValidationError

    from registry.validators import validate_json_safe

    validate_json_safe({"a": [1, 2.5, "x"], "b": None})
    with pytest.raises(ValidationError, match=r"a/b\[1\] is inf"):
        validate_json_safe({"a": {"b": [0, float("inf")]}})
    with pytest.raises(ValidationError, match="NUL"):
        validate_json_safe(["ok", "bad\x00"])
