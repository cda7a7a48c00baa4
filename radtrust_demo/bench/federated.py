"""``manage.py bench federated``: the federated validation figures of issue 8, each measured in one process.

1. ``pooled_vs_central_auroc_abs_diff``: three sites with different prevalence, case mix and score
   distributions (2,000, 3,500 and 5,000 cases of patients with 1-3 images) each summarised by
   ``site_summary`` as an agent would (3 attributes, 1 intersection, 1000 resamples); the AUROC that
   ``pool_sites`` rebuilds from their summed histograms against scikit-learn's ``roc_auc_score`` on
   the union of the same cases. The largest gap over every stratum all sites showed is in the details.
2. ``payload_bytes_per_site``: the largest site payload as compact JSON, those three and the agent's
   of figure 3.
3. ``agent_overhead``: a real agent job end to end (``agent_run_job``: claim, download and verify the
   artifact, evaluate, write the payload for review, auto-approve, report) against a small jobs
   server on loopback (``JobsServer``: a real HTTP round trip for every call), over the demo
   generator's DICOM files and the demo CNN, divided by ``site_evaluate`` of the same job in the same
   process with the artifact already in place. Every agent round starts from an empty state folder,
   so it downloads the artifact as a new site does. The runs alternate (evaluation, agent, evaluation,
   ..., evaluation, after an untimed warm-up); each agent run is divided by the mean of the two
   evaluations around it and the figure is the median of those ratios, as ``radtrust_demo.bench.validation`` does:
   a shared machine's speed drifts within a minute. The agent's seconds outside the evaluation
   (download, hashing, outbox, approval, report) and both sides' process CPU seconds are in the details. Both run on the CPU, as on a
   small site machine.

Plain Python (no Django); the ``bench`` command parses arguments and prints.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from radtrust_agent.client import Backoff, ServerClient
from radtrust_agent.evaluation import Job, site_evaluate
from radtrust_agent.jobs import SiteAgent, agent_run_job
from radtrust_agent.state import AgentState
from radtrust_demo.bench import validation as bench
from radtrust_demo.bench.validation import machine
from radtrust_engine.artifacts import StoredFile, artifact_dir, file_sha256, set_sha256
from radtrust_engine.federated import site_summary
from radtrust_engine.federated_check import payload_check
from radtrust_engine.federated_payload import SiteSummary
from radtrust_engine.federated_pooling import pool_sites

Log = Callable[[str], None]
GOALS = {"pooled_vs_central_auroc_abs_diff": 0.002, "payload_bytes_per_site": 256 * 1024, "agent_overhead": 1.1}
LABEL = "nodule"
ATTRIBUTES = ("sex", "age_band", "scanner_manufacturer")
INTERSECTION = ("sex", "age_band")
TOKEN = "bench-site-token"
# code: prevalence, separation of positives (logit), spread of scores, share of each scanner vendor (A, B, C).
SITE_PROFILES: dict[str, tuple[float, float, float, tuple[float, float, float]]] = {
    "site-a": (0.08, 1.4, 0.9, (0.7, 0.3, 0.0)),
    "site-b": (0.18, 1.9, 1.1, (0.4, 0.4, 0.2)),
    "site-c": (0.32, 2.4, 1.4, (0.1, 0.3, 0.6)),
}


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is; ``QUICK`` is a smoke run for the tests."""

    site_cases: tuple[int, int, int] = (2000, 3500, 5000)
    n_resamples: int = 1000
    images: int = 2000  # the agent's DICOM files (the demo generator)
    train_images: int = 3000  # the demo CNN's training set (not timed)
    train_epochs: int = 6
    rounds: int = 7


QUICK = Sizes(site_cases=(300, 400, 500), n_resamples=50, images=120, train_images=128, train_epochs=1, rounds=2)


def figure(name: str, value: float, reference: float | str | None, ratio: float | None, unit: str) -> dict[str, Any]:
    """One figure in ``radtrust_demo.bench.validation``'s shape, checked against its goal (an upper bound) on the ratio or, without one, the value."""
    goal = GOALS[name]
    return {
        "value": value,
        "reference": reference,
        "ratio": ratio,
        "unit": unit,
        "goal": f"<= {goal:g}",
        "meets_goal": (value if ratio is None else ratio) <= goal,
    }


def compact_bytes(payload: Mapping[str, Any]) -> int:
    return len(json.dumps(payload, separators=(",", ":")).encode())


