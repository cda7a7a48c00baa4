"""Data-use grants: a hospital's steward grants a provider the use of a dataset for a purpose and
period; the provider then sees, links and validates on it, and loses that the day the grant ends or
is revoked. Dates are explicit (days around today), never waited for."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command

from compliance.document_evidence import evidence_elements
from compliance.dossier_evidence import dossier_evidence
from core.audit import audit_context, audit_verify_chain
from core.errors import Conflict, ImmutableRecord
from core.models import AuditEvent
from registry.models import DataUseGrant
from registry.selectors import dataset_list
from registry.services import data_use_grant, data_use_revoke, provenance_link, user_create
from tests.clock import session_today
from tests.factories import DatasetFactory, DataUseGrantFactory, FoundationModelFactory, ModelVersionFactory
from validation import services as runs
from validation.choices import RunStatus

pytestmark = pytest.mark.django_db

TODAY = session_today()  # the day every unit test runs on (tests/clock.py)
DAY = timedelta(days=1)
GRANTS = "/api/data-use-grants/"


@pytest.fixture
def people(personas, institutions):
    """The personas, plus North's steward officer, engineer and site agent, and South's officer."""
    extra = {
        "steward": ("compliance_officer", "north"),
        "engineer_north": ("ml_engineer", "north"),
        "agent_north": ("site_agent", "north"),
        "officer_south": ("compliance_officer", "south"),
    }
    made = {name: user_create(username=name, role=role, institution=institutions[site]) for name, (role, site) in extra.items()}
    return {**personas, **made}


@pytest.fixture
def north_data(institutions):
    return DatasetFactory(name="North external set", institution=institutions["north"])


def _grant(people, dataset, institutions, **fields):
    values = {
        "dataset": dataset,
        "grantee": institutions["vendor"],
        "purpose": "external_validation",
        "agreement_reference": "DUA-2025-014",
        "valid_from": TODAY - DAY,
        "valid_until": TODAY + 30 * DAY,
        **fields,
    }
    return data_use_grant(actor=people["steward"], **values)


def _events(grant) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="registry.datausegrant", object_id=str(grant.pk)).order_by("seq").values_list("action", flat=True)
    )


# --- The service and the record -----------------------------------------------------------------


def test_the_steward_grants_and_revokes_and_each_leaves_an_audit_event(people, north_data, institutions):
    with audit_context(user=people["steward"]):
        grant = _grant(people, north_data, institutions, purpose_detail="ChestFM 2.x external validation study")
        revoked = data_use_revoke(actor=people["steward"], grant=grant, reason="Study closed early.")
    assert (grant.granted_by, grant.get_purpose_display()) == (people["steward"], "External validation of the grantee's model versions")
    assert revoked.revoked_by == people["steward"] and revoked.revocation_reason == "Study closed early."
    assert _events(grant) == ["create", "revoke"]
    revoke_event = AuditEvent.objects.get(object_type="registry.datausegrant", action="revoke")
    assert revoke_event.actor_username == "steward" and set(revoke_event.changes) == {"revoked_at", "revoked_by_id", "revocation_reason"}
    assert audit_verify_chain().ok
    with pytest.raises(Conflict, match="revoked on .* already"):
        data_use_revoke(actor=people["steward"], grant=grant, reason="again")


@pytest.mark.parametrize("who", ["officer", "officer_south", "engineer", "engineer_north", "auditor", "clinician_north"])
def test_only_the_stewards_officer_grants(who, people, north_data, institutions):
    with pytest.raises(PermissionDenied, match="Only a compliance officer of North Hospital"):
        data_use_grant(
            actor=people[who],
            dataset=north_data,
            grantee=institutions["vendor"],
            purpose="external_validation",
            agreement_reference="DUA-1",
            valid_from=TODAY,
            valid_until=TODAY + DAY,
        )
    assert not DataUseGrant.objects.exists()


@pytest.mark.parametrize(
    "fields,field,fragment",
    [
        ({"grantee": "north"}, "grantee", "uses its own data without a grant"),
        ({"valid_until": TODAY - DAY, "valid_from": TODAY - 9 * DAY}, "valid_until", "has ended already"),
        ({"valid_from": TODAY + 60 * DAY}, "__all__", "must end on or after the day it starts"),
        ({"purpose": "marketing"}, "purpose", "not a valid choice"),
        ({"agreement_reference": "  "}, "agreement_reference", "cannot be blank"),
    ],
)
def test_a_grant_that_says_nothing_usable_is_refused(fields, field, fragment, people, north_data, institutions):
    if "grantee" in fields:
        fields = {"grantee": institutions[fields["grantee"]]}
    with pytest.raises(ValidationError) as refused:
        _grant(people, north_data, institutions, **fields)
    assert fragment in " ".join(refused.value.message_dict[field])


def test_a_grant_is_never_edited_or_deleted_and_revoked_once(people, north_data, institutions):
    grant = _grant(people, north_data, institutions)
    grant.valid_until = TODAY + 900 * DAY
    with pytest.raises(ImmutableRecord):
        grant.save()
    with pytest.raises(ImmutableRecord):
        DataUseGrant.objects.filter(pk=grant.pk).update(valid_until=TODAY + 900 * DAY)
    with pytest.raises(ImmutableRecord):
        DataUseGrant.objects.filter(pk=grant.pk).delete()
    with pytest.raises(ImmutableRecord):
        grant.delete()
    with pytest.raises(ValidationError, match="Say why"):
        data_use_revoke(actor=people["steward"], grant=grant, reason=" ")
    with pytest.raises(PermissionDenied):
        data_use_revoke(actor=people["officer"], grant=grant, reason="The grantee cannot end it.")
    revoked = data_use_revoke(actor=people["steward"], grant=grant, reason="ok")
    revoked.revocation_reason = "rewritten"
    with pytest.raises(ImmutableRecord):
        revoked.save(update_fields=["revocation_reason"])
    assert DataUseGrant.objects.get(pk=grant.pk).valid_until == TODAY + 30 * DAY


# --- What the grant opens, and when it closes ---------------------------------------------------


@pytest.mark.parametrize(
    "period,revoked,sees",
    [
        ((-30, 30), False, True),
        ((0, 0), False, True),  # a one-day grant, today: both ends count
        ((-30, -1), False, False),  # ended yesterday
        ((1, 30), False, False),  # starts tomorrow
        ((-30, 30), True, False),
    ],
)
def test_the_grantees_engineers_see_the_dataset_only_while_the_grant_is_active(period, revoked, sees, people, north_data, institutions):
    grant = DataUseGrantFactory(
        dataset=north_data, grantee=institutions["vendor"], valid_from=TODAY + period[0] * DAY, valid_until=TODAY + period[1] * DAY
    )
    if revoked:
        data_use_revoke(actor=people["steward"], grant=grant, reason="Ethics approval withdrawn.")
    assert dataset_list(user=people["engineer"]).filter(pk=north_data.pk).exists() is sees
    assert not dataset_list(user=people["engineer_south"]).filter(pk=north_data.pk).exists()  # a third institution never
    assert dataset_list(user=people["engineer_north"]).filter(pk=north_data.pk).exists()  # the steward's own always


def test_grants_are_listed_to_grantor_grantee_officers_and_auditors_only(people, north_data, institutions, api_client):
    grant = DataUseGrantFactory(dataset=north_data, grantee=institutions["vendor"])
    readers = {"steward", "engineer_north", "engineer", "engineer_south", "officer", "officer2", "officer_south", "auditor"}
    seen = {who for who in readers if grant.pk in {g["id"] for g in api_client(people[who]).get(GRANTS).json()["results"]}}
    assert seen == readers - {"engineer_south"}  # every officer and auditor, and both parties' engineers
    for who in set(people) - readers:
        assert api_client(people[who]).get(GRANTS).status_code == 403, who
    assert api_client(people["engineer_south"]).get(f"{GRANTS}{grant.pk}/").status_code == 404


# --- The API -----------------------------------------------------------------------------------


def _body(north_data, institutions, **extra) -> dict:
    return {
        "dataset": north_data.pk,
        "grantee": institutions["vendor"].pk,
        "purpose": "external_validation",
        "agreement_reference": "DUA-2025-014",
        "valid_from": str(TODAY),
        "valid_until": str(TODAY + 90 * DAY),
        **extra,
    }


@pytest.mark.parametrize(
    "who,status",
    [
        ("steward", 201),  # North's officer: the data steward
        ("officer", 403),  # the grantee's officer
        ("officer_south", 403),  # a third institution's officer
        ("engineer", 403),
        ("engineer_north", 403),  # the steward's engineer: an officer decides
        ("auditor", 403),
        ("clinician_north", 403),
        ("agent_north", 403),
        ("worker", 403),
    ],
)
def test_who_may_grant_through_the_api(who, status, people, north_data, institutions, api_client):
    response = api_client(people[who]).post(GRANTS, _body(north_data, institutions), format="json")
    assert response.status_code == status, response.content
    if status == 201:
        body = response.json()
        assert body["purpose_label"] == "External validation of the grantee's model versions" and body["active"] is True
        assert body["granted_by"] == "steward" and body["revoked_at"] is None


@pytest.mark.parametrize("who,status", [("steward", 200), ("officer", 403), ("officer_south", 403), ("engineer", 403), ("auditor", 403)])
def test_who_may_revoke_through_the_api(who, status, people, north_data, institutions, api_client):
    grant = DataUseGrantFactory(dataset=north_data, grantee=institutions["vendor"])
    response = api_client(people[who]).post(f"{GRANTS}{grant.pk}/revoke/", {"reason": "Consent withdrawn."}, format="json")
    assert response.status_code == status, response.content
    if status == 200:
        assert response.json()["active"] is False and response.json()["revocation_reason"] == "Consent withdrawn."
    again = api_client(people["steward"]).post(f"{GRANTS}{grant.pk}/revoke/", {}, format="json")
    assert again.status_code == (409 if status == 200 else 400)  # revoked once only; a revocation states its reason


def test_a_grant_cannot_be_edited_or_deleted_through_the_api(people, north_data, institutions, api_client):
    grant = DataUseGrantFactory(dataset=north_data, grantee=institutions["vendor"])
    client = api_client(people["steward"])
    assert client.patch(f"{GRANTS}{grant.pk}/", {"valid_until": str(TODAY + 999 * DAY)}, format="json").status_code == 405
    assert client.delete(f"{GRANTS}{grant.pk}/").status_code == 405


def test_the_datasheet_shows_the_grants_with_their_labels(people, north_data, institutions, api_client):
    DataUseGrantFactory(dataset=north_data, grantee=institutions["vendor"], agreement_reference="DUA-7", purpose="performance_monitoring")
    for who in ("steward", "engineer"):
        [row] = api_client(people[who]).get(f"/api/datasets/{north_data.pk}/").json()["use_grants"]
        assert (row["agreement_reference"], row["active"]) == ("DUA-7", True)
        assert row["purpose_label"] == "Post-market performance monitoring (revalidation, drift checks)"


# --- Linking and validating -------------------------------------------------------------------


def test_a_granted_dataset_is_linked_by_the_providers_engineers_and_officers_in_the_granted_roles(people, north_data, institutions, api_client):
    version = ModelVersionFactory(foundation_model=FoundationModelFactory(provider=institutions["vendor"]))
    link = {"version": version.pk, "dataset": north_data.pk, "role": "external_validation"}
    assert api_client(people["engineer"]).post("/api/provenance/", link, format="json").status_code == 400  # not visible yet
    with pytest.raises(PermissionDenied, match="North Hospital grants RadVendor GmbH no use of North external set as external validation data"):
        provenance_link(actor=people["officer"], version=version, dataset=north_data, role="external_validation")
    DataUseGrantFactory(dataset=north_data, grantee=institutions["vendor"])
    tuning = api_client(people["engineer"]).post("/api/provenance/", {**link, "role": "fine_tuning"}, format="json")
    assert tuning.status_code == 403
    assert "its grants cover external validation of the grantee's model versions only" in tuning.json()["detail"]
    assert api_client(people["officer"]).post("/api/provenance/", link, format="json").status_code == 201
    refused = api_client(people["steward"]).post("/api/provenance/", {**link, "role": "fine_tuning"}, format="json")
    assert refused.status_code == 403 and "version's provider" in refused.json()["detail"]


@pytest.fixture
def granted(run_setup, people):
    """run_setup's North dataset with its grant (from run_setup) returned."""
    return run_setup["dataset"].use_grants.get()


