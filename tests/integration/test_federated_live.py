"""Site agents as separate processes against the real server on loopback (pytest-django's ``live_server``).

Each site's data root is written here with its own prevalence, intensity offset and
distinctive patient ids; the agents run ``python -m radtrust_agent`` without Django
settings and reach the server only over HTTP with their site's token. The server going
away is a loopback TCP proxy in front of the live server that the test closes and opens.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import models
from django.utils import timezone

from radtrust_agent.state import AgentState, JobStatus
from radtrust_engine.federated_payload import SiteSummary
from radtrust_engine.federated_pooling import pool_sites, site_meta_analysis
from radtrust_engine.loading import read_manifest
from radtrust_engine.metrics import auroc
from radtrust_engine.pipeline import SuiteConfig, evaluate
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.runner import open_session, select_device
from tests.integration.conftest import REPO_ROOT, wait_for
from validation.federated import study_create
from validation.models import FederatedJob, FederatedStudy, SiteReport

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LABEL = "pneumothorax"
SCHEMA = {"class_names": [LABEL], "thresholds": {LABEL: 0.5}, "activation": "sigmoid"}
SPEC = {"attributes": ["sex", "age_band", "scanner_manufacturer"], "intersections": [["sex", "scanner_manufacturer"]], "n_resamples": 200, "seed": 4}
SITES = {"north": (0.25, 0.0, 11), "south": (0.5, 0.6, 12)}  # prevalence, intensity offset, seed
PATIENTS = 70  # two images each
MANIFEST_HEADER = f"image_path,patient_id,study_date,age,sex,scanner_manufacturer,{LABEL}"
ID_MARK = "MRN~"  # in every patient id and image name; the tilde keeps it out of random tokens and hashes
AGENT_TIMEOUT = 120.0


def write_site(root: Path, code: str) -> dict[str, list[str]]:
    """A site's manifest and NPY images (positives carry a bright square the tiny model ranks);
    the patient ids, image names and relative paths it holds, for the search afterwards."""
    prevalence, offset, seed = SITES[code]
    rng = np.random.default_rng(seed)
    (root / "pixels").mkdir(parents=True)
    lines, found = [MANIFEST_HEADER], {"patients": [], "images": [], "paths": []}
    for i in range(PATIENTS):
        patient = f"{code.upper()}-{ID_MARK}{seed}{i:05d}"
        label, sex, age = int(rng.random() < prevalence), "FM"[i % 2], int(rng.integers(20, 90))
        vendor = ("Vendor A", "Vendor B")[(i // 2) % 2]
        for k in (1, 2):
            image = rng.normal(offset, 1.0, (64, 64)).astype(np.float32)
            if label:
                image[20:40, 20:40] += 3.0
            name = f"{patient}-{k}.npy"
            np.save(root / "pixels" / name, image)
            lines.append(f"pixels/{name},{patient},2024-03-{1 + i % 28:02d},{age},{sex},{vendor},{label}")
            found["images"].append(name)
            found["paths"].append(f"pixels/{name}")
        found["patients"].append(patient)
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return found


def agent_env() -> dict[str, str]:
    """The agent needs no Django: no settings module, the repository on the path."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
    return env


def agent_command(server: str, token: str, root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "radtrust_agent", "--server", server, "--token", token, "--data-root", str(root), "--cpu", *extra]


def site_token(code: str) -> str:
    out = io.StringIO()
    call_command("agent_token", institution=code, stdout=out)
    return out.getvalue().strip()


def stored_texts() -> str:
    """Every text and JSON column of every row of every model, as one string."""
    texts = []
    for model in apps.get_models():
        fields = [f.attname for f in model._meta.concrete_fields if isinstance(f, (models.CharField, models.TextField, models.JSONField))]
        if fields:
            for row in model.objects.values_list(*fields):
                texts += [v if isinstance(v, str) else json.dumps(v) for v in row]
    return "\n".join(texts)