# ---------------------------------------------------------------------------
# 1-2. Pooled AUROC against the central one, and the payloads' size
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteCases:
    """One site's cases: a score and a label per case, its patient, and the patient's attributes."""

    scores: np.ndarray
    labels: np.ndarray
    patient_id: np.ndarray
    attributes: dict[str, np.ndarray]


def site_cases(code: str, n: int, *, seed: int = 0) -> SiteCases:
    """Patients with 1-3 images each until ``n`` cases; the label, sex, age band and scanner are the
    patient's. The score is a logistic of the label's separation, a vendor offset, the patient's own
    effect and case noise, with the site's spread, so prevalence and score shapes differ by site."""
    prevalence, separation, spread, vendor_share = SITE_PROFILES[code]
    rng = np.random.default_rng([seed, sorted(SITE_PROFILES).index(code)])
    per_patient = rng.integers(1, 4, n)
    patient = np.repeat(np.arange(n), per_patient)[:n]
    n_patients = int(patient[-1]) + 1
    y = (rng.random(n_patients) < prevalence).astype(int)
    sex = rng.choice(["F", "M"], n_patients)
    age = rng.choice(["18-39", "40-64", "65+"], n_patients, p=[0.25, 0.45, 0.3])
    vendor = rng.choice(["Vendor A", "Vendor B", "Vendor C"], n_patients, p=vendor_share)
    offset = {"Vendor A": 0.0, "Vendor B": 0.3, "Vendor C": -0.4}
    logit = (-2.0 + separation * y + np.vectorize(offset.get)(vendor) - 0.5 * (age == "65+") * y + 0.5 * rng.normal(size=n_patients))[patient]
    logit = logit + spread * rng.normal(size=n)
    return SiteCases(
        scores=1.0 / (1.0 + np.exp(-logit)),
        labels=y[patient],
        patient_id=np.asarray([f"{code}-P{p:06d}" for p in patient]),
        attributes={"sex": sex[patient], "age_band": age[patient], "scanner_manufacturer": vendor[patient]},
    )


def summarise(cases: SiteCases, *, n_resamples: int) -> SiteSummary:
    return site_summary(
        {LABEL: cases.scores},
        {LABEL: cases.labels},
        cases.patient_id,
        cases.attributes,
        [INTERSECTION],
        thresholds=0.5,
        min_patients=10,
        n_resamples=n_resamples,
        seed=0,
    )


def bench_pooling(sizes: Sizes = Sizes(), *, log: Log = print) -> dict[str, Any]:
    """Figures 1 and 2 (the latter without the agent's payload): pooled against central AUROC, overall and per stratum."""
    from sklearn.metrics import roc_auc_score  # reference implementation for the benchmark only (the demo extra)

    sites = {code: site_cases(code, n) for code, n in zip(sorted(SITE_PROFILES), sizes.site_cases)}
    summaries, seconds = {}, {}
    for code, cases in sites.items():
        log(f"pooling: site_summary at {code} on {cases.scores.size} cases, {sizes.n_resamples} resamples")
        started = time.perf_counter()
        summaries[code] = summarise(cases, n_resamples=sizes.n_resamples)
        seconds[code] = time.perf_counter() - started
    payload_bytes = {code: compact_bytes(summary.to_dict()) for code, summary in summaries.items()}
    pooled = pool_sites(summaries)
    scores = np.concatenate([c.scores for c in sites.values()])
    labels = np.concatenate([c.labels for c in sites.values()])
    attributes = {a: np.concatenate([c.attributes[a] for c in sites.values()]) for a in ATTRIBUTES}

    overall = pooled.stratum().labels[LABEL].auroc.value
    central = float(roc_auc_score(labels, scores))
    worst = {"abs_diff": 0.0, "stratum": "overall"}
    compared = 0
    for stratum in pooled.strata:
        block = stratum.labels[LABEL]
        if not block.complete or block.auroc.value is None:
            continue  # a site suppressed it: the pooled figure covers a subset of the union
        mask = np.ones(labels.size, dtype=bool)
        for attribute, value in zip(stratum.attributes, stratum.values):
            mask &= attributes[attribute] == value
        diff = abs(block.auroc.value - float(roc_auc_score(labels[mask], scores[mask])))
        compared += 1
        if diff >= worst["abs_diff"]:
            worst = {"abs_diff": diff, "stratum": stratum.name}
    return {
        "figure": figure("pooled_vs_central_auroc_abs_diff", abs(overall - central), central, None, "AUROC"),
        "pooled_auroc": overall,
        "central_auroc": central,
        "strata_compared": compared,
        "worst_stratum": worst,
        "sites": {
            code: {
                "cases": int(c.scores.size),
                "patients": int(np.unique(c.patient_id).size),
                "prevalence": float(c.labels.mean()),
                "summary_seconds": seconds[code],
            }
            for code, c in sites.items()
        },
        "payload_bytes": payload_bytes,
        "n_resamples": sizes.n_resamples,
    }


