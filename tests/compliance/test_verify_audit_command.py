"""Chain verification and ``manage.py verify_audit``: tampering done behind the ORM's back is found and named;
keyed events, key rotation, events from before keys, and the checkpoints outside the database."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from compliance.management.commands.verify_audit import Command as VerifyAudit
from core.audit import GENESIS_HASH, audit_checkpoint_write, audit_record, audit_verify_chain, event_hash, hashed_fields
from core.audit_checkpoints import checkpoint_path
from core.errors import Conflict
from core.models import AuditEvent, AuditHead
from core.tasks import audit_checkpoint as audit_checkpoint_task
from radtrust_engine.hashing import canonical_hmac_sha256, canonical_sha256
from registry import services
from registry.models import Institution
from tests.tampering import owner_sql

TABLE = AuditEvent._meta.db_table


def raw_sql(sql: str, params: list | None = None) -> None:
    """Tamper as the database owner: the append-only triggers off (PostgreSQL), then raw SQL."""
    owner_sql(sql.replace("{table}", connection.ops.quote_name(TABLE)), params)


def rehashed(at: int, **changes) -> tuple[AuditEvent, str]:
    """The row ``#at`` with ``changes`` applied, and the hash it would then have."""
    event = AuditEvent.objects.get(seq=at)
    for name, value in changes.items():
        setattr(event, name, value)
    return event, event_hash(event)


@pytest.fixture
def chain(institutions) -> int:
    """A chain of a few events (the institutions' creates plus edits); returns its length."""
    for n in range(3):
        services.record_update(instance=institutions["north"], fields={"address": f"{n} Main Street"})
    count = AuditEvent.objects.count()
    assert count >= 6
    return count


# --- audit_verify_chain ------------------------------------------------------------------


@pytest.mark.django_db
def test_an_empty_trail_verifies():
    verdict = audit_verify_chain()
    assert (verdict.ok, verdict.checked, verdict.broken_seq) == (True, 0, None)


@pytest.mark.django_db
def test_an_intact_chain_verifies(chain):
    verdict = audit_verify_chain()
    assert verdict.ok, verdict
    assert verdict.checked == chain == AuditHead.objects.get().seq


@pytest.mark.django_db
@pytest.mark.parametrize(
    "column, value",
    [("object_repr", "Nothing to see"), ("actor_username", "someone-else"), ("action", "delete"), ("changes", '{"address": ["", "forged"]}')],
)
def test_a_field_altered_with_raw_sql_is_found(chain, column, value):
    raw_sql(f"UPDATE {{table}} SET {connection.ops.quote_name(column)} = %s WHERE seq = %s", [value, 4])

    verdict = audit_verify_chain()
    assert not verdict.ok
    assert verdict.broken_seq == 4
    assert "altered" in verdict.reason
    assert verdict.checked == 3


@pytest.mark.django_db
def test_an_altered_timestamp_is_found(chain):
    raw_sql("UPDATE {table} SET occurred_at = %s WHERE seq = %s", ["2020-01-01 00:00:00", 2])
    assert (audit_verify_chain().ok, audit_verify_chain().broken_seq) == (False, 2)


@pytest.mark.django_db
def test_a_replaced_hash_is_found(chain):
    raw_sql("UPDATE {table} SET hash = %s WHERE seq = %s", ["a" * 64, chain])
    verdict = audit_verify_chain()
    assert (verdict.ok, verdict.broken_seq) == (False, chain)


@pytest.mark.django_db
def test_a_deleted_middle_row_is_found(chain):
    raw_sql("DELETE FROM {table} WHERE seq = %s", [3])

    verdict = audit_verify_chain()
    assert not verdict.ok
    assert verdict.broken_seq == 3
    assert "missing" in verdict.reason


@pytest.mark.django_db
def test_a_deleted_first_row_is_found(chain):
    raw_sql("DELETE FROM {table} WHERE seq = 1")
    verdict = audit_verify_chain()
    assert (verdict.ok, verdict.broken_seq) == (False, 1)


@pytest.mark.django_db
def test_deleted_last_rows_are_found_through_the_head(chain):
    raw_sql("DELETE FROM {table} WHERE seq > %s", [chain - 2])

    verdict = audit_verify_chain()
    assert not verdict.ok
    assert verdict.broken_seq == chain - 1
    assert "removed" in verdict.reason
    assert str(chain) in verdict.reason


