"""Database triggers behind the ORM's refusals, so that raw SQL cannot change a signed dossier,
a signature or a stored document either.

PostgreSQL refuses UPDATE and DELETE (a document: DELETE before its retention date); its
TRUNCATE, which only a database owner's maintenance runs, fires no row trigger. SQLite, the
embedded demo database, refuses UPDATE; deletion there is refused by the models alone,
because Django's test flush deletes rows one by one and a trigger would block it.
"""

from django.db import migrations

POSTGRES = [
    (
        """CREATE FUNCTION compliance_refuse_signed_dossier() RETURNS trigger AS $$
        BEGIN
            IF OLD.status = 'signed' THEN
                RAISE EXCEPTION 'Dossier %: a signed dossier cannot be changed or deleted; open a new revision.', OLD.id
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql""",
        "DROP FUNCTION compliance_refuse_signed_dossier()",
    ),
    (
        "CREATE TRIGGER compliance_dossier_signed_immutable BEFORE UPDATE OR DELETE ON compliance_dossier "
        "FOR EACH ROW EXECUTE FUNCTION compliance_refuse_signed_dossier()",
        "DROP TRIGGER compliance_dossier_signed_immutable ON compliance_dossier",
    ),
    (
        """CREATE FUNCTION compliance_refuse_signature_change() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION 'Signature %: a signature cannot be changed or deleted.', OLD.id USING ERRCODE = 'integrity_constraint_violation';
        END $$ LANGUAGE plpgsql""",
        "DROP FUNCTION compliance_refuse_signature_change()",
    ),
    (
        "CREATE TRIGGER compliance_dossiersignature_immutable BEFORE UPDATE OR DELETE ON compliance_dossiersignature "
        "FOR EACH ROW EXECUTE FUNCTION compliance_refuse_signature_change()",
        "DROP TRIGGER compliance_dossiersignature_immutable ON compliance_dossiersignature",
    ),
    (
        """CREATE FUNCTION compliance_refuse_document_change() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                RAISE EXCEPTION 'Document %: a stored document is never edited.', OLD.id USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            IF OLD.retain_until > CURRENT_DATE THEN
                RAISE EXCEPTION 'Document %: kept until %, it cannot be deleted before.', OLD.id, OLD.retain_until
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            RETURN OLD;
        END $$ LANGUAGE plpgsql""",
        "DROP FUNCTION compliance_refuse_document_change()",
    ),
    (
        "CREATE TRIGGER compliance_document_immutable BEFORE UPDATE OR DELETE ON compliance_document "
        "FOR EACH ROW EXECUTE FUNCTION compliance_refuse_document_change()",
        "DROP TRIGGER compliance_document_immutable ON compliance_document",
    ),
]

SQLITE = [
    (
        "CREATE TRIGGER compliance_dossier_signed_immutable BEFORE UPDATE ON compliance_dossier FOR EACH ROW WHEN OLD.status = 'signed' "
        "BEGIN SELECT RAISE(ABORT, 'A signed dossier cannot be changed; open a new revision.'); END;",
        "DROP TRIGGER compliance_dossier_signed_immutable;",
    ),
    (
        "CREATE TRIGGER compliance_dossiersignature_immutable BEFORE UPDATE ON compliance_dossiersignature FOR EACH ROW "
        "BEGIN SELECT RAISE(ABORT, 'A signature cannot be changed.'); END;",
        "DROP TRIGGER compliance_dossiersignature_immutable;",
    ),
    (
        "CREATE TRIGGER compliance_document_immutable BEFORE UPDATE ON compliance_document FOR EACH ROW "
        "BEGIN SELECT RAISE(ABORT, 'A stored document is never edited.'); END;",
        "DROP TRIGGER compliance_document_immutable;",
    ),
]


def _run(apps, schema_editor, *, forward: bool) -> None:
    statements = {"postgresql": POSTGRES, "sqlite": SQLITE}.get(schema_editor.connection.vendor, [])
    for create, drop in statements if forward else reversed(statements):
        schema_editor.execute(create if forward else drop, params=None)


class Migration(migrations.Migration):
    dependencies = [("compliance", "0006_documents_change_plans")]

    operations = [
        migrations.RunPython(lambda apps, editor: _run(apps, editor, forward=True), lambda apps, editor: _run(apps, editor, forward=False)),
    ]
