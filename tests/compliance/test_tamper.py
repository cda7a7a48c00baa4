"""Tampering by someone with write access to the database (and its owner's right to switch
triggers off) or to the file storage: each attack is made as such a person would make it, and
each is found, by the keyed chain, the checkpoints outside the database, verify_signatures or
the download's check of the stored bytes."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from compliance.choices import DocumentKind
from compliance.documents import Rendered, document_store
from compliance.dossiers import dossier_open
from compliance.models import Dossier
from core.audit import audit_checkpoint_write, audit_verify_chain, event_hash, hashed_fields
from core.audit_checkpoints import checkpoint_path
from core.errors import ImmutableRecord
from core.models import AuditEvent, AuditHead
from radtrust_engine.hashing import canonical_sha256
from registry import services
from tests.tampering import owner_sql, triggers_off

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain(institutions) -> int:
    """A keyed chain of a few events; returns its length."""
    for n in range(3):
        services.record_update(instance=institutions["north"], fields={"address": f"{n} Main Street"})
    count = AuditEvent.objects.count()
    assert count >= 6 and AuditEvent.objects.filter(key_id="").count() == 0
    return count


def rewind_head_to(seq: int) -> None:
    """Set the head row to event ``seq``, as the owner can with the triggers off."""
    owner_sql("UPDATE compliance_audithead SET seq = %s, hash = %s WHERE id = 1", [seq, AuditEvent.objects.get(seq=seq).hash])


def rewrite_from(seq: int, *, object_repr: str, rehash, key_id: str | None = None) -> None:
    """Change event ``seq``'s text, then recompute its hash and every later link and hash with
    ``rehash(event)``, and move the head along: a chain consistent in itself."""
    prev_hash = AuditEvent.objects.get(seq=seq - 1).hash if seq > 1 else "0" * 64
    for event in AuditEvent.objects.filter(seq__gte=seq).order_by("seq"):
        if event.seq == seq:
            event.object_repr = object_repr
        if key_id is not None:
            event.key_id = key_id
        event.prev_hash = prev_hash
        event.hash = rehash(event)
        owner_sql(
            "UPDATE compliance_auditevent SET object_repr = %s, key_id = %s, prev_hash = %s, hash = %s WHERE id = %s",
            [event.object_repr, event.key_id, event.prev_hash, event.hash, event.pk],
        )
        prev_hash = event.hash
    newest = AuditEvent.objects.order_by("-seq").first()
    owner_sql("UPDATE compliance_audithead SET seq = %s, hash = %s WHERE id = 1", [newest.seq, newest.hash])


def unkeyed(event: AuditEvent) -> str:
    """The hash formula of the chain before keys: anyone can compute it."""
    return canonical_sha256(hashed_fields(event))


def verify_without_checkpoints(settings, tmp_path):
    """What the chain and its head row prove alone, with no checkpoint to compare."""
    kept = settings.RADTRUST_AUDIT_CHECKPOINT_DIR
    settings.RADTRUST_AUDIT_CHECKPOINT_DIR = tmp_path / "no-checkpoints"
    try:
        return audit_verify_chain()
    finally:
        settings.RADTRUST_AUDIT_CHECKPOINT_DIR = kept


# --- Removing the newest events and rewinding the head -------------------------------------------


@pytest.mark.parametrize("removed", [1, 3])
def test_deleting_the_newest_events_and_rewinding_the_head_is_found_by_the_checkpoint(chain, removed, settings, tmp_path):
    assert audit_checkpoint_write().seq == chain
    owner_sql("DELETE FROM compliance_auditevent WHERE seq > %s", [chain - removed])
    rewind_head_to(chain - removed)

    assert verify_without_checkpoints(settings, tmp_path).ok  # the chain and the head agree: only the checkpoint knows
    verdict = audit_verify_chain()
    assert not verdict.ok
    assert verdict.broken_seq == chain - removed + 1
    assert f"the chain ends at #{chain - removed}" in verdict.reason and f"records #{chain}" in verdict.reason and "removed" in verdict.reason
    with pytest.raises(CommandError, match=f"Audit chain broken at event #{chain - removed + 1}: .*events were removed and the head rewound"):
        call_command("verify_audit", stdout=StringIO())


def test_a_truncated_trail_is_found_by_the_checkpoint(chain, settings, tmp_path):
    audit_checkpoint_write()
    if connection.vendor == "postgresql":
        owner_sql("TRUNCATE compliance_auditevent, compliance_audithead")  # its TRUNCATE triggers are off in the test database
    else:
        owner_sql("DELETE FROM compliance_auditevent")
        owner_sql("DELETE FROM compliance_audithead")
    assert AuditEvent.objects.count() == 0 and not AuditHead.objects.exists()

    assert verify_without_checkpoints(settings, tmp_path).ok  # an empty trail with no head looks like a new one
    verdict = audit_verify_chain()
    assert (verdict.ok, verdict.broken_seq) == (False, 1)
    assert f"the chain ends at #0 but checkpoint line 1 (event #{chain}" in verdict.reason


def test_removed_events_replaced_by_new_ones_are_found_as_rewritten(chain, institutions):
    """Remove the newest event after its checkpoint, then let the application write a new #N: the checkpoint's hash for #N differs."""
    audit_checkpoint_write()
    owner_sql("DELETE FROM compliance_auditevent WHERE seq = %s", [chain])
    rewind_head_to(chain - 1)
    services.record_update(instance=institutions["south"], fields={"address": "Replaced"})
    assert AuditEvent.objects.count() == chain

    verdict = audit_verify_chain()
    assert (verdict.ok, verdict.broken_seq) == (False, chain)
    assert "records another hash" in verdict.reason


