"""The audit trail: what the receivers record, that it shares the change's transaction, and that rows cannot change."""

from __future__ import annotations

import threading

import pytest
from django.contrib.admin.sites import site as admin_site
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.audit import audit_action, audit_context, audit_verify_chain
from core.errors import ImmutableRecord
from core.models import AuditEvent, AuditHead
from registry import services
from registry.choices import VersionStatus
from registry.models import Dataset, FoundationModel, Institution, ModelVersion, User
from tests.factories import DatasetFactory, FoundationModelFactory, ModelVersionFactory, ProvenanceFactory


def events_for(instance) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(object_type=instance._meta.label_lower, object_id=str(instance.pk)))


def last_event_for(instance) -> AuditEvent:
    return AuditEvent.objects.filter(object_type=instance._meta.label_lower, object_id=str(instance.pk)).latest("seq")


# --- What is recorded ----------------------------------------------------------------


@pytest.mark.django_db
def test_create_records_actor_request_id_and_every_field(personas):
    officer = personas["officer"]
    with audit_context(user=officer, request_id="req-create-1"):
        site = services.record_create(
            model=Institution, actor=officer, fields={"code": "west", "name": "West Clinic", "country": "FR", "contact_email": "a@west.example"}
        )

    [event] = events_for(site)
    assert event.action == "create"
    assert (event.actor_id, event.actor_username, event.request_id) == (officer.pk, "officer", "req-create-1")
    assert (event.object_type, event.object_id, event.object_repr) == ("registry.institution", str(site.pk), "West Clinic (west)")
    assert event.changes["code"] == [None, "west"]
    assert event.changes["name"] == [None, "West Clinic"]
    assert event.changes["country"] == [None, "FR"]
    assert event.changes["contact_email"] == [None, "a@west.example"]
    assert event.changes["id"] == [None, site.pk]
    assert set(event.changes) == {"id", "code", "name", "kind", "country", "address", "contact_email", "created_at"}


@pytest.mark.django_db
def test_update_records_only_the_changed_fields_as_before_and_after(personas, institutions):
    fm = FoundationModelFactory(
        provider=institutions["vendor"], created_by=personas["engineer"], intended_purpose="Old purpose.", body_region="chest"
    )
    with audit_context(user=personas["engineer"], request_id="req-update-1"):
        services.record_update(instance=fm, fields={"intended_purpose": "New purpose.", "body_region": "thorax"})

    event = last_event_for(fm)
    assert event.action == "update"
    assert (event.actor_username, event.request_id) == ("engineer", "req-update-1")
    # updated_at changed too, but it is excluded: exactly the two real changes are recorded.
    assert event.changes == {"intended_purpose": ["Old purpose.", "New purpose."], "body_region": ["chest", "thorax"]}


@pytest.mark.django_db
def test_api_patch_records_the_officer_and_the_response_request_id(api_client, personas, institutions):
    site = institutions["north"]
    response = api_client(personas["officer"]).patch(f"/api/institutions/{site.pk}/", {"name": "North University Hospital"}, format="json")

    assert response.status_code == 200, response.content
    event = last_event_for(site)
    assert event.action == "update"
    assert (event.actor_id, event.actor_username) == (personas["officer"].pk, "officer")
    assert event.request_id and response["X-Request-ID"] == event.request_id
    assert event.changes == {"name": ["North Hospital", "North University Hospital"]}


@pytest.mark.django_db
def test_api_keeps_the_callers_request_id(api_client, personas, institutions):
    site = institutions["south"]
    response = api_client(personas["officer"]).patch(
        f"/api/institutions/{site.pk}/", {"address": "1 Harbour Road"}, format="json", headers={"X-Request-ID": "trace-abc-123"}
    )

    assert response.status_code == 200, response.content
    assert response["X-Request-ID"] == "trace-abc-123"
    assert last_event_for(site).request_id == "trace-abc-123"


@pytest.mark.django_db
def test_events_outside_a_request_are_attributed_to_the_process_label(institutions):
    with audit_context(label="worker:site-north"):
        site = services.record_create(model=Institution, actor=None, fields={"code": "east", "name": "East", "country": "DE"})

    [event] = events_for(site)
    assert (event.actor_id, event.actor_username) == (None, "worker:site-north")
    assert len(event.request_id) == 32  # a fresh id when the caller gives none


