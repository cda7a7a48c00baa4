"""Keyed audit events, and database triggers that keep the audit tables append-only.

``key_id`` names the audit key whose HMAC an event's hash is; the events already written keep
an empty one and their plain sha256 (``core.audit.event_hash``).

PostgreSQL refuses UPDATE, DELETE and TRUNCATE of events, DELETE and TRUNCATE of the head, and
any update of the head but the chain writer's: the sequence number grows, to the newest event,
with that event's hash. A table owner can still disable triggers; what they then change is found
by ``manage.py verify_audit`` (keyed hashes, checkpoints outside the database). The test suite
disables only the TRUNCATE triggers, since the test flush empties every table with one TRUNCATE
(tests/conftest.py). SQLite, the embedded demo database, has the models' refusals only, as the
compliance 0007 triggers explain for deletion.
"""

from django.db import migrations, models

REFUSE = """CREATE FUNCTION core_audit_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'The audit trail is append-only: % on % is refused.', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$ LANGUAGE plpgsql"""

HEAD_FORWARD_ONLY = """CREATE FUNCTION core_audit_head_forward_only() RETURNS trigger AS $$
DECLARE
    newest_seq bigint;
    newest_hash varchar;
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'The audit head cannot be deleted.' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT seq, hash INTO newest_seq, newest_hash FROM compliance_auditevent ORDER BY seq DESC LIMIT 1;
    IF NEW.id <> OLD.id OR NEW.seq <= OLD.seq OR NEW.seq IS DISTINCT FROM newest_seq OR NEW.hash IS DISTINCT FROM newest_hash THEN
        RAISE EXCEPTION 'The audit head only moves forward, to the newest event (#%) and its hash; #% to #% is refused.', newest_seq, OLD.seq, NEW.seq
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql"""

POSTGRES = [
    (REFUSE, "DROP FUNCTION core_audit_refuse_change()"),
    (HEAD_FORWARD_ONLY, "DROP FUNCTION core_audit_head_forward_only()"),
    (
        "CREATE TRIGGER compliance_auditevent_append_only BEFORE UPDATE OR DELETE ON compliance_auditevent "
        "FOR EACH ROW EXECUTE FUNCTION core_audit_refuse_change()",
        "DROP TRIGGER compliance_auditevent_append_only ON compliance_auditevent",
    ),
    (
        "CREATE TRIGGER compliance_auditevent_no_truncate BEFORE TRUNCATE ON compliance_auditevent "
        "FOR EACH STATEMENT EXECUTE FUNCTION core_audit_refuse_change()",
        "DROP TRIGGER compliance_auditevent_no_truncate ON compliance_auditevent",
    ),
    (
        "CREATE TRIGGER compliance_audithead_forward_only BEFORE UPDATE OR DELETE ON compliance_audithead "
        "FOR EACH ROW EXECUTE FUNCTION core_audit_head_forward_only()",
        "DROP TRIGGER compliance_audithead_forward_only ON compliance_audithead",
    ),
    (
        "CREATE TRIGGER compliance_audithead_no_truncate BEFORE TRUNCATE ON compliance_audithead "
        "FOR EACH STATEMENT EXECUTE FUNCTION core_audit_refuse_change()",
        "DROP TRIGGER compliance_audithead_no_truncate ON compliance_audithead",
    ),
]


def _run(apps, schema_editor, *, forward: bool) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for create, drop in POSTGRES if forward else reversed(POSTGRES):
        schema_editor.execute(create if forward else drop, params=None)


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="key_id",
            field=models.CharField(
                blank=True,
                default="",
                help_text="The audit key whose HMAC ``hash`` is; empty for an event hashed before keys (plain sha256).",
                max_length=32,
            ),
        ),
        migrations.RunPython(lambda apps, editor: _run(apps, editor, forward=True), lambda apps, editor: _run(apps, editor, forward=False)),
    ]
