"""``manage.py bench usage``: usage-log ingestion, its monitoring reads and export, and the retention purge.

It runs in the configured database (``DATABASE_URL``: a PostgreSQL database of its own, created and
migrated beforehand), which must hold nothing but an earlier run of this bench.

1. Seeds the registry with ``bulk_create`` (synthetic, not anyone's act, so not audited): five
   foundation models with a deployed version each and ``deployments`` deployments over enough
   institutions, each with its usage logging.
2. Ingests ``events`` inference events through ``usage_batch_ingest`` (validation, COPY, weekly
   sums: what the API does after parsing), in batches of up to ``BATCH`` per deployment in turn, each
   batch's events a shuffled stretch of its deployment's year. Only the service calls are timed:
   ``events_per_second`` (goal >= 20,000). The first tenth is ingested, the reads' query counts
   taken, then the rest, and the counts taken again: ``queries_constant``; with them the full
   exports' time per exported event (``export_us_per_event``), which must not grow with the table.
3. ``VACUUM ANALYZE`` (PostgreSQL), then ``repeats`` interleaved rounds of ``SELECT count(*)`` of the
   events table and each read, by Django's test client as an officer: the weekly usage figures of
   the busiest deployment, its last week's export (CSV, read to the end) and its full export (both
   formats). ``worst_p95_over_count`` is the slowest read's p95 over the median count (goal <= 1.0).
4. The retention purge at a clock one year on from the newest event with 183-day retention, so that
   every event expires: ``retention_purge_seconds_per_million``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compliance.models import UsageEvent, UsageLogging
from compliance.usage_logs import usage_batch_ingest, usage_retention_purge
from core.choices import Role
from radtrust_demo.bench.world import bench_deployments
from registry.models import Deployment, Institution, User

Log = Callable[[str], None]
EVENTS = 10_000_000
DEPLOYMENTS = 200
BATCH = 5_000
REPEATS = 20
PREFIX = "ubench"
GOALS = {"events_per_second": (">=", 20_000), "worst_p95_over_count": ("<=", 1.0)}
FLAGS = ("out_of_envelope", "unsupported_device", "low_quality", "artefact", "missing_metadata")


def _refuse_foreign_data() -> None:
    if Institution.objects.exclude(code__startswith=PREFIX).exists():
        name = connection.settings_dict["NAME"]
        raise ValueError(f"{name} holds data other than this bench's; point DATABASE_URL at a database of its own.")


def _seed(deployments: int, since: datetime) -> list[Deployment]:
    """Registry rows without audit events (``bulk_create``), from scratch: earlier bench rows are reused as they are."""
    placed = list(Deployment.objects.filter(institution__code__startswith=PREFIX).order_by("pk"))
    if placed:
        if len(placed) != deployments:
            raise ValueError(f"The database holds a run over {len(placed)} deployments; give --deployments {len(placed)} or use an empty database.")
        return placed
    institutions, placed = bench_deployments(deployments, since.date(), code_prefix=PREFIX, name_prefix=f"{PREFIX}-")
    (officer,) = User.objects.bulk_create([User(username=f"{PREFIX}-officer", institution=institutions[0], password="!")])
    User.groups.through.objects.create(user_id=officer.pk, group_id=Group.objects.get(name=Role.COMPLIANCE_OFFICER).pk)
    UsageLogging.objects.bulk_create([UsageLogging(deployment=d) for d in placed])
    return placed


def _batches(placed: list[Deployment], events: int, start: datetime, span: timedelta, rng: random.Random, first_batch: int):
    """(logging, batch id, events as an installation sends them), deployment after deployment, so that every
    deployment gets its share (batches of at most ``BATCH``); each deployment's batches walk through
    ``span`` in order, the events inside a batch shuffled."""
    loggings = {lg.deployment_id: lg for lg in UsageLogging.objects.select_related("deployment").filter(deployment__in=placed)}
    size = max(1, min(BATCH, -(-events // len(placed))))
    per_deployment = -(-events // (len(placed) * size))  # batches per deployment
    step = span / per_deployment
    sent = 0
    for k in range(per_deployment):
        for deployment in placed:
            if sent >= events:
                return
            n = min(size, events - sent)
            window = start + step * k
            offsets = sorted(rng.random() for _ in range(n))
            rng.shuffle(offsets)
            raw = [
                {
                    "case_key": f"{rng.getrandbits(64):016x}",
                    "occurred_at": (window + step * o).isoformat(),
                    "version": deployment.version_id,
                    "outputs": {"finding": round(rng.random(), 4)},
                    "uncertainty": round(rng.random() * 0.2, 4),
                    "overridden": rng.random() < 0.08,
                    "quality_flags": [rng.choice(FLAGS)] if rng.random() < 0.05 else [],
                    **({"note": "Reviewed with a colleague."} if rng.random() < 0.02 else {}),
                }
                for o in offsets
            ]
            sent += n
            yield loggings[deployment.pk], f"b{first_batch + k}-{deployment.pk}", raw


def _ingest(placed, events: int, start: datetime, span: timedelta, seed: int, first_batch: int) -> float:
    """Ingest ``events`` events; the seconds spent in the service."""
    spent = 0.0
    for logging, batch_id, raw in _batches(placed, events, start, span, random.Random(seed), first_batch):
        began = time.perf_counter()
        usage_batch_ingest(logging=logging, batch_id=batch_id, events=raw)
        spent += time.perf_counter() - began
    return spent


def _reads(busiest: int, now: datetime) -> dict[str, str]:
    week_ago = (now - timedelta(days=7)).astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {
        "usage figures": f"/api/usage-logs/{busiest}/",
        "monitoring": f"/api/monitoring/{busiest}/",
        "export, last week (csv)": f"/api/usage-logs/{busiest}/export/?since={week_ago}",
        "export, all (csv)": f"/api/usage-logs/{busiest}/export/",
        "export, all (json)": f"/api/usage-logs/{busiest}/export/?as=json",
    }


def _get(client: Client, url: str) -> int:
    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: {response.status_code} {response.content[:300]!r}")
    return sum(len(part) for part in response.streaming_content) if response.streaming else len(response.content)


def _query_counts(client: Client, reads: dict[str, str]) -> tuple[dict[str, int], dict[str, float]]:
    """Each read's query count, and each read's time (ms) once warm: the full exports' per event."""
    counts, ms = {}, {}
    for label, url in reads.items():
        _get(client, url)
        with CaptureQueriesContext(connection) as captured:
            began = time.perf_counter()
            _get(client, url)
            ms[label] = (time.perf_counter() - began) * 1000
        counts[label] = len(captured)
    return counts, ms