def test_runs_on_a_granted_dataset_go_central_or_to_the_hospitals_queue(run_setup, granted):
    central = runs.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"])
    on_site = runs.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], on_site=True)
    assert (central.queue, on_site.queue) == ("gpu", "site.north")


def test_new_runs_are_refused_after_revocation_but_a_running_run_keeps_its_result(run_setup, granted, people, api_client):
    running = runs.run_create(
        actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config={"n_resamples": 20, "min_patients": 5}
    )
    data_use_revoke(actor=people["steward"], grant=granted, reason="Ethics approval withdrawn.")
    assert runs.run_execute(run_id=running.pk, worker="w") == RunStatus.SUCCEEDED
    running.refresh_from_db()
    assert running.results is not None
    body = {"version": run_setup["version"].pk, "dataset": run_setup["dataset"].pk, "config": {"n_resamples": 20}}
    refused = api_client(run_setup["engineer"]).post("/api/validation-runs/", body, format="json")
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        f"North Hospital grants RadVendor GmbH no use of North test set for validation runs today: "
        f"grant {granted.agreement_reference} was revoked on {TODAY:%Y-%m-%d}. The steward's reason: Ethics approval withdrawn."
    )
    assert running.pk in {r["id"] for r in api_client(run_setup["engineer"]).get("/api/validation-runs/").json()["results"]}


