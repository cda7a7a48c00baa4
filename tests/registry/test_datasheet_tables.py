"""The dataset page's count tables: scanners, protocols and demographics as rows (not JSON),
stored in the datasheet's own structure, with each mistake named on its row."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from registry.models import Dataset

pytestmark = pytest.mark.django_db


def _management(**rows: int) -> dict:
    data = {}
    for name in ("scanners", "protocols", "demographics"):
        data |= {f"{name}-TOTAL_FORMS": rows.get(name, 2), f"{name}-INITIAL_FORMS": 0, f"{name}-MIN_NUM_FORMS": 0, f"{name}-MAX_NUM_FORMS": 200}
    return data


@pytest.fixture
def client(personas):
    client = Client()
    client.force_login(personas["engineer"])
    return client


def test_the_form_shows_the_counts_as_tables_of_rows(client):
    page = client.get(reverse("engineer:dataset-new")).content.decode()
    for legend, headers in (
        ("Scanners", ("Manufacturer", "Model", "Studies")),
        ("Acquisition protocols", ("Protocol", "Studies")),
        ("Demographic composition", ("Attribute", "Category", "Patients")),
    ):
        table = page[page.index(f"<legend>{legend}</legend>") :]
        assert all(f'<th scope="col">{h}</th>' in table[: table.index("</thead>")] for h in headers)
    assert '<option value="age_band">Age band</option>' in page
    assert '<label class="skip" for="id_scanners-0-manufacturer">Manufacturer, scanners row 1</label>' in page
    assert 'name="scanners"' not in page and 'name="demographics"' not in page  # no JSON text areas


def test_rows_are_stored_in_the_datasheet_structure(client, personas):
    data = _management(demographics=4) | {
        "name": "North chest set",
        "modality": "DX",
        "scanners-0-manufacturer": "Siemens",
        "scanners-0-model": "Ysio Max",
        "scanners-0-count": "800",
        "scanners-1-manufacturer": "Philips ",
        "scanners-1-count": "200",
        "protocols-0-protocol": "PA chest",
        "protocols-0-count": "900",
        "demographics-0-attribute": "sex",
        "demographics-0-category": "F",
        "demographics-0-count": "480",
        "demographics-1-attribute": "sex",
        "demographics-1-category": "M",
        "demographics-1-count": "520",
        "demographics-2-attribute": "age_band",
        "demographics-2-category": "65+",
        "demographics-2-count": "300",
    }
    response = client.post(reverse("engineer:dataset-new"), data)
    assert response.status_code == 302
    dataset = Dataset.objects.get(name="North chest set")
    assert dataset.scanners == [
        {"manufacturer": "Siemens", "model": "Ysio Max", "count": 800},
        {"manufacturer": "Philips", "model": "", "count": 200},
    ]
    assert dataset.protocols == {"PA chest": 900}
    assert dataset.demographics == {"sex": {"F": 480, "M": 520}, "age_band": {"65+": 300}}


def test_a_bad_row_is_named_on_its_row_and_nothing_is_saved(client):
    data = _management() | {
        "name": "Half set",
        "scanners-0-manufacturer": "Siemens",
        "scanners-0-count": "-3",
        "scanners-1-model": "Skyra",  # a model without its manufacturer
        "scanners-1-count": "5",
        "demographics-0-attribute": "sex",
        "demographics-0-category": "F",
        "demographics-0-count": "4",
        "demographics-1-attribute": "sex",
        "demographics-1-category": "f",  # the same category twice
        "demographics-1-count": "6",
    }
    response = client.post(reverse("engineer:dataset-new"), data)
    page = response.content.decode()
    assert response.status_code == 400 and not Dataset.objects.filter(name="Half set").exists()
    rows = page.split('<tr class="invalid">')[1:]
    assert len(rows) == 3
    assert "greater than or equal to 0" in rows[0] and 'value="Siemens"' in rows[0]
    assert "This field is required." in rows[1] and 'value="Skyra"' in rows[1]
    assert "The same row appears twice" in rows[2]