# --- Changing an event and recomputing every later hash ----------------------------------------------


def test_an_event_rehashed_with_the_unkeyed_formula_is_found_where_it_was_changed(chain, settings, tmp_path):
    rewrite_from(3, object_repr="Nothing happened here", rehash=unkeyed)

    verdict = verify_without_checkpoints(settings, tmp_path)  # no checkpoint needed: the key is
    assert (verdict.ok, verdict.broken_seq) == (False, 3)
    assert "altered" in verdict.reason


def test_events_rewritten_as_unkeyed_after_a_keyed_one_are_found(chain, settings, tmp_path):
    """Dropping the key ids to pass the events off as written before keys does not work either."""
    rewrite_from(3, object_repr="Nothing happened here", rehash=unkeyed, key_id="")

    verdict = verify_without_checkpoints(settings, tmp_path)
    assert (verdict.ok, verdict.broken_seq) == (False, 3)
    assert "unkeyed hash after keyed event #1" in verdict.reason


def test_a_whole_chain_rewritten_as_unkeyed_is_found_by_the_checkpoint(chain, settings, tmp_path):
    audit_checkpoint_write()
    rewrite_from(1, object_repr="Nothing happened here", rehash=unkeyed, key_id="")

    assert verify_without_checkpoints(settings, tmp_path).ok  # consistent, and unkeyed from the start: like a trail from before keys
    verdict = audit_verify_chain()
    assert (verdict.ok, verdict.broken_seq) == (False, chain)
    assert "checkpoint line 1" in verdict.reason and "records another hash" in verdict.reason and "rewritten" in verdict.reason


def test_a_rewrite_by_a_key_holder_is_found_by_the_checkpoint(chain, settings, tmp_path):
    """Even with the key, the hashes recomputed after a change are not the ones checkpointed."""
    audit_checkpoint_write()
    rewrite_from(2, object_repr="Nothing happened here", rehash=event_hash)

    assert verify_without_checkpoints(settings, tmp_path).ok
    verdict = audit_verify_chain()
    assert (verdict.ok, verdict.broken_seq) == (False, chain)
    assert "records another hash" in verdict.reason


def test_an_edited_checkpoint_file_is_refused_whole(chain):
    audit_checkpoint_write()
    path = checkpoint_path()
    record = json.loads(path.read_text())
    record["seq"] = chain - 2  # claims an older head, to allow removing the newest events
    path.write_text(json.dumps(record) + "\n")

    verdict = audit_verify_chain()
    assert (verdict.ok, verdict.broken_seq) == (False, None)
    assert verdict.reason == "checkpoint line 1 does not carry a valid signature: the checkpoint file was edited"
    with pytest.raises(CommandError, match="Audit checkpoints unusable: checkpoint line 1 does not carry a valid signature"):
        call_command("verify_audit", stdout=StringIO())


# --- Database triggers (PostgreSQL) and model refusals --------------------------------------------


def _refused(sql: str, params: list | None = None) -> str:
    with pytest.raises(IntegrityError) as caught, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])
    return str(caught.value)


@pytest.mark.postgres
def test_the_audit_tables_refuse_changes_below_the_orm(chain):
    event = AuditEvent.objects.get(seq=2)
    with pytest.raises(ImmutableRecord):
        event.delete()
    with pytest.raises(ImmutableRecord):
        AuditEvent.objects.filter(seq=2).update(object_repr="x")
    if connection.vendor != "postgresql":
        return  # SQLite: the models' refusals only (core migration 0002)
    assert "append-only: UPDATE on compliance_auditevent" in _refused("UPDATE compliance_auditevent SET object_repr = 'x' WHERE seq = 2")
    assert "append-only: DELETE on compliance_auditevent" in _refused("DELETE FROM compliance_auditevent WHERE seq = %s", [chain])
    assert "cannot be deleted" in _refused("DELETE FROM compliance_audithead")
    previous = AuditEvent.objects.get(seq=chain - 1)
    assert "only moves forward" in _refused("UPDATE compliance_audithead SET seq = %s, hash = %s", [previous.seq, previous.hash])
    assert "only moves forward" in _refused("UPDATE compliance_audithead SET seq = %s, hash = %s", [chain + 1, "a" * 64])
    forged = AuditEvent.objects.get(seq=chain)  # appended behind the chain writer's back: the head may only take its own hash
    forged.pk, forged._state.adding, forged.seq, forged.prev_hash, forged.hash = None, True, chain + 1, forged.hash, "b" * 64
    forged.save()
    assert "only moves forward" in _refused("UPDATE compliance_audithead SET seq = %s, hash = %s", [chain + 1, "c" * 64])
    for table in ("compliance_auditevent", "compliance_audithead"):
        with transaction.atomic():  # the test database runs with the TRUNCATE triggers off (tests/conftest.py): on for this check
            with connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_no_truncate")
            assert f"append-only: TRUNCATE on {table}" in _refused(f"TRUNCATE {table}")
            transaction.set_rollback(True)
    assert AuditEvent.objects.count() == chain + 1 and AuditHead.objects.get().seq == chain