# ---------------------------------------------------------------------------
# 3. The agent against the evaluation alone
# ---------------------------------------------------------------------------


class JobsServer:
    """The part of the federated jobs API one agent job calls, on loopback: claim, the artifact's
    files, the report (checked with ``payload_check`` as the server's API does). Jobs are served
    under any id, as given to ``start``; reports are kept by job id."""

    def __init__(self, job: Mapping[str, Any], files: Mapping[str, bytes]) -> None:
        self.job, self.files = dict(job), dict(files)
        self.reports: dict[int, dict] = {}
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> JobsServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, data: Any) -> None:
                body = data if isinstance(data, bytes) else json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if isinstance(data, bytes) else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                if self.headers.get("Authorization") != f"Token {TOKEN}":
                    return self._send(401, {"detail": "Invalid token."})
                match = re.fullmatch(r"/api/federated/jobs/(\d+)/(claim|report|artifact/([^/]+))/", self.path)
                if match is None:
                    return self._send(404, {"detail": "Not found."})
                job_id, action = int(match.group(1)), match.group(2)
                if method == "POST" and action == "claim":
                    return self._send(200, {**server.job, "id": job_id, "status": "claimed"})
                if method == "GET" and action.startswith("artifact/") and match.group(3) in server.files:
                    return self._send(200, server.files[match.group(3)])
                if method == "POST" and action == "report":
                    if problems := payload_check(body.get("payload")):
                        return self._send(400, {"payload": problems})
                    server.reports[job_id] = body
                    return self._send(201, {"job": job_id})
                return self._send(404, {"detail": "Not found."})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


def _job(model: Path, trained: Mapping[str, Any], n_resamples: int) -> dict[str, Any]:
    """A job as ``/api/federated/jobs/`` lists it (``FederatedJobSerializer``) for the demo CNN."""
    stored = [StoredFile(model.name, file_sha256(model), model.stat().st_size, "model")]
    return {
        "id": 1,
        "study": 1,
        "status": "pending",
        "deadline": "2099-01-01T00:00:00Z",
        "attempts": 0,
        "error": "",
        "spec": {
            "labels": [LABEL],
            "attributes": list(ATTRIBUTES),
            "intersections": [list(INTERSECTION)],
            "min_patients": 10,
            "thresholds": dict(trained["output_schema"]["thresholds"]),
            "n_resamples": n_resamples,
            "seed": 0,
            "manifest": "manifest.csv",
        },
        "version": {
            "id": 1,
            "label": "Demo nodule CNN 1.0.0",
            "artifact_sha256": set_sha256(stored),
            "files": [asdict(f) for f in stored],
            "output_schema": dict(trained["output_schema"]),
            "preprocessing": dict(trained["preprocessing"]),
            "task": "binary",
            "modality": "DX",
        },
    }


def _median_adjacent_ratio(runs: list[float], references: list[float]) -> tuple[float, list[float]]:
    """Each run over the mean of the references on either side of it; their median, and them."""
    ratios = [run / ((before + after) / 2) for run, before, after in zip(runs, references, references[1:])]
    return statistics.median(ratios), ratios