@pytest.mark.parametrize(
    "fields,fragment",
    [
        ({"valid_from": TODAY - 90 * DAY, "valid_until": TODAY - DAY}, f"ended on {TODAY - DAY:%Y-%m-%d}"),
        ({"valid_from": TODAY + DAY, "valid_until": TODAY + 9 * DAY}, f"starts on {TODAY + DAY:%Y-%m-%d}"),
        ({"purpose": "training"}, "its grants cover training, fine-tuning or calibration only"),
    ],
)
def test_runs_are_refused_outside_the_period_or_purpose(fields, fragment, run_setup, write_dataset, people):
    from registry.models import Dataset
    from registry.services import record_create

    later = record_create(
        model=Dataset,
        actor=run_setup["engineer"],
        fields={
            "name": "North later set",
            "institution": run_setup["dataset"].institution,
            "modality": "DX",
            "location": str(write_dataset("later")),
        },
    )
    DataUseGrantFactory(dataset=later, grantee=run_setup["model"].provider, **fields)
    with pytest.raises(PermissionDenied, match=fragment):
        runs.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=later)


def test_the_validate_command_says_why_it_is_refused(run_setup, granted, people):
    data_use_revoke(actor=people["steward"], grant=granted, reason="Consent withdrawn.")
    with pytest.raises(CommandError, match="was revoked on .* The steward's reason: Consent withdrawn."):
        call_command("validate", str(run_setup["version"].pk), str(run_setup["dataset"].pk), "--user", "engineer")


