"""Fixtures that start real processes: a Celery worker on the embedded filesystem broker.

A worker is a separate ``celery -A radtrust worker`` process. It shares the test
database (a file for SQLite, the test database for PostgreSQL), the test's media
folder, data root and MLflow store, and a broker: a folder of its own under the
test's tmp_path, or the Redis server named by ``TEST_CELERY_BROKER_URL``. Tests
that use it must commit: mark them ``django_db(transaction=True)``. And a real PACS: a throw-away
Orthanc loaded with a generated DICOM set (``pacs``), one per test module that asks for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, urlencode

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The celery script of the interpreter running the tests (.venv/bin/celery).
CELERY = Path(sys.executable).with_name("celery")
WORKER_READY_TIMEOUT = 60.0
_BROKER_FOLDERS = {"data_folder_in": "queue", "data_folder_out": "queue", "control_folder": "control", "processed_folder": "processed"}

T = TypeVar("T")

PACS_IMAGES = 60
PACS_LABEL = "pneumothorax"  # the tiny classifier's class (tests/conftest.py, run_setup)


def wait_for(probe: Callable[[], T], *, timeout: float, interval: float = 0.1, describe: Callable[[], str] = lambda: "") -> T:
    """Call ``probe`` until it returns something truthy; fail with ``describe()`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"Gave up after {timeout:.0f} s. {describe()}")
        time.sleep(interval)


def worker_database_url() -> str:
    """A DATABASE_URL (as ``radtrust.env.database_from_url`` reads it) for the database the tests use now."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    if db["ENGINE"].endswith("postgresql"):
        options = {key: str(value) for key, value in db["OPTIONS"].items()}
        host = db["HOST"] or ""
        if host.startswith("/"):  # a socket folder cannot go in the URL's host part
            options["host"], host = host, ""
        if db.get("CONN_MAX_AGE") is not None:
            options["conn_max_age"] = str(db["CONN_MAX_AGE"])
        auth = quote(db["USER"] or "", safe="")
        if db["PASSWORD"]:
            auth += ":" + quote(db["PASSWORD"], safe="")
        port = f":{db['PORT']}" if db["PORT"] else ""
        query = f"?{urlencode(options)}" if options else ""
        return f"postgres://{auth}@{host}{port}/{quote(db['NAME'], safe='')}{query}"
    raise NotImplementedError(f"No worker DATABASE_URL for {db['ENGINE']}")


def _point_app_at_broker(app, *, url: str, transport_options: dict) -> None:
    """Make the next publish from this process use ``url`` and ``transport_options``.

    The app read the broker settings from Django's settings when it was configured,
    and its connection and producer pools keep connections made with them, so the
    pools are closed and dropped as well (kombu keys them by the transport options).
    """
    from kombu import pools

    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    pools.reset()  # kombu's global producer pools are keyed by URL and options and would hand out a closed pool
    app.amqp._producer_pool = None
    app.conf.broker_url = url
    app.conf.broker_transport_options = transport_options


@dataclass
class Broker:
    """The broker a test's workers and this process share: a fresh filesystem folder, or
    the server named by ``TEST_CELERY_BROKER_URL`` (CI runs the integration tests on Redis too)."""

    url: str
    transport_options: dict
    folder: Path | None

    def worker_env(self) -> dict[str, str]:
        env = {"CELERY_BROKER_URL": self.url}
        if self.folder is not None:
            env["CELERY_BROKER_DIR"] = str(self.folder)
        return env

    def pending(self) -> str:
        if self.folder is None:
            return "(server broker)"
        return str(sorted(p.name for p in (self.folder / "queue").iterdir()))


@pytest.fixture
def celery_broker(tmp_path) -> Iterator[Broker]:
    """The broker for this test, used by this process's Celery app while the test runs."""
    from radtrust.celery import app

    url = os.environ.get("TEST_CELERY_BROKER_URL", "filesystem://")
    options = {**app.conf.broker_transport_options}
    folder = None
    if url.startswith("filesystem"):
        folder = tmp_path / "broker"
        for option, sub in _BROKER_FOLDERS.items():
            (folder / sub).mkdir(parents=True, exist_ok=True)
            options[option] = str(folder / sub)
    elif url.startswith("redis"):
        import redis

        redis.Redis.from_url(url).flushdb()  # a database of its own: no message from an earlier test
        options = {"visibility_timeout": 60}
    previous = {"url": app.conf.broker_url, "transport_options": app.conf.broker_transport_options}
    _point_app_at_broker(app, url=url, transport_options=options)
    try:
        yield Broker(url, options, folder)
    finally:
        _point_app_at_broker(app, **previous)


@dataclass
class WorkerProcess:
    """A running ``celery worker`` and the file its output goes to."""

    process: subprocess.Popen
    log_path: Path
    broker: Broker
    name: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def describe(self) -> str:
        state = "running" if self.process.poll() is None else f"exited with {self.process.returncode}"
        return f"Worker {self.name} {state}; messages still queued: {self.broker.pending()}.\n--- worker log ---\n{self.log()[-6000:]}"

    def kill(self) -> None:
        """SIGKILL the worker and its pool at once, as a crash or the OOM killer would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def spawn_worker(transactional_db, celery_broker, settings, tmp_path) -> Iterator[Callable[..., WorkerProcess]]:
    """``spawn_worker(name, queues=..., env=...)`` starts a real worker process with this test's
    database, media, data root and MLflow store, without waiting for it. Logs are printed at
    teardown, which pytest shows when the test fails."""
    started: list[WorkerProcess] = []

    def spawn(name: str = "w1", *, queues: str = "default,gpu,site.vendor", env: dict[str, str] | None = None) -> WorkerProcess:
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "radtrust.settings",
            "DATABASE_URL": worker_database_url(),
            "RADTRUST_VAR_DIR": str(settings.VAR_DIR),
            **celery_broker.worker_env(),
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "RADTRUST_DATA_ROOTS": ",".join(settings.RADTRUST_DATA_ROOTS),
            "MLFLOW_TRACKING_URI": settings.MLFLOW_TRACKING_URI,
            "MLFLOW_REGISTRY_URI": settings.MLFLOW_REGISTRY_URI,
            "MLFLOW_ARTIFACT_ROOT": str(settings.MLFLOW_ARTIFACT_ROOT),
            "MLFLOW_EXPERIMENT_NAME": settings.MLFLOW_EXPERIMENT_NAME,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        for var in [var for var in environment if f"{var}_FILE" in environment]:
            del environment[f"{var}_FILE"]  # radtrust.env would read the file instead of our value
        command = [
            str(CELERY), "-A", "radtrust", "worker",
            "--pool", "solo", "-Q", queues,
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-l", "info", "-n", f"{name}-{os.getpid()}-{tmp_path.name}@%h",
        ]  # fmt: skip
        log_path = tmp_path / f"worker-{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        worker = WorkerProcess(process, log_path, celery_broker, name)
        started.append(worker)
        return worker

    try:
        yield spawn
    finally:
        for worker in started:
            stopping = time.monotonic()
            _stop(worker.process)
            stopped = f"exit code {worker.process.returncode} after {time.monotonic() - stopping:.1f} s"
            print(f"--- celery worker {worker.name} log ({worker.log_path}), {stopped} ---\n{worker.log()}")


@pytest.fixture
def start_worker(spawn_worker) -> Callable[..., WorkerProcess]:
    """``start_worker(name, queues=..., env=...)``: ``spawn_worker``, then wait until the worker is ready."""

    def start(name: str = "w1", **options) -> WorkerProcess:
        worker = spawn_worker(name, **options)
        wait_for(lambda: worker.process.poll() is not None or " ready." in worker.log(), timeout=WORKER_READY_TIMEOUT, describe=worker.describe)
        if worker.process.poll() is not None:
            pytest.fail(f"The worker did not start. {worker.describe()}")
        return worker

    return start


@pytest.fixture
def celery_worker(start_worker) -> WorkerProcess:
    """One real worker consuming ``default``, ``gpu`` and the vendor site's queue ``site.vendor``."""
    return start_worker()


def _stop(process: subprocess.Popen) -> None:
    """Warm shutdown (SIGTERM lets the running task finish), then SIGKILL the worker if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A generated DICOM test set (three sites, headers with sex, age and scanner) and its files' UIDs and labels."""
    from radtrust_demo.data import generate_dataset
    from radtrust_demo.pacs import dicom_files

    root = tmp_path_factory.mktemp("generated")
    generate_dataset(root, n_images=PACS_IMAGES, seed=5, label=PACS_LABEL)
    return root, dicom_files(root, [PACS_LABEL])


@pytest.fixture(scope="module")
def pacs(generated, tmp_path_factory):
    """A throw-away Orthanc holding every file of ``generated``."""
    from radtrust_demo.orthanc import orthanc

    root, files = generated
    with orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        server.upload(root / f.path for f in files)
        yield server