# --- A signed snapshot edited with the triggers off ---------------------------------------------------


@pytest.mark.postgres
def test_a_signed_snapshot_edited_with_the_triggers_off_is_found(sign_dossier, evidenced):
    dossier = sign_dossier(evidenced)
    out = StringIO()
    call_command("verify_signatures", stdout=out)
    assert "All 1 signed dossiers match their signature." in out.getvalue()

    snapshot = dossier.snapshot
    snapshot["values"]["1a_purpose_statement"] = "Rewritten after signing."
    with triggers_off("compliance_dossier", "compliance_dossier_signed_immutable"), connection.cursor() as cursor:
        cursor.execute("UPDATE compliance_dossier SET snapshot = %s WHERE id = %s", [json.dumps(snapshot), dossier.pk])
    dossier.refresh_from_db()
    assert dossier.snapshot["values"]["1a_purpose_statement"] == "Rewritten after signing."  # the edit went through, triggers back on

    out = StringIO()
    with pytest.raises(CommandError, match="1 of 1 signed dossiers do not match their signature"):
        call_command("verify_signatures", stdout=out)
    assert out.getvalue().startswith(f"dossier {dossier.pk} (version {evidenced.pk}, revision 1): its snapshot no longer hashes to the signed ")
    assert "altered after signing" in out.getvalue()


@pytest.mark.postgres
def test_a_signed_dossier_reopened_with_the_triggers_off_is_found(sign_dossier, evidenced):
    dossier = sign_dossier(evidenced)
    with triggers_off("compliance_dossier", "compliance_dossier_signed_immutable"), connection.cursor() as cursor:
        cursor.execute("UPDATE compliance_dossier SET status = 'draft' WHERE id = %s", [dossier.pk])
    assert Dossier.objects.get(pk=dossier.pk).status == "draft"

    out = StringIO()
    with pytest.raises(CommandError, match="1 of 1 signed dossiers"):
        call_command("verify_signatures", stdout=out)
    assert "its status is draft: it was reopened after signing" in out.getvalue()


# --- A stored document altered in storage --------------------------------------------------------


PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture
def stored_pdf(personas, deployed):
    dossier = dossier_open(actor=personas["officer"], version=deployed["version"])
    return document_store(actor=personas["officer"], dossier=dossier, rendered=Rendered(DocumentKind.TECHNICAL_DOCUMENTATION, PDF, "pdf", pages=1))


def _alter(document, how: str) -> None:
    with default_storage.open(document.storage_name, "rb") as handle:
        data = handle.read()
    data = data + b"\n% appended after signing\n" if how == "append" else data.replace(b"Catalog", b"Catalgo")
    with default_storage.open(document.storage_name, "wb") as handle:
        handle.write(data)


@pytest.mark.parametrize("how", ["append", "same size"])
def test_an_altered_document_is_refused_by_the_api_download(stored_pdf, personas, api_client, how):
    client = api_client(personas["auditor"])
    url = f"/api/documents/{stored_pdf.pk}/download/"
    response = client.get(url)
    assert response.status_code == 200 and b"".join(response.streaming_content) == PDF

    _alter(stored_pdf, how)
    response = client.get(url)
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "document_altered" and "no longer matches the sha256" in body["detail"]
    assert stored_pdf.storage_name not in body["detail"] and "ETag" not in response
    with pytest.raises(CommandError, match="1 of 1 stored documents are missing or altered"):
        call_command("verify_documents", stdout=StringIO())


def test_an_altered_document_is_refused_by_the_download_page(stored_pdf, personas, client):
    client.force_login(personas["auditor"])
    url = reverse("pages:document-download", args=[stored_pdf.pk])
    assert client.get(url).status_code == 200

    _alter(stored_pdf, "append")
    response = client.get(url)
    assert response.status_code == 409
    page = response.content.decode()
    assert "no longer matches the sha256 recorded when it was rendered, so it is not served" in page
    assert "%PDF" not in page and stored_pdf.storage_name not in page
    assert response["Content-Type"].startswith("text/html")


def test_a_missing_document_file_is_still_not_found(stored_pdf, personas, api_client):
    default_storage.delete(stored_pdf.storage_name)
    assert api_client(personas["auditor"]).get(f"/api/documents/{stored_pdf.pk}/download/").status_code == 404
