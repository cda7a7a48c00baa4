"""No 500 from what a client sends: JSON nested past the bound, JSON of the wrong kind, bodies over
the size limit, forms with too many fields, pages past the end, routes that do not exist, a crash.

Each refusal is checked for its status, that it is JSON naming the problem, and that nothing in
it shows a server path or a traceback.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import path
from rest_framework.exceptions import ParseError

from core.parsers import JSON_MAX_DEPTH, BoundedJSONParser, json_too_deep
from radtrust.urls import handler400, handler404, handler500  # noqa: F401 (this module is a root URLconf too)
from radtrust.urls import urlpatterns as project_urlpatterns
from registry.models import ModelVersion
from tests.factories import DatasetFactory, FoundationModelFactory

DEEP = 10_000  # far past Python's recursion limit: json.loads raised RecursionError here
NESTED = f"JSON nested more than {JSON_MAX_DEPTH} levels deep is refused."


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def nested_lists(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def assert_json_refusal(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert "Traceback" not in response.content.decode() and '"/' not in response.content.decode()
    return body


# --- the nesting bound -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "too_deep"),
    [
        ("[" * JSON_MAX_DEPTH + "]" * JSON_MAX_DEPTH, False),
        ("[" * (JSON_MAX_DEPTH + 1) + "]" * (JSON_MAX_DEPTH + 1), True),
        (nested(JSON_MAX_DEPTH), False),
        (nested(JSON_MAX_DEPTH + 1), True),
        (json.dumps({"text": "[" * 1000 + "{" * 1000}), False),  # brackets inside strings are no nesting
        (json.dumps(["a\\", '"]' * 100, "[[["]), False),  # escaped quotes and backslashes end no string early
        ('["unclosed' + "[" * 1000, False),  # an unclosed string runs to the end; the parser refuses it
        ("[" * 3 + "]" * 3 + "," + "[" * (JSON_MAX_DEPTH + 1), True),  # deep anywhere, not only at the start
        ("5", False),
        ("", False),
        (b"[" * (JSON_MAX_DEPTH + 1), True),
    ],
)
def test_json_too_deep_counts_nesting_not_brackets_in_text(text, too_deep):
    assert json_too_deep(text) is too_deep


def test_json_too_deep_carries_the_depth_across_its_chunks():
    """Nesting that opens in one megabyte and goes deeper in the next is still found."""
    opening = "[" * 40 + "0," * (1 << 20) + "[" * 30
    assert json_too_deep(opening)
    assert not json_too_deep("[" * 40 + "0," * (1 << 20) + "]" * 40)


def test_parser_refuses_deep_json_before_parsing_and_parses_the_bound_itself():
    parser = BoundedJSONParser()
    assert parser.parse(io.BytesIO(("[" * JSON_MAX_DEPTH + "]" * JSON_MAX_DEPTH).encode())) == nested_lists(JSON_MAX_DEPTH)
    with pytest.raises(ParseError, match="nested more than 64"):
        parser.parse(io.BytesIO(nested(DEEP).encode()))
    with pytest.raises(ParseError, match="not valid utf-8"):
        parser.parse(io.BytesIO(b'{"a": "\xff"}'), parser_context={"encoding": "utf-8"})


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "method", "url"),
    [
        ("engineer", "post", "/api/validation-runs/"),
        ("engineer", "post", "/api/federated-studies/"),
        ("officer", "post", "/api/scoring-policies/"),
        ("officer", "post", "/api/institutions/"),
        ("clinician_north", "post", "/api/feedback/"),
        (None, "post", "/api/auth/token/"),
    ],
)
def test_deep_json_body_is_a_400_naming_the_bound_on_json_endpoints(api_client, personas, who, method, url):
    client = api_client(personas[who] if who else None)
    response = getattr(client, method)(url, nested(DEEP), content_type="application/json")
    assert assert_json_refusal(response, 400) == {"detail": NESTED}


@pytest.mark.django_db
def test_deep_json_in_a_form_field_is_a_field_error(api_client, personas, institutions):
    dataset = DatasetFactory(institution=institutions["vendor"])
    response = api_client(personas["engineer"]).patch(f"/api/datasets/{dataset.pk}/", {"demographics": nested(DEEP)}, format="multipart")
    assert assert_json_refusal(response, 400) == {"demographics": [NESTED]}


@pytest.mark.django_db
def test_deep_json_in_the_uploads_output_schema_is_a_field_error_and_nothing_is_stored(api_client, personas, institutions):
    model = FoundationModelFactory(provider=institutions["vendor"])
    response = api_client(personas["engineer"]).post(
        "/api/model-versions/",
        {
            "foundation_model": model.pk,
            "version": "1.0.0",
            "artifact": SimpleUploadedFile("model.onnx", b"not read: the form is refused first"),
            "output_schema": nested(DEEP),
        },
        format="multipart",
    )
    assert assert_json_refusal(response, 400) == {"output_schema": [NESTED]}
    assert not ModelVersion.objects.exists()


# --- JSON of the wrong kind --------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "url", "field", "value", "message"),
    [
        ("engineer", "/api/validation-runs/", "config", [], "Expected a JSON object, not a JSON array."),
        ("engineer", "/api/validation-runs/", "config", "n_resamples=50", "Expected a JSON object, not a JSON string."),
        ("engineer", "/api/validation-runs/", "config", 7, "Expected a JSON object, not a JSON number."),
        ("engineer", "/api/federated-studies/", "spec", [["sex"]], "Expected a JSON object, not a JSON array."),
        ("officer", "/api/scoring-policies/", "definition", True, "Expected a JSON object, not a JSON boolean."),
        ("officer", "/api/scoring-policies/", "definition", None, "This field may not be null."),
    ],
)
def test_a_json_field_of_the_wrong_kind_is_a_field_error(api_client, personas, who, url, field, value, message):
    response = api_client(personas[who]).post(url, {field: value}, format="json")
    assert message in assert_json_refusal(response, 400)[field]


@pytest.mark.django_db
def test_the_uploads_output_schema_must_be_an_object(api_client, personas, institutions):
    model = FoundationModelFactory(provider=institutions["vendor"])
    response = api_client(personas["engineer"]).post(
        "/api/model-versions/",
        {"foundation_model": model.pk, "version": "1.0.0", "artifact": SimpleUploadedFile("model.onnx", b"x"), "output_schema": '"pneumothorax"'},
        format="multipart",
    )
    assert assert_json_refusal(response, 400) == {"output_schema": ["Expected a JSON object, not a JSON string."]}


# --- bodies over the size limit ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_12_mib_json_body_is_a_json_413_naming_the_limit(api_client, personas, settings):
    body = json.dumps({"version": 1, "dataset": 1, "config": {"note": "x" * (12 * 1024 * 1024)}})
    response = api_client(personas["engineer"]).post("/api/validation-runs/", body, content_type="application/json")
    detail = assert_json_refusal(response, 413)["detail"]
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in detail and "DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE" in detail


@pytest.mark.django_db
@pytest.mark.parametrize("format", ["json", "multipart", "form"])
def test_a_body_over_the_limit_is_a_json_413_in_every_format(api_client, personas, settings, format):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    client, fields = api_client(personas["engineer"]), {"manifest": "m" * 4096, "version": "1", "dataset": "1"}
    if format == "form":
        response = client.post(
            "/api/validation-runs/", "&".join(f"{k}={v}" for k, v in fields.items()), content_type="application/x-www-form-urlencoded"
        )
    else:
        response = client.post("/api/validation-runs/", fields, format=format)
    assert assert_json_refusal(response, 413)["detail"].startswith("The request body is larger than the limit of 2048 bytes")


@pytest.mark.django_db
def test_a_form_with_too_many_fields_is_a_json_400(api_client, personas, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    body = "&".join(f"f{i}=1" for i in range(10))
    response = api_client(personas["engineer"]).post("/api/validation-runs/", body, content_type="application/x-www-form-urlencoded")
    assert "more fields or files than the server accepts" in assert_json_refusal(response, 400)["detail"]


# --- pages, routes, hosts and crashes ------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["99999999999999999999999999", "0", "-1", "1e999", "9" * 5000, "last"])
def test_a_page_past_the_end_or_not_a_page_is_a_json_404(api_client, personas, page):
    response = api_client(personas["auditor"]).get("/api/institutions/", {"page": page})
    if page == "last":  # a page name DRF knows
        assert response.status_code == 200
    else:
        assert assert_json_refusal(response, 404) == {"detail": "Invalid page."}


@pytest.mark.django_db
def test_a_cursor_that_is_not_one_is_a_json_404_and_a_forged_one_a_json_400(api_client, personas):
    auditor = api_client(personas["auditor"])
    assert assert_json_refusal(auditor.get("/api/feedback/", {"cursor": "not base64!"}), 404) == {"detail": "Invalid cursor"}
    forged = base64.b64encode(b"o=" + b"9" * 30 + b"&p=" + b"9" * 30).decode()  # a huge offset (capped) from a position that is no time
    response = auditor.get("/api/feedback/", {"cursor": forged, "page_size": "9" * 100})
    assert "invalid format" in assert_json_refusal(response, 400)["non_field_errors"][0]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "parameter"), [("/api/feedback/", "given_after"), ("/api/audit-events/", "occurred_after"), ("/api/audit-events/", "occurred_before")]
)
def test_a_time_filter_takes_any_utc_offset_and_refuses_a_time_outside_the_calendar(api_client, personas, url, parameter):
    officer = api_client(personas["officer"])
    assert officer.get(url, {parameter: "8251-11-11T22:57:59+18:24"}).status_code == 200  # PostgreSQL refused +18:24 (a 500)
    refused = officer.get(url, {parameter: "0001-01-01T00:00:00+18:00"})
    assert assert_json_refusal(refused, 400) == {parameter: ["The time lies outside the years 1 to 9999 in UTC."]}


@pytest.mark.django_db
def test_an_api_route_that_does_not_exist_is_a_json_404_that_does_not_echo_it(client):
    response = client.get("/api/no-such-route/<script>/")
    assert assert_json_refusal(response, 404) == {"detail": "Not found."}
    assert client.get("/no-such-page/").headers["Content-Type"].startswith("text/html")  # pages keep their HTML


@pytest.mark.django_db
def test_a_bad_host_under_the_api_is_a_json_400(client):
    response = client.get("/api/institutions/", HTTP_HOST="attacker.example")
    assert assert_json_refusal(response, 400) == {"detail": "Bad request."}


@pytest.mark.django_db
def test_errors_of_actions_that_answer_files_or_markdown_are_labelled_json(api_client, personas, deployed):
    version = deployed["version"].pk
    markdown = api_client(personas["clinician_north"]).get(f"/api/model-versions/{version}/change-log/", {"format": "md"})
    assert assert_json_refusal(markdown, 403)["detail"]
    artifact = api_client(personas["engineer"]).get("/api/federated/jobs/1/artifact/model.onnx/", HTTP_ACCEPT="application/octet-stream")
    assert assert_json_refusal(artifact, 403)["detail"]


def _crash(request):
    raise RuntimeError(f"secret detail from {__file__}")


urlpatterns = [path("api/crash/", _crash), path("crash/", _crash), *project_urlpatterns]


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_a_crash_under_the_api_is_a_json_500_that_says_nothing_of_it():
    client = Client(raise_request_exception=False)
    response = client.get("/api/crash/")
    assert assert_json_refusal(response, 500) == {"detail": "Server error."}
    assert "secret detail" not in client.get("/crash/").content.decode()
