"""The site agent's PACS configuration and the refusals no real PACS gives on demand.

The PACS itself is a real Orthanc in ``tests/integration/test_agent_pacs.py``; here a small
in-process DICOMweb stand-in answers HTTP 500, which Orthanc cannot be made to do, and records
the credentials it was sent.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from radtrust_agent.__main__ import main as agent_main
from radtrust_agent.evaluation import Job, JobError
from radtrust_agent.pacs import PacsConfig, PacsProblem, PacsSiteError, PacsSpec, _frozen, reason_text
from radtrust_agent.state import AgentState, JobStatus
from radtrust_engine.dicomweb import DicomwebProblem, FrozenManifest, Instance, label, labels_csv
from radtrust_engine.failures import FailureCode
from tests.validation.test_agent import TOKEN, FakeServer, make_agent, strings

QUERY = {"modality": "DX", "body_part": "CHEST", "labels": "labels.csv"}


@pytest.fixture
def server():
    fake = FakeServer().start()
    yield fake
    fake.stop()


@pytest.fixture
def site(write_dataset):
    return write_dataset("north", n=20)


@pytest.fixture
def failing_pacs():
    """A DICOMweb root that answers 500 to everything and keeps each request's Authorization header."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/dicom-web", seen
    httpd.shutdown()
    httpd.server_close()


def test_a_pacs_query_in_a_design_is_checked_and_names_no_pacs(server, onnx_files):
    job = server.add_job(1, onnx_files["inline"], spec={"dicomweb": {**QUERY, "modality": "dx ", "study_dates": "20240101-"}})
    parsed = Job.from_dict(job).spec.dicomweb
    assert (parsed.query.modality, parsed.query.study_dates, parsed.labels, parsed.accessions) == ("DX", "20240101-", "labels.csv", "")
    assert PacsSpec.from_dict(parsed.to_dict()) == parsed

    for bad, message in (
        ({**QUERY, "url": "https://pacs.example/dicom-web"}, "unknown keys url"),
        ({"labels": "labels.csv"}, "a query without one matches the whole PACS"),
        ({**QUERY, "labels": "/srv/labels.csv"}, "relative to the site's data root"),
        ({**QUERY, "study_dates": "2024"}, "not a DICOM date range"),
        ({**QUERY, "accessions": "../acc.txt"}, "accessions: '../acc.txt'"),
        ({**QUERY, "modality": "D/X"}, "not a DICOM code"),
    ):
        job = server.add_job(2, onnx_files["inline"], spec={"dicomweb": bad})
        with pytest.raises(JobError, match=message):
            Job.from_dict(job)


def test_every_pacs_reason_code_has_a_sentence_that_names_nothing_of_the_site():
    codes = [*DicomwebProblem, *PacsProblem, FailureCode.UNREADABLE_IMAGES]
    texts = [reason_text(code) for code in codes]
    assert all(texts) and len(set(texts)) == len(codes)
    assert reason_text(FailureCode.BAD_INPUT) is None  # not a PACS code: the agent's generic sentence


def test_a_pacs_job_on_an_agent_without_a_pacs_fails_with_its_code(server, site, onnx_files):
    server.add_job(3, onnx_files["inline"], spec={"dicomweb": QUERY})

    assert make_agent(server, site).cycle() is True

    assert server.failures[3] == f"pacs_not_configured: {reason_text('pacs_not_configured')}"
    assert "--pacs-url" in AgentState.for_data_root(site).jobs["3"].error


