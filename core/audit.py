"""The one mechanism that writes the audit trail.

Services never write audit rows by hand. A request-scoped context (set by
``AuditContextMiddleware`` for web requests, by ``audit_context`` in tasks and
commands) carries the actor and request id; signal receivers on every registered
model record creates, updates, deletes and many-to-many changes with a
before/after diff, in the same transaction as the change. ``audit_action`` lets a
service name what an update means (``transition``, ``sign``).

Each event's hash is an HMAC under the current audit key (``core.audit_keys``) of its content
and the previous event's hash. ``audit_checkpoint_write`` copies the chain's head to a signed
checkpoint file outside the database (``core.audit_checkpoints``), and ``audit_verify_chain``
checks the chain against its keys, its head row and every checkpoint.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import decimal
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.utils import timezone

from core.audit_checkpoints import Checkpoint, CheckpointInvalid, checkpoint_append, checkpoint_newest, checkpoints_read
from core.audit_keys import UnknownAuditKey, audit_mac, audit_signing_key_id
from core.errors import Conflict
from core.models import AuditEvent, AuditHead
from radtrust_engine.hashing import canonical_sha256

GENESIS_HASH = "0" * 64
SYSTEM_ACTOR = "system"
# Any constant: serialises writers of the chain on PostgreSQL.
_CHAIN_LOCK_KEY = 0x52414454  # "RADT"


@dataclass(frozen=True)
class _Context:
    request: object | None = None
    user: object | None = None
    label: str = SYSTEM_ACTOR
    request_id: str = ""


_context: contextvars.ContextVar[_Context] = contextvars.ContextVar("audit_context", default=_Context())  # noqa: B039 (a frozen dataclass)
_action: contextvars.ContextVar[str | None] = contextvars.ContextVar("audit_action", default=None)


@contextmanager
def audit_context(*, user=None, label: str = SYSTEM_ACTOR, request_id: str | None = None) -> Iterator[None]:
    """Attribute events inside the block to ``user`` (or ``label`` for a process such as a worker)."""
    token = _context.set(_Context(user=user, label=label, request_id=request_id or uuid.uuid4().hex))
    try:
        yield
    finally:
        _context.reset(token)


@contextmanager
def audit_action(name: str) -> Iterator[None]:
    """Name the meaning of the updates inside the block (for example ``transition``)."""
    token = _action.set(name)
    try:
        yield
    finally:
        _action.reset(token)


class AuditContextMiddleware:
    """Carries the request (its user is read when an event is written, after DRF authenticates)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        token = _context.set(_Context(request=request, request_id=request_id))
        try:
            response = self.get_response(request)
        finally:
            _context.reset(token)
        response["X-Request-ID"] = request_id
        return response


def _current_actor() -> tuple[int | None, str, str]:
    ctx = _context.get()
    user = ctx.user or getattr(ctx.request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return user.pk, user.get_username(), ctx.request_id
    return None, ctx.label, ctx.request_id


def _jsonable(value):
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (bytes, memoryview)):
        return hashlib.sha256(bytes(value)).hexdigest()
    return value


def _snapshot(instance: models.Model, exclude: frozenset[str]) -> dict:
    return {
        f.attname: _jsonable(getattr(instance, f.attname))
        for f in instance._meta.concrete_fields
        if f.name not in exclude and f.attname not in exclude
    }


def _diff(before: dict, after: dict) -> dict:
    keys = before.keys() | after.keys()
    return {k: [before.get(k), after.get(k)] for k in sorted(keys) if before.get(k) != after.get(k)}


def event_hash(event: AuditEvent) -> str:
    """The hash ``event`` must carry: the HMAC of its fields (``prev_hash`` included) under the
    key its ``key_id`` names (``UnknownAuditKey`` if that key is not configured), or, for an
    event written before keys (no ``key_id``), the plain sha256 it was given then.

    Both hash the canonical JSON (``radtrust_engine.hashing``): numbers written by value, so an
    event read back from PostgreSQL's jsonb (which keeps no number's spelling) hashes as written.
    """
    fields = hashed_fields(event)
    return audit_mac(fields, key_id=event.key_id) if event.key_id else canonical_sha256(fields)