@pytest.fixture
def federated(personas, institutions, register_version, tmp_path):
    """A registered tiny classifier, one site data root per hospital, and ``open_study(codes)``."""
    from tests.factories import FoundationModelFactory

    version = register_version(FoundationModelFactory(provider=institutions["vendor"]), output_schema=SCHEMA)
    roots, written = {}, {}
    for code in SITES:
        roots[code] = tmp_path / "sites" / code
        written[code] = write_site(roots[code], code)

    def open_study(codes: tuple[str, ...]) -> FederatedStudy:
        return study_create(
            actor=personas["engineer"],
            version=version,
            name="Pneumothorax at two hospitals",
            spec=SPEC,
            deadline=timezone.now() + timedelta(hours=1),
            institutions=[institutions[c] for c in codes],
        )

    return {"version": version, "roots": roots, "written": written, "open_study": open_study}


def test_agents_evaluate_at_their_sites_and_the_server_pools_aggregates_only(federated, live_server, personas, api_client, onnx_files, tmp_path):
    study = federated["open_study"](tuple(SITES))
    processes = {}
    try:
        for code, root in federated["roots"].items():
            with open(tmp_path / f"agent-{code}.log", "wb") as log:
                command = agent_command(live_server.url, site_token(code), root, "--once", "--auto-approve", f"{code} data owner")
                processes[code] = subprocess.Popen(command, cwd=REPO_ROOT, env=agent_env(), stdout=log, stderr=subprocess.STDOUT)
        for code, process in processes.items():
            assert process.wait(timeout=AGENT_TIMEOUT) == 0, (tmp_path / f"agent-{code}.log").read_text()
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    reports = {r.job.institution.code: r for r in SiteReport.objects.filter(job__study=study).select_related("job__institution")}
    assert sorted(reports) == ["north", "south"]
    assert {code: r.approved_by for code, r in reports.items()} == {c: f"{c} data owner" for c in SITES}
    assert set(FederatedJob.objects.filter(study=study).values_list("status", flat=True)) == {"reported"}
    assert {code: r.agent["cases"] for code, r in reports.items()} == dict.fromkeys(SITES, 2 * PATIENTS)

    pooled = api_client(personas["officer"]).get(f"/api/federated-studies/{study.pk}/pooled/").json()
    summaries = {code: SiteSummary.from_dict(reports[code].payload) for code in sorted(reports)}
    expected = pool_sites(summaries)
    assert pooled["pooled"]["sites"] == ["north", "south"] and pooled["completeness"]["complete"]
    for stratum, reference in zip(pooled["pooled"]["strata"], expected.strata, strict=True):
        assert stratum["labels"][LABEL]["auroc"] == reference.labels[LABEL].auroc.to_dict(), stratum["name"]
    overall = pooled["pooled"]["strata"][0]["labels"][LABEL]["auroc"]
    prevalences = [r["prevalence"]["value"] for r in pooled["site_results"]]
    assert prevalences[1] - prevalences[0] > 0.1  # the sites differ as written

    meta = pooled["meta_analysis"][LABEL]["auroc"]
    assert meta["k"] == 2 and meta["refused_reason"] is None
    reference = site_meta_analysis(summaries, label=LABEL, metric="auroc")
    assert (meta["estimate"], meta["i2"], meta["tau2"]) == pytest.approx((reference.estimate, reference.i2, reference.tau2))
    assert meta["ci_low"] <= meta["estimate"] <= meta["ci_high"] and meta["prediction_low"] is None  # none from two sites
    assert {c["name"] for c in pooled["charts"]} >= {f"study-forest-auroc-{LABEL}"}

    # Independently: the model's scores computed here on the union of both sites' data.
    version = federated["version"]
    model = open_session(onnx_files["inline"][0], select_device(prefer_gpu=False))  # the file register_version registered
    scores, labels = [], []
    for root in federated["roots"].values():
        manifest = read_manifest(root / "manifest.csv", root, label_columns=[LABEL], class_names=[LABEL])
        central = evaluate(
            model,
            manifest,
            task="binary",
            class_names=[LABEL],
            thresholds={LABEL: 0.5},
            preprocessing=Preprocessing.from_spec(version.preprocessing),
            config=SuiteConfig(n_resamples=0),
            activation="sigmoid",
        )
        scores.append(central.scores[:, 0])
        labels.append(manifest.labels[central.case_index, 0])
    assert overall["value"] == pytest.approx(auroc(np.concatenate(labels), np.concatenate(scores)), abs=0.002)

    text = stored_texts()
    assert "north data owner" in text and len(text) > 10_000  # the search does see the reports
    for code, written in federated["written"].items():
        leaked = [v for kind in ("patients", "images", "paths") for v in written[kind] if v in text]
        assert not leaked, f"{code}: {leaked[:5]}"
        assert str(federated["roots"][code]) not in text
    assert ID_MARK not in text