def test_the_agent_process_takes_its_pacs_and_credentials_from_its_own_configuration(server, site, onnx_files, failing_pacs, tmp_path, monkeypatch):
    """Credentials from a file reach the PACS; a PACS answering 500 fails the job with a code, and neither its
    address nor the password reaches the server."""
    url, seen = failing_pacs
    secret = tmp_path / "pacs-password"
    secret.write_text("hunter2\n")
    monkeypatch.setenv("RADTRUST_AGENT_PACS_USER", "agent-north")
    monkeypatch.setenv("RADTRUST_AGENT_PACS_PASSWORD_FILE", str(secret))
    (site / "labels.csv").write_text("SOPInstanceUID,pneumothorax\n1.2.3,1\n")
    server.add_job(4, onnx_files["inline"], spec={"dicomweb": QUERY})

    status = agent_main(
        ["--server", server.url, "--token", TOKEN, "--data-root", str(site), "--once", "--cpu", "--auto-approve", "dpo", "--pacs-url", url]
    )

    assert status == 0
    assert AgentState.for_data_root(site).jobs["4"].status == JobStatus.FAILED
    assert server.failures[4] == f"pacs_failed: {reason_text('pacs_failed')}"
    assert seen == ["Basic " + base64.b64encode(b"agent-north:hunter2").decode()]  # one search; a 500 on a search is not retried
    for _, _, body in server.requests:
        assert not {s for s in strings(body or {}) if url.split("//")[1].split("/")[0] in s or "hunter2" in s}


def test_a_pacs_address_that_is_not_http_or_an_unreadable_password_file_stops_the_agent(site, monkeypatch, capsys, tmp_path):
    common = ["--server", "http://127.0.0.1:9", "--token", TOKEN, "--data-root", str(site), "--once"]
    with pytest.raises(SystemExit) as stopped:
        agent_main([*common, "--pacs-url", "ftp://pacs.local/dicom-web"])
    assert stopped.value.code == 2 and "--pacs-url must be the PACS's DICOMweb root" in capsys.readouterr().err

    monkeypatch.setenv("RADTRUST_AGENT_PACS_USER", "agent-north")
    monkeypatch.setenv("RADTRUST_AGENT_PACS_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(SystemExit) as stopped:
        agent_main([*common, "--pacs-url", "https://pacs.local/dicom-web"])
    assert stopped.value.code == 2 and "RADTRUST_AGENT_PACS_PASSWORD_FILE cannot be read" in capsys.readouterr().err

    secret = tmp_path / "password"
    secret.write_text("hunter2\n")
    monkeypatch.setenv("RADTRUST_AGENT_PACS_PASSWORD_FILE", str(secret))
    config = PacsConfig.from_environment("https://pacs.local/dicom-web/", workers=2)
    assert (config.url, config.auth, config.workers) == ("https://pacs.local/dicom-web", ("agent-north", "hunter2"), 2)


@pytest.mark.parametrize("damage", ["label", "not json", "no instances"])
def test_a_frozen_manifest_altered_at_the_site_fails_the_job_with_its_own_code(tmp_path, damage):
    """A resumed job evaluates what it froze, or nothing: a changed label, a damaged file."""
    uid = "1.2.826.0.1.3680043.8.498"
    frozen = FrozenManifest((Instance(uid, f"{uid}.1", f"{uid}.1.1", "p1"), Instance(uid, f"{uid}.1", f"{uid}.1.2", "p1")), "0" * 64)
    stored = label(frozen, labels_csv(f"SOPInstanceUID,effusion\n{uid}.1.1,1\n{uid}.1.2,0\n")).to_dict()
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(stored))
    assert _frozen(None, None, pacs=None, data_root=tmp_path, labels=["effusion"], path=path).labels == ((1,), (0,))  # intact: read back

    if damage == "label":
        stored["instances"][0][4] = [0]
        path.write_text(json.dumps(stored))
    else:
        path.write_text("{" if damage == "not json" else json.dumps({"sha256": stored["sha256"]}))
    with pytest.raises(PacsSiteError) as refused:
        _frozen(None, None, pacs=None, data_root=tmp_path, labels=["effusion"], path=path)
    assert refused.value.reason == PacsProblem.ALTERED_MANIFEST
    assert uid not in reason_text(refused.value.reason)
