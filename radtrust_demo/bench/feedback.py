"""``manage.py bench feedback``: the feedback reads at a million reports, against a bare count.

The figure is ``worst_p95_over_count``: the slowest read endpoint's p95 latency over the
median of ``SELECT count(*) FROM compliance_feedback``, both measured in one process on
one connection in interleaved rounds, so a noisy or slower machine moves both sides
(goal <= 1.0: no page costs more than counting the table). ``queries_constant`` says
whether every endpoint issues the same number of queries at 10 reports as at a million.

1. The parent (the command the user runs) never opens the configured database. It
   refuses a ``--database-url`` that names it, creates the bench databases when missing
   (the given one for the full volume, the same name with ``_small`` for 10 reports) and
   runs one child process per database (``bench feedback --child``) with ``DATABASE_URL``
   set to it and ``RADTRUST_VAR_DIR`` to ``var/bench/feedback``, so that Django's only
   connection is the bench database from the start. ``DJANGO_DEBUG`` is off there, as
   in production, so timings do not include query logging.
2. The child migrates, then seeds once in one transaction (``seed``): institutions, one
   clinician per institution, an officer, five foundation models with a deployed version
   each, the deployments (version ``i % 5`` at institution ``i // 5``), then the reports by
   PostgreSQL COPY, in time order (as they arrive), and the maintained
   ``DeploymentMonitor`` counts by one aggregate and the weekly ``DeploymentWeek`` summaries by ``weeks_rebuild``. A few open alerts and incidents give
   the other lists rows. The registry rows are written with ``bulk_create``, which skips
   the audit receivers: this is synthetic data, not a record of anyone's act. The
   ``bench_seed`` table marks a finished seed; a second run with the same sizes reuses
   it, other sizes are refused, and a database that holds institutions but no mark is
   refused as not a bench database. ``VACUUM ANALYZE`` follows, as autovacuum would
   in a running system (planner statistics and the visibility map for index-only scans).
3. Distributions: report times uniform over the last 52 weeks; deployments' volumes
   lognormal (sigma 0.5, deployment 0 the busiest: about 4x the mean); per deployment a
   disagreement rate between 4% and 16% and "partly" at half of it; error types and
   severities from fixed shares; minutes saved present in 70% (about 3 +- 4), each
   rating in 40% (mostly 4), a comment in 10%.
4. The child measures (``measure``) with Django's test ``Client``: the officer on every
   endpoint, the clinician on their own ``/feedback/``; the monitoring endpoints read the
   first deployment (the busiest at full volume; the same one at 10 reports), the clinician
   is its site's. Each endpoint is requested once to warm up and once inside
   ``CaptureQueriesContext`` for its query count, then ``repeats`` rounds of one count
   and one request per endpoint; p50/p95 are numpy's linear percentiles in ms.
5. The parent merges both children: latencies and count from the full volume, query
   counts from both (``queries_10``, ``queries_1m``), and prints one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import psycopg
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from psycopg import sql

from compliance.feedback import weeks_rebuild
from compliance.models import Alert, DeploymentMonitor, Feedback, Incident
from core.choices import Role
from radtrust_demo.bench.world import bench_deployments
from registry.models import Deployment, Institution, User

Log = Callable[[str], None]
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/radtrust_bench_feedback"
ROWS = 1_000_000
DEPLOYMENTS = 200
SMALL_ROWS = 10
REPEATS = 30
GOAL = ("<=", 1.0)
ALERTS_PER_DEPLOYMENTS = 10  # one open alert per ten deployments
INCIDENTS = 10
COPY_CHUNK = 100_000
FEEDBACK_COLUMNS = (
    "deployment_id",
    "version_id",
    "institution_id",
    "clinician_id",
    "submission_key",
    "case_reference",
    "model_output",
    "agreement",
    "error_type",
    "severity",
    "minutes_saved",
    "explanation_helped",
    "uncertainty_helped",
    "fitted_workflow",
    "comment",
    "created_at",
    "updated_at",
)
ERROR_TYPES = (
    ("false_positive", 0.4),
    ("false_negative", 0.25),
    ("wrong_localisation", 0.15),
    ("wrong_class", 0.1),
    ("poor_image_handling", 0.06),
    ("other", 0.04),
)
COMMENTS = (
    "Missed a small lesion near the hilum.",
    "Flagged a known scar.",
    "Helpful on a busy list.",
    "Heatmap pointed at the marker.",
    "Output arrived after I had read the study.",
)


@dataclass
class Endpoint:
    """One read timed at the full volume, with its query count at both volumes."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    queries_10: int | None = None
    queries_1m: int | None = None