def personal_digest(event: AuditEvent) -> str:
    """The ``personal_hash`` an event about personal data must carry while it still holds its personal fields.
    Salted with a random value that pseudonymisation deletes too, so a short case reference cannot be
    found again by hashing guesses."""
    return canonical_sha256({"salt": event.personal_salt, "changes": event.changes, "object_repr": event.object_repr})


def hashed_fields(event: AuditEvent) -> dict:
    """What an event's hash covers; the key id only for keyed events, as unkeyed ones were hashed without it.
    An event about personal data has its personal fields covered by ``personal_hash`` in their place;
    events written before that (no ``personal_hash``) are hashed as they were."""
    fields = {
        "seq": event.seq,
        "occurred_at": event.occurred_at.astimezone(dt.UTC).isoformat(),
        "actor_id": event.actor_id,
        "actor_username": event.actor_username,
        "request_id": event.request_id,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "changes": event.changes,
        "prev_hash": event.prev_hash,
    }
    if event.key_id:
        fields["key_id"] = event.key_id
    if event.personal_hash:
        del fields["changes"], fields["object_repr"]
        fields["personal_hash"] = event.personal_hash
    return fields


def _lock_chain() -> None:
    """Serialise writers of the chain (inside a transaction): on PostgreSQL an advisory lock; SQLite writes one at a time anyway."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])


def audit_record(*, action: str, instance: models.Model, changes: dict) -> AuditEvent:
    """Append one event to the chain, in the caller's transaction."""
    actor_id, actor_username, request_id = _current_actor()
    with transaction.atomic():
        _lock_chain()
        head, _ = AuditHead.objects.select_for_update().get_or_create(id=1, defaults={"seq": 0, "hash": GENESIS_HASH})
        event = AuditEvent(
            seq=head.seq + 1,
            occurred_at=timezone.now(),
            actor_id=actor_id,
            actor_username=actor_username,
            request_id=request_id,
            action=action,
            object_type=instance._meta.label_lower,
            object_id=str(instance.pk),
            object_repr=str(instance)[:300],
            changes=json.loads(json.dumps(changes, default=str)),
            prev_hash=head.hash,
            key_id=audit_signing_key_id(),
        )
        if event.object_type in _personal:
            event.personal_salt = secrets.token_hex(16)
            event.personal_hash = personal_digest(event)
        event.hash = event_hash(event)
        event.save()
        head.seq, head.hash = event.seq, event.hash
        head.save(update_fields=["seq", "hash"])
    return event


@dataclass(frozen=True)
class ChainVerdict:
    ok: bool
    checked: int
    broken_seq: int | None = None
    reason: str = ""
    checkpoints: int = 0  # how many checkpoints the chain was checked against


def audit_verify_chain() -> ChainVerdict:
    """Walk the chain in order; name the first event whose content, link or position is wrong,
    or that a checkpoint contradicts, then check the head row and that no checkpoint names an
    event past the chain's end.

    A key holder's HMAC cannot be forged, and once an event is keyed every later one must be:
    an unkeyed event after a keyed one is a forgery by someone without the key. Unkeyed events
    before the first keyed one (written before keys) are protected by the first keyed event's
    link to them and by the checkpoints. A checkpoint file that cannot be read or verified
    whole fails the verification (``broken_seq`` None): what it would prove is unknown.
    """
    try:
        checkpoints = sorted(checkpoints_read(), key=lambda c: (c.seq, c.line))
    except CheckpointInvalid as exc:
        return ChainVerdict(False, 0, None, str(exc))
    pending = iter(checkpoints)
    checkpoint = next(pending, None)
    prev_hash, expected_seq, checked, first_keyed = GENESIS_HASH, 1, 0, None
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=2000):
        if event.seq != expected_seq:
            return ChainVerdict(False, checked, expected_seq, f"event #{expected_seq} is missing (next present is #{event.seq})")
        if event.prev_hash != prev_hash:
            return ChainVerdict(False, checked, event.seq, "its link to the previous event does not match")
        if first_keyed is not None and not event.key_id:
            return ChainVerdict(
                False, checked, event.seq, f"it carries an unkeyed hash after keyed event #{first_keyed}: it was written without the audit key"
            )
        try:
            matches = hmac.compare_digest(event_hash(event), event.hash)
        except UnknownAuditKey as exc:
            return ChainVerdict(False, checked, event.seq, f"it is signed with {exc}, so it cannot be verified")
        if not matches:
            return ChainVerdict(False, checked, event.seq, "its content was altered after it was written")
        if event.personal_hash and event.pseudonymised_at is None and not hmac.compare_digest(personal_digest(event), event.personal_hash):
            return ChainVerdict(False, checked, event.seq, "its personal fields were altered after it was written")
        while checkpoint is not None and checkpoint.seq == event.seq:
            if checkpoint.hash != event.hash:
                return ChainVerdict(
                    False, checked, event.seq, f"{checkpoint} records another hash for it: the chain up to here was rewritten after that checkpoint"
                )
            checkpoint = next(pending, None)
        if first_keyed is None and event.key_id:
            first_keyed = event.seq
        prev_hash, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
    if checkpoint is not None:
        newest = checkpoints[-1]
        return ChainVerdict(
            False, checked, checked + 1, f"the chain ends at #{checked} but {newest} records #{newest.seq}: events were removed and the head rewound"
        )
    head = AuditHead.objects.filter(id=1).first()
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    if head_seq > checked:
        return ChainVerdict(False, checked, checked + 1, f"the chain ends at #{checked} but the head records #{head_seq}: events were removed")
    if head_seq < checked:
        return ChainVerdict(
            False, checked, head_seq + 1, f"the head records #{head_seq} but the chain goes on to #{checked}: events were added behind its back"
        )
    if head_hash != prev_hash:
        return ChainVerdict(False, checked, checked, f"the head's hash does not match event #{checked}: the end of the chain was rewritten")
    return ChainVerdict(True, checked, checkpoints=len(checkpoints))


