"""The database triggers behind ``NeverEdited``, for migrations: raw SQL cannot change an
append-only row either.

PostgreSQL refuses UPDATE and DELETE; SQLite refuses UPDATE (Django's test flush empties SQLite
tables with DELETE, see compliance migration 0007). On SQLite, adding a column with a default
rebuilds the table and drops its triggers, so a migration that does so creates them again
(``append_only_restore``).
"""

from __future__ import annotations

from collections.abc import Mapping


def append_only_statements(vendor: str, tables: Mapping[str, str]) -> list[tuple[str, str]]:
    """(create, drop) per statement for each table and the message its refusal gives."""
    statements = []
    for table, message in tables.items():
        if vendor == "postgresql":
            statements += [
                (
                    f"""CREATE FUNCTION {table}_refuse_change() RETURNS trigger AS $$
                    BEGIN
                        RAISE EXCEPTION '{table} %: {message}', OLD.id USING ERRCODE = 'integrity_constraint_violation';
                    END $$ LANGUAGE plpgsql""",
                    f"DROP FUNCTION {table}_refuse_change()",
                ),
                (
                    f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_refuse_change()",
                    f"DROP TRIGGER {table}_immutable ON {table}",
                ),
            ]
        elif vendor == "sqlite":
            statements.append(
                (
                    f"CREATE TRIGGER {table}_immutable BEFORE UPDATE ON {table} FOR EACH ROW BEGIN SELECT RAISE(ABORT, '{message}'); END;",
                    f"DROP TRIGGER {table}_immutable;",
                )
            )
    return statements


def append_only_run(schema_editor, tables: Mapping[str, str], *, forward: bool) -> None:
    """Create (``forward``) or drop the triggers of ``tables``."""
    statements = append_only_statements(schema_editor.connection.vendor, tables)
    for create, drop in statements if forward else reversed(statements):
        schema_editor.execute(create if forward else drop, params=None)


def append_only_restore(schema_editor, tables: Mapping[str, str]) -> None:
    """Create again, on SQLite, the triggers a table rebuild dropped (PostgreSQL keeps them)."""
    if schema_editor.connection.vendor != "sqlite":
        return
    for create, _ in append_only_statements("sqlite", tables):
        schema_editor.execute(create.replace("CREATE TRIGGER", "CREATE TRIGGER IF NOT EXISTS", 1), params=None)
