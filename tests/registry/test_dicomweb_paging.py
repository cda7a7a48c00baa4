"""QIDO-RS answers a PACS may cut short, from a small DICOMweb server over real HTTP: paging with
``limit`` and ``offset`` until a short page, a ``Warning: 299`` header, a silent cap that the
series' instance counts expose, a PACS that ignores ``offset`` or does not count. The same
refusals against a real Orthanc with a find limit are in ``tests/integration/test_dicomweb.py``.
Also: a busy PACS asked again, and answers whose UIDs could not name a file or a URL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from radtrust_engine import dicomweb
from radtrust_engine.dicomweb import DicomwebError, DicomwebQuery, dicomweb_client, resolve

UID = "1.2.826.0.1.3680043.8.498"
REQUEST_TIMEOUT = 120.0  # seconds: a bound on a hang of the in-process PACS, never a measured time


@dataclass
class Pacs:
    """What the server holds (``series`` instances in each of ``n_series`` series) and how it answers."""

    n_series: int = 4
    per_series: int = 3
    cap: int | None = None  # answers at most this many matches per search, offset or not (as Orthanc's find limits)
    per_answer: int | None = None  # answers at most this many matches per request (as dcm4chee's, Google's)
    warning: str = ""
    ignores_offset: bool = False
    counts: bool = True
    busy: int = 0  # answers HTTP 503 to this many requests first
    sop_uid: str = ""  # the first instance's SOP Instance UID instead of a generated one
    requests: list[tuple[str, int, int]] = field(default_factory=list)  # (level, limit, offset)

    def matches(self, level: str) -> list[dict]:
        rows = []
        for s in range(self.n_series):
            series = {"0020000D": {"vr": "UI", "Value": [f"{UID}.{s}"]}, "0020000E": {"vr": "UI", "Value": [f"{UID}.{s}.1"]}}
            if level == "series":
                rows.append({**series, **({"00201209": {"vr": "IS", "Value": [self.per_series]}} if self.counts else {})})
                continue
            for i in range(self.per_series):
                rows.append({**series, "00080018": {"vr": "UI", "Value": [f"{UID}.{s}.1.{i}"]}, "00100020": {"vr": "LO", "Value": [f"p{s}"]}})
        if level == "instances" and self.sop_uid:
            rows[0] = {**rows[0], "00080018": {"vr": "UI", "Value": [self.sop_uid]}}
        return rows[: self.cap] if self.cap is not None else rows


@pytest.fixture
def pacs() -> Iterator[tuple[Pacs, str]]:
    state = Pacs()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            level = url.path.rsplit("/", 1)[-1]
            params = parse_qs(url.query)
            limit, offset = int(params.get("limit", ["1000000"])[0]), int(params.get("offset", ["0"])[0])
            state.requests.append((level, limit, offset))
            if state.busy:
                state.busy -= 1
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = 0 if state.ignores_offset else offset
            body = json.dumps(state.matches(level)[start : start + min(limit, state.per_answer or limit)]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            if state.warning:
                self.send_header("Warning", state.warning)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_port}/dicom-web"
    finally:
        server.shutdown()
        server.server_close()


def _resolve(url: str, **options):
    return resolve(dicomweb_client(url, timeout=REQUEST_TIMEOUT), DicomwebQuery(modality="CR"), **{"limit": 100, **options})


def test_the_search_pages_with_offset_until_a_page_brings_nothing(pacs):
    state, url = pacs

    frozen = _resolve(url, page_size=5)

    assert len(frozen.instances) == 12 and {i.patient_id for i in frozen.instances} == {"p0", "p1", "p2", "p3"}
    assert [r for r in state.requests if r[0] == "instances"] == [("instances", 5, offset) for offset in (0, 5, 10, 12)]


def test_a_pacs_that_caps_each_answer_is_paged_through(pacs):
    state, url = pacs
    state.per_answer = 4  # fewer than asked for, yet more to come

    assert _resolve(url).instances == _resolve(url, page_size=2).instances and len(_resolve(url).instances) == 12


def test_a_silent_cap_is_refused_by_the_series_counts(pacs):
    state, url = pacs
    state.cap = 7  # the answer ends mid-series, and paging past it returns nothing

    for page_size in (1000, 3):
        with pytest.raises(DicomwebError, match="answered 7 instances in 3 series, but counts 12 instances in 4 series") as refused:
            _resolve(url, page_size=page_size)
        assert refused.value.reason == "search_capped"


def test_a_cap_that_drops_whole_series_is_refused_too(pacs):
    state, url = pacs
    state.cap = 6  # two whole series of instances; the series search, under the same cap, lists all 4

    with pytest.raises(DicomwebError, match="answered 6 instances in 2 series, but counts 12 instances in 4 series"):
        _resolve(url)


def test_a_warning_299_is_refused_at_once(pacs):
    state, url = pacs
    state.warning = '299 pacs.example.org: "There are 8 additional results that can be requested"'

    with pytest.raises(DicomwebError, match="the PACS warns that it left matches out .*8 additional results") as refused:
        _resolve(url)
    assert refused.value.reason == "search_capped"


def test_a_pacs_that_ignores_offset_ends_the_paging_and_the_counts_decide(pacs):
    state, url = pacs
    state.ignores_offset = True

    assert len(_resolve(url).instances) == 12  # one page held everything: the counts agree
    with pytest.raises(DicomwebError, match="answered 5 instances in 2 series, but counts 12"):
        _resolve(url, page_size=5)  # the first page again: paging stops there, the counts refuse
    assert [r[2] for r in state.requests if r[0] == "instances"] == [0, 12, 0, 5]


def test_a_pacs_that_does_not_count_series_instances_is_refused(pacs):
    state, url = pacs
    state.counts = False

    with pytest.raises(DicomwebError, match="does not say how many instances a series holds"):
        _resolve(url)


@pytest.fixture
def no_wait(monkeypatch):
    monkeypatch.setattr(dicomweb, "QIDO_BACKOFF", 0.0)


def test_a_busy_pacs_is_asked_again(pacs, no_wait):
    state, url = pacs
    state.busy = 3  # the three retries of the first request

    assert len(_resolve(url).instances) == 12
    assert state.requests[:4] == [("instances", 1000, 0)] * 4


def test_a_pacs_busy_beyond_the_retries_fails_the_search(pacs, no_wait):
    state, url = pacs
    state.busy = 4

    with pytest.raises(DicomwebError, match="Instance search: HTTP 503") as failed:
        _resolve(url)
    assert failed.value.reason == "pacs_failed" and len(state.requests) == 4


@pytest.mark.parametrize("uid", ["../../../etc/passwd", "1.2.3/../4", "1." + "2" * 70, "1.2.abc"])
def test_an_answer_whose_uids_are_not_dicom_uids_is_refused(pacs, uid):
    state, url = pacs
    state.sop_uid = uid

    with pytest.raises(DicomwebError, match="UIDs are not DICOM UIDs") as refused:
        _resolve(url)
    assert refused.value.reason == "pacs_failed" and uid not in str(refused.value)
