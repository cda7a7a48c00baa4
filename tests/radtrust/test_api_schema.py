"""The OpenAPI 3 schema is served, validates, and documents every registry endpoint."""

from __future__ import annotations

import pytest
import yaml
from openapi_spec_validator import validate


@pytest.mark.django_db
def test_schema_validates_and_lists_the_registry(api_client, personas):
    response = api_client(personas["auditor"]).get("/api/schema/")
    assert response.status_code == 200
    spec = yaml.safe_load(response.content)
    validate(spec)
    for path in (
        "/api/model-versions/",
        "/api/model-versions/{id}/lineage/",
        "/api/model-versions/{id}/transition/",
        "/api/datasets/",
        "/api/provenance/",
        "/api/deployments/",
        "/api/audit-events/",
    ):
        assert path in spec["paths"], path
    upload = spec["paths"]["/api/model-versions/"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload


@pytest.mark.django_db
def test_interactive_docs_are_served(api_client, personas):
    response = api_client(personas["auditor"]).get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


@pytest.mark.django_db
def test_token_authentication(api_client, personas, client):
    personas["auditor"].set_password("a-long-test-password-1")
    personas["auditor"].save()
    token = api_client().post("/api/auth/token/", {"username": "auditor", "password": "a-long-test-password-1"}).json()["token"]
    from rest_framework.test import APIClient

    authed = APIClient()
    authed.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert authed.get("/api/model-versions/").status_code == 200
    assert api_client().post("/api/auth/token/", {"username": "auditor", "password": "wrong"}).status_code == 400


# --- Error answers and what the columns hold ---------------------------------------------------


def _spec(api_client, personas) -> dict:
    response = api_client(personas["auditor"]).get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def _operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield path, method, operation


@pytest.mark.django_db
def test_every_operation_documents_the_errors_it_can_answer_with_their_bodies(api_client, personas):
    spec = _spec(api_client, personas)
    validate(spec)
    assert spec["components"]["schemas"]["Error"]["required"] == ["detail"]
    for path, method, operation in _operations(spec):
        responses, where = operation["responses"], f"{method.upper()} {path}"
        expected = {"400"}
        if operation["security"] != [{}]:  # not open to anonymous callers
            expected |= {"401", "403"}
        if "{" in path:
            expected.add("404")
        if method != "get":
            expected.add("409")
        if "requestBody" in operation:
            expected |= {"413", "415"}
        assert expected <= set(responses), (where, expected - set(responses))
        for code, response in responses.items():
            if code >= "400":
                body = response["content"]["application/json"]["schema"]["$ref"]
                assert body == ("#/components/schemas/FieldErrors" if code == "400" else "#/components/schemas/Error"), (where, code)
    for path, method in (
        ("/api/run-files/{id}/content/", "get"),
        ("/api/documents/{id}/download/", "get"),
        ("/api/federated/jobs/{id}/artifact/{name}/", "get"),
    ):
        assert "409" in spec["paths"][path][method]["responses"], path  # reads that refuse a file altered in storage
    assert "429" in spec["paths"]["/api/auth/token/"]["post"]["responses"]  # the throttled sign-in
    lists = [p for p, m, o in _operations(spec) if m == "get" and "{" not in p and "/Paginated" in str(o["responses"]["200"])]
    assert lists and all("404" in spec["paths"][p]["get"]["responses"] for p in lists)  # a page past the end


def _project_model_serializers() -> list[type]:
    from rest_framework import serializers

    found, todo = [], [serializers.ModelSerializer]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.split(".")[0] in {"core", "registry", "validation", "compliance"} and ".api" in sub.__module__ + ".api":
                found.append(sub)
    return found


def _column(model, source: str):
    """The concrete column a dotted ``source`` reads, or None (a method, a reverse relation, a property)."""
    field = None
    for part in source.split("."):
        try:
            field = model._meta.get_field(part)
        except Exception:
            return None
        if not field.concrete:
            return None
        model = field.related_model
    return field


def _nullable(prop: dict) -> bool:
    refs = [choice.get("$ref", "") for key in ("oneOf", "anyOf", "allOf") for choice in prop.get(key, [])]
    return bool(prop.get("nullable")) or any(ref.endswith("/NullEnum") for ref in refs)


@pytest.mark.django_db
def test_fields_over_nullable_columns_are_nullable_in_the_schema_and_blank_choices_allowed(api_client, personas):
    """The schema says what the columns hold: a user column left empty (created_by, requested_by,
    handled_by, submitted_by) is null in the answer, and a choice column that is "" until set takes ""."""
    from rest_framework import serializers

    schemas = _spec(api_client, personas)["components"]["schemas"]
    checked = 0
    for cls in _project_model_serializers():
        component = schemas.get(cls.__name__.removesuffix("Serializer"))
        if component is None:  # not answered by any operation
            continue
        for name, field in cls().fields.items():
            column = None if field.write_only or field.source == "*" else _column(cls.Meta.model, field.source)
            if column is None or name not in component["properties"]:
                continue
            checked += 1
            if column.null:
                assert _nullable(component["properties"][name]), f"{cls.__name__}.{name} reads a nullable column"
            if isinstance(field, serializers.ChoiceField) and column.blank:
                assert field.allow_blank, f"{cls.__name__}.{name} reads a choice column that may be blank"
    assert checked > 100
    assert _nullable(schemas["ModelVersion"]["properties"]["created_by"]) and _nullable(schemas["ValidationRun"]["properties"]["requested_by"])


@pytest.mark.django_db
def test_json_fields_say_which_kind_of_json_they_take(api_client, personas):
    schemas = _spec(api_client, personas)["components"]["schemas"]
    assert schemas["ValidationRunRequest"]["properties"]["config"]["type"] == "object"
    assert schemas["FederatedStudyRequest"]["properties"]["spec"]["type"] == "object"
    assert schemas["ScoringPolicyRequest"]["properties"]["definition"]["type"] == "object"
    assert "values" not in schemas.get("DossierRequest", {}).get("properties", {})  # written by the save action only
