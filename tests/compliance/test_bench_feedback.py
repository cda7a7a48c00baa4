"""``manage.py bench feedback`` end to end on PostgreSQL, at small sizes, in databases of the test's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from radtrust_demo.bench.feedback import drop_database, small_database_url

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # seeds a benchmark database

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER = os.environ.get("TEST_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")


@pytest.fixture
def bench_url():
    url = f"{SERVER}/radtrust_bench_test_{uuid.uuid4().hex[:10]}"
    yield url
    for each in (url, small_database_url(url)):
        drop_database(each)


def _bench(url: str, tmp_path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "manage.py", "bench", "feedback", "--json", "--rows", "2000", "--deployments", "5", "--repeats", "3", "--database-url", url],
        cwd=REPO_ROOT,
        env={**os.environ, "RADTRUST_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_bench_seeds_its_own_database_once_and_reports_constant_queries(bench_url, tmp_path):
    first = _bench(bench_url, tmp_path)
    assert {"worst_p95_over_count", "queries_constant", "endpoints", "count_ms", "rows", "deployments", "seed_seconds", "reused"} <= first.keys()
    assert first["rows"] == 2000 and first["rows_small"] == 10 and first["deployments"] == 5
    assert not first["reused"] and first["seed_seconds"] > 0
    assert first["queries_constant"] is True
    assert len(first["endpoints"]) == 10
    for figures in first["endpoints"].values():
        assert figures["p95_ms"] >= figures["p50_ms"] > 0 and figures["queries_10"] == figures["queries_1m"] > 0
    assert first["worst_p95_over_count"] == max(e["p95_ms"] for e in first["endpoints"].values()) / first["count_ms"]

    with psycopg.connect(bench_url) as conn:  # the monitors hold the seeded counts
        assert conn.execute(
            "SELECT sum(n_feedback), sum(n_agree + n_partly + n_disagree), count(*) FROM compliance_deploymentmonitor"
        ).fetchone() == (2000, 2000, 5)
        assert conn.execute("SELECT count(*) FROM compliance_feedback WHERE agreement <> 'agree' AND error_type = ''").fetchone() == (0,)

    second = _bench(bench_url, tmp_path)
    assert second["reused"] and second["rows"] == 2000 and second["seed_seconds"] == first["seed_seconds"]


def test_bench_refuses_other_sizes_in_a_seeded_database(bench_url, tmp_path):
    _bench(bench_url, tmp_path)
    done = subprocess.run(
        [sys.executable, "manage.py", "bench", "feedback", "--json", "--rows", "3000", "--deployments", "5", "--database-url", bench_url],
        cwd=REPO_ROOT,
        env={**os.environ, "RADTRUST_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and "holds 2000 reports over 5 deployments" in done.stderr
