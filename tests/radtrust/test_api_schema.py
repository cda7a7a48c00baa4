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
