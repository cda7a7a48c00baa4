"""The agent's side of the federated jobs API, over the standard library's HTTP client.

Every call retries what is worth retrying (the server unreachable, a dropped
connection, a timeout, a 5xx, 408 or 429) with exponential backoff and jitter,
up to ``Backoff.give_up_after`` seconds; then it raises ``ServerUnreachable``, and
the caller keeps its job as it stands for the next cycle. A 4xx is the server's
answer, not an outage: it raises ``ServerRefused`` with the status and the
server's messages at once.

Retried POSTs are safe by the API's contract: a claim retried after a lost
response is answered 409 (the caller knows it asked before), an identical report
is answered 200.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radtrust_agent import AGENT_VERSION

log = logging.getLogger("radtrust_agent")

_TRANSIENT_STATUS = frozenset({408, 429})
_CHUNK = 1 << 20
_MAX_PAGES = 100


class ServerUnreachable(Exception):
    """The server could not be reached (or kept failing) for longer than the retry budget."""


class ServerRefused(Exception):
    """The server answered a 4xx: ``status`` and its messages, flattened to one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


@dataclass
class Backoff:
    """Exponential backoff with jitter: the n-th wait lies in [d/2, d], d = min(cap, base * 2**n)."""

    base: float = 0.5
    cap: float = 30.0
    give_up_after: float | None = None  # seconds of retrying one call; None retries for ever
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(attempt, 32))
        return ceiling / 2 + self.rng.uniform(0.0, ceiling / 2)


def _messages(body: bytes) -> str:
    """A DRF error body (``{"field": ["message"]}``, ``{"detail": "..."}``) as one line."""
    try:
        data = json.loads(body or b"null")
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:500] or "no message"
    if isinstance(data, dict):
        parts = []
        for key, value in data.items():
            text = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
            parts.append(text if key in ("detail", "non_field_errors") else f"{key}: {text}")
        return "; ".join(parts)[:2000] or "no message"
    return str(data)[:2000]


class ServerClient:
    """Calls to ``{server}/api/federated/jobs/...`` with the site's token."""

    def __init__(self, server: str, token: str, *, backoff: Backoff | None = None, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(server)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"--server must be an http(s) URL such as https://radtrust.example.org, got {server!r}")
        self.server = server.rstrip("/")
        self._origin = (parsed.scheme, parsed.netloc)
        self._token = token
        self.backoff = backoff or Backoff()
        self.timeout = timeout

    # --- The API -----------------------------------------------------------------------

    def pending_jobs(self) -> list[dict]:
        """Jobs waiting for this site (a plain list, or DRF pages followed on the same server)."""
        jobs: list[dict] = []
        url: str | None = self._url("jobs/?status=pending")
        for _ in range(_MAX_PAGES):
            if url is None:
                break
            data = self._call("GET", url)
            if isinstance(data, dict):
                jobs.extend(data.get("results") or [])
                url = data.get("next") or None
                if url and urllib.parse.urlsplit(url)[:2] != self._origin:
                    log.warning("ignoring a next-page link to another server: %s", url)
                    url = None
            else:
                jobs.extend(data or [])
                url = None
        return [job for job in jobs if isinstance(job, dict)]

    def claim(self, job_id: Any) -> dict:
        return self._call("POST", self._url(f"jobs/{job_id}/claim/"), {})

    def download(self, job_id: Any, name: str, dest: Path) -> tuple[str, int]:
        """Stream one artifact file to ``dest``; its sha256 and size as written."""

        def save(response) -> tuple[str, int]:
            digest, size = hashlib.sha256(), 0
            with open(dest, "wb") as handle:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    handle.write(chunk)
                    size += len(chunk)
            return digest.hexdigest(), size

        quoted = urllib.parse.quote(name, safe="")
        return self._call("GET", self._url(f"jobs/{job_id}/artifact/{quoted}/"), handle=save)

    def report(self, job_id: Any, body: dict) -> int:
        """Send an approved payload; the status (201 stored, 200 the same payload was stored before)."""
        return self._call("POST", self._url(f"jobs/{job_id}/report/"), body, handle=lambda response: response.status)

    def fail(self, job_id: Any, reason: str) -> None:
        self._call("POST", self._url(f"jobs/{job_id}/fail/"), {"reason": reason})

    # --- Transport ---------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.server}/api/federated/{path}"

    def _call(self, method: str, url: str, body: dict | None = None, *, handle: Callable | None = None) -> Any:
        """One request, retried while transient; ``handle(response)`` reads it (JSON by default)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Token {self._token}", "Accept": "application/json", "User-Agent": f"radtrust-agent/{AGENT_VERSION}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        attempt = 0
        path = urllib.parse.urlsplit(url).path
        while True:
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    if handle is not None:
                        return handle(response)
                    raw = response.read()
                    return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                detail = _messages(exc.read())
                if exc.code < 500 and exc.code not in _TRANSIENT_STATUS:
                    raise ServerRefused(exc.code, detail) from None
                problem = f"HTTP {exc.code}: {detail[:200]}"
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                # ValueError: a body that is not JSON (a proxy's error page) is an outage too.
                problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            waited = time.monotonic() - started
            limit = self.backoff.give_up_after
            if limit is not None and waited >= limit:
                raise ServerUnreachable(f"{method} {path} failed for {waited:.0f} s: {problem}")
            delay = self.backoff.delay(attempt)
            if limit is not None:
                delay = max(0.0, min(delay, limit - waited))
            attempt += 1
            log.warning("server unavailable (%s %s: %s); retry %d in %.1f s", method, path, problem, attempt, delay)
            self.backoff.sleep(delay)
