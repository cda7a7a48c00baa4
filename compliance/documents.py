"""Documents of a signed dossier revision: rendered from its frozen snapshot, stored under their
sha256, never edited, kept for the retention period, and verifiable at any time.

1. At submission, ``snapshot_attachments`` adds to the snapshot what the documents embed beside
   the evidence: the charts of the runs the evidence cites (referenced by storage name and
   sha256, not copied), the trust radar (small, inline), and the version's earlier signed
   revisions for the revision history.
2. ``dossier_documents_render`` (signed revisions only) renders each kind not yet stored for
   the revision. It reads the snapshot, the signature, and the charts, each checked against
   its recorded sha256; a missing or altered chart stops rendering, naming the file. No live
   row of the registry, runs or scores is read.
   Each PDF is then sealed with a PAdES signature of the institution the dossier was signed for
   (``compliance.pdf_signing``), naming the signer and the meaning of their signature, so a
   reviewer can verify it outside RadTrust; the rendered bytes stay the signed file's prefix.
3. Each document's bytes are stored at ``documents/<sha[:2]>/<sha>.<ext>`` (written only when
   absent) and recorded in a ``Document`` row with its hash, size, pages, the snapshot hash and
   the earliest day it may be deleted (``retention_floor``); the row's creation is audited. A concurrent render of the same kind
   returns the row the other one stored.
4. ``document_download`` re-hashes the stored bytes and serves them only when they match (an
   altered file is refused, never served under the recorded sha256); ``document_verify``
   re-hashes a stored file; ``documents_verify`` checks every document.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass
from pathlib import PurePosixPath

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import FileResponse
from django.utils.text import slugify

from compliance import document_cards as cards
from compliance.change_log_text import change_log_markdown
from compliance.choices import DocumentKind, DossierStatus
from compliance.document_evidence import CHART_PREFIXES, Attachments
from compliance.document_render import PDF_KINDS, RenderSource, render_pdf
from compliance.duties import signing_institution
from compliance.market import retention_floor
from compliance.models import Document, Dossier, DossierSignature, TrustAssessment
from compliance.pdf_signing import Seal, pdf_seal
from core.access import scope
from core.errors import Conflict
from radtrust_engine.hashing import sha256_matches
from registry.models import ModelVersion
from validation.choices import RunFileKind
from validation.models import RunFile

GPAI_KINDS = (DocumentKind.GPAI_TECHNICAL, DocumentKind.GPAI_DOWNSTREAM, DocumentKind.TRAINING_CONTENT_SUMMARY)
CONTENT_TYPES = {"pdf": "application/pdf", "md": "text/markdown; charset=utf-8", "json": "application/json"}


@dataclass(frozen=True)
class Rendered:
    """One document's bytes before storage."""

    kind: str
    data: bytes
    extension: str
    pages: int | None = None
    weasyprint_seconds: float = 0.0

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.extension]


# --- 1. What the snapshot carries for the documents ------------------------------------------


def snapshot_attachments(version: ModelVersion, evidence: dict) -> dict:
    """The charts, trust radar and revision history a snapshot carries for its documents (step 1)."""
    cited = {source: evidence[source]["run"] for source in CHART_PREFIXES if evidence.get(source)}
    charts = []
    for f in RunFile.objects.filter(run_id__in=set(cited.values()), kind=RunFileKind.CHART).order_by("run_id", "name"):
        for source, run in cited.items():
            if f.run_id == run and f.name.startswith(CHART_PREFIXES[source]):
                charts.append(
                    {
                        "source": source,
                        "run": f.run_id,
                        "name": f.name,
                        "title": f.title,
                        "alt": f.alt,
                        "sha256": f.sha256,
                        "storage_name": f.storage_name,
                    }
                )
    trust = evidence.get("trust_scores")
    radar = TrustAssessment.objects.filter(pk=trust["assessment"]).values_list("chart_svg", flat=True).first() if trust else None
    earlier = version.dossiers.filter(status=DossierStatus.SIGNED).select_related("submitted_by", "signature__signer").order_by("revision")
    revisions = [
        {
            "revision": d.revision,
            "submitted_by": d.submitted_by.username if d.submitted_by else "",
            "submitted_at": d.submitted_at.isoformat() if d.submitted_at else None,
            "signer": d.signature.signer.username,
            "signed_at": d.signature.signed_at.isoformat(),
            "snapshot_sha256": d.snapshot_sha256,
        }
        for d in earlier
    ]
    return {"charts": charts, "trust_radar": radar or None, "revisions": revisions}


