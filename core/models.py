"""The audit trail (AI Act Art. 12): append-only, hash-chained events and the chain's head.

Written only by ``core.audit``; every app's records are audited through it.
"""

from __future__ import annotations

from django.db import models

from core.errors import ImmutableRecord


def _refuse_update() -> ImmutableRecord:
    return ImmutableRecord("Audit events are append-only: they cannot be updated.", code="immutable")


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

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        db_table = "compliance_auditevent"  # the table (and its index name) kept from the compliance app
        ordering = ["seq"]
        base_manager_name = "objects"  # related lookups and internals get the refusing queryset too
        indexes = [models.Index(fields=["object_type", "object_id", "seq"], name="compliance_audit_object_idx")]

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