@dataclass
class ChildResult:
    """What one child reports on its database."""

    rows: int
    deployments: int
    count_ms: float | None
    reused: bool
    seed_seconds: float | None
    queries: dict[str, int]
    latency_ms: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- Parent ---------------------------------------------------------------------------


def small_database_url(database_url: str) -> str:
    """The 10-report database: the same server and options, the name with ``_small``."""
    parsed = urlparse(database_url)
    return parsed._replace(path=f"{parsed.path}_small").geturl()


def _database_name(database_url: str) -> str:
    parsed = urlparse(database_url)
    if parsed.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ValueError(f"The bench needs a PostgreSQL URL, got {database_url!r}.")
    name = unquote(parsed.path.lstrip("/"))
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"Name the bench database with letters, digits and underscores, got {name!r}.")
    return name


def _admin_conninfo(database_url: str) -> str:
    """The same server, the ``postgres`` maintenance database."""
    return urlparse(database_url)._replace(path="/postgres", query="").geturl()


def refuse_configured_database(database_url: str, configured: dict[str, Any]) -> None:
    """The bench writes a million rows: never into the database the project is configured with."""
    parsed = urlparse(database_url)
    same_server = (configured.get("HOST") or "") in {parsed.hostname or "", ""} and str(configured.get("PORT") or "5432") == str(parsed.port or 5432)
    if configured.get("ENGINE", "").endswith("postgresql") and configured.get("NAME") == _database_name(database_url) and same_server:
        raise ValueError(f"{database_url} is the configured database; the bench needs one of its own.")


def ensure_database(database_url: str) -> bool:
    """Create the database when it is missing; True when it was created."""
    name = _database_name(database_url)
    with psycopg.connect(_admin_conninfo(database_url), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def drop_database(database_url: str) -> None:
    """Remove a bench database (the tests' own); closes its connections first."""
    with psycopg.connect(_admin_conninfo(database_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_database_name(database_url))))


def _child_url(database_url: str) -> str:
    """Keep the child's one connection for the whole run: a reconnect would land in a timing."""
    parsed = urlparse(database_url)
    if "conn_max_age" in parsed.query:
        return database_url
    return parsed._replace(query="&".join(filter(None, [parsed.query, "conn_max_age=3600"]))).geturl()


def run_child(*, database_url: str, rows: int, deployments: int, repeats: int, manage_py: Path, var_dir: Path) -> ChildResult:
    """Seed (or reuse) and measure one database in a process whose only database it is."""
    ensure_database(database_url)
    env = {**os.environ, "DATABASE_URL": _child_url(database_url), "RADTRUST_VAR_DIR": str(var_dir), "DJANGO_DEBUG": "false"}
    command = [
        sys.executable,
        str(manage_py),
        "bench",
        "feedback",
        "--child",
        "--rows",
        str(rows),
        "--deployments",
        str(deployments),
        "--repeats",
        str(repeats),
    ]
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=False)  # progress: stderr, inherited
    if done.returncode != 0:
        raise RuntimeError(f"The bench child on {_database_name(database_url)} failed (exit {done.returncode}).")
    return ChildResult(**json.loads(done.stdout))


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def merge(big: ChildResult, small: ChildResult) -> dict[str, Any]:
    """One JSON object: per endpoint p50/p95 at full volume and its query counts at both."""
    count_ms = big.count_ms
    endpoints = {
        url: Endpoint(
            p50_ms=_percentile(big.latency_ms.get(url, []), 50),
            p95_ms=_percentile(big.latency_ms.get(url, []), 95),
            queries_10=small.queries.get(url),
            queries_1m=queries,
        )
        for url, queries in big.queries.items()
    }
    worst = max((e.p95_ms for e in endpoints.values() if e.p95_ms is not None), default=None)
    return {
        "worst_p95_over_count": None if worst is None or not count_ms else worst / count_ms,
        "goal": {"worst_p95_over_count": list(GOAL)},
        "queries_constant": set(big.queries) == set(small.queries) and all(e.queries_10 == e.queries_1m for e in endpoints.values()),
        "endpoints": {url: asdict(e) for url, e in endpoints.items()},
        "count_ms": count_ms,
        "rows": big.rows,
        "rows_small": small.rows,
        "deployments": big.deployments,
        "seed_seconds": big.seed_seconds,
        "reused": big.reused,
        "repeats": len(next(iter(big.latency_ms.values()), [])),
    }


