"""Notifications: a message in the header's bell, and the same by e-mail, once per person and event.

Apps do not call this module from their views: their receivers (``compliance.notification_rules``)
turn saved records into notifications, so every path that changes a record (page, API, admin,
task) notifies alike. ``notify`` is idempotent on (recipient, key); the e-mail leaves after the
transaction commits, from a task, and at most once (``emailed_at`` is claimed before sending).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from core.models import Notification

log = logging.getLogger(__name__)


def people(*, role: str, institution_ids: Iterable[int | None]) -> QuerySet:
    """The active users holding ``role`` at any of the institutions."""
    ids = {i for i in institution_ids if i is not None}
    return get_user_model().objects.filter(is_active=True, groups__name=role, institution_id__in=ids).distinct()


def notify(*, recipients: Iterable, kind: str, key: str, title: str, body: str = "", link: str = "") -> list[Notification]:
    """Notify each recipient of the event ``key`` unless they were already; the new notifications."""
    created = []
    for user in recipients:
        if Notification.objects.filter(recipient=user, key=key).exists():
            continue
        try:
            with transaction.atomic():
                notification = Notification.objects.create(
                    recipient=user, kind=kind, key=key[:120], title=title[:200], body=body[:2000], link=link[:300]
                )
        except IntegrityError:  # notified at the same moment by a concurrent save
            continue
        created.append(notification)
        transaction.on_commit(lambda pk=notification.pk: _email_later(pk))
    return created


def _email_later(notification_id: int) -> None:
    from core.tasks import notification_email  # the tasks module imports this one

    notification_email.delay(notification_id)


def notification_email_send(notification_id: int) -> bool:
    """E-mail one notification to its recipient, once; whether a message left."""
    claimed = Notification.objects.filter(pk=notification_id, emailed_at__isnull=True).exclude(recipient__email="").update(emailed_at=timezone.now())
    if not claimed:
        return False
    notification = Notification.objects.select_related("recipient").get(pk=notification_id)
    link = f"{settings.RADTRUST_SITE_URL.rstrip('/')}{notification.link}" if notification.link.startswith("/") else notification.link
    message = "\n\n".join(part for part in (notification.body, f"Open it in RadTrust: {link}" if link else "") if part)
    try:
        send_mail(f"[RadTrust] {notification.title}", message, None, [notification.recipient.email])
    except Exception:
        Notification.objects.filter(pk=notification_id).update(emailed_at=None)  # unclaimed, so the task's retry sends it
        raise
    return True


def notifications_mark_read(*, user, ids: Iterable[int] | None = None) -> int:
    """Mark the user's notifications read (all of them when ``ids`` is None); how many changed."""
    rows = Notification.objects.filter(recipient=user, read_at__isnull=True)
    if ids is not None:
        rows = rows.filter(pk__in=list(ids))
    return rows.update(read_at=timezone.now())


def unread_count(user) -> int:
    return Notification.objects.filter(recipient=user, read_at__isnull=True).count()
