"""The admin follows the API's rules: institution scope, no creation or removal outside the services."""

from __future__ import annotations

import pytest

from registry.choices import DeploymentStatus, VersionStatus
from registry.models import FoundationModel, Provenance
from tests.factories import DatasetFactory, DeploymentFactory, FoundationModelFactory, ModelVersionFactory, ProvenanceFactory


@pytest.fixture
def staff(personas):
    for user in personas.values():
        user.is_staff = True
        user.save()
    return personas


@pytest.fixture
def vendor_records(institutions):
    model = FoundationModelFactory(provider=institutions["vendor"])
    version = ModelVersionFactory(foundation_model=model, status=VersionStatus.APPROVED)
    return {
        "model": model,
        "version": version,
        "provenance": ProvenanceFactory(version=version, dataset=DatasetFactory(institution=institutions["vendor"])),
    }


@pytest.mark.django_db
def test_engineer_of_another_institution_sees_none_of_the_vendors_models(staff, vendor_records, client):
    client.force_login(staff["engineer_south"])
    assert client.get("/admin/registry/foundationmodel/").context["cl"].result_count == 0
    assert client.get(f"/admin/registry/foundationmodel/{vendor_records['model'].pk}/change/").status_code == 302  # "does not exist" redirect


@pytest.mark.django_db
def test_engineers_cannot_create_models_or_provenance_in_the_admin(staff, vendor_records, institutions, client):
    client.force_login(staff["engineer_south"])
    response = client.post("/admin/registry/foundationmodel/add/", {"name": "Spoof", "provider": institutions["vendor"].pk})
    assert response.status_code == 403
    response = client.post(
        "/admin/registry/provenance/add/", {"version": vendor_records["version"].pk, "dataset": DatasetFactory().pk, "role": "fine_tuning"}
    )
    assert response.status_code == 403
    assert not FoundationModel.objects.filter(name="Spoof").exists()


@pytest.mark.django_db
def test_provenance_of_a_released_version_cannot_be_deleted_in_the_admin(staff, vendor_records, client):
    client.force_login(staff["engineer"])
    pk = vendor_records["provenance"].pk
    assert client.post(f"/admin/registry/provenance/{pk}/delete/", {"post": "yes"}).status_code == 403
    assert Provenance.objects.filter(pk=pk).exists()


@pytest.mark.django_db
def test_clinician_sees_only_versions_deployed_at_their_site(staff, vendor_records, institutions, client):
    deployed = ModelVersionFactory(foundation_model=vendor_records["model"], status=VersionStatus.DEPLOYED)
    DeploymentFactory(version=deployed, institution=institutions["north"], status=DeploymentStatus.ACTIVE)
    client.force_login(staff["clinician_north"])
    rows = client.get("/admin/registry/modelversion/").context["cl"].result_list
    assert [v.pk for v in rows] == [deployed.pk]


@pytest.mark.django_db
def test_officer_creates_an_institution_and_it_is_audited(staff, client):
    from core.models import AuditEvent

    client.force_login(staff["officer"])
    response = client.post("/admin/registry/institution/add/", {"code": "east", "name": "East Clinic", "kind": "hospital", "country": "FR"})
    assert response.status_code == 302
    event = AuditEvent.objects.get(object_type="registry.institution", action="create", changes__code=[None, "east"])
    assert event.actor_username == "officer"


@pytest.mark.django_db
def test_validation_runs_are_read_only_and_scoped_in_the_admin(staff, vendor_records, client):
    from validation.models import ValidationRun

    run = ValidationRun.objects.create(
        version=vendor_records["version"], dataset=vendor_records["provenance"].dataset, requested_by=staff["engineer"]
    )
    client.force_login(staff["officer"])
    assert client.get("/admin/validation/validationrun/").context["cl"].result_count == 1
    page = client.get(f"/admin/validation/validationrun/{run.pk}/change/")
    assert page.status_code == 200 and not page.context["has_change_permission"]
    assert client.post(f"/admin/validation/validationrun/{run.pk}/change/", {"status": "succeeded"}).status_code == 403
    client.force_login(staff["engineer_south"])
    assert client.get("/admin/validation/validationrun/").context["cl"].result_count == 0