def run_bench(*, database_url: str, rows: int, deployments: int, repeats: int, manage_py: Path, var_dir: Path, log: Log) -> dict[str, Any]:
    """Measure the full volume and the 10-report volume, each in its own child process."""
    var_dir.mkdir(parents=True, exist_ok=True)
    small_url = small_database_url(database_url)
    log(f"{_database_name(database_url)}: {rows} reports over {deployments} deployments")
    big = run_child(database_url=database_url, rows=rows, deployments=deployments, repeats=repeats, manage_py=manage_py, var_dir=var_dir)
    log(f"{_database_name(small_url)}: {SMALL_ROWS} reports, for the query counts")
    small = run_child(database_url=small_url, rows=SMALL_ROWS, deployments=deployments, repeats=1, manage_py=manage_py, var_dir=var_dir)
    return merge(big, small)


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'endpoint':<34} {'p50 ms':>8} {'p95 ms':>8} {'q@10':>5} {'q@full':>6}"]
    for url, e in result["endpoints"].items():
        lines.append(f"{url:<34} {e['p50_ms']:>8.2f} {e['p95_ms']:>8.2f} {e['queries_10']!s:>5} {e['queries_1m']!s:>6}")
    lines.append(f"count(*) median {result['count_ms']:.2f} ms over {result['rows']} rows")
    lines.append(f"worst_p95_over_count {result['worst_p95_over_count']:.3f} (goal <= 1.0); queries_constant {result['queries_constant']}")
    return "\n".join(lines)


# --- Child: seeding --------------------------------------------------------------------


