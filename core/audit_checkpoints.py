"""Checkpoints of the audit chain, kept outside the database.

The chain and its head row live in the database, so whoever can write there can remove the
newest events and rewind the head, and the chain alone still verifies. A checkpoint records the
head (sequence number and hash) at a moment, signed with the audit key (``core.audit_keys``), in
a JSON-lines file under ``RADTRUST_AUDIT_CHECKPOINT_DIR``. ``core.audit.audit_verify_chain``
checks the chain against every checkpoint: a checkpoint whose event is gone shows removal, one
whose event carries another hash shows rewriting, and the signature shows that a line was
written by a key holder.

The file is only appended to, one line per checkpoint, each written by a single ``write`` on a
file opened with ``O_APPEND``, so two writers (the beat task and the command) never interleave.
Keep it where the database's administrators cannot edit it (another host, an append-only or
write-once volume), and back it up apart from the database.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from core.audit_keys import UnknownAuditKey, audit_mac, audit_signing_key_id

CHECKPOINT_FILE = "audit-checkpoints.jsonl"
SCHEMA = "radtrust.audit-checkpoint.v1"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class CheckpointInvalid(Exception):
    """The checkpoint file cannot be read, or holds a line that is not a validly signed checkpoint."""


@dataclass(frozen=True)
class Checkpoint:
    """The chain's head at ``written_at``: event ``seq`` had ``hash``. ``line`` is its line in the file."""

    seq: int
    hash: str
    key_id: str
    written_at: str
    line: int = 0

    def signed_fields(self) -> dict:
        return {"schema": SCHEMA, "seq": self.seq, "hash": self.hash, "key_id": self.key_id, "written_at": self.written_at}

    def __str__(self) -> str:
        return f"checkpoint line {self.line} (event #{self.seq}, written {self.written_at})"


def checkpoint_path() -> Path:
    return Path(settings.RADTRUST_AUDIT_CHECKPOINT_DIR) / CHECKPOINT_FILE


def _parse(raw: bytes, line: int) -> Checkpoint:
    """One line of the file, its signature checked."""
    try:
        record = json.loads(raw)
        checkpoint = Checkpoint(seq=record["seq"], hash=record["hash"], key_id=record["key_id"], written_at=record["written_at"], line=line)
        mac, schema = record["mac"], record["schema"]
    except (ValueError, KeyError, TypeError):
        raise CheckpointInvalid(f"checkpoint line {line} is not a checkpoint (unreadable JSON or missing fields)") from None
    well_formed = (
        schema == SCHEMA
        and type(checkpoint.seq) is int
        and checkpoint.seq >= 1  # an empty chain is never checkpointed
        and all(isinstance(v, str) for v in (checkpoint.hash, checkpoint.key_id, checkpoint.written_at, mac))
        and _HEX64.fullmatch(checkpoint.hash)
    )
    if not well_formed:
        raise CheckpointInvalid(f"checkpoint line {line} is not a checkpoint of schema {SCHEMA}")
    try:
        expected = audit_mac(checkpoint.signed_fields(), key_id=checkpoint.key_id)
    except UnknownAuditKey as exc:
        raise CheckpointInvalid(f"checkpoint line {line} is signed with {exc}, so it cannot be verified") from None
    if not hmac.compare_digest(expected, mac):
        raise CheckpointInvalid(f"checkpoint line {line} does not carry a valid signature: the checkpoint file was edited")
    return checkpoint


def checkpoints_read() -> list[Checkpoint]:
    """Every checkpoint in the file, in the order written, each signature checked; none before the first.

    ``CheckpointInvalid`` names the first line that is not a checkpoint or whose signature fails:
    a file that cannot be trusted whole is not trusted at all.
    """
    try:
        with checkpoint_path().open("rb") as handle:
            return [_parse(raw, number) for number, raw in enumerate(handle, start=1)]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CheckpointInvalid(f"the checkpoint file cannot be read ({exc.strerror})") from None


def checkpoint_newest() -> Checkpoint | None:
    """The last line's checkpoint, read from the file's end; None when there is none or it is not valid."""
    try:
        with checkpoint_path().open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - 4096))  # a line is about 300 bytes
            tail = handle.read()
    except OSError:
        return None
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        return _parse(last, 0) if last else None
    except CheckpointInvalid:
        return None


def checkpoint_append(*, seq: int, hash: str) -> Checkpoint:
    """Append a checkpoint of event ``seq`` with ``hash``, signed with the current key, and sync it to disk."""
    checkpoint = Checkpoint(seq=seq, hash=hash, key_id=audit_signing_key_id(), written_at=timezone.now().astimezone(dt.UTC).isoformat())
    fields = checkpoint.signed_fields()
    data = (json.dumps({**fields, "mac": audit_mac(fields, key_id=checkpoint.key_id)}, sort_keys=True) + "\n").encode("ascii")
    path = checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        if os.write(descriptor, data) != len(data):
            raise OSError(f"the audit checkpoint was written short to {path}")
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return checkpoint