@pytest.mark.django_db
def test_an_emptied_trail_is_found_through_the_head(chain):
    raw_sql("DELETE FROM {table}")
    verdict = audit_verify_chain()
    assert (verdict.ok, verdict.broken_seq) == (False, 1)


@pytest.mark.django_db
def test_a_row_appended_behind_the_head_is_found(chain):
    last = AuditEvent.objects.get(seq=chain)
    forged, _ = rehashed(chain, seq=chain + 1, prev_hash=last.hash, object_repr="appended")
    forged.pk, forged._state.adding = None, True
    forged.hash = event_hash(forged)
    forged.save()  # a well-formed, correctly linked event that audit_record did not write

    verdict = audit_verify_chain()
    assert not verdict.ok
    assert verdict.broken_seq == chain + 1


@pytest.mark.django_db
def test_a_rewritten_row_with_a_recomputed_hash_breaks_the_next_link(chain):
    _, new_hash = rehashed(3, object_repr="Rewritten")
    raw_sql("UPDATE {table} SET object_repr = %s, hash = %s WHERE seq = %s", ["Rewritten", new_hash, 3])

    verdict = audit_verify_chain()
    assert not verdict.ok
    assert verdict.broken_seq == 4
    assert "link" in verdict.reason


@pytest.mark.django_db
def test_a_forged_row_with_a_wrong_link_is_found_at_that_row(chain):
    _, new_hash = rehashed(3, prev_hash="b" * 64, object_repr="Forged")
    raw_sql("UPDATE {table} SET prev_hash = %s, object_repr = %s, hash = %s WHERE seq = %s", ["b" * 64, "Forged", new_hash, 3])

    verdict = audit_verify_chain()
    assert (verdict.ok, verdict.broken_seq) == (False, 3)
    assert "link" in verdict.reason


@pytest.mark.django_db
def test_reordered_rows_are_found(chain):
    # Swap #2 and #3 and recompute both hashes for their new positions: the links give it away.
    two, three = AuditEvent.objects.get(seq=2), AuditEvent.objects.get(seq=3)
    _, hash_three_as_two = rehashed(3, seq=2)
    _, hash_two_as_three = rehashed(2, seq=3)
    raw_sql("UPDATE {table} SET seq = %s WHERE seq = %s", [10_000, 2])
    raw_sql("UPDATE {table} SET seq = %s, hash = %s WHERE id = %s", [2, hash_three_as_two, three.pk])
    raw_sql("UPDATE {table} SET seq = %s, hash = %s WHERE id = %s", [3, hash_two_as_three, two.pk])

    verdict = audit_verify_chain()
    assert (verdict.ok, verdict.broken_seq) == (False, 2)
    assert "link" in verdict.reason


@pytest.mark.django_db
def test_the_chain_stays_verifiable_across_value_types(institutions):
    """Numbers, nested JSON and unicode must read back from the database exactly as they were hashed."""
    site = institutions["north"]
    for changes in (
        {"thresholds": [None, {"a": 0.5, "b": 1e-7, "c": 2.0, "d": 1e16, "e": 1.5e300, "f": -0.0}]},
        {"counts": [1, 12345678901234567890]},
        {"text": ["Zürich", '東京 ✓ "quoted" \\ back']},
        {"nested": [[], [{"z": 1, "a": [True, False, None]}]]},
    ):
        audit_record(action="update", instance=site, changes=changes)

    verdict = audit_verify_chain()
    assert verdict.ok, verdict


# --- manage.py verify_audit ------------------------------------------------------------


@pytest.mark.django_db
def test_command_reports_an_intact_chain(chain):
    out, err = StringIO(), StringIO()
    call_command("verify_audit", stdout=out, stderr=err)

    assert out.getvalue().strip() == f"Audit chain intact: {chain} events verified against 0 checkpoints."
    assert "No checkpoint in" in err.getvalue() and "cannot be detected" in err.getvalue()

    audit_checkpoint_write()
    out, err = StringIO(), StringIO()
    call_command("verify_audit", stdout=out, stderr=err)
    assert out.getvalue().strip() == f"Audit chain intact: {chain} events verified against 1 checkpoint."
    assert err.getvalue() == ""


@pytest.mark.django_db
def test_command_on_an_empty_trail(db):
    out = StringIO()
    err = StringIO()
    call_command("verify_audit", stdout=out, stderr=err)
    assert out.getvalue().strip() == "Audit chain intact: 0 events verified against 0 checkpoints."
    assert err.getvalue() == ""


