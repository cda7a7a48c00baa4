"""Audit events about personal data: their hash covers a salted hash of the personal fields, which
can then be emptied after their retention (``core.audit.audit_pseudonymise``).

On PostgreSQL the events' row trigger changes from "refuse every UPDATE and DELETE" to "refuse every
DELETE, and every UPDATE but pseudonymisation": an update that keeps every hashed column, empties
``changes``, ``object_repr`` and ``personal_salt`` and sets ``pseudonymised_at`` once, on an event
that has a ``personal_hash``, made inside ``core_audit_pseudonymise()`` (it sets the transaction-local
flag the trigger reads). Whoever sets that flag by hand can do no more than that function does. Events
written before this migration keep their hashes and verify as before.
"""

from django.db import migrations, models

GUARD = """CREATE FUNCTION core_audit_event_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
        AND current_setting('radtrust.audit_pseudonymise', true) = 'on'
        AND OLD.personal_hash <> '' AND OLD.pseudonymised_at IS NULL AND NEW.pseudonymised_at IS NOT NULL
        AND NEW.changes = '{}'::jsonb AND NEW.object_repr = '' AND NEW.personal_salt = ''
        AND (NEW.id, NEW.seq, NEW.occurred_at, NEW.actor_id, NEW.actor_username, NEW.request_id, NEW.action,
             NEW.object_type, NEW.object_id, NEW.prev_hash, NEW.hash, NEW.key_id, NEW.personal_hash)
            IS NOT DISTINCT FROM
            (OLD.id, OLD.seq, OLD.occurred_at, OLD.actor_id, OLD.actor_username, OLD.request_id, OLD.action,
             OLD.object_type, OLD.object_id, OLD.prev_hash, OLD.hash, OLD.key_id, OLD.personal_hash)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'The audit trail is append-only: % on % is refused.', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$ LANGUAGE plpgsql"""

PSEUDONYMISE = """CREATE FUNCTION core_audit_pseudonymise(cutoff timestamptz, done_at timestamptz) RETURNS bigint AS $$
DECLARE
    done bigint;
BEGIN
    PERFORM set_config('radtrust.audit_pseudonymise', 'on', true);
    UPDATE compliance_auditevent SET changes = '{}'::jsonb, object_repr = '', personal_salt = '', pseudonymised_at = done_at
        WHERE occurred_at < cutoff AND pseudonymised_at IS NULL AND personal_hash <> '';
    GET DIAGNOSTICS done = ROW_COUNT;
    PERFORM set_config('radtrust.audit_pseudonymise', 'off', true);
    RETURN done;
END $$ LANGUAGE plpgsql"""

POSTGRES = [
    (GUARD, "DROP FUNCTION core_audit_event_guard()"),
    (PSEUDONYMISE, "DROP FUNCTION core_audit_pseudonymise(timestamptz, timestamptz)"),
    (
        "DROP TRIGGER compliance_auditevent_append_only ON compliance_auditevent",
        "CREATE TRIGGER compliance_auditevent_append_only BEFORE UPDATE OR DELETE ON compliance_auditevent "
        "FOR EACH ROW EXECUTE FUNCTION core_audit_refuse_change()",
    ),
    (
        "CREATE TRIGGER compliance_auditevent_append_only BEFORE UPDATE OR DELETE ON compliance_auditevent "
        "FOR EACH ROW EXECUTE FUNCTION core_audit_event_guard()",
        "DROP TRIGGER compliance_auditevent_append_only ON compliance_auditevent",
    ),
]


def _run(apps, schema_editor, *, forward: bool) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for create, drop in POSTGRES if forward else reversed(POSTGRES):
        schema_editor.execute(create if forward else drop, params=None)


class Migration(migrations.Migration):
    dependencies = [("core", "0003_api_token")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="personal_hash",
            field=models.CharField(
                blank=True,
                default="",
                help_text="sha256 of the salt, changes and description of an event about personal data: the hash covers this, not them.",
                max_length=64,
            ),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="personal_salt",
            field=models.CharField(blank=True, default="", help_text="Random; emptied with the personal fields.", max_length=32),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="pseudonymised_at",
            field=models.DateTimeField(blank=True, help_text="When the personal fields were emptied after their retention.", null=True),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(
                condition=models.Q(("pseudonymised_at__isnull", True), models.Q(("personal_hash", ""), _negated=True)),
                fields=["occurred_at"],
                name="core_audit_personal_due_idx",
            ),
        ),
        migrations.RunPython(lambda apps, editor: _run(apps, editor, forward=True), lambda apps, editor: _run(apps, editor, forward=False)),
    ]