def _seed_mark(cursor) -> tuple[int, int] | None:
    cursor.execute("SELECT to_regclass('bench_seed') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return None
    cursor.execute("SELECT rows, deployments FROM bench_seed")
    row = cursor.fetchone()
    return None if row is None else (row[0], row[1])


def _registry(deployments: int, now) -> tuple[list, list, Any]:
    """Institutions, users, models, versions and deployments, without audit events (bulk_create)."""
    institutions, placed = bench_deployments(deployments, (now - timedelta(weeks=53)).date(), code_prefix="site")
    clinicians = User.objects.bulk_create([User(username=f"clinician{i:03d}", institution=inst, password="!") for i, inst in enumerate(institutions)])
    (officer,) = User.objects.bulk_create([User(username="officer", institution=institutions[0], password="!")])
    groups = dict(Group.objects.filter(name__in=[Role.CLINICIAN, Role.COMPLIANCE_OFFICER]).values_list("name", "pk"))
    User.groups.through.objects.bulk_create(
        [User.groups.through(user_id=u.pk, group_id=groups[Role.CLINICIAN]) for u in clinicians]
        + [User.groups.through(user_id=officer.pk, group_id=groups[Role.COMPLIANCE_OFFICER])]
    )
    return placed, clinicians, officer


def _feedback_chunks(placed: list, clinicians: list, rows: int, now, rng: np.random.Generator):
    """COPY text for ``rows`` reports in time order, ``COPY_CHUNK`` rows at a time."""
    n_dep = len(placed)
    weights = np.sort(rng.lognormal(0.0, 0.5, n_dep))[::-1]
    weights /= weights.sum()
    disagree_rate = rng.uniform(0.04, 0.16, n_dep)
    dep_id = np.array([d.pk for d in placed])
    ver_id = np.array([d.version_id for d in placed])
    inst_id = np.array([d.institution_id for d in placed])
    clin_by_inst = {c.institution_id: c.pk for c in clinicians}
    clin_id = np.array([clin_by_inst[i] for i in inst_id])
    start = np.datetime64(now.replace(tzinfo=None), "us") - np.timedelta64(52 * 7 * 24 * 3600 * 10**6, "us")
    offsets = np.sort(rng.integers(0, 52 * 7 * 24 * 3600 * 10**6, rows))
    error_names, error_p = zip(*ERROR_TYPES)
    for lo in range(0, rows, COPY_CHUNK):
        n = min(COPY_CHUNK, rows - lo)
        d = rng.choice(n_dep, size=n, p=weights)
        u = rng.random(n)
        agreement = np.where(u < disagree_rate[d], "disagree", np.where(u < 1.5 * disagree_rate[d], "partly", "agree"))
        error = np.where(agreement == "agree", "", rng.choice(error_names, size=n, p=error_p))
        severity = np.where(
            agreement == "agree",
            "none",
            rng.choice(["none", "low", "moderate", "high"], size=n, p=[0.3, 0.45, 0.2, 0.05]),
        )
        minutes = np.clip(np.rint(rng.normal(3.0, 4.0, n)), -240, 240).astype(int).astype(str)
        minutes = np.where(rng.random(n) < 0.7, minutes, r"\N")
        ratings = [
            np.where(rng.random(n) < 0.4, rng.choice(["1", "2", "3", "4", "5"], size=n, p=[0.05, 0.1, 0.2, 0.4, 0.25]), r"\N") for _ in range(3)
        ]
        comment = np.where(rng.random(n) < 0.1, rng.choice(COMMENTS, size=n), "")
        keys = rng.bytes(16 * n).hex()
        cases = rng.integers(0, 16**6, n)
        scores = rng.random(n)
        stamps = np.datetime_as_string(start + offsets[lo : lo + n].astype("timedelta64[us]"), unit="us")
        columns = [
            dep_id[d].astype(str),
            ver_id[d].astype(str),
            inst_id[d].astype(str),
            clin_id[d].astype(str),
            [keys[i * 32 : i * 32 + 32] for i in range(n)],
            [f"CASE-{c:06x}" for c in cases.tolist()],
            [f"finding {s:.2f} ({'flagged' if s >= 0.5 else 'clear'})" for s in scores.tolist()],
            agreement,
            error,
            severity,
            minutes,
            *ratings,
            comment,
            stamps,
            stamps,
        ]
        columns = [c.tolist() if isinstance(c, np.ndarray) else c for c in columns]
        yield ("\n".join(map("\t".join, zip(*columns))) + "\n").encode()


def seed(*, rows: int, deployments: int, log: Log) -> float:
    """Write the synthetic registry, reports, monitors, alerts and incidents in one transaction; seconds taken."""
    began = time.perf_counter()
    now = timezone.now()
    rng = np.random.default_rng(20240601)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        placed, clinicians, officer = _registry(deployments, now)
        log(f"copying {rows} reports")
        with cursor.copy(f"COPY compliance_feedback ({', '.join(FEEDBACK_COLUMNS)}) FROM STDIN") as copy:
            for chunk in _feedback_chunks(placed, clinicians, rows, now, rng):
                copy.write(chunk)
        cursor.execute("""
            INSERT INTO compliance_deploymentmonitor (deployment_id, n_feedback, n_agree, n_partly, n_disagree, baseline_sum,
                baseline_rate, design, state, tested_n, tested_sum, last_feedback_at, updated_at)
            SELECT d.id, count(f.id), count(f.id) FILTER (WHERE f.agreement = 'agree'),
                count(f.id) FILTER (WHERE f.agreement = 'partly'), count(f.id) FILTER (WHERE f.agreement = 'disagree'),
                0, NULL, '{}', '{}', 0, 0, max(f.created_at), now()
            FROM registry_deployment d LEFT JOIN compliance_feedback f ON f.deployment_id = d.id GROUP BY d.id
        """)
        log("summing the weekly monitoring rows")
        weeks_rebuild()
        Alert.objects.bulk_create(
            [
                Alert(
                    version_id=d.version_id,
                    deployment=d,
                    kind="input_drift",
                    severity="info",
                    subject="image_mean",
                    message="Mean image intensity moved beyond its control limit.",
                )
                for d in placed[::ALERTS_PER_DEPLOYMENTS]
            ]
        )
        today = now.date()
        Incident.objects.bulk_create(
            [
                Incident(
                    version_id=f.version_id,
                    deployment_id=f.deployment_id,
                    feedback=f,
                    title=f"Disagreement on {f.case_reference}",
                    description="Synthetic bench incident.",
                    incident_type="other",
                    triage="serious",
                    medical_device=True,
                    aware_on=today,
                    route="mdr",
                    legal_basis="MDR Art. 87(1)",
                    deadline=today + timedelta(days=15),
                    created_by=officer,
                )
                for f in Feedback.objects.order_by("-pk").only("pk", "version_id", "deployment_id", "case_reference")[:INCIDENTS]
            ]
        )
        seconds = time.perf_counter() - began
        cursor.execute("CREATE TABLE bench_seed (rows bigint NOT NULL, deployments integer NOT NULL, seed_seconds double precision NOT NULL)")
        cursor.execute("INSERT INTO bench_seed VALUES (%s, %s, %s)", [rows, deployments, seconds])
    log("vacuum analyze")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return seconds


def seed_once(*, rows: int, deployments: int, log: Log) -> tuple[bool, float]:
    """Seed an empty bench database, or reuse a finished seed of the same sizes: (reused, seed seconds)."""
    with connection.cursor() as cursor:
        mark = _seed_mark(cursor)
        if mark == (rows, deployments):
            cursor.execute("SELECT seed_seconds FROM bench_seed")
            return True, cursor.fetchone()[0]
    name = connection.settings_dict["NAME"]
    if mark is not None:
        raise ValueError(f"{name} holds {mark[0]} reports over {mark[1]} deployments; drop it or name another --database-url.")
    if Institution.objects.exists():
        raise ValueError(f"{name} holds data but no finished bench seed: it is not a bench database (or a seed failed; drop it).")
    return False, seed(rows=rows, deployments=deployments, log=log)


# --- Child: measuring ------------------------------------------------------------------


def _endpoints(busiest: int) -> list[tuple[str, str, str]]:
    """(label, persona, url): the officer's reads and the clinician's own list."""
    return [
        ("/api/feedback/", "officer", "/api/feedback/"),
        (f"/api/monitoring/{busiest}/", "officer", f"/api/monitoring/{busiest}/"),
        ("/api/alerts/", "officer", "/api/alerts/"),
        ("/api/incidents/", "officer", "/api/incidents/"),
        ("/feedback/", "officer", "/feedback/"),
        ("/feedback/ (clinician)", "clinician", "/feedback/"),
        ("/monitoring/", "officer", "/monitoring/"),
        (f"/monitoring/{busiest}/", "officer", f"/monitoring/{busiest}/"),
        ("/alerts/", "officer", "/alerts/"),
        ("/incidents/", "officer", "/incidents/"),
    ]


def measure(*, repeats: int, reused: bool, seed_seconds: float, log: Log) -> ChildResult:
    """Query counts, then interleaved rounds of one count and one request per endpoint."""
    busiest = Deployment.objects.order_by("pk").values_list("pk", flat=True).first()  # seeded with the largest share, at both volumes
    officer = User.objects.get(username="officer")
    clinician = User.objects.get(username__startswith="clinician", institution__deployments__pk=busiest)  # the busiest site's
    clients = {"officer": Client(), "clinician": Client()}
    clients["officer"].force_login(officer)
    clients["clinician"].force_login(clinician)
    endpoints = _endpoints(busiest)

    def get(persona: str, url: str) -> None:
        response = clients[persona].get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} as {persona}: {response.status_code} {response.content[:300]!r}")

    queries = {}
    for label, persona, url in endpoints:
        get(persona, url)  # warm up: templates, plans, caches
        with CaptureQueriesContext(connection) as captured:
            get(persona, url)
        queries[label] = len(captured)
    latency: dict[str, list[float]] = {label: [] for label, _, _ in endpoints}
    counts, rows = [], 0
    log(f"timing {len(endpoints)} endpoints and count(*), {repeats} rounds")
    with connection.cursor() as cursor:
        for _ in range(repeats):
            began = time.perf_counter()
            cursor.execute("SELECT count(*) FROM compliance_feedback")
            rows = cursor.fetchone()[0]
            counts.append((time.perf_counter() - began) * 1000)
            for label, persona, url in endpoints:
                began = time.perf_counter()
                get(persona, url)
                latency[label].append((time.perf_counter() - began) * 1000)
    return ChildResult(
        rows=rows,
        deployments=DeploymentMonitor.objects.count(),
        count_ms=float(np.median(counts)) if counts else None,
        reused=reused,
        seed_seconds=seed_seconds,
        queries=queries,
        latency_ms=latency,
    )


def run_child_here(*, rows: int, deployments: int, repeats: int, log: Log) -> ChildResult:
    """The child's whole job, on the database Django is configured with (the bench's)."""
    call_command("migrate", verbosity=0)
    reused, seconds = seed_once(rows=rows, deployments=deployments, log=log)
    log(f"{'reused' if reused else 'seeded'} ({seconds:.1f} s to seed)")
    return measure(repeats=repeats, reused=reused, seed_seconds=seconds, log=log)