@pytest.mark.django_db
def test_excluded_fields_never_appear(personas, institutions):
    fm = services.record_create(
        model=FoundationModel,
        actor=personas["engineer"],
        fields={
            "name": "LungFM",
            "provider": institutions["vendor"],
            "intended_purpose": "x",
            "modality": "DX",
            "body_region": "chest",
            "task": "binary",
            "licence": "MIT",
        },
    )
    services.record_update(instance=fm, fields={"licence": "Apache-2.0"})
    user = services.user_create(username="newcomer", role="auditor", institution=institutions["vendor"], password="a-long-enough-Passw0rd!")
    services.record_update(instance=user, fields={"email": "newcomer@vendor.example"})

    fm_events, user_events = events_for(fm), events_for(user)
    assert [e.action for e in fm_events] == ["create", "update"]
    assert all("updated_at" not in e.changes for e in fm_events)
    assert "created_at" in fm_events[0].changes
    assert user_events and all("password" not in e.changes and "last_login" not in e.changes for e in user_events)
    assert user_events[0].changes["username"] == [None, "newcomer"]


@pytest.mark.django_db
def test_a_save_that_changes_nothing_writes_no_event(personas, institutions):
    fm = FoundationModelFactory(provider=institutions["vendor"], created_by=personas["engineer"])
    head = AuditHead.objects.get().seq

    fm.save()  # only updated_at moves, and it is excluded
    services.record_update(instance=fm, fields={})
    services.record_update(instance=institutions["north"], fields={"name": institutions["north"].name})

    assert AuditHead.objects.get().seq == head
    assert AuditEvent.objects.count() == head


@pytest.mark.django_db
def test_update_fields_save_records_only_what_was_written(institutions):
    """An in-memory change that ``save(update_fields=...)`` does not write must not appear in the trail."""
    site = institutions["north"]
    site.name = "Not saved"
    site.address = "2 Hill Street"
    site.save(update_fields=["address"])

    site.refresh_from_db()
    assert site.name == "North Hospital"
    assert last_event_for(site).changes == {"address": ["", "2 Hill Street"]}


@pytest.mark.django_db
def test_many_to_many_changes_are_recorded(personas, institutions):
    north, south, vendor = institutions["north"], institutions["south"], institutions["vendor"]
    with audit_context(user=personas["engineer"], request_id="req-m2m"):
        dataset = services.record_create(
            model=Dataset,
            actor=personas["engineer"],
            fields={"name": "CXR-North", "institution": vendor, "modality": "DX"},
            m2m={"source_institutions": [north, south]},
        )
        services.record_update(instance=dataset, fields={}, m2m={"source_institutions": [north]})

    create, added, removed = events_for(dataset)
    assert create.action == "create"
    assert added.changes == {"source_institutions": {"added": sorted([north.pk, south.pk])}}
    assert removed.changes == {"source_institutions": {"removed": [south.pk]}}
    assert {added.actor_username, removed.actor_username, added.request_id} == {"engineer", "req-m2m"}


@pytest.mark.django_db
def test_many_to_many_records_only_real_changes(institutions):
    north, south = institutions["north"], institutions["south"]
    dataset = DatasetFactory(institution=institutions["vendor"])
    dataset.source_institutions.add(north)
    head = AuditHead.objects.get().seq

    dataset.source_institutions.add(north)  # already there
    dataset.source_institutions.remove(south)  # never there
    dataset.source_institutions.set([north])
    assert AuditHead.objects.get().seq == head

    dataset.source_institutions.add(south)
    dataset.source_institutions.clear()
    *_, added, cleared = events_for(dataset)
    assert added.changes == {"source_institutions": {"added": [south.pk]}}
    assert cleared.changes == {"source_institutions": {"removed": sorted([north.pk, south.pk])}}


@pytest.mark.django_db
def test_many_to_many_changed_from_the_other_side_is_recorded_on_the_registered_model(institutions):
    from django.contrib.auth.models import Group

    user = services.user_create(username="reader", role="auditor", institution=institutions["vendor"])
    officers = Group.objects.get(name="compliance_officer")

    officers.user_set.add(user)
    officers.user_set.remove(user)

    *_, added, removed = events_for(user)
    assert added.changes == {"groups": {"added": [officers.pk]}}
    assert removed.changes == {"groups": {"removed": [officers.pk]}}


