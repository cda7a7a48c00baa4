"""Chain verification and ``manage.py verify_audit``: tampering done behind the ORM's back is found and named."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from compliance.management.commands.verify_audit import Command as VerifyAudit
from core.audit import audit_record, audit_verify_chain, event_hash, hashed_fields
from core.models import AuditEvent, AuditHead
from registry import services
from registry.models import Institution

TABLE = AuditEvent._meta.db_table


def raw_sql(sql: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql.replace("{table}", connection.ops.quote_name(TABLE)), params or [])


def rehashed(at: int, **changes) -> tuple[AuditEvent, str]:
    """The row ``#at`` with ``changes`` applied, and the hash it would then have."""
    event = AuditEvent.objects.get(seq=at)
    for name, value in changes.items():
        setattr(event, name, value)
    return event, event_hash(hashed_fields(event))


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
    forged.hash = event_hash(hashed_fields(forged))
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

    assert out.getvalue().strip() == f"Audit chain intact: {chain} events verified."
    assert err.getvalue() == ""


@pytest.mark.django_db
def test_command_on_an_empty_trail(db):
    out = StringIO()
    call_command("verify_audit", stdout=out)
    assert out.getvalue().strip() == "Audit chain intact: 0 events verified."


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
    assert capsys.readouterr().out.strip() == "Audit chain intact: 3 events verified."

    raw_sql("DELETE FROM {table} WHERE seq = %s", [2])
    with pytest.raises(SystemExit) as exited:
        VerifyAudit().run_from_argv(["manage.py", "verify_audit"])

    assert exited.value.code not in (0, None)
    captured = capsys.readouterr()
    assert "Audit chain broken at event #2: event #2 is missing" in captured.err
    assert captured.out == ""