def audit_checkpoint_write() -> Checkpoint | None:
    """Append the chain's head to the checkpoint file (``core.audit_checkpoints``); None when the
    chain is empty or its head is the newest checkpoint's already.

    The head row and the newest event are read together under the chain's lock. When they
    disagree, the chain was tampered with (or the head rewound), so no checkpoint is written
    over it: ``Conflict``, and ``manage.py verify_audit`` says what is wrong.
    """
    with transaction.atomic():
        _lock_chain()
        head = AuditHead.objects.filter(id=1).first()
        newest = AuditEvent.objects.order_by("-seq").first()
    if newest is None and head is None:
        return None
    if newest is None or head is None or (head.seq, head.hash) != (newest.seq, newest.hash):
        raise Conflict(
            "The audit head does not name the newest event, so no checkpoint is written; run manage.py verify_audit.", code="audit_head_mismatch"
        )
    last = checkpoint_newest()
    if last is not None and (last.seq, last.hash) == (newest.seq, newest.hash):
        return None
    return checkpoint_append(seq=newest.seq, hash=newest.hash)


def audit_pseudonymise(*, before: dt.datetime | None = None) -> int:
    """Empty the personal fields (changes, description, salt) of events about personal data written
    before ``before`` (default: ``RADTRUST_AUDIT_PERSONAL_RETENTION_DAYS`` ago); returns how many.

    GDPR storage limitation meets an append-only trail: the chain covers each such event's
    ``personal_hash``, not the fields, so it verifies as before, and the fields' salt goes with
    them, so what they held cannot be found again by hashing guesses. This is the one update of
    events there is: on PostgreSQL it runs inside ``core_audit_pseudonymise()``, the only caller
    the events' trigger lets through, and only in this shape (core migration 0004). Events written
    before personal hashes cannot be pseudonymised without breaking the chain and are left alone.
    One audit event says what was done.
    """
    if before is None:
        before = timezone.now() - dt.timedelta(days=settings.RADTRUST_AUDIT_PERSONAL_RETENTION_DAYS)
    now = timezone.now()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT core_audit_pseudonymise(%s, %s)", [before, now])
                done = cursor.fetchone()[0]
        else:
            due = AuditEvent.objects.filter(occurred_at__lt=before, pseudonymised_at__isnull=True).exclude(personal_hash="")
            done = models.QuerySet.update(due, changes={}, object_repr="", personal_salt="", pseudonymised_at=now)  # past the refusing queryset
        if done:
            head = AuditHead.objects.get(id=1)
            audit_record(action="pseudonymise", instance=head, changes={"before": before.isoformat(), "events": done})
    return done


# --- Signal receivers ------------------------------------------------------------

_registered: dict[type[models.Model], frozenset[str]] = {}
_personal: set[str] = set()  # labels of the models whose events are about personal data
_ALWAYS_EXCLUDED = frozenset({"updated_at", "password", "last_login"})