@pytest.mark.django_db
def test_version_transition_is_recorded_as_transition(personas, institutions):
    version = ModelVersionFactory(foundation_model__provider=institutions["vendor"], created_by=personas["engineer"])
    officer = personas["officer"]
    with audit_context(user=officer, request_id="req-retire"):
        services.version_transition(actor=officer, version=version, to_status=VersionStatus.RETIRED)

    event = last_event_for(version)
    assert event.action == "transition"
    assert (event.actor_id, event.request_id) == (officer.pk, "req-retire")
    assert event.changes == {"status": [VersionStatus.DRAFT, VersionStatus.RETIRED]}
    assert ModelVersion.objects.get(pk=version.pk).status == VersionStatus.RETIRED


@pytest.mark.django_db
def test_api_transition_is_recorded_with_the_request_id(api_client, personas, institutions):
    version = ModelVersionFactory(foundation_model__provider=institutions["vendor"], created_by=personas["engineer"])
    response = api_client(personas["officer"]).post(f"/api/model-versions/{version.pk}/transition/", {"to_status": "retired"}, format="json")

    assert response.status_code == 200, response.content
    event = last_event_for(version)
    assert (event.action, event.actor_username, event.request_id) == ("transition", "officer", response["X-Request-ID"])


@pytest.mark.django_db
def test_audit_action_names_the_update_and_ends_with_its_block(institutions):
    site = institutions["north"]
    with audit_action("rename"):
        services.record_update(instance=site, fields={"name": "North I"})
    services.record_update(instance=site, fields={"name": "North II"})

    *_, named, plain = events_for(site)
    assert (named.action, plain.action) == ("rename", "update")


@pytest.mark.django_db
def test_delete_is_recorded_with_the_last_state(institutions):
    provenance = ProvenanceFactory(version__foundation_model__provider=institutions["vendor"])
    pk, dataset_id = provenance.pk, provenance.dataset_id
    services.provenance_unlink(provenance=provenance)

    event = AuditEvent.objects.filter(object_type="registry.provenance", object_id=str(pk)).latest("seq")
    assert event.action == "delete"
    assert event.changes["dataset_id"] == [dataset_id, None]
    assert event.changes["role"] == ["fine_tuning", None]


# --- Same transaction as the change ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_leaves_no_event(institutions):
    site = institutions["north"]
    head_before = AuditHead.objects.get()
    count_before = AuditEvent.objects.count()

    with pytest.raises(RuntimeError), transaction.atomic():
        services.record_update(instance=site, fields={"name": "Renamed then rolled back"})
        services.record_create(model=Institution, actor=None, fields={"code": "ghost", "name": "Ghost", "country": "DE"})
        assert AuditEvent.objects.count() == count_before + 2  # written inside the transaction...
        raise RuntimeError("abort")

    assert AuditEvent.objects.count() == count_before  # ...and gone with it
    assert (AuditHead.objects.get().seq, AuditHead.objects.get().hash) == (head_before.seq, head_before.hash)
    assert not Institution.objects.filter(code="ghost").exists()
    assert not AuditEvent.objects.filter(changes__name__1="Renamed then rolled back").exists()
    assert audit_verify_chain().ok

    services.record_update(instance=Institution.objects.get(pk=site.pk), fields={"name": "Renamed for real"})
    assert audit_verify_chain().ok
    assert AuditHead.objects.get().seq == head_before.seq + 1


@pytest.mark.django_db
def test_a_refused_service_call_leaves_no_event(institutions):
    count = AuditEvent.objects.count()
    with pytest.raises(ValidationError):
        services.record_create(model=Institution, actor=None, fields={"code": "north", "name": "Duplicate", "country": "DE"})
    assert AuditEvent.objects.count() == count


# --- Append-only ---------------------------------------------------------------------


@pytest.fixture
def an_event(institutions) -> AuditEvent:
    return AuditEvent.objects.get(object_type="registry.institution", object_id=str(institutions["north"].pk), action="create")