class LoopbackProxy:
    """A TCP forwarder on a fixed loopback port to the live server; ``close`` makes the server unreachable
    (connections refused, open ones cut), ``open`` brings it back on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._connections: list[socket.socket] = []
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.05)
        self._listener, self._stop = listener, threading.Event()
        self._thread = threading.Thread(target=self._accept, args=(listener, self._stop), daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._listener is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        self._listener = None
        for connection in self._connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()
        self._connections.clear()

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.target)
            self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def test_an_agent_process_outlives_the_server_going_away_and_reports_exactly_once(federated, live_server, tmp_path):
    study = federated["open_study"](("north",))
    job = study.jobs.get()
    root = federated["roots"]["north"]
    host, port = urlsplit(live_server.url).hostname, urlsplit(live_server.url).port
    proxy = LoopbackProxy((host, port))
    proxy.open()
    log_path = tmp_path / "agent.log"
    state = AgentState.for_data_root(root)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            agent_command(proxy.url, site_token("north"), root, "--poll-seconds", "0.5", "--retry-cap", "0.5", "--retry-for", "2"),
            cwd=REPO_ROOT,
            env=agent_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def status() -> str | None:
        state.reload()
        record = state.jobs.get(str(job.pk))
        return record and record.status

    def describe() -> str:
        return f"agent {'running' if process.poll() is None else f'exited {process.returncode}'}\n{log_path.read_text()[-4000:]}"

    try:
        wait_for(lambda: status() == JobStatus.AWAITING_APPROVAL, timeout=AGENT_TIMEOUT, describe=describe)
        assert FederatedJob.objects.get(pk=job.pk).status == "claimed"
        proxy.close()  # the server goes away with the payload waiting for the data owner
        wait_for(lambda: "server unavailable (GET /api/federated/jobs/" in log_path.read_text(), timeout=10, describe=describe)

        approve = subprocess.run(
            [sys.executable, "-m", "radtrust_agent", "approve", "--data-root", str(root), "--job", str(job.pk), "--by", "Dr. North (data owner)"],
            cwd=REPO_ROOT,
            env=agent_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert approve.returncode == 0, approve.stderr
        report_retry = f"server unavailable (POST /api/federated/jobs/{job.pk}/report/"
        wait_for(lambda: report_retry in log_path.read_text(), timeout=15, describe=describe)
        assert not SiteReport.objects.exists() and status() == JobStatus.APPROVED

        proxy.open()  # the server is back
        wait_for(lambda: status() == JobStatus.REPORTED, timeout=30, describe=describe)
        time.sleep(1.5)  # three more polls: nothing is sent again
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=30)
        proxy.close()

    assert process.returncode == 0 and "agent stopped" in log_path.read_text()
    report = SiteReport.objects.get()
    assert report.job_id == job.pk and report.approved_by == "Dr. North (data owner)"
    assert FederatedJob.objects.get(pk=job.pk).status == "reported" and FederatedJob.objects.get(pk=job.pk).attempts == 1
    assert log_path.read_text().count(f"job {job.pk}: reported (HTTP 201)") == 1
    assert report.payload == json.loads(state.payload_path(job.pk).read_text())
