"""The site agent against a fake federated jobs server: a real HTTP server on loopback, in a thread.

The fake server implements the API contract the agent was written against (list, claim,
artifact, report, fail; token auth; 201/200/400/409 on report) and records every request,
so tests can count claims, downloads and stored reports. Agents run in process
(``SiteAgent``) and as separate processes (``python -m radtrust_agent``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from radtrust_agent.__main__ import main as agent_main
from radtrust_agent.client import Backoff, ServerClient
from radtrust_agent.evaluation import Job, site_evaluate
from radtrust_agent.jobs import EXIT_UNREACHABLE, SiteAgent, agent_run_job
from radtrust_agent.state import AgentState, JobStatus
from radtrust_engine.artifacts import StoredFile, artifact_dir, file_sha256, set_sha256
from radtrust_engine.federated import site_summary
from radtrust_engine.federated_check import payload_check
from radtrust_engine.loading import read_manifest
from radtrust_engine.pipeline import SuiteConfig, evaluate
from radtrust_engine.preprocessing import Preprocessing
from radtrust_engine.runner import open_session, select_device
from radtrust_engine.stratification import age_band

TOKEN = "north-site-token"
ROOT = Path(__file__).resolve().parents[2]
SCHEMA = {"class_names": ["pneumothorax"], "thresholds": {"pneumothorax": 0.5}, "activation": "sigmoid"}
SPEC = {
    "labels": ["pneumothorax"],
    "attributes": ["sex", "age_band", "site"],
    "intersections": [["sex", "site"]],
    "min_patients": 10,
    "thresholds": None,
    "n_resamples": 50,
    "seed": 3,
    "manifest": "manifest.csv",
}


# --- The fake server ---------------------------------------------------------------------


class FakeServer:
    """The federated jobs API of the contract, in memory; ``hook(handler, method, path)`` may take over a request."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.jobs: dict[int, dict] = {}
        self.files: dict[tuple[int, str], bytes] = {}
        self.reports: dict[int, dict] = {}
        self.failures: dict[int, str] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.paginate = False
        self.hook = None
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and re.search(pattern, p))

    def add_job(self, job_id: int, files: list[Path], spec: dict | None = None, **version) -> dict:
        stored = [StoredFile(p.name, file_sha256(p), p.stat().st_size, "model" if i == 0 else "external_data") for i, p in enumerate(files)]
        for p in files:
            self.files[(job_id, p.name)] = p.read_bytes()
        job = {
            "id": job_id,
            "study": 7,
            "status": "pending",
            "deadline": "2030-01-01T00:00:00Z",
            "spec": {**SPEC, **(spec or {})},
            "version": {
                "id": 3,
                "label": "CXR-PTX 1.0.0",
                "artifact_sha256": set_sha256(stored),
                "files": [f.__dict__ for f in stored],
                "output_schema": SCHEMA,
                "preprocessing": {},
                "task": "binary",
                "modality": "DX",
                **version,
            },
        }
        self.jobs[job_id] = job
        return job

    def start(self) -> FakeServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, data) -> None:
                body = data if isinstance(data, bytes) else json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(data, bytes) else "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                server.requests.append((method, self.path, body))
                if server.hook and server.hook(self, method, self.path):
                    return
                if self.headers.get("Authorization") != f"Token {TOKEN}":
                    return self._send(401, {"detail": "Invalid token."})
                if method == "GET" and self.path == "/api/federated/jobs/?status=pending":
                    pending = [j for j in server.jobs.values() if j["status"] == "pending"]
                    return self._send(200, {"count": len(pending), "next": None, "results": pending} if server.paginate else pending)
                match = re.fullmatch(r"/api/federated/jobs/(\d+)/(claim|report|fail|artifact/([^/]+))/", self.path)
                job = server.jobs.get(int(match.group(1))) if match else None
                if job is None:
                    return self._send(404, {"detail": "Not found."})
                job_id, action = job["id"], match.group(2)
                if method == "POST" and action == "claim":
                    if job["status"] != "pending":
                        return self._send(409, {"detail": "The job is already claimed."})
                    job["status"] = "claimed"
                    return self._send(200, job)
                if method == "GET" and action.startswith("artifact/"):
                    return self._send(200, server.files[(job_id, match.group(3))])
                if method == "POST" and action == "report":
                    errors = {k: ["This field is required."] for k in ("payload", "approved_by", "approved_at", "agent") if not body.get(k)}
                    if not errors and (problems := payload_check(body["payload"])):
                        errors = {"payload": problems}
                    if errors:
                        return self._send(400, errors)
                    if job_id in server.reports:
                        same = server.reports[job_id]["payload"] == body["payload"]
                        return self._send(200 if same else 409, {"detail": "stored" if same else "A different payload was reported."})
                    server.reports[job_id] = body
                    job["status"] = "reported"
                    return self._send(201, {"detail": "stored"})
                if method == "POST" and action == "fail":
                    server.failures[job_id] = body["reason"]
                    job["status"] = "failed"
                    return self._send(200, {"detail": "recorded"})
                return self._send(405, {"detail": "Method not allowed."})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        ThreadingHTTPServer.allow_reuse_address = True
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