@pytest.mark.django_db
def test_command_names_the_first_broken_event(chain):
    raw_sql("UPDATE {table} SET object_repr = %s WHERE seq IN (%s, %s)", ["tampered", 2, 5])
    out = StringIO()

    with pytest.raises(CommandError) as raised:
        call_command("verify_audit", stdout=out)

    assert str(raised.value).startswith("Audit chain broken at event #2: ")
    assert "altered" in str(raised.value)
    assert "intact" not in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_command_line_exits_non_zero_and_writes_to_stderr(capsys):
    for code in ("aa", "bb", "cc"):
        services.record_create(model=Institution, actor=None, fields={"code": code, "name": code.upper(), "country": "DE"})
    VerifyAudit().run_from_argv(["manage.py", "verify_audit"])
    assert capsys.readouterr().out.strip() == "Audit chain intact: 3 events verified against 0 checkpoints."

    raw_sql("DELETE FROM {table} WHERE seq = %s", [2])
    with pytest.raises(SystemExit) as exited:
        VerifyAudit().run_from_argv(["manage.py", "verify_audit"])

    assert exited.value.code not in (0, None)
    captured = capsys.readouterr()
    assert "Audit chain broken at event #2: event #2 is missing" in captured.err
    assert captured.out == ""


# --- Keys: events from before keys, rotation ---------------------------------------------------------

KEYS = {name: bytes([n]) * 32 for n, name in enumerate(("k1", "k2", "k3"), start=1)}


@pytest.mark.django_db
def test_events_from_before_keys_verify_with_their_plain_hash_and_later_ones_are_keyed(settings):
    prev_hash = GENESIS_HASH
    for seq in (1, 2):  # as the chain wrote them before keys: no key id, a plain sha256
        event = AuditEvent(
            seq=seq,
            occurred_at=timezone.now(),
            actor_username="system",
            action="create",
            object_type="registry.institution",
            object_id=str(seq),
            object_repr=f"Old {seq}",
            changes={"n": [None, seq]},
            prev_hash=prev_hash,
        )
        event.hash = canonical_sha256(hashed_fields(event))
        event.save()
        prev_hash = event.hash
    AuditHead.objects.create(id=1, seq=2, hash=prev_hash)

    services.record_create(model=Institution, actor=None, fields={"code": "new", "name": "New", "country": "DE"})

    keyed = AuditEvent.objects.get(seq=3)
    current = next(iter(settings.RADTRUST_AUDIT_KEYS))
    assert keyed.key_id == current and keyed.prev_hash == prev_hash
    assert keyed.hash == canonical_hmac_sha256(hashed_fields(keyed), key=settings.RADTRUST_AUDIT_KEYS[current])
    assert hashed_fields(keyed)["key_id"] == current and "key_id" not in hashed_fields(AuditEvent.objects.get(seq=1))
    verdict = audit_verify_chain()
    assert (verdict.ok, verdict.checked) == (True, 3), verdict


@pytest.mark.django_db
def test_rotated_keys_verify_each_event_with_the_key_it_names(settings):
    settings.RADTRUST_AUDIT_KEYS = {"k1": KEYS["k1"]}
    for code in ("aa", "bb"):
        services.record_create(model=Institution, actor=None, fields={"code": code, "name": code, "country": "DE"})
    settings.RADTRUST_AUDIT_KEYS = {"k2": KEYS["k2"], "k1": KEYS["k1"]}  # rotated: the new key first, the old one kept
    for code in ("cc", "dd"):
        services.record_create(model=Institution, actor=None, fields={"code": code, "name": code, "country": "DE"})
    assert list(AuditEvent.objects.values_list("key_id", flat=True)) == ["k1", "k1", "k2", "k2"]
    assert audit_checkpoint_write().key_id == "k2"
    assert (audit_verify_chain().ok, audit_verify_chain().checkpoints) == (True, 1)

    settings.RADTRUST_AUDIT_KEYS = {"k2": KEYS["k2"]}  # the old key dropped while its events exist
    verdict = audit_verify_chain()
    assert (verdict.ok, verdict.broken_seq) == (False, 1)
    assert verdict.reason == "it is signed with key id 'k1' is not configured (RADTRUST_AUDIT_KEYS), so it cannot be verified"

    settings.RADTRUST_AUDIT_KEYS = {"k1": KEYS["k2"], "k2": KEYS["k2"]}  # a wrong secret under the right id
    assert (audit_verify_chain().broken_seq, "altered" in audit_verify_chain().reason) == (1, True)

    settings.RADTRUST_AUDIT_KEYS = {"k3": KEYS["k3"], "k1": KEYS["k1"]}  # the checkpoint's key is gone: the file is not trusted
    verdict = audit_verify_chain()
    assert (verdict.ok, verdict.broken_seq) == (False, None)
    assert "checkpoint line 1 is signed with key id 'k2' is not configured" in verdict.reason