def test_the_providers_own_data_needs_no_grant(run_setup, write_dataset):
    from registry.models import Dataset
    from registry.services import record_create

    own = record_create(
        model=Dataset,
        actor=run_setup["engineer"],
        fields={"name": "Vendor set", "institution": run_setup["model"].provider, "modality": "DX", "location": str(write_dataset("own"))},
    )
    assert runs.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=own).status == RunStatus.QUEUED


# --- The technical documentation ----------------------------------------------------------------


def test_the_documentation_lists_the_agreements_behind_linked_data(run_setup, granted, people):
    data_use_revoke(actor=people["steward"], grant=granted, reason="Study closed.")
    [row] = dossier_evidence(run_setup["version"], {"provenance"})["provenance"]
    expected = (
        f"{granted.agreement_reference}: External validation of the grantee's model versions, "
        f"{granted.valid_from:%Y-%m-%d} to {granted.valid_until:%Y-%m-%d}, revoked on {TODAY:%Y-%m-%d}: Study closed."
    )
    assert row["data_use"] == [expected]
    tables = [e for e in evidence_elements("provenance", [row], None) if e.caption == "Data-use agreements"]
    assert [t.rows for t in tables] == [[["North test set", "north", expected]]]
    assert evidence_elements("provenance", [{**row, "data_use": []}], None)[-1].caption == "Datasets linked to this version"


# --- The page -------------------------------------------------------------------------------------


def test_the_steward_grants_and_revokes_on_the_page(people, north_data, institutions, client):
    client.force_login(people["steward"])
    form = {
        "dataset": north_data.pk,
        "grantee": institutions["vendor"].pk,
        "purpose": "external_validation",
        "purpose_detail": "ChestFM 2.x study",
        "agreement_reference": "DUA-2025-014",
        "valid_from": str(TODAY),
        "valid_until": str(TODAY + 90 * DAY),
    }
    page = client.post("/data-use-grants/", form, follow=True)
    grant = DataUseGrant.objects.get()
    html = page.content.decode()
    assert "RadVendor GmbH may use North external set" in html and "External validation of the grantee&#x27;s model versions" in html
    assert f'<label for="reason-{grant.pk}">Reason for revoking</label>' in html
    revoked = client.post(f"/data-use-grants/{grant.pk}/revoke/", {"reason": "Study closed."}, follow=True).content.decode()
    assert "Revoked on" in revoked and "Study closed." in revoked
    assert "Reason for revoking" not in revoked  # revoked once


def test_the_page_offers_only_the_stewards_own_datasets(people, north_data, institutions, client):
    grant = DataUseGrantFactory(dataset=north_data, grantee=institutions["vendor"])
    own = DatasetFactory(name="Vendor tuning set", institution=institutions["vendor"])
    client.force_login(people["officer"])  # the grantee's officer, steward of its own data only
    page = client.get("/data-use-grants/")
    assert list(page.context["form"].fields["dataset"].queryset) == [own]
    assert "Reason for revoking" not in page.content.decode() and "North external set" in page.content.decode()
    refused = client.post("/data-use-grants/", {"dataset": north_data.pk, "grantee": institutions["vendor"].pk})
    assert "Select a valid choice" in refused.content.decode() and DataUseGrant.objects.count() == 1
    assert client.post(f"/data-use-grants/{grant.pk}/revoke/", {"reason": "mine now"}).status_code == 403
    client.force_login(people["engineer"])
    assert client.get("/data-use-grants/").context["form"] is None
    assert client.post("/data-use-grants/", {"dataset": north_data.pk}).status_code == 403
