"""Exports for people outside RadTrust: a version's technical file as one ZIP for the notified
body, and the alerts, feedback and incidents as CSV for a spreadsheet.

The ZIP is streamed: each stored file is read in chunks, hashed as it goes into the archive, and
the manifest (``MANIFEST.csv``, last) lists every file with its recorded and its actual sha256,
so the recipient can check the archive, and an altered file is marked, never hidden. Only what
the user may read goes in (``core.access.scope``: per-case outputs stay with their data steward).
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.core.files.storage import default_storage
from django.utils import timezone
from django.utils.text import slugify

from compliance.documents import document_filename, document_list
from compliance.models import Alert, Feedback, Incident
from registry.models import ModelVersion
from validation.choices import RunStatus
from validation.selectors import run_file_list

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One stored file going into the archive, under ``path``."""

    path: str
    storage_name: str
    sha256: str
    size: int
    what: str


def technical_file_entries(*, user, version: ModelVersion) -> list[Entry]:
    """Every document of every dossier revision of ``version``, and the files of its succeeded runs."""
    entries = [
        Entry(f"documents/{document_filename(d)}", d.storage_name, d.sha256, d.size, f"{d.get_kind_display()}, dossier revision {d.dossier.revision}")
        for d in document_list(user=user).filter(dossier__version=version).order_by("dossier__revision", "kind")
    ]
    files = run_file_list(user=user).filter(run__version=version, run__status=RunStatus.SUCCEEDED).order_by("run_id", "name")
    entries += [Entry(f"evidence/run-{f.run_id}/{f.name}", f.storage_name, f.sha256, f.size, f.title or f.get_kind_display()) for f in files]
    return entries


class _Sink(io.RawIOBase):
    """Where the ZIP writer puts its bytes until the response takes them (not seekable: data descriptors)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def zip_stream(entries: Iterable[Entry], *, readme: str) -> Iterator[bytes]:
    """The archive, chunk by chunk: README, the files, then MANIFEST.csv with the hashes."""
    sink = _Sink()
    rows = []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", readme)
        yield sink.take()
        for entry in entries:
            digest, status = hashlib.sha256(), "ok"
            try:
                with default_storage.open(entry.storage_name, "rb") as source, archive.open(entry.path, "w", force_zip64=True) as target:
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        target.write(chunk)
                        yield sink.take()
            except OSError:
                status = "missing from storage"
            actual = digest.hexdigest() if status == "ok" else ""
            if status == "ok" and actual != entry.sha256:
                status = "ALTERED: its sha256 differs from the one recorded"
            rows.append([entry.path, entry.what, entry.size, entry.sha256, actual, status])
            yield sink.take()
        manifest = io.StringIO()
        writer = csv.writer(manifest)
        writer.writerow(["file", "what it is", "size (bytes)", "sha256 recorded", "sha256 of the file in this archive", "check"])
        writer.writerows(rows)
        archive.writestr("MANIFEST.csv", manifest.getvalue())
    yield sink.take()


def technical_file_name(version: ModelVersion) -> str:
    return f"{slugify(version.foundation_model.name)}-{version.version}-technical-file-{timezone.localdate():%Y%m%d}.zip"


def technical_file_readme(version: ModelVersion, entries: list[Entry]) -> str:
    return (
        f"Technical file of {version.foundation_model.name} {version.version} (provider: {version.foundation_model.provider.name}),\n"
        f"exported from RadTrust on {timezone.now():%Y-%m-%d %H:%M} UTC: {len(entries)} files.\n\n"
        "documents/  every document rendered from each signed dossier revision (AI Act Annex IV)\n"
        "evidence/   the files of each succeeded validation run (reports, charts, tables)\n"
        "MANIFEST.csv  each file with the sha256 RadTrust recorded and the sha256 of the copy in this archive;\n"
        "              check a file with: sha256sum <file>\n"
    )


# --- CSV -------------------------------------------------------------------------------------


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_stream(header: list[str], rows: Iterable[list]) -> Iterator[str]:
    """CSV lines one by one (for a streaming response); a UTF-8 BOM first, so spreadsheets read accents."""
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)


def _when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else ""


ALERT_HEADER = ["id", "raised", "model", "version", "hospital", "severity", "kind", "subject", "message", "status", "handled by", "handled", "note"]


def alert_rows(alerts: Iterable[Alert]) -> Iterator[list]:
    for a in alerts:
        yield [
            a.pk, _when(a.created_at), a.version.foundation_model.name, a.version.version,
            a.deployment.institution.name if a.deployment_id else "", a.get_severity_display(), a.get_kind_display(), a.subject, a.message,
            a.get_status_display(), a.handled_by.username if a.handled_by_id else "", _when(a.handled_at), a.note,
        ]  # fmt: skip


FEEDBACK_HEADER = [
    "id",
    "given",
    "model",
    "version",
    "hospital",
    "case reference",
    "model output",
    "agreement",
    "error type",
    "severity",
    "minutes saved",
    "comment",
]


def feedback_rows(reports: Iterable[Feedback]) -> Iterator[list]:
    for f in reports:
        yield [
            f.pk, _when(f.created_at), f.version.foundation_model.name, f.version.version, f.deployment.institution.name, f.case_reference,
            f.model_output, f.get_agreement_display(), f.get_error_type_display(), f.get_severity_display(),
            "" if f.minutes_saved is None else f.minutes_saved, f.comment,
        ]  # fmt: skip


INCIDENT_HEADER = [
    "id",
    "opened",
    "title",
    "model",
    "version",
    "hospital",
    "type",
    "status",
    "aware on",
    "deadline",
    "reported on",
    "authority reference",
]


def incident_rows(incidents: Iterable[Incident]) -> Iterator[list]:
    for i in incidents:
        yield [
            i.pk, _when(i.created_at), i.title, i.version.foundation_model.name, i.version.version,
            i.deployment.institution.name if i.deployment_id else "", i.get_incident_type_display(), i.get_status_display(),
            i.aware_on, i.deadline, i.reported_on or "", i.authority_reference,
        ]  # fmt: skip
