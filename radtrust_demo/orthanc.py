"""A throw-away Orthanc PACS with its DICOMweb plugin, for the integration tests, ``manage.py demo_pacs`` and the bench.

Orthanc (Debian packages ``orthanc`` and ``orthanc-dicomweb``, installed by ``make install``) is
started on a free port with its storage in a folder of the caller's, basic authentication on,
DICOM networking off; files are loaded through its REST API. Stopping it leaves nothing running.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGINS = "/usr/share/orthanc/plugins"
AUTH = ("radtrust", "s3cret")
# A loaded machine can be slow: these bound a hang, they are never what anything measures.
PATIENCE = 60  # seconds for one HTTP request or for Orthanc to stop
START_LIMIT = 300  # seconds for Orthanc to answer at all; an exited process fails at once


class OrthancError(RuntimeError):
    """Orthanc is not installed, did not start, or refused a file."""


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its REST root (``url``), its DICOMweb root and the credentials it accepts."""

    url: str
    auth: tuple[str, str]
    process: subprocess.Popen

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def upload(self, files: Iterable[Path | bytes]) -> int:
        """Store DICOM files (paths or bytes); the number stored."""
        count = 0
        with requests.Session() as session:
            session.auth = self.auth
            for item in files:
                body = item if isinstance(item, bytes) else Path(item).read_bytes()
                response = session.post(f"{self.url}/instances", data=body, timeout=PATIENCE)
                if not response.ok:
                    raise OrthancError(f"Orthanc refused a file: HTTP {response.status_code}")
                count += 1
        return count

    def delete_instance(self, sop_uid: str) -> None:
        """Remove one instance (by SOP Instance UID), as a PACS that purged it would."""
        found = requests.post(f"{self.url}/tools/lookup", data=sop_uid, auth=self.auth, timeout=PATIENCE).json()
        requests.delete(f"{self.url}{found[0]['Path']}", auth=self.auth, timeout=PATIENCE).raise_for_status()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def available() -> bool:
    return Path(ORTHANC).exists() and Path(PLUGINS).is_dir()


def _wait_until_up(process: subprocess.Popen, url: str, auth: tuple[str, str]) -> None:
    """Poll until Orthanc answers; fail with its exit code if it stopped (a bad config, a taken port)."""
    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise OrthancError(f"Orthanc exited with code {process.returncode} before answering")
        try:
            if requests.get(f"{url}/system", auth=auth, timeout=PATIENCE).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.2)  # not yet listening: poll again
    raise OrthancError(f"Orthanc did not answer within {START_LIMIT} s")


@contextmanager
def orthanc(folder: Path, *, auth: tuple[str, str] = AUTH, options: Mapping[str, Any] | None = None) -> Iterator[Orthanc]:
    """Run Orthanc with its storage and index under ``folder`` until the block ends; ``options``
    are more configuration entries (such as ``LimitFindInstances``, to play a PACS that caps its answers)."""
    if not available():
        raise OrthancError(f"Orthanc with its DICOMweb plugin is not installed ({ORTHANC}, {PLUGINS}): run make install")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "Name": "radtrust",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {auth[0]: auth[1]},
        "Plugins": [PLUGINS],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        **(options or {}),
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("wb")
    process = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(process, url, auth)
        yield Orthanc(url, auth, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=PATIENCE)
        log.close()