def audit_register(model: type[models.Model], *, exclude: tuple[str, ...] = (), personal: bool = False) -> None:
    """Record every create, update, delete and many-to-many change of ``model``; ``personal`` when its
    rows hold personal data, so that its events can be pseudonymised after their retention."""
    _registered[model] = _ALWAYS_EXCLUDED | frozenset(exclude)
    if personal:
        _personal.add(model._meta.label_lower)
    uid = f"audit:{model._meta.label_lower}"
    pre_save.connect(_before_save, sender=model, dispatch_uid=f"{uid}:pre", weak=False)
    post_save.connect(_after_save, sender=model, dispatch_uid=f"{uid}:post", weak=False)
    post_delete.connect(_after_delete, sender=model, dispatch_uid=f"{uid}:delete", weak=False)
    for field in model._meta.local_many_to_many:
        m2m_changed.connect(_m2m_changed, sender=field.remote_field.through, dispatch_uid=f"{uid}:{field.name}", weak=False)


def _before_save(sender, instance, raw=False, **kwargs):
    if raw or instance._state.adding or instance.pk is None:
        instance._audit_before = None
        return
    old = sender._base_manager.filter(pk=instance.pk).first()
    instance._audit_before = _snapshot(old, _registered[sender]) if old else None


def _after_save(sender, instance, created, raw=False, update_fields=None, **kwargs):
    if raw:
        return
    exclude = _registered[sender]
    after = _snapshot(instance, exclude)
    if created:
        audit_record(action="create", instance=instance, changes=_diff({}, after))
        return
    before = getattr(instance, "_audit_before", None) or {}
    if update_fields is not None:
        # Only these columns were written; other in-memory edits did not reach the database.
        written = {f.attname for f in sender._meta.concrete_fields if f.name in update_fields or f.attname in update_fields}
        before = {k: v for k, v in before.items() if k in written}
        after = {k: v for k, v in after.items() if k in written}
    changes = _diff(before, after)
    if changes:
        audit_record(action=_action.get() or "update", instance=instance, changes=changes)


def _after_delete(sender, instance, **kwargs):
    audit_record(action="delete", instance=instance, changes=_diff(_snapshot(instance, _registered[sender]), {}))


def _m2m_links(field, reverse: bool, instance) -> set[tuple[object, object]]:
    """The (owner pk, target pk) rows of ``field``'s through table that touch ``instance``."""
    through = field.remote_field.through
    owner_col = through._meta.get_field(field.m2m_field_name()).attname
    target_col = through._meta.get_field(field.m2m_reverse_field_name()).attname
    rows = through._base_manager.filter(**{target_col if reverse else owner_col: instance.pk})
    return set(rows.values_list(owner_col, target_col))


def _m2m_changed(sender, instance, action, reverse, model, pk_set, **kwargs):
    """Record what an add, remove or clear really changed, on the model that declares the field.

    The signal's ``pk_set`` names what was asked for (an add of a present row, a
    remove of an absent one), and nothing at all for a clear, so the links are read
    before and after and the difference is recorded. A change made from the other
    side (``group.user_set.add(user)``) is recorded on each owner it touched.
    """
    owner_model = model if reverse else type(instance)
    if owner_model not in _registered or action not in {"pre_add", "pre_remove", "pre_clear", "post_add", "post_remove", "post_clear"}:
        return
    field = next(f for f in owner_model._meta.local_many_to_many if f.remote_field.through is sender)
    pending = instance.__dict__.setdefault("_audit_m2m_before", {})
    if action.startswith("pre_"):
        pending[sender] = _m2m_links(field, reverse, instance)
        return
    before, after = pending.pop(sender, set()), _m2m_links(field, reverse, instance)
    by_owner: dict[object, dict[str, list]] = {}
    for verb, links in (("added", after - before), ("removed", before - after)):
        for owner_pk, target_pk in links:
            by_owner.setdefault(owner_pk, {}).setdefault(verb, []).append(target_pk)
    owners = {instance.pk: instance} if not reverse else owner_model._base_manager.in_bulk(list(by_owner))
    for owner_pk in sorted(by_owner):
        audit_record(
            action=_action.get() or "update",
            instance=owners[owner_pk],
            changes={field.name: {verb: sorted(pks) for verb, pks in sorted(by_owner[owner_pk].items())}},
        )