@pytest.mark.django_db
def test_saving_an_existing_event_is_refused(an_event):
    an_event.actor_username = "mallory"
    with pytest.raises(ImmutableRecord):
        an_event.save()
    assert AuditEvent.objects.get(pk=an_event.pk).actor_username != "mallory"


@pytest.mark.django_db
def test_deleting_an_event_is_refused(an_event):
    with pytest.raises(ImmutableRecord):
        an_event.delete()
    assert AuditEvent.objects.filter(pk=an_event.pk).exists()


@pytest.mark.django_db
def test_queryset_update_and_delete_are_refused(an_event):
    with pytest.raises(ImmutableRecord):
        AuditEvent.objects.filter(pk=an_event.pk).update(action="forged")
    with pytest.raises(ImmutableRecord):
        AuditEvent.objects.all().delete()
    with pytest.raises(ImmutableRecord):
        an_event.action = "forged"
        AuditEvent.objects.bulk_update([an_event], ["action"])
    assert AuditEvent.objects.get(pk=an_event.pk).action == "create"
    assert audit_verify_chain().ok


@pytest.mark.django_db
def test_a_new_instance_cannot_overwrite_an_existing_row(an_event):
    """Saving an unsaved instance that carries an existing primary key must insert (and fail), never update."""
    forged = AuditEvent(
        pk=an_event.pk,
        seq=an_event.seq,
        occurred_at=timezone.now(),
        actor_username="mallory",
        action="create",
        object_type=an_event.object_type,
        object_id=an_event.object_id,
        object_repr="forged",
        changes={},
        prev_hash=an_event.prev_hash,
        hash="f" * 64,
    )
    with pytest.raises((ImmutableRecord, IntegrityError)), transaction.atomic():
        forged.save()
    assert AuditEvent.objects.get(pk=an_event.pk).actor_username != "mallory"


@pytest.mark.django_db
def test_bulk_upsert_cannot_overwrite_a_row(an_event):
    forged = AuditEvent(
        seq=an_event.seq,
        occurred_at=timezone.now(),
        actor_username="mallory",
        action="create",
        object_type=an_event.object_type,
        object_id=an_event.object_id,
        object_repr="forged",
        changes={},
        prev_hash=an_event.prev_hash,
        hash="f" * 64,
    )
    with pytest.raises(ImmutableRecord):
        AuditEvent.objects.bulk_create([forged], update_conflicts=True, unique_fields=["seq"], update_fields=["actor_username"])
    assert AuditEvent.objects.get(pk=an_event.pk).actor_username != "mallory"


@pytest.mark.django_db
def test_admin_shows_events_read_only(client, an_event):
    root = User.objects.create_superuser("root", "root@vendor.example", "a-long-enough-Passw0rd!")
    client.force_login(root)
    model_admin = admin_site._registry[AuditEvent]

    assert client.get("/admin/core/auditevent/").status_code == 200
    assert client.get(f"/admin/core/auditevent/{an_event.pk}/change/").status_code == 200
    assert client.get("/admin/core/auditevent/add/").status_code == 403
    assert client.post(f"/admin/core/auditevent/{an_event.pk}/delete/", {"post": "yes"}).status_code == 403
    request = client.get("/admin/").wsgi_request
    assert not any(perm(request) for perm in (model_admin.has_add_permission, model_admin.has_change_permission, model_admin.has_delete_permission))
    assert AuditEvent.objects.filter(pk=an_event.pk).exists()


# --- Concurrent writers ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_one_contiguous_chain():
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def create_sites(worker: int) -> None:
        try:
            start.wait(timeout=10)
            with audit_context(label=f"writer-{worker}"):
                for n in range(20):
                    services.record_create(
                        model=Institution, actor=None, fields={"code": f"w{worker}-{n}", "name": f"Site {worker}/{n}", "country": "DE"}
                    )
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create_sites, args=(w,)) for w in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert not errors, errors
    assert Institution.objects.filter(code__startswith="w").count() == 40
    assert list(AuditEvent.objects.values_list("seq", flat=True)) == list(range(1, 41))
    assert {e.actor_username for e in AuditEvent.objects.all()} == {"writer-1", "writer-2"}
    verdict = audit_verify_chain()
    assert verdict.ok, verdict
    assert verdict.checked == 40 == AuditHead.objects.get().seq