# --- Checkpoints -----------------------------------------------------------------------------------


def checkpoint_lines() -> list[dict]:
    path = checkpoint_path()
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.django_db
def test_checkpoints_are_appended_when_the_head_has_moved(institutions, settings):
    assert AuditEvent.objects.exists()
    first = audit_checkpoint_write()
    head = AuditHead.objects.get()
    assert (first.seq, first.hash, first.key_id) == (head.seq, head.hash, next(iter(settings.RADTRUST_AUDIT_KEYS)))
    assert audit_checkpoint_write() is None  # the head has not moved
    services.record_update(instance=institutions["north"], fields={"address": "1 Main Street"})
    second = audit_checkpoint_write()
    assert second.seq == first.seq + 1

    lines = checkpoint_lines()
    assert [line["seq"] for line in lines] == [first.seq, second.seq]
    assert set(lines[0]) == {"schema", "seq", "hash", "key_id", "written_at", "mac"} and lines[0]["schema"] == "radtrust.audit-checkpoint.v1"
    assert audit_verify_chain().checkpoints == 2


@pytest.mark.django_db
def test_no_checkpoint_of_an_empty_trail():
    assert audit_checkpoint_write() is None and not checkpoint_path().exists()
    out = StringIO()
    call_command("audit_checkpoint", stdout=out)
    assert "No checkpoint written" in out.getvalue()


@pytest.mark.django_db
def test_no_checkpoint_is_written_over_a_head_that_is_not_the_newest_event(chain):
    previous = AuditEvent.objects.get(seq=chain - 1)
    owner_sql("UPDATE compliance_audithead SET seq = %s, hash = %s WHERE id = 1", [previous.seq, previous.hash])

    with pytest.raises(Conflict) as refused:
        audit_checkpoint_write()
    assert refused.value.code == "audit_head_mismatch"
    with pytest.raises(CommandError, match="The audit head does not name the newest event"):
        call_command("audit_checkpoint", stdout=StringIO())
    assert checkpoint_lines() == []


@pytest.mark.django_db
def test_the_command_and_the_beat_task_write_checkpoints(chain, institutions, settings):
    out = StringIO()
    call_command("audit_checkpoint", stdout=out)
    head = AuditHead.objects.get()
    assert out.getvalue().startswith(f"Checkpoint of event #{chain} ({head.hash}) signed with key ")
    services.record_update(instance=institutions["south"], fields={"address": "2 Main Street"})
    assert audit_checkpoint_task.apply().get() == chain + 1
    assert audit_checkpoint_task.apply().get() is None
    assert settings.CELERY_BEAT_SCHEDULE["core-audit-checkpoint"] == {
        "task": audit_checkpoint_task.name,
        "schedule": settings.RADTRUST_AUDIT_CHECKPOINT_SECONDS,
    }
    assert [line["seq"] for line in checkpoint_lines()] == [chain, chain + 1]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "line, reason",
    [
        ("not json", "checkpoint line 2 is not a checkpoint (unreadable JSON or missing fields)"),
        ('{"seq": 1}', "checkpoint line 2 is not a checkpoint (unreadable JSON or missing fields)"),
        (
            '{"schema": "other", "seq": 1, "hash": "' + "a" * 64 + '", "key_id": "k1", "written_at": "", "mac": ""}',
            "checkpoint line 2 is not a checkpoint of schema radtrust.audit-checkpoint.v1",
        ),
    ],
)
def test_a_checkpoint_file_with_a_line_that_is_not_a_checkpoint_fails(chain, line, reason):
    audit_checkpoint_write()
    with checkpoint_path().open("a") as handle:
        handle.write(line + "\n")
    verdict = audit_verify_chain()
    assert (verdict.ok, verdict.broken_seq, verdict.reason) == (False, None, reason)
