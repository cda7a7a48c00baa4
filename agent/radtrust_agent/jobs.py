"""Driving federated jobs from claim to report: ``SiteAgent`` and ``agent_run_job``.

A job moves through ``JobStatus`` one step at a time, and every step ends by
saving the state file, so an agent stopped anywhere resumes at the step it
had reached:

1. ``claiming``: ask the server for the job. A 409 means it is claimed already,
   by this site (a claim whose response was lost, or another agent of the same
   site: tokens are scoped to one site), so the job is evaluated as listed.
2. ``claimed``: download each artifact file into the cache and check its size
   and sha256 as it streams (a file that does not match is deleted and the job
   refused), re-hash the set when loading (``runner.load_verified``), evaluate
   (``site_evaluate``; a study naming a DICOMweb query reads the site's own PACS,
   ``radtrust_agent.pacs``), check the payload, write it to the outbox.
3. ``awaiting_approval``: until the outbox holds an approval of this exact
   payload (``approve``, or ``--auto-approve``).
4. ``approved``: report the payload as approved. 201 and 200 (the same payload
   was stored before) end the job, and so does 409 (a different payload was
   reported already: re-sending cannot help).
5. ``failed``: tell the server, once, with a reason that holds no site data.

Server outages never lose a step: ``ServerUnreachable`` leaves the job where it
is, and the next cycle goes on from there.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from radtrust_agent import AGENT_VERSION
from radtrust_agent.client import ServerClient, ServerRefused, ServerUnreachable
from radtrust_agent.evaluation import Job, JobError, SiteDataError, SiteEvaluation, site_evaluate, stage_logger
from radtrust_agent.pacs import PacsConfig, PacsSite, PacsSiteError, reason_text
from radtrust_agent.state import AgentState, JobRecord, JobStatus, job_key
from radtrust_engine.artifacts import artifact_dir
from radtrust_engine.dicomweb import DicomwebError
from radtrust_engine.loading import ManifestError
from radtrust_engine.runner import ArtifactMismatch, RunnerError

log = logging.getLogger("radtrust_agent")

EXIT_UNREACHABLE = 75  # EX_TEMPFAIL: try again later


class ArtifactRejected(Exception):
    """A downloaded artifact file is not the registered one; it was deleted and nothing ran."""

    reason = "artifact_mismatch"


@dataclass
class JobOutcome:
    """Where a job stands after the agent worked on it, with its seconds.

    ``timings``: ``download``, ``engine`` (the in-process evaluation, ``site_evaluate``),
    ``report``, and ``agent``, all the time the agent spent on the job (claim to report,
    retries included, waiting for approval excluded).
    """

    job_id: Any
    status: str
    timings: dict[str, float]
    payload_bytes: int
    error: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _outcome(record: JobRecord) -> JobOutcome:
    return JobOutcome(
        job_id=record.id, status=str(record.status), timings=dict(record.timings), payload_bytes=record.payload_bytes, error=record.error
    )


def _site_failure(exc: Exception) -> tuple[str, str]:
    """The reason code and the message the server may see for an evaluation error at the site.

    Errors about the site's data quote rows, paths or values: only their code leaves. The site's
    PACS answers and files quote UIDs, accession numbers or its address: their code leaves with
    a fixed sentence (``pacs.reason_text``).
    """
    if isinstance(exc, (JobError, ArtifactRejected, ArtifactMismatch)):
        return exc.reason, str(exc)
    if isinstance(exc, (DicomwebError, PacsSiteError)):
        code = str(exc.reason)
        return code, reason_text(code) or f"The site's PACS could not serve the study ({code}); the site's agent log has the details."
    if isinstance(exc, (ManifestError, SiteDataError, RunnerError)):
        code = exc.reason  # ManifestError and RunnerError: a radtrust_engine.failures.FailureCode
    else:
        code = "internal_error"
    return code, f"The evaluation failed at the site ({code}); the site's agent log has the details."


class SiteAgent:
    """One site's agent: the server client, the site's data root and the state folder, and the site's PACS if it has one."""

    def __init__(
        self,
        *,
        client: ServerClient,
        data_root: Path,
        state: AgentState,
        auto_approve: str | None = None,
        prefer_gpu: bool = True,
        batch_size: int = 32,
        pacs: PacsConfig | None = None,
    ) -> None:
        self.client = client
        self.data_root = Path(data_root)
        self.state = state
        self.auto_approve = auto_approve
        self.prefer_gpu = prefer_gpu
        self.batch_size = batch_size
        self.pacs = pacs
        self._told_waiting: set[str] = set()  # jobs whose approval command was logged in this run
        self._steps: dict[JobStatus, Callable[[JobRecord], None]] = {
            JobStatus.CLAIMING: self._claim,
            JobStatus.CLAIMED: self._evaluate,
            JobStatus.AWAITING_APPROVAL: self._approve,
            JobStatus.APPROVED: self._report,
            JobStatus.FAILED: self._tell_failure,
        }

    # --- Cycles ----------------------------------------------------------------------

    def cycle(self) -> bool:
        """Resume unfinished jobs, then take the new pending ones; False if the server was unreachable.

        A 4xx on the job list (a wrong or revoked token) raises ``ServerRefused``: retrying cannot fix it.
        """
        try:
            for record in list(self.state.jobs.values()):
                if not record.settled:
                    self.advance(record)
            listed = self.client.pending_jobs()
            for job in listed:
                try:
                    key = job_key(job.get("id"))
                except ValueError as exc:
                    log.error("ignoring a listed job: %s", exc)
                    continue
                if key not in self.state.jobs:
                    log.info("job %s: pending (study %s)", key, job.get("study"))
                    self.advance(JobRecord(id=job["id"], status=JobStatus.CLAIMING, job=dict(job)))
        except ServerUnreachable as exc:
            log.warning("server unreachable, jobs stay where they are until the next cycle: %s", exc)
            return False
        return True

    def run(self, *, once: bool = False, poll_seconds: float = 30.0) -> int:
        """Cycle until interrupted (or once); the exit status."""
        while True:
            reachable = self.cycle()
            if once:
                return 0 if reachable else EXIT_UNREACHABLE
            self._wait(poll_seconds)

    def _wait(self, seconds: float) -> None:
        """Sleep until the next poll, waking early when a payload waiting for review is approved."""
        deadline = time.monotonic() + seconds
        waiting = [r for r in self.state.jobs.values() if r.status == JobStatus.AWAITING_APPROVAL]
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            if any(self.state.approval_read(r.id, r.payload_sha256) for r in waiting):
                return

    def advance(self, record: JobRecord) -> JobRecord:
        """Take the job as far as it can go now; the time spent is added to its ``agent`` seconds."""
        started = time.perf_counter()
        try:
            while not record.settled:
                before = record.status
                self._steps[record.status](record)
                if record.status == before and not record.settled:
                    break  # waiting for approval
        finally:
            record.timings["agent"] = record.timings.get("agent", 0.0) + time.perf_counter() - started
            self.state.save(record)
        return record

    # --- Steps -----------------------------------------------------------------------

    def _move(self, record: JobRecord, status: JobStatus) -> None:
        record.status = status
        self.state.save(record)

    def _fail(self, record: JobRecord, *, error: str, reason: str = "", tell: bool = True) -> None:
        """Fail the job locally (``error`` stays here); ``reason`` is what the server is told, if ``tell``."""
        record.error = error
        record.fail_reason = reason if tell else ""
        record.fail_pending = tell
        log.error("job %s: failed: %s", record.key, error)
        self._move(record, JobStatus.FAILED)

    def _claim(self, record: JobRecord) -> None:
        try:
            job = self.client.claim(record.id)
        except ServerRefused as exc:
            if exc.status != 409:
                self._fail(record, error=f"the server refused the claim: {exc}", tell=False)
                return
            log.warning("job %s: already claimed for this site (%s); evaluating it as listed", record.key, exc.message)
            job = None
        if isinstance(job, dict) and job.get("version"):
            record.job = job
        log.info("job %s: claimed", record.key)
        self._move(record, JobStatus.CLAIMED)

    def _evaluate(self, record: JobRecord) -> None:
        try:
            job = Job.from_dict(record.job)
            evaluation = self._fetch_and_evaluate(job, record)
        except ServerRefused as exc:
            self._fail(record, error=f"the artifact could not be downloaded: {exc}", reason=f"artifact_unavailable: the server answered {exc}")
            return
        except ServerUnreachable:
            raise
        except Exception as exc:
            code, public = _site_failure(exc)
            if code == "internal_error":
                log.exception("job %s: unexpected error", record.key)
            self._fail(record, error=f"{code}: {exc}", reason=f"{code}: {public}")
            return
        record.timings.update({"engine": evaluation.timings["engine"], "inference": evaluation.timings.get("inference", 0.0)})
        if evaluation.problems:
            self._fail(
                record,
                error="the payload failed the local check: " + "; ".join(evaluation.problems),
                reason=f"payload_check: the site summary failed the agent's own payload check "
                f"({len(evaluation.problems)} problem(s)); nothing was sent",
            )
            return
        record.payload_sha256, record.payload_bytes = self.state.payload_write(record.id, evaluation.payload)
        record.agent = {
            "version": AGENT_VERSION,
            "device": evaluation.device.get("kind", "cpu"),
            "device_name": evaluation.device.get("name", ""),
            "threads": evaluation.device.get("threads"),
            "seconds": round(evaluation.timings["engine"], 3),
            "cases": evaluation.n_cases,
        }
        if evaluation.pacs is not None:
            record.agent["pacs"] = evaluation.pacs.to_dict()  # the frozen manifest's sha256 and counts; its UIDs stay here
        log.info(
            "job %s: evaluated %d cases of %d patients in %.2f s; payload %s (%d bytes)",
            record.key,
            evaluation.n_cases,
            evaluation.n_patients,
            evaluation.timings["engine"],
            self.state.payload_path(record.id),
            record.payload_bytes,
        )
        self._move(record, JobStatus.AWAITING_APPROVAL)

    def _fetch_and_evaluate(self, job: Job, record: JobRecord) -> SiteEvaluation:
        """Download the artifact (if not cached) and evaluate; a cached copy that fails re-hashing is fetched again once."""
        for attempt in range(2):
            self._fetch(job, record)
            try:
                return site_evaluate(
                    job,
                    data_root=self.data_root,
                    artifact_root=self.state.artifacts,
                    prefer_gpu=self.prefer_gpu,
                    batch_size=self.batch_size,
                    progress=stage_logger(lambda stage: log.info("job %s: %s", record.key, stage)),
                    pacs=self._pacs_site(record),
                )
            except ArtifactMismatch as exc:
                shutil.rmtree(artifact_dir(self.state.artifacts, job.version.artifact_sha256), ignore_errors=True)
                if attempt:
                    raise
                log.warning("job %s: the cached artifact failed verification (%s); downloading it again", record.key, exc)
        raise ArtifactMismatch(job.version.artifact_sha256, ["verification failed twice"])  # not reached

    def _pacs_site(self, record: JobRecord) -> PacsSite | None:
        """The job's frozen manifest and skips under ``pacs/job-<id>/``; instances cached once per PACS for every job."""
        if self.pacs is None:
            return None
        return PacsSite(self.pacs, self.state.folder / "pacs" / f"job-{record.key}", self.pacs.cache(self.state.folder))

    def _fetch(self, job: Job, record: JobRecord) -> None:
        """Bring every artifact file into the cache, each checked against its size and sha256 as it streams."""
        started = time.perf_counter()
        sha = job.version.artifact_sha256
        folder = artifact_dir(self.state.artifacts, sha)
        partial = self.state.artifacts / ".partial"
        partial.mkdir(parents=True, exist_ok=True)
        for f in job.version.files:
            target = folder / f["name"]
            if target.is_file() and target.stat().st_size == f["size"]:
                continue  # re-hashed by load_verified before it is opened
            temp = partial / f"{sha[:16]}-{f['name']}"
            try:
                digest, size = self.client.download(job.id, f["name"], temp)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            if digest != f["sha256"] or size != f["size"]:
                temp.unlink(missing_ok=True)
                raise ArtifactRejected(
                    f"artifact file {f['name']} as downloaded does not match the registry: sha256 {digest[:16]}... "
                    f"({size} bytes), registered {f['sha256'][:16]}... ({f['size']} bytes); it was deleted and not run"
                )
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(temp, target)
            log.info("job %s: downloaded %s (%d bytes, sha256 verified)", record.key, f["name"], size)
        record.timings["download"] = record.timings.get("download", 0.0) + time.perf_counter() - started

    def _approve(self, record: JobRecord) -> None:
        approval = self.state.approval_read(record.id, record.payload_sha256)
        if approval is None and self.auto_approve:
            self.state.approval_write(record.id, by=self.auto_approve)
            approval = self.state.approval_read(record.id, record.payload_sha256)
            if approval is None:
                self._fail(
                    record,
                    error=f"{self.state.payload_path(record.id)} changed after it was written; not approved",
                    reason="payload_altered: the payload was altered at the site before approval; nothing was sent",
                )
                return
        if approval is None:
            if record.key not in self._told_waiting:
                self._told_waiting.add(record.key)
                log.info(
                    "job %s: waiting for approval of %s: python -m radtrust_agent approve --data-root %s --job %s --by NAME",
                    record.key,
                    self.state.payload_path(record.id),
                    self.data_root,
                    record.key,
                )
            return
        record.approved_by, record.approved_at = str(approval["approved_by"]), str(approval["approved_at"])
        log.info("job %s: approved by %s at %s", record.key, record.approved_by, record.approved_at)
        self._move(record, JobStatus.APPROVED)

    def _report(self, record: JobRecord) -> None:
        try:
            payload = self.state.payload_read(record.id, record.payload_sha256)
        except (OSError, ValueError) as exc:
            self._fail(record, error=str(exc), reason="payload_altered: the approved payload was altered or lost at the site; nothing was sent")
            return
        body = {"payload": payload, "approved_by": record.approved_by, "approved_at": record.approved_at, "agent": record.agent}
        started = time.perf_counter()
        try:
            status = self.client.report(record.id, body)
        except ServerRefused as exc:
            if exc.status == 409:
                record.server_answer = f"409: {exc.message}"
                log.warning("job %s: the server already holds a different report (%s); not re-sending", record.key, exc.message)
                self._move(record, JobStatus.REPORTED)
            else:
                record.server_answer = f"{exc.status}: {exc.message}"
                self._fail(record, error=f"the server refused the report: {exc}", tell=False)
            return
        finally:
            record.timings["report"] = record.timings.get("report", 0.0) + time.perf_counter() - started
        record.server_answer = str(status)
        log.info("job %s: reported (HTTP %s)", record.key, status)
        self._move(record, JobStatus.REPORTED)

    def _tell_failure(self, record: JobRecord) -> None:
        try:
            self.client.fail(record.id, record.fail_reason)
        except ServerRefused as exc:
            log.warning("job %s: the server refused the failure report: %s", record.key, exc)
            record.server_answer = f"{exc.status}: {exc.message}"
        else:
            log.info("job %s: failure reported to the server", record.key)
        record.fail_pending = False
        self.state.save(record)


def agent_run_job(job: Mapping[str, Any], *, agent: SiteAgent) -> JobOutcome:
    """Take one listed job as far as it goes now (claim to report with auto-approval); where it stands and its seconds.

    The benchmark compares ``timings["agent"]`` with ``site_evaluate`` run in process on the same data.
    """
    key = job_key(job.get("id"))
    record = agent.state.jobs.get(key) or JobRecord(id=job["id"], status=JobStatus.CLAIMING, job=dict(job))
    return _outcome(agent.advance(record))
