"""Audit events about personal data pseudonymised after their retention: the chain still verifies,
tampering is still found, and pseudonymisation is the one update the trail lets through (core.audit)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, models, transaction
from django.utils import timezone

from compliance.feedback import feedback_submit
from core.audit import audit_pseudonymise, audit_verify_chain, event_hash, personal_digest
from core.errors import ImmutableRecord
from core.models import AuditEvent
from registry import services
from tests.factories import DeploymentFactory
from tests.tampering import owner_sql

pytestmark = pytest.mark.django_db


@pytest.fixture
def feedback_events(personas, institutions) -> list[AuditEvent]:
    """An institution's edit (not personal) and two clinician reports (personal) in the chain."""
    services.record_update(instance=institutions["north"], fields={"address": "1 Main Street"})
    deployment = DeploymentFactory(institution=institutions["north"])
    for case in ("CASE-1a2b", "CASE-9f8e"):
        feedback_submit(actor=personas["clinician_north"], deployment=deployment, case_reference=case, model_output="positive", agreement="agree")
    events = list(AuditEvent.objects.filter(object_type="compliance.feedback").order_by("seq"))
    assert len(events) == 2
    return events


def test_events_about_personal_data_hash_their_personal_fields_apart(feedback_events):
    for event in feedback_events:
        assert event.personal_hash == personal_digest(event) and len(event.personal_salt) == 32
        assert event.changes["case_reference"][1].startswith("CASE-")
    assert not AuditEvent.objects.filter(object_type="registry.institution").exclude(personal_hash="").exists()
    assert audit_verify_chain().ok


def test_pseudonymised_events_lose_their_personal_fields_and_the_chain_still_verifies(feedback_events):
    hashes = dict(AuditEvent.objects.values_list("seq", "hash"))
    assert audit_pseudonymise(before=timezone.now() + timedelta(seconds=1)) == 2
    for event in AuditEvent.objects.filter(object_type="compliance.feedback"):
        assert (event.changes, event.object_repr, event.personal_salt) == ({}, "", "")
        assert event.pseudonymised_at is not None and event.hash == hashes[event.seq]
    institution = AuditEvent.objects.get(object_type="registry.institution", action="update")
    assert institution.changes  # events not about personal data keep their content
    record = AuditEvent.objects.get(action="pseudonymise")
    assert record.changes["events"] == 2
    verdict = audit_verify_chain()
    assert verdict.ok, verdict.reason
    assert audit_pseudonymise(before=timezone.now()) == 0  # done once


def test_events_within_their_retention_are_kept(feedback_events, settings):
    settings.RADTRUST_AUDIT_PERSONAL_RETENTION_DAYS = 183
    assert audit_pseudonymise() == 0
    assert all(e.changes for e in AuditEvent.objects.filter(object_type="compliance.feedback"))


def test_altered_personal_fields_are_found_before_pseudonymisation(feedback_events):
    target = feedback_events[0]
    owner_sql("UPDATE compliance_auditevent SET object_repr = %s WHERE id = %s", ["CASE-0000 (forged)", target.pk])
    verdict = audit_verify_chain()
    assert not verdict.ok and verdict.broken_seq == target.seq and "personal fields were altered" in verdict.reason


def test_a_forged_personal_hash_is_found(feedback_events):
    target = feedback_events[1]
    event = AuditEvent.objects.get(pk=target.pk)
    event.object_repr = "forged"
    owner_sql("UPDATE compliance_auditevent SET object_repr = %s, personal_hash = %s WHERE id = %s", ["forged", personal_digest(event), event.pk])
    verdict = audit_verify_chain()
    assert not verdict.ok and verdict.broken_seq == target.seq and "content was altered" in verdict.reason


def test_tampering_with_a_pseudonymised_event_is_found(feedback_events):
    audit_pseudonymise(before=timezone.now() + timedelta(seconds=1))
    target = AuditEvent.objects.get(pk=feedback_events[0].pk)
    owner_sql("UPDATE compliance_auditevent SET action = 'delete' WHERE id = %s", [target.pk])
    verdict = audit_verify_chain()
    assert not verdict.ok and verdict.broken_seq == target.seq


def test_events_hashed_the_old_way_still_verify(feedback_events):
    """An event written before personal hashes (none) is hashed over its changes and description, as it was."""
    old = AuditEvent.objects.get(object_type="registry.institution", action="update")
    assert old.personal_hash == "" and "address" in old.changes
    assert event_hash(old) == old.hash
    assert audit_verify_chain().ok


@pytest.mark.postgres
def test_pseudonymisation_is_the_only_update_the_trail_lets_through(feedback_events):
    with pytest.raises(ImmutableRecord):
        AuditEvent.objects.filter(pk=feedback_events[0].pk).update(changes={})
    if connection.vendor != "postgresql":
        return  # SQLite: the models' refusals only (core migration 0002)
    target = feedback_events[0].pk
    attempts = [
        (
            "UPDATE compliance_auditevent SET changes = '{}'::jsonb, object_repr = '', personal_salt = '', pseudonymised_at = now() WHERE id = %s",
            False,
        ),
        (
            "UPDATE compliance_auditevent SET changes = '{\"x\": 1}'::jsonb, object_repr = '', personal_salt = '', pseudonymised_at = now() WHERE id = %s",
            True,
        ),
        (
            "UPDATE compliance_auditevent SET changes = '{}'::jsonb, object_repr = '', personal_salt = '', pseudonymised_at = now(), action = 'x' WHERE id = %s",
            True,
        ),
    ]
    for sql, with_flag in attempts:
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            if with_flag:
                cursor.execute("SELECT set_config('radtrust.audit_pseudonymise', 'on', true)")
            cursor.execute(sql, [target])
    assert audit_pseudonymise(before=timezone.now() + timedelta(seconds=1)) == 2
    assert audit_verify_chain().ok
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM compliance_auditevent WHERE id = %s", [target])
    assert models.QuerySet.count(AuditEvent.objects.all()) > 0