def drop(handler: BaseHTTPRequestHandler) -> bool:
    """Close the connection without an answer (the server went away mid-request)."""
    handler.close_connection = True
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    fake = FakeServer().start()
    yield fake
    fake.stop()


@pytest.fixture
def site(write_dataset):
    """A North site's data root (60 images of 30 patients) with the agent's state under it."""
    return write_dataset("north", n=60)


def make_agent(server: FakeServer, data_root: Path, *, auto_approve: str | None = "dpo-north", retry_for: float = 5.0) -> SiteAgent:
    client = ServerClient(server.url, TOKEN, backoff=Backoff(base=0.05, cap=0.2, give_up_after=retry_for), timeout=5)
    return SiteAgent(client=client, data_root=data_root, state=AgentState.for_data_root(data_root), auto_approve=auto_approve, prefer_gpu=False)


def agent_process(server_url: str, data_root: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "radtrust_agent",
        "--server",
        server_url,
        "--token",
        TOKEN,
        "--data-root",
        str(data_root),
        "--cpu",
        "--retry-cap",
        "0.3",
        *extra,
    ]


def process_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def strings(value) -> set[str]:
    """Every key and string value in a JSON object."""
    if isinstance(value, dict):
        return set(map(str, value)) | set().union(*(strings(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(strings(v) for v in value)) if value else set()
    return {value} if isinstance(value, str) else set()


# --- A full job ------------------------------------------------------------------------


def test_full_job_is_claimed_verified_evaluated_and_reported_as_a_central_run_would(server, site, onnx_files):
    server.paginate = True
    server.add_job(11, onnx_files["external"])
    agent = make_agent(server, site)

    assert agent.cycle() is True

    record = agent.state.jobs["11"]
    assert record.status == JobStatus.REPORTED and record.server_answer == "201"
    assert server.count("POST", "/11/claim/") == 1
    assert server.count("GET", "/11/artifact/") == len(onnx_files["external"]) == 2
    report = server.reports[11]
    assert report["approved_by"] == "dpo-north"
    assert report["agent"]["device"] == "cpu" and report["agent"]["cases"] == 60 and report["agent"]["seconds"] > 0
    # The exact payload in the outbox is what was sent, and the server's check accepts it.
    assert json.loads(agent.state.payload_path(11).read_text()) == report["payload"]
    assert payload_check(report["payload"]) == []
    # Artifact cached content-addressed and verified.
    cached = artifact_dir(agent.state.artifacts, server.jobs[11]["version"]["artifact_sha256"])
    assert sorted(p.name for p in cached.iterdir()) == sorted(p.name for p in onnx_files["external"])

    # Independently: the central engine's scores on the same data, summarised the same way.
    model = open_session(onnx_files["external"][0], select_device(prefer_gpu=False))
    manifest = read_manifest(site / "manifest.csv", site, label_columns=["pneumothorax"], class_names=["pneumothorax"])
    central = evaluate(
        model,
        manifest,
        task="binary",
        class_names=["pneumothorax"],
        thresholds={"pneumothorax": 0.5},
        preprocessing=Preprocessing.from_spec({}),
        config=SuiteConfig(),
        activation="sigmoid",
    )
    rows = central.case_index
    expected = site_summary(
        {"pneumothorax": central.scores[:, 0]},
        {"pneumothorax": manifest.labels[rows, 0]},
        np.asarray(manifest.patient_ids)[rows],
        {
            "sex": [manifest.attributes["sex"][i] for i in rows],
            "age_band": age_band([manifest.attributes["age"][i] for i in rows]),
            "site": [manifest.attributes["site"][i] for i in rows],
        },
        [("sex", "site")],
        thresholds=0.5,
        min_patients=10,
        n_resamples=50,
        seed=3,
    ).to_dict()
    assert report["payload"] == json.loads(json.dumps(expected))

    # Nothing more to do: another cycle sends nothing.
    assert agent.cycle() is True
    assert server.count("POST", "/report/") == 1


def test_payload_and_failures_carry_no_patient_ids_or_paths(server, write_dataset, onnx_files):
    root = write_dataset("south", n=60)
    broken = write_dataset("west", n=60, rows=["img/missing-x41.npy,pat-x41,2024-02-01,50,F,A,1"])
    server.add_job(21, onnx_files["inline"])
    server.add_job(22, onnx_files["inline"], spec={"manifest": "manifest.csv"})

    assert agent_run_job(server.jobs[21], agent=make_agent(server, root)).status == "reported"
    assert agent_run_job(server.jobs[22], agent=make_agent(server, broken)).status == "failed"

    manifest = read_manifest(root / "manifest.csv", root, label_columns=["pneumothorax"])
    identifying = set(manifest.patient_ids) | set(manifest.image_paths) | {"pat-x41", "img/missing-x41.npy"}
    sent = [body for method, _, body in server.requests if method == "POST" and body]
    assert 21 in server.reports and 22 in server.failures
    for body in sent:
        assert not strings(body) & identifying
        text = json.dumps(body)
        for fragment in ("img/", ".npy", "missing-x41", str(root), str(broken)):
            assert fragment not in text
    assert server.failures[22].startswith("unreadable_images:")
    # The site keeps the details.
    record = AgentState.for_data_root(broken).jobs["22"]
    assert "missing-x41" in record.error and record.fail_pending is False


# --- Review before release ---------------------------------------------------------------


def test_payload_waits_in_the_outbox_until_the_data_owner_approves(server, site, onnx_files, capsys):
    server.add_job(31, onnx_files["inline"])
    agent = make_agent(server, site, auto_approve=None)

    agent.cycle()
    agent.cycle()

    record = agent.state.jobs["31"]
    assert record.status == JobStatus.AWAITING_APPROVAL
    assert agent.state.payload_path(31).is_file() and not agent.state.approval_path(31).exists()
    assert server.reports == {} and server.count("POST", "/report/") == 0

    assert agent_main(["status", "--data-root", str(site)]) == 0
    assert "job 31  study 7  awaiting_approval" in capsys.readouterr().out
    assert agent_main(["approve", "--data-root", str(site), "--job", "31", "--by", "Dr. Weber (DPO)"]) == 0
    approval = json.loads(agent.state.approval_path(31).read_text())
    assert approval["payload_sha256"] == record.payload_sha256

    agent.cycle()

    report = server.reports[31]
    assert (report["approved_by"], report["approved_at"]) == ("Dr. Weber (DPO)", approval["approved_at"])
    assert report["payload"] == json.loads(agent.state.payload_path(31).read_text())
    assert agent_main(["approve", "--data-root", str(site), "--job", "31", "--by", "someone"]) == 1


def test_running_agent_process_sends_the_payload_once_approved(server, site, onnx_files):
    server.add_job(33, onnx_files["inline"])
    state = AgentState.for_data_root(site)
    process = subprocess.Popen(
        agent_process(server.url, site, "--poll-seconds", "60"), cwd=ROOT, env=process_env(), stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not state.payload_path(33).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # a window in which an agent that ignored the approval step would have sent it
        assert server.reports == {}
        approved = subprocess.run(
            [sys.executable, "-m", "radtrust_agent", "approve", "--data-root", str(site), "--job", "33", "--by", "dpo-north"],
            cwd=ROOT,
            env=process_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert approved.returncode == 0, approved.stderr
        assert "job 33: approved by dpo-north" in approved.stdout
        deadline = time.monotonic() + 10  # well before the next poll: the agent watches its outbox
        while 33 not in server.reports and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert server.reports[33]["approved_by"] == "dpo-north", stderr
    assert "waiting for approval of" in stderr and "agent stopped" in stderr and process.returncode == 0


def test_an_approval_of_another_payload_is_not_a_release(server, site, onnx_files):
    server.add_job(32, onnx_files["inline"])
    agent = make_agent(server, site, auto_approve=None)
    agent.cycle()
    path = agent.state.payload_path(32)
    original = path.read_bytes()
    path.write_bytes(original.replace(b'"min_patients": 10', b'"min_patients": 11'))
    assert agent_main(["approve", "--data-root", str(site), "--job", "32", "--by", "dpo"]) == 1  # refuses the altered file

    agent.state.approval_write(32, by="dpo")  # approves the altered bytes behind the agent's back
    path.write_bytes(original)
    agent.cycle()

    assert agent.state.jobs["32"].status == JobStatus.AWAITING_APPROVAL
    assert server.count("POST", "/report/") == 0


# --- Tampered artifacts ------------------------------------------------------------------


def test_tampered_artifact_is_refused_deleted_and_reported_without_running(server, site, onnx_files):
    server.add_job(41, onnx_files["inline"])
    name = onnx_files["inline"][0].name
    good = server.files[(41, name)]
    server.files[(41, name)] = good[:-1] + bytes([good[-1] ^ 1])  # same size, one bit flipped
    agent = make_agent(server, site)

    agent.cycle()

    record = agent.state.jobs["41"]
    assert record.status == JobStatus.FAILED and not record.fail_pending
    assert server.failures[41].startswith(f"artifact_mismatch: artifact file {name} as downloaded does not match")
    assert "engine" not in record.timings and not agent.state.payload_path(41).exists()
    assert not list(agent.state.artifacts.rglob(name)) and not list(agent.state.artifacts.rglob(f"*{name}"))
    assert server.count("POST", "/report/") == 0


def test_a_file_list_that_does_not_hash_to_the_artifact_is_refused_before_download(server, site, onnx_files):
    job = server.add_job(42, onnx_files["inline"])
    job["version"]["files"][0]["sha256"] = "0" * 64

    make_agent(server, site).cycle()

    assert server.failures[42].startswith("bad_job: version.files do not hash to version.artifact_sha256")
    assert server.count("GET", "/artifact/") == 0


def test_a_corrupted_cached_artifact_is_fetched_again(server, site, onnx_files):
    server.add_job(43, onnx_files["inline"])
    server.add_job(44, onnx_files["inline"])
    agent = make_agent(server, site)
    agent_run_job(server.jobs[43], agent=agent)
    cached = artifact_dir(agent.state.artifacts, server.jobs[43]["version"]["artifact_sha256"]) / onnx_files["inline"][0].name
    cached.write_bytes(b"\0" * cached.stat().st_size)

    assert agent_run_job(server.jobs[44], agent=agent).status == "reported"
    assert file_sha256(cached) == file_sha256(onnx_files["inline"][0])
    assert server.count("GET", "/44/artifact/") == 1


# --- The server unreachable ----------------------------------------------------------------


def test_agent_process_waits_for_a_server_that_is_down_at_start(site, onnx_files):
    fake = FakeServer(port=free_port())
    fake.add_job(51, onnx_files["inline"])
    process = subprocess.Popen(
        agent_process(fake.url, site, "--once", "--auto-approve", "dpo", "--retry-for", "60"),
        cwd=ROOT,
        env=process_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    second_retry = threading.Event()

    def read_stderr() -> None:
        for line in process.stderr:
            lines.append(line)
            if "retry 2 in" in line:
                second_retry.set()
        second_retry.set()  # the process ended: the asserts below say how

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        # Start the server only once the agent has been refused twice (however slowly it starts on a
        # loaded machine), so the test proves it keeps retrying instead of exiting. No timeouts: the
        # agent ends by itself (--once, --retry-for 60), which also ends stderr and sets the event.
        second_retry.wait()
        assert process.poll() is None, "".join(lines)  # still retrying
        fake.start()
        process.wait()
        reader.join()
    finally:
        process.kill()
        fake.stop()
    stderr = "".join(lines)
    assert process.returncode == 0, stderr
    assert "server unavailable (GET /api/federated/jobs/" in stderr and "retry 2 in" in stderr
    assert 51 in fake.reports and fake.jobs[51]["status"] == "reported"
    assert "job 51: reported (HTTP 201)" in stderr


def test_server_errors_are_retried_and_once_gives_up_with_a_tempfail_status(server, site, onnx_files):
    server.add_job(52, onnx_files["inline"])
    outage = {"left": 3}

    def unavailable(handler, method, path):
        if outage["left"] > 0:
            outage["left"] -= 1
            handler._send(503, {"detail": "maintenance"})
            return True
        return False

    server.hook = unavailable
    agent = make_agent(server, site)
    assert agent.cycle() is True and server.reports[52]

    server.add_job(53, onnx_files["inline"])
    server.hook = lambda handler, method, path: handler._send(502, {"detail": "bad gateway"}) or True
    agent = make_agent(server, site, retry_for=0.5)
    assert agent.run(once=True) == EXIT_UNREACHABLE
    assert "53" not in agent.state.jobs


def test_server_going_away_mid_job_resumes_without_rerunning_or_reporting_twice(server, site, onnx_files):
    server.add_job(61, onnx_files["inline"])

    def vanish_on_report(handler, method, path):
        if path.endswith("/report/"):
            threading.Thread(target=server.stop).start()
            return drop(handler)
        return False

    server.hook = vanish_on_report
    first = make_agent(server, site, retry_for=0.5)
    assert first.run(once=True) == EXIT_UNREACHABLE
    record = first.state.jobs["61"]
    assert record.status == JobStatus.APPROVED and server.reports == {}
    payload_written = first.state.payload_path(61).stat().st_mtime_ns

    server.hook = None
    server.start()  # same port, same jobs
    restarted = make_agent(server, site)  # a new agent process would read the same state folder
    assert restarted.run(once=True) == 0

    assert restarted.state.jobs["61"].status == JobStatus.REPORTED
    assert server.count("POST", "/61/claim/") == 1 and server.count("GET", "/61/artifact/") == 1
    assert restarted.state.payload_path(61).stat().st_mtime_ns == payload_written  # not evaluated again
    assert len(server.reports) == 1 and server.count("POST", "/61/report/") == 2
    assert restarted.run(once=True) == 0 and server.count("POST", "/61/report/") == 2


def test_a_report_whose_answer_was_lost_is_resent_and_stored_once(server, site, onnx_files):
    server.add_job(62, onnx_files["inline"])
    lost = {"done": False}

    def store_then_drop(handler, method, path):
        if path.endswith("/report/") and not lost["done"]:
            lost["done"] = True
            body = server.requests[-1][2]
            server.reports[62] = body  # the server stored it, then the connection broke
            server.jobs[62]["status"] = "reported"
            return drop(handler)
        return False

    server.hook = store_then_drop
    agent = make_agent(server, site)
    agent.cycle()

    assert server.count("POST", "/62/report/") == 2 and len(server.reports) == 1
    assert agent.state.jobs["62"].server_answer == "200"


def test_agent_process_survives_the_server_going_away_mid_download(site, onnx_files):
    fake = FakeServer(port=free_port())
    fake.add_job(63, onnx_files["external"])
    went_away = threading.Event()

    def vanish_on_first_download(handler, method, path):
        if "/artifact/" in path and not went_away.is_set():
            went_away.set()
            threading.Thread(target=fake.stop).start()
            return drop(handler)
        return False

    fake.hook = vanish_on_first_download
    fake.start()
    process = subprocess.Popen(
        agent_process(fake.url, site, "--poll-seconds", "0.2", "--auto-approve", "dpo"),
        cwd=ROOT,
        env=process_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert went_away.wait(60)
        time.sleep(1.0)  # the server stays away for a few of the agent's retries before it comes back
        fake.hook = None
        fake.start()
        deadline = time.monotonic() + 60
        while 63 not in fake.reports and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.6)  # a few more polls: nothing is sent twice
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
        fake.stop()
    assert 63 in fake.reports, stderr
    assert fake.count("POST", "/63/report/") == 1 and fake.count("POST", "/63/claim/") == 1
    assert "server unavailable (GET /api/federated/jobs/63/artifact/" in stderr


# --- Server answers ------------------------------------------------------------------------


def test_a_conflicting_report_stops_resending_and_a_refused_one_fails_locally(server, site, onnx_files):
    server.add_job(71, onnx_files["inline"])
    server.reports[71] = {"payload": {"other": True}}
    agent = make_agent(server, site)
    agent.cycle()
    assert agent.state.jobs["71"].status == JobStatus.REPORTED and agent.state.jobs["71"].server_answer.startswith("409")
    agent.cycle()
    assert server.count("POST", "/71/report/") == 1

    server.add_job(72, onnx_files["inline"])
    server.hook = lambda handler, method, path: (
        path.endswith("/report/") and (handler._send(400, {"payload": ["strata[2] is under the minimum"]}) or True)
    )
    agent.cycle()
    record = agent.state.jobs["72"]
    assert record.status == JobStatus.FAILED and "strata[2] is under the minimum" in record.error
    assert 72 not in server.failures  # the server refused it: it knows


def test_a_wrong_token_stops_the_agent_with_a_clear_message(server, site):
    command = [sys.executable, "-m", "radtrust_agent", "--server", server.url, "--token", "wrong", "--data-root", str(site), "--once"]
    result = subprocess.run(command, cwd=ROOT, env=process_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "the server refused the agent (HTTP 401: Invalid token.)" in result.stderr


# --- Plain Python --------------------------------------------------------------------------


def test_agent_imports_without_django():
    code = (
        "import sys, radtrust_agent.__main__, radtrust_agent.jobs; print(sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=process_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap():
    backoff = Backoff(base=0.5, cap=4.0)
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 10  # jittered


def test_site_evaluate_in_process_gives_the_agents_payload(server, site, onnx_files):
    job = server.add_job(81, onnx_files["inline"])
    outcome = agent_run_job(job, agent=make_agent(server, site))
    assert outcome.status == "reported" and outcome.timings["agent"] >= outcome.timings["engine"] > 0

    evaluation = site_evaluate(Job.from_dict(job), data_root=site, artifact_root=AgentState.for_data_root(site).artifacts, prefer_gpu=False)
    assert evaluation.problems == [] and evaluation.n_cases == 60 and evaluation.n_patients == 30
    assert json.loads(json.dumps(evaluation.payload)) == server.reports[81]["payload"]
