"""What the owner of the database can do behind the application's back: switch a table's triggers
off, change its rows with raw SQL, and switch them on again. The tamper tests use it to show that
what the triggers would have refused is still found afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

# The row triggers of the audit tables (core migration 0002, PostgreSQL only).
AUDIT_ROW_TRIGGERS = {"compliance_auditevent": ("compliance_auditevent_append_only",), "compliance_audithead": ("compliance_audithead_forward_only",)}


@contextmanager
def triggers_off(table: str, *names: str) -> Iterator[None]:
    """Disable ``table``'s triggers ``names`` for the block, then enable them again.

    PostgreSQL: ``ALTER TABLE ... DISABLE TRIGGER``, which a table owner may run. SQLite cannot
    disable a trigger, so it is dropped and created again from its stored SQL. Either way it is
    part of the test's transaction when there is one. Django's foreign keys are checked at
    commit, and PostgreSQL alters no table with such checks pending, so they are run first.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE waits for no deferred foreign-key check of the test's transaction
            for name in names:
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {name}")
            saved = []
        else:
            cursor.execute(
                f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s AND name IN ({', '.join(['%s'] * len(names))})",
                [table, *names],
            )
            saved = cursor.fetchall()
            for name, _ in saved:
                cursor.execute(f"DROP TRIGGER {name}")
    yield
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for name in names:
                cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {name}")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        for _, sql in saved:
            cursor.execute(sql)


@contextmanager
def audit_triggers_off() -> Iterator[None]:
    """The audit tables' append-only row triggers off for the block."""
    with triggers_off("compliance_auditevent", *AUDIT_ROW_TRIGGERS["compliance_auditevent"]):
        with triggers_off("compliance_audithead", *AUDIT_ROW_TRIGGERS["compliance_audithead"]):
            yield


def owner_sql(sql: str, params: list | None = None) -> None:
    """Run ``sql`` as the database owner would: with the audit tables' triggers off."""
    with audit_triggers_off(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])
