"""The audit trail (AI Act Art. 12): append-only, hash-chained events and the chain's head; API tokens.

The audit trail is written only by ``core.audit``; every app's records are audited through it.
API tokens are issued and revoked only by ``core.tokens``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from core.choices import NotificationKind, TokenRevocation
from core.errors import ImmutableRecord


def _refuse_update() -> ImmutableRecord:
    return ImmutableRecord("Audit events are append-only: they cannot be updated.", code="immutable")


class NeverEdited(models.Model):
    """A record that is written once: saving it again is refused with ``edit_refused`` (message, code),
    so a correction is always a new record and the history stays as it was. Database triggers add the
    same rule below the ORM where a model needs it."""

    edit_refused: tuple[str, str] = ("This record is never edited.", "record_immutable")

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self.pk:
            message, code = self.edit_refused
            raise ImmutableRecord(message, code=code)
        super().save(*args, **kwargs)


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise _refuse_update()

    def bulk_update(self, objs, fields, batch_size=None):
        raise _refuse_update()

    def bulk_create(self, objs, batch_size=None, ignore_conflicts=False, update_conflicts=False, **kwargs):
        # An upsert would overwrite the conflicting rows.
        if update_conflicts:
            raise _refuse_update()
        return super().bulk_create(objs, batch_size=batch_size, ignore_conflicts=ignore_conflicts, **kwargs)

    def delete(self):
        raise ImmutableRecord("Audit events are append-only: they cannot be deleted.", code="immutable")


class AuditEvent(models.Model):
    """One append-only, hash-chained entry of the audit trail (AI Act Art. 12).

    ``hash`` covers every field and ``prev_hash``, so altering, removing or
    reordering any row breaks the chain from that row on (``manage.py verify_audit``).
    It is an HMAC under the audit key ``key_id`` names (``core.audit_keys``), so only a
    key holder can recompute it; events from before keys carry a plain sha256.
    For an event about personal data, the hash covers ``personal_hash`` in place of ``changes``
    and ``object_repr``, so those can be emptied after their retention (``core.audit.audit_pseudonymise``,
    the one update the database lets through) and the chain still verifies.
    The actor is copied as id and username, not a foreign key, so that removing a
    user never touches the trail.
    """

    seq = models.PositiveBigIntegerField(unique=True)
    occurred_at = models.DateTimeField()
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_username = models.CharField(max_length=150)
    request_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=40)
    object_type = models.CharField(max_length=100, db_index=True)
    object_id = models.CharField(max_length=64, db_index=True)
    object_repr = models.CharField(max_length=300)
    changes = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    key_id = models.CharField(
        max_length=32, blank=True, default="", help_text="The audit key whose HMAC ``hash`` is; empty for an event hashed before keys (plain sha256)."
    )
    personal_hash = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text="sha256 of the salt, changes and description of an event about personal data: the hash covers this, not them.",
    )
    personal_salt = models.CharField(max_length=32, blank=True, default="", help_text="Random; emptied with the personal fields.")
    pseudonymised_at = models.DateTimeField(null=True, blank=True, help_text="When the personal fields were emptied after their retention.")

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        db_table = "compliance_auditevent"  # the table (and its index name) kept from the compliance app
        ordering = ["seq"]
        base_manager_name = "objects"  # related lookups and internals get the refusing queryset too
        indexes = [
            models.Index(fields=["object_type", "object_id", "seq"], name="compliance_audit_object_idx"),
            # The events about personal data still holding their personal fields, by age: what pseudonymisation reads.
            models.Index(
                fields=["occurred_at"],
                name="core_audit_personal_due_idx",
                condition=models.Q(pseudonymised_at__isnull=True) & ~models.Q(personal_hash=""),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id} by {self.actor_username}"

    def save(self, *args, **kwargs):
        if not self._state.adding or kwargs.get("update_fields") is not None:
            raise _refuse_update()
        # Always INSERT: an unsaved instance carrying an existing primary key would otherwise UPDATE that row.
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableRecord("Audit events are append-only: they cannot be deleted.", code="immutable")


class AuditHead(models.Model):
    """The newest sequence number and hash, so that removing the last events is detected too."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    class Meta:
        db_table = "compliance_audithead"  # kept from the compliance app
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="compliance_audithead_singleton")]


class ApiToken(models.Model):
    """An API token of one user. Only the sha256 of its key is stored, so a copy of the
    database lets no one call the API; the key itself is shown once, when the token is issued.

    A token works until it expires, is revoked (by its owner, an officer, or a change of its
    user's password) or its user is deactivated. Revoked and expired tokens are kept: the
    audit trail points at them.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for (a script, a site agent).")
    key_hash = models.CharField(max_length=64, unique=True, help_text="sha256 of the key, hex.")
    prefix = models.CharField(max_length=8, help_text="The key's first characters, to recognise it in a list.")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=20, choices=TokenRevocation.choices, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["user", "revoked_at"], name="core_apitoken_user_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}...)"


class Notification(models.Model):
    """A message to one person about something that needs them (a dossier to sign, a critical alert,
    an incident deadline, ...): shown in the header's bell until read, and e-mailed once.
    ``key`` names the event, so the same event never notifies the same person twice."""

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=24, choices=NotificationKind.choices)
    key = models.CharField(max_length=120, help_text="The event notified, e.g. dossier:12:review:<snapshot>; once per recipient.")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, max_length=2000)
    link = models.CharField(max_length=300, blank=True, help_text="The page where the recipient acts on it.")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["recipient", "read_at"], name="core_notification_unread")]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "key"],
                name="%(app_label)s_%(class)s_once_per_event",
                violation_error_message="This person was notified of this event already.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.recipient_id}: {self.title}"
