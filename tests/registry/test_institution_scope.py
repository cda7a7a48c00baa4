"""Object-level rules: what a user sees and changes depends on their institution."""

from __future__ import annotations

import pytest

from registry.choices import DeploymentStatus, VersionStatus
from tests.factories import DatasetFactory, DeploymentFactory, FoundationModelFactory, ModelVersionFactory


@pytest.fixture
def deployed(institutions):
    model = FoundationModelFactory(provider=institutions["vendor"])
    at_north = ModelVersionFactory(foundation_model=model, status=VersionStatus.DEPLOYED, version="1.0.0")
    at_south = ModelVersionFactory(foundation_model=model, status=VersionStatus.DEPLOYED, version="2.0.0")
    return {
        "model": model,
        "north_version": at_north,
        "south_version": at_south,
        "north": DeploymentFactory(version=at_north, institution=institutions["north"], status=DeploymentStatus.ACTIVE),
        "south": DeploymentFactory(version=at_south, institution=institutions["south"], status=DeploymentStatus.ACTIVE),
    }


def _ids(response) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


@pytest.mark.django_db
def test_clinician_sees_only_deployments_and_versions_of_their_institution(deployed, personas, api_client):
    client = api_client(personas["clinician_north"])
    assert _ids(client.get("/api/deployments/")) == {deployed["north"].pk}
    assert _ids(client.get("/api/model-versions/")) == {deployed["north_version"].pk}
    assert client.get(f"/api/model-versions/{deployed['south_version'].pk}/").status_code == 404
    assert client.get(f"/api/deployments/{deployed['south'].pk}/").status_code == 404
    assert [row["code"] for row in client.get("/api/institutions/").json()["results"]] == ["north"]


@pytest.mark.django_db
def test_clinician_loses_sight_of_an_ended_deployment(deployed, personas, api_client):
    deployed["north"].status = DeploymentStatus.ENDED
    deployed["north"].save()
    assert _ids(api_client(personas["clinician_north"]).get("/api/model-versions/")) == set()


@pytest.mark.django_db
def test_auditor_and_officer_see_everything(deployed, personas, api_client):
    for persona in ("auditor", "officer"):
        assert _ids(api_client(personas[persona]).get("/api/deployments/")) == {deployed["north"].pk, deployed["south"].pk}


@pytest.mark.django_db
def test_engineer_of_another_institution_cannot_see_or_change_the_vendors_models(deployed, personas, api_client):
    client = api_client(personas["engineer_south"])
    assert _ids(client.get("/api/foundation-models/")) == set()
    assert client.patch(f"/api/foundation-models/{deployed['model'].pk}/", {"description": "x"}).status_code == 404


@pytest.mark.django_db
def test_engineer_cannot_create_a_model_for_another_provider(institutions, personas, api_client):
    response = api_client(personas["engineer_south"]).post(
        "/api/foundation-models/",
        {
            "name": "Spoof",
            "provider": institutions["vendor"].pk,
            "intended_purpose": "x",
            "modality": "CT",
            "body_region": "head",
            "task": "binary",
            "licence": "MIT",
        },
    )
    assert response.status_code == 400
    assert "provider" in response.json()


@pytest.mark.django_db
def test_engineer_may_read_but_not_change_a_dataset_stewarded_elsewhere_that_feeds_their_model(institutions, personas, api_client):
    from registry.models import Provenance

    model = FoundationModelFactory(provider=institutions["vendor"])
    foreign = DatasetFactory(institution=institutions["south"], name="South set")
    Provenance.objects.create(version=ModelVersionFactory(foundation_model=model), dataset=foreign, role="fine_tuning")
    client = api_client(personas["engineer"])
    assert client.get(f"/api/datasets/{foreign.pk}/").status_code == 200
    response = client.patch(f"/api/datasets/{foreign.pk}/", {"description": "edited"})
    assert response.status_code == 403
    assert "another institution" in response.json()["detail"]


@pytest.mark.django_db
def test_unknown_institution_in_a_deployment_is_a_field_error(deployed, personas, api_client):
    deployed["north_version"].status = VersionStatus.APPROVED
    deployed["north_version"].save()
    response = api_client(personas["officer"]).post("/api/deployments/", {"version": deployed["north_version"].pk, "institution": 99999})
    assert response.status_code == 400
    assert "institution" in response.json()


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/model-versions/abc/", "/api/datasets/1e5/", "/api/audit-events/x/"])
def test_malformed_ids_are_not_found_not_server_errors(url, personas, api_client):
    assert api_client(personas["officer"]).get(url).status_code == 404


@pytest.mark.django_db
def test_malformed_filter_is_a_field_error(personas, api_client):
    response = api_client(personas["officer"]).get("/api/model-versions/?foundation_model=abc")
    assert response.status_code == 400
    assert "foundation_model" in response.json()


@pytest.mark.django_db
def test_lineage_stops_where_the_clinicians_scope_ends(deployed, personas, api_client):
    base = deployed["south_version"]
    child = deployed["north_version"]
    child.parent = base
    child.save()
    client = api_client(personas["clinician_north"])
    assert [row["id"] for row in client.get(f"/api/model-versions/{child.pk}/lineage/").json()] == [child.pk]
    assert [row["id"] for row in api_client(personas["auditor"]).get(f"/api/model-versions/{child.pk}/lineage/").json()] == [child.pk, base.pk]