# --- 2. Rendering ----------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chart_bytes(charts: list[dict]) -> dict[tuple[int, str], bytes]:
    """Each chart the snapshot references, read once and checked against its recorded hash."""
    loaded = {}
    for c in charts:
        where = f"chart {c['name']} of run {c['run']} (stored as {c['storage_name']})"
        try:
            with default_storage.open(c["storage_name"], "rb") as handle:
                data = handle.read()
        except OSError:
            raise Conflict(
                f"The {where} is missing; documents are never rendered without the evidence their snapshot cites.", code="evidence_missing"
            ) from None
        if _sha256(data) != c["sha256"]:
            raise Conflict(
                f"The {where} no longer matches the sha256 recorded in the snapshot: it was altered after submission, so no document is rendered from it.",
                code="evidence_altered",
            )
        loaded[(c["run"], c["name"])] = data
    return loaded


def _require_signed(dossier: Dossier) -> None:
    if dossier.status != DossierStatus.SIGNED:
        raise Conflict(
            f"Documents are rendered from a signed dossier; revision {dossier.revision} is {dossier.get_status_display().lower()}.",
            code="dossier_not_signed",
        )


def render_source(dossier: Dossier) -> RenderSource:
    """The frozen inputs of a signed revision, verified (step 2)."""
    _require_signed(dossier)
    signature = DossierSignature.objects.select_related("signer", "institution").get(dossier=dossier)
    institution = signature.institution or signing_institution(dossier)  # signatures made before the institution was recorded
    if not (dossier.snapshot_sha256 == signature.snapshot_sha256 and sha256_matches(dossier.snapshot, dossier.snapshot_sha256)):
        raise Conflict("The frozen snapshot no longer matches the hash that was signed; no document is rendered from it.", code="snapshot_altered")
    snapshot = dossier.snapshot
    charts = snapshot.get("charts") or []
    return RenderSource(
        dossier_id=dossier.pk,
        revision=dossier.revision,
        snapshot=snapshot,
        snapshot_sha256=dossier.snapshot_sha256,
        signature={
            "signer": signature.signer.get_username(),
            "signer_name": signature.signer_name or signature.signer.get_username(),
            "institution": institution.name,
            "institution_code": institution.code,
            "country": institution.country,
            "signed_at": signature.signed_at.astimezone(dt.UTC).isoformat(),
            "meaning": signature.meaning,
            "authentication": signature.authentication,
            "snapshot_sha256": signature.snapshot_sha256,
            "audit_seq": signature.audit_seq,
            "audit_hash": signature.audit_hash,
        },
        attachments=Attachments(charts=charts, data=chart_bytes(charts), trust_radar=snapshot.get("trust_radar")),
    )


def document_kinds(snapshot: dict) -> list[str]:
    """The kinds a snapshot yields: always the Annex IV set and the model card; the change log when
    there is one; the general-purpose model documents only for a model offered as such."""
    evidence = snapshot.get("evidence") or {}
    kinds = [
        DocumentKind.TECHNICAL_DOCUMENTATION,
        DocumentKind.INSTRUCTIONS_FOR_USE,
        DocumentKind.DECLARATION_OF_CONFORMITY,
        DocumentKind.MODEL_CARD_MARKDOWN,
        DocumentKind.MODEL_CARD_JSON,
    ]
    if evidence.get("change_log"):
        kinds += [DocumentKind.CHANGE_LOG_MARKDOWN, DocumentKind.CHANGE_LOG_JSON]
    if (evidence.get("model_description") or {}).get("general_purpose"):
        kinds += list(GPAI_KINDS)
    return kinds


def document_seal(source: RenderSource) -> Seal:
    """Whom a PDF is signed for, and what the officer's signature meant."""
    signature = source.signature
    return Seal(
        institution_code=signature["institution_code"],
        institution_name=signature["institution"],
        country=signature["country"],
        signer_name=signature["signer_name"],
        meaning=signature["meaning"],
    )


def document_build(kind: str, source: RenderSource) -> Rendered:
    """One document's bytes from the frozen source; a PDF sealed with the institution's signature."""
    if kind in PDF_KINDS:
        pdf = render_pdf(kind, source)
        return Rendered(kind, pdf_seal(pdf.data, document_seal(source)), "pdf", pdf.pages, pdf.weasyprint_seconds)
    if kind in {DocumentKind.MODEL_CARD_MARKDOWN, DocumentKind.MODEL_CARD_JSON}:
        card = cards.model_card(source.snapshot, source.signature)
        if kind == DocumentKind.MODEL_CARD_JSON:
            return Rendered(kind, cards.json_bytes(card), "json")
        return Rendered(kind, cards.model_card_markdown(card).encode(), "md")
    log = source.evidence["change_log"]
    if kind == DocumentKind.CHANGE_LOG_JSON:
        return Rendered(kind, cards.json_bytes(log), "json")
    return Rendered(kind, change_log_markdown(log).encode(), "md")


