"""Query parameters no view can use answer 400 in one place (``core.middleware.QueryGuard``), never a 500:
a NUL byte in a filter (PostgreSQL refuses it in any string), other control characters, bytes that are
not UTF-8, and page numbers beyond ``core.pages.MAX_PAGE`` (the row offset passes a bigint)."""

from __future__ import annotations

import pytest

from core.pages import MAX_PAGE

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("query", "parameter", "problem"),
    [
        ("/api/model-versions/?artifact_sha256=%00", "artifact_sha256", "contains a NUL character"),
        ("/api/datasets/?search=chest%00x", "search", "contains a NUL character"),
        ("/api/validation-runs/?status=queued%00", "status", "contains a NUL character"),
        ("/api/datasets/?modality=D%01X", "modality", "contains a control character"),
        ("/api/datasets/?search=%FF%FE", "search", "is not valid UTF-8 text"),
        ("/api/datasets/?ord%00ering=name", "query", "contains a NUL character"),
    ],
)
def test_unusable_text_in_an_api_filter_is_a_400_naming_the_parameter(api_client, personas, query, parameter, problem):
    response = api_client(personas["engineer"]).get(query)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {parameter: [f"The query parameter {parameter!r} {problem}."]}


def test_ordinary_filters_still_work(api_client, personas):
    response = api_client(personas["engineer"]).get("/api/datasets/?search=chest%20x-ray&modality=DX")
    assert response.status_code == 200, response.content


def test_a_huge_api_page_number_is_a_404_not_a_500(api_client, personas):
    response = api_client(personas["engineer"]).get(f"/api/datasets/?page={10**20}")
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("?status=open%00", "The query parameter &#x27;status&#x27; contains a NUL character."),
        (f"?page={10**20}", f"The page number must be a whole number from 1 to {MAX_PAGE}."),
        (f"?page={MAX_PAGE + 1}", f"The page number must be a whole number from 1 to {MAX_PAGE}."),
        ("?page=0", "The page number must be a whole number"),
        ("?page=-1", "The page number must be a whole number"),
        ("?page=two", "The page number must be a whole number"),
        ("?page=" + "9" * 5000, "The page number must be a whole number"),
    ],
)
def test_a_page_answers_a_bad_query_with_a_400_page(client, personas, query, reason):
    client.force_login(personas["officer"])
    response = client.get(f"/alerts/{query}")
    assert response.status_code == 400
    assert "text/html" in response["Content-Type"]
    assert reason in response.content.decode()


def test_page_numbers_up_to_the_bound_are_pages(client, personas):
    client.force_login(personas["officer"])
    assert client.get("/alerts/?page=1&status=open").status_code == 200
    last = client.get(f"/alerts/?page={MAX_PAGE}")
    assert last.status_code == 200 and last.context["page"].items == []


def test_a_pages_filters_are_carried_url_encoded(client, personas):
    client.force_login(personas["officer"])
    response = client.get("/audit/?actor=a%26page%3D9")
    assert response.context["page"].query == "&actor=a%26page%3D9"


def test_an_unknown_filter_value_is_a_400_naming_the_filter(client, personas):
    client.force_login(personas["officer"])
    response = client.get("/alerts/?status=a%26page%3D9")
    assert response.status_code == 400 and response.context["parameter"] == "status"
