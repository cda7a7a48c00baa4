"""The Celery application: queues ``default``, ``gpu`` and one ``site.<code>`` queue per site.

Tasks are safe to run twice (acks late, rejected when the worker dies, idempotency
guards on the rows they write); all ``CELERY_*`` settings live in ``radtrust.settings``.
A worker that cannot reach its database refuses to start (``database_check``).
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init
from django.db import DatabaseError, connection
from kombu import Exchange, Queue
from kombu.transport import TRANSPORT_ALIASES

TRANSPORT_ALIASES["filesystem"] = "radtrust.broker:Transport"  # messages written whole (see radtrust.broker)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "radtrust.settings")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

app = Celery("radtrust")
app.config_from_object("django.conf:settings", namespace="CELERY")

_exchange = Exchange("radtrust", type="direct")
app.conf.task_queues = (
    Queue("default", _exchange, routing_key="default"),
    Queue("gpu", _exchange, routing_key="gpu"),
)
app.conf.task_default_exchange = "radtrust"
app.conf.task_default_routing_key = "default"
app.autodiscover_tasks()


def site_queue(code: str) -> Queue:
    """The queue a site's own worker or agent consumes; declared on first use."""
    name = f"site.{code}"
    return Queue(name, _exchange, routing_key=name)


@worker_init.connect
def database_check(**kwargs) -> None:
    """Stop a worker that cannot reach its database before it consumes anything.

    Such a worker would take runs off the queue and fail every claim; exiting non-zero lets
    the supervisor (compose, systemd, Kubernetes) show it and restart it, and the messages
    stay queued for a worker that can record them. ``SystemExit`` passes through Celery's
    signal dispatch, which logs and swallows ordinary exceptions.
    """
    try:
        connection.ensure_connection()
    except DatabaseError as exc:
        raise SystemExit(
            f"RadTrust worker: cannot reach the database ({type(exc).__name__}: {str(exc).strip()}). "
            "Not starting, so that no run is taken off the queue: check DATABASE_URL and that the database is up."
        ) from None
    finally:
        connection.close()  # the worker's processes open their own connections