# --- 3. Storage ------------------------------------------------------------------------------


def _write_content_addressed(name: str, data: bytes, sha256: str) -> None:
    """Write ``data`` under its hash unless an intact copy is there already."""
    if default_storage.exists(name):
        with default_storage.open(name, "rb") as handle:
            if _sha256(handle.read()) == sha256:
                return
        default_storage.delete(name)  # a damaged copy under this address: replace it with the true bytes
    saved = default_storage.save(name, ContentFile(data))
    if saved != name:  # another render wrote the same address meanwhile: same bytes, keep one
        default_storage.delete(saved)


def document_store(*, actor, dossier: Dossier, rendered: Rendered) -> Document:
    """Store the bytes content-addressed and record them (step 3); the row's creation is audited (compliance.apps)."""
    sha256 = _sha256(rendered.data)
    name = f"documents/{sha256[:2]}/{sha256}.{rendered.extension}"
    _write_content_addressed(name, rendered.data, sha256)
    row = Document(
        dossier=dossier,
        kind=rendered.kind,
        sha256=sha256,
        size=len(rendered.data),
        content_type=rendered.content_type,
        storage_name=name,
        pages=rendered.pages,
        snapshot_sha256=dossier.snapshot_sha256,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        retain_until=retention_floor(dossier.version),
    )
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:  # rendered concurrently (the task and an officer): theirs stands
        return Document.objects.get(dossier=dossier, kind=rendered.kind)
    return row


def dossier_documents_render(*, actor, dossier: Dossier) -> list[Document]:
    """Every document of a signed revision, rendering only the kinds not stored yet (step 2)."""
    dossier = Dossier.objects.select_related("version__foundation_model").get(pk=dossier.pk)
    _require_signed(dossier)
    stored = {d.kind: d for d in dossier.documents.all()}
    missing = [kind for kind in document_kinds(dossier.snapshot) if kind not in stored]
    if missing:
        source = render_source(dossier)
        for kind in missing:
            stored[kind] = document_store(actor=actor, dossier=dossier, rendered=document_build(kind, source))
    return [stored[kind] for kind in DocumentKind.values if kind in stored]


# --- 4. Reading and verifying ----------------------------------------------------------------


def document_list(*, user) -> QuerySet[Document]:
    """Documents the user may read: the dossier's institution rule (``core.access``)."""
    return scope(user, Document.objects.select_related("dossier__version__foundation_model", "created_by"))


def document_filename(document: Document) -> str:
    version = document.dossier.version
    suffix = PurePosixPath(document.storage_name).suffix
    return f"{slugify(version.foundation_model.name)}-{version.version}-rev{document.dossier.revision}-{document.kind}{suffix}"


def document_download(document: Document) -> FileResponse | None:
    """The stored file as an attachment named for the document, its sha256 as the ETag; None when the file is missing.

    The bytes are read once and checked against the recorded size and sha256 before any is sent,
    and those same bytes are served, so a file altered in storage is refused (``Conflict``), never
    served under the hash it no longer has. At most one byte past the recorded size is read.
    """
    try:
        with default_storage.open(document.storage_name, "rb") as handle:
            data = handle.read(document.size + 1)
    except OSError:
        return None
    if len(data) != document.size or _sha256(data) != document.sha256:
        raise Conflict(
            "The stored file of this document no longer matches the sha256 recorded when it was rendered, so it is not served; "
            "an administrator should run manage.py verify_documents.",
            code="document_altered",
        )
    response = FileResponse(io.BytesIO(data), as_attachment=True, filename=document_filename(document), content_type=document.content_type)
    response["ETag"] = f'"{document.sha256}"'
    return response


def document_verify(document: Document) -> str | None:
    """None when the stored bytes still hash to the recorded sha256; otherwise what is wrong."""
    digest, size = hashlib.sha256(), 0
    try:
        with default_storage.open(document.storage_name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
    except OSError:
        return f"the stored file {document.storage_name} is missing"
    if digest.hexdigest() != document.sha256:
        return f"the stored file {document.storage_name} hashes to {digest.hexdigest()}, not the recorded {document.sha256} ({size} bytes, {document.size} recorded): it was altered"
    return None


def documents_verify() -> list[tuple[Document, str]]:
    """Every stored document that is missing or altered, with the reason."""
    problems = []
    for document in Document.objects.select_related("dossier").order_by("pk").iterator(chunk_size=500):
        reason = document_verify(document)
        if reason is not None:
            problems.append((document, reason))
    return problems