def _per_event_us(ms: dict[str, float], busiest: int) -> dict[str, float]:
    """The full exports' time per exported event (µs): constant if the export does not grow with the table."""
    events = UsageEvent.objects.filter(deployment_id=busiest).count()
    return {label: round(t * 1000 / events, 2) for label, t in ms.items() if label.startswith("export, all")}


def run_usage_bench(*, events: int, deployments: int, repeats: int, log: Log) -> dict[str, Any]:
    """Seed, ingest in two steps, time the reads against count(*), purge; one JSON-able dict."""
    _refuse_foreign_data()
    if UsageEvent.objects.exists():
        raise ValueError("The database holds usage events of an earlier run; use an empty, migrated database.")
    now = timezone.now()
    span = timedelta(weeks=52)
    start = now - span
    placed = _seed(deployments, start)
    busiest = placed[0].pk
    client = Client()
    client.force_login(User.objects.get(username=f"{PREFIX}-officer"))
    reads = _reads(busiest, now)

    first = max(1, events // 10)
    log(f"ingesting {first} events over {deployments} deployments")
    spent = _ingest(placed, first, start, span, seed=1, first_batch=0)
    queries_small, ms_small = _query_counts(client, reads)
    export_small = _per_event_us(ms_small, busiest)
    log(f"ingesting {events - first} more")
    spent += _ingest(placed, events - first, start, span, seed=2, first_batch=10**6)
    if connection.vendor == "postgresql" and not connection.in_atomic_block:  # a test's transaction cannot vacuum
        log("vacuum analyze")
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    queries_full, ms_full = _query_counts(client, reads)
    export_full = _per_event_us(ms_full, busiest)

    log(f"timing {len(reads)} reads and count(*), {repeats} rounds")
    latency: dict[str, list[float]] = {label: [] for label in reads}
    counts = []
    with connection.cursor() as cursor:
        for _ in range(repeats):
            began = time.perf_counter()
            cursor.execute("SELECT count(*) FROM compliance_usageevent")
            total = cursor.fetchone()[0]
            counts.append((time.perf_counter() - began) * 1000)
            for label, url in reads.items():
                began = time.perf_counter()
                _get(client, url)
                latency[label].append((time.perf_counter() - began) * 1000)
    count_ms = float(np.median(counts))

    log("retention purge of every event")
    began = time.perf_counter()
    purged = usage_retention_purge(now=now + timedelta(days=366))
    purge_seconds = time.perf_counter() - began

    reads_out = {
        label: {
            "p50_ms": round(float(np.percentile(latency[label], 50)), 2),
            "p95_ms": round(float(np.percentile(latency[label], 95)), 2),
            "p95_over_count": round(float(np.percentile(latency[label], 95)) / count_ms, 3),
            "queries": {str(first): queries_small[label], str(events): queries_full[label]},
        }
        for label in reads
    }
    return {
        "events_per_second": round(events / spent),
        "worst_p95_over_count": max(r["p95_over_count"] for r in reads_out.values()),
        "queries_constant": queries_small == queries_full,
        "export_us_per_event": {label: {str(first): export_small[label], str(events): export_full[label]} for label in export_full},
        "retention_purge_seconds_per_million": round(purge_seconds / max(purged, 1) * 1e6, 2),
        "goal": {k: list(v) for k, v in GOALS.items()},
        "reads": reads_out,
        "count_ms": round(count_ms, 2),
        "events": total,
        "deployments": deployments,
        "batch_events": BATCH,
        "busiest_deployment_events": UsageEvent.objects.filter(deployment_id=busiest).count(),
        "purged_events": purged,
        "purge_seconds": round(purge_seconds, 2),
        "database": connection.vendor,
        "repeats": repeats,
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'read':<26} {'p50 ms':>8} {'p95 ms':>8} {'p95/count':>9}  queries"]
    for label, r in result["reads"].items():
        lines.append(f"{label:<26} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} {r['p95_over_count']:>9.3f}  {r['queries']}")
    lines.append(f"count(*) median {result['count_ms']:.2f} ms over {result['events']} events, {result['deployments']} deployments")
    lines.append(f"events_per_second {result['events_per_second']} (goal >= 20,000)")
    lines.append(f"worst_p95_over_count {result['worst_p95_over_count']:.3f} (goal <= 1.0); queries_constant {result['queries_constant']}")
    lines.append(f"full export, µs per exported event after a tenth and after all: {result['export_us_per_event']}")
    lines.append(f"retention_purge_seconds_per_million {result['retention_purge_seconds_per_million']}")
    return "\n".join(lines)