def bench_agent(cache: Path, sizes: Sizes = Sizes(), *, log: Log = print) -> dict[str, Any]:
    """Figure 3 (see the module docstring). Process CPU seconds are kept beside the wall-clock ones:
    where other work shares the machine they vary far less, and their ratio tells the agent's own
    cost from a neighbour's (they include the loopback server's few milliseconds)."""
    demo = replace(bench.Sizes(), run_images=sizes.images, train_images=sizes.train_images, train_epochs=sizes.train_epochs)
    manifest, trained = bench._demo_run_inputs(cache, demo, log)  # the dataset and CNN of the validation bench's run figure
    data, model = manifest.parent, Path(trained["onnx_path"])
    job = _job(model, trained, sizes.n_resamples)
    server = JobsServer(job, {model.name: model.read_bytes()}).start()
    wall: dict[str, list[float]] = {"agent": [], "reference": []}
    cpu: dict[str, list[float]] = {"agent": [], "reference": []}
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="radtrust-bench-federated-") as folder:
        reference_root = Path(folder) / "reference"
        target = artifact_dir(reference_root, job["version"]["artifact_sha256"])
        target.mkdir(parents=True)
        shutil.copyfile(model, target / model.name)

        def timed(side: str, call: Callable[[], Any]) -> Any:
            started, started_cpu = time.perf_counter(), time.process_time()
            value = call()
            wall[side].append(time.perf_counter() - started)
            cpu[side].append(time.process_time() - started_cpu)
            return value

        def reference() -> Any:
            evaluation = site_evaluate(Job.from_dict(job), data_root=data, artifact_root=reference_root, prefer_gpu=False)
            if evaluation.problems:
                raise RuntimeError(f"the reference payload fails its check: {evaluation.problems}")
            return evaluation

        def agent(round_: int) -> None:
            client = ServerClient(server.url, TOKEN, backoff=Backoff(base=0.05, cap=0.5, give_up_after=30.0), timeout=120)
            site = SiteAgent(
                client=client, data_root=data, state=AgentState(Path(folder) / f"agent-{round_}"), auto_approve="bench data owner", prefer_gpu=False
            )
            outcome = agent_run_job({**job, "id": round_ + 1}, agent=site)
            if outcome.status != "reported":
                raise RuntimeError(f"the agent's job ended {outcome.status}: {outcome.error}")
            outcomes.append(outcome)

        try:
            log(f"agent: warming up (one evaluation of {sizes.images} images, not timed)")
            reference()
            evaluation = timed("reference", reference)
            for round_ in range(sizes.rounds):
                log(f"agent: round {round_ + 1}/{sizes.rounds}: the agent's job, then the evaluation alone")
                timed("agent", lambda round_=round_: agent(round_))
                evaluation = timed("reference", reference)
        finally:
            server.stop()
    ratio, ratios = _median_adjacent_ratio(wall["agent"], wall["reference"])
    cpu_ratio, cpu_ratios = _median_adjacent_ratio(cpu["agent"], cpu["reference"])
    outside = [o.timings["agent"] - o.timings["engine"] for o in outcomes]
    reported = server.reports[sizes.rounds]["payload"]
    return {
        "figure": figure("agent_overhead", statistics.median(wall["agent"]), statistics.median(wall["reference"]), ratio, "s"),
        "agent_seconds": wall["agent"],
        "reference_seconds": wall["reference"],
        "round_ratios_to_mean_of_adjacent": ratios,
        "agent_cpu_seconds": cpu["agent"],
        "reference_cpu_seconds": cpu["reference"],
        "cpu_round_ratios": cpu_ratios,
        "cpu_ratio": cpu_ratio,
        "agent_timings": [o.timings for o in outcomes],
        "agent_seconds_outside_evaluation": outside,
        "outside_evaluation_share": statistics.median(o / a for o, a in zip(outside, wall["agent"])),
        "reports_received": len(server.reports),
        "same_payload_as_in_process": reported == json.loads(json.dumps(evaluation.payload)),
        "payload_bytes": compact_bytes(reported),
        "images": evaluation.n_cases,
        "patients": evaluation.n_patients,
        "artifact_bytes": model.stat().st_size,
        "device": evaluation.device,
        "n_resamples": sizes.n_resamples,
    }


# ---------------------------------------------------------------------------
# All figures
# ---------------------------------------------------------------------------


def run_federated_bench(cache: Path, *, quick: bool = False, log: Log = print) -> dict[str, Any]:
    """The three figures (keys a script reads), with ``figures`` and ``details`` as ``radtrust_demo.bench.validation`` gives them."""
    sizes = QUICK if quick else Sizes()
    pooling = bench_pooling(sizes, log=log)
    agent = bench_agent(cache, sizes, log=log)
    sites = {**pooling["payload_bytes"], "agent": agent["payload_bytes"]}
    described = f"{len(ATTRIBUTES)} attributes, 1 intersection, 1 label, {sizes.n_resamples} resamples; largest of {', '.join(sites)}"
    figures = {
        "pooled_vs_central_auroc_abs_diff": pooling.pop("figure"),
        "payload_bytes_per_site": figure("payload_bytes_per_site", max(sites.values()), described, None, "bytes"),
        "agent_overhead": agent.pop("figure"),
    }
    result = {name: entry["value"] if entry["ratio"] is None else entry["ratio"] for name, entry in figures.items()}
    details = {"machine": machine(), "quick": quick, "pooling": pooling, "payload_bytes": sites, "agent": agent}
    return {**result, "figures": figures, "details": details}
