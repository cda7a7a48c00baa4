"""What the agent remembers between runs: one JSON state file and the outbox, under the state folder.

Layout (``<data root>/.radtrust-agent/`` by default)::

    state.json                    per-job progress (``JobRecord``), rewritten atomically
    agent.lock                    held by the running agent, so two cannot share a folder
    artifacts/<sha[:2]>/<sha>/    downloaded artifacts, content-addressed like the registry's
    outbox/job-<id>.json          the exact payload awaiting review, then sent
    outbox/job-<id>.approved.json who approved it and when (written by ``approve``)
    pacs/job-<id>/manifest.json   a PACS job's frozen instances and labels (``radtrust_agent.pacs``)
    pacs/job-<id>/skipped.json    the instances it could not retrieve, each with its reason
    pacs-cache/<url hash>/        retrieved instances, one file per SOP Instance UID

Every write is a temporary file then ``os.replace``, so a crash leaves the old
file or the new one, never half of one; a restarted agent resumes from the last
step it recorded. An approval names the sha256 of the payload it approves: a
payload that changed afterwards is not sent. That sha256 is of the payload's
canonical JSON (``payload_digest``), the hash the server stores for the report.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from radtrust_engine.hashing import canonical_sha256

STATE_DIR_NAME = ".radtrust-agent"
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class JobStatus(StrEnum):
    CLAIMING = "claiming"  # listed as pending; the claim is being asked for
    CLAIMED = "claimed"  # ours: artifact and evaluation next
    AWAITING_APPROVAL = "awaiting_approval"  # payload in the outbox, waiting for the data owner
    APPROVED = "approved"  # to be reported
    REPORTED = "reported"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.REPORTED, JobStatus.FAILED)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def job_key(job_id: Any) -> str:
    """The job id as a key and a file-name part; anything else is refused (it would name files)."""
    key = str(job_id)
    if isinstance(job_id, bool) or not _JOB_ID.fullmatch(key):
        raise ValueError(f"job id {job_id!r} is not a short token of letters, digits, '-' or '_'")
    return key


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload_digest(data: bytes) -> str:
    """The hash a payload is known by on both sides: sha256 of the canonical JSON of the outbox
    file's content (``radtrust_engine.hashing``), which the server stores as the report's
    ``payload_sha256``. ``ValueError`` when the file is not JSON."""
    return canonical_sha256(json.loads(data))


def payload_named(data: bytes, sha256: str) -> bool:
    """Whether the outbox file's bytes ``data`` are the payload that ``sha256`` names.

    New records name a payload by ``payload_digest``. A job recorded by an agent from before
    canonical hashing names it by the sha256 of the file's bytes; that is accepted too, so an
    upgrade does not strand a payload that is waiting for approval or to be sent."""
    if sha256_bytes(data) == sha256:
        return True
    try:
        return payload_digest(data) == sha256
    except ValueError:
        return False


@dataclass
class JobRecord:
    """One job as the agent last left it; ``error`` stays at the site, ``fail_reason`` is what the server is told."""

    id: Any
    status: JobStatus
    job: dict
    claim_requests: int = 0
    payload_sha256: str = ""
    payload_bytes: int = 0
    agent: dict = field(default_factory=dict)  # the report's "agent" block: version, device, seconds
    timings: dict[str, float] = field(default_factory=dict)
    approved_by: str = ""
    approved_at: str = ""
    server_answer: str = ""
    error: str = ""
    fail_reason: str = ""
    fail_pending: bool = False  # the server is still to be told
    updated_at: str = field(default_factory=now_iso)

    @property
    def key(self) -> str:
        return job_key(self.id)

    @property
    def settled(self) -> bool:
        """Nothing left to do: reported, or failed with the server told (or not to be told)."""
        return self.status == JobStatus.REPORTED or (self.status == JobStatus.FAILED and not self.fail_pending)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": str(self.status)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        return cls(**{**data, "status": JobStatus(data["status"])})


class AgentLocked(Exception):
    """Another agent already runs on this state folder."""


class AgentState:
    """The state folder: job records, the outbox and the artifact cache."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.outbox = self.folder / "outbox"
        self.artifacts = self.folder / "artifacts"
        self.path = self.folder / "state.json"
        self.jobs: dict[str, JobRecord] = {}
        self._lock_handle = None
        self.reload()

    @classmethod
    def for_data_root(cls, data_root: Path, state_dir: Path | None = None) -> AgentState:
        return cls(Path(state_dir) if state_dir else Path(data_root) / STATE_DIR_NAME)

    def reload(self) -> None:
        if not self.path.exists():
            self.jobs = {}
            return
        data = json.loads(self.path.read_text(encoding="utf-8"))
        self.jobs = {key: JobRecord.from_dict(record) for key, record in data.get("jobs", {}).items()}

    def save(self, record: JobRecord | None = None) -> None:
        if record is not None:
            record.updated_at = now_iso()
            self.jobs[record.key] = record
        body = {"version": 1, "jobs": {key: r.to_dict() for key, r in sorted(self.jobs.items())}}
        write_atomic(self.path, json.dumps(body, indent=1, sort_keys=True).encode())

    def lock(self) -> None:
        """Hold the folder's lock until the process ends; refuse if another agent holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / "agent.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise AgentLocked(f"another agent is running on {self.folder}") from None
        self._lock_handle = handle

    # --- Outbox ------------------------------------------------------------------------

    def payload_path(self, job_id: Any) -> Path:
        return self.outbox / f"job-{job_key(job_id)}.json"

    def approval_path(self, job_id: Any) -> Path:
        return self.outbox / f"job-{job_key(job_id)}.approved.json"

    def payload_write(self, job_id: Any, payload: dict) -> tuple[str, int]:
        """Write the exact payload for review; its sha256 (``payload_digest``, the server's hash) and size."""
        data = json.dumps(payload, indent=1, sort_keys=True).encode()
        digest = payload_digest(data)  # before writing: a payload without a canonical form is refused here
        write_atomic(self.payload_path(job_id), data)
        return digest, len(data)

    def payload_read(self, job_id: Any, sha256: str) -> dict:
        """The payload as written, refused if it changed since (``ValueError``)."""
        data = self.payload_path(job_id).read_bytes()
        if not payload_named(data, sha256):
            raise ValueError(f"{self.payload_path(job_id)} changed after it was written; it is not sent")
        return json.loads(data)

    def approval_write(self, job_id: Any, *, by: str) -> dict:
        """Approve the payload now in the outbox: who, when, and the sha256 of what was approved."""
        data = self.payload_path(job_id).read_bytes()
        approval = {"job": job_key(job_id), "approved_by": by, "approved_at": now_iso(), "payload_sha256": payload_digest(data)}
        write_atomic(self.approval_path(job_id), json.dumps(approval, indent=1).encode())
        return approval

    def approval_read(self, job_id: Any, sha256: str) -> dict | None:
        """The approval of this exact payload, or None (none yet, or it approved another payload).

        ``sha256`` is the job record's hash of its payload. A record from before canonical
        hashing holds the byte hash of the outbox file; an approval written since names the
        canonical hash of that same file, and is accepted while the file still has those bytes."""
        try:
            approval = json.loads(self.approval_path(job_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(approval, dict) or not approval.get("approved_by"):
            return None
        approved = approval.get("payload_sha256")
        if approved != sha256:
            try:
                data = self.payload_path(job_id).read_bytes()
                if not (sha256_bytes(data) == sha256 and payload_digest(data) == approved):
                    return None
            except (OSError, ValueError):
                return None
        return approval
