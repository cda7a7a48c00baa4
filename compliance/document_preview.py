"""A draft PDF of a dossier as it stands, for the officers to read before they sign (issue: officers
signed blind). It goes through the same snapshot and renderer as the signed documents, so what the
preview shows is what the signature will freeze, but it is watermarked DRAFT, carries no PAdES seal,
and nothing is stored: no snapshot, no document, no audit event (reading changes nothing)."""

from __future__ import annotations

import datetime as dt
import json

from django.core.exceptions import ValidationError

from compliance.choices import DocumentKind, DossierStatus
from compliance.document_evidence import Attachments
from compliance.document_render import PDF_KINDS, RenderSource, render_pdf
from compliance.documents import chart_bytes
from compliance.dossier_evidence import dossier_evidence
from compliance.dossiers import dossier_completeness, dossier_snapshot, snapshot_hash
from compliance.duties import signing_institution
from compliance.models import Dossier

FROZEN = {DossierStatus.IN_REVIEW, DossierStatus.SIGNED}


def dossier_preview_pdf(*, actor, dossier: Dossier, kind: str) -> bytes:
    """The PDF ``kind`` would be if ``dossier`` were submitted and signed now, marked DRAFT and unsigned."""
    if kind not in PDF_KINDS:
        choices = ", ".join(f"{k} ({DocumentKind(k).label})" for k in PDF_KINDS)
        raise ValidationError({"kind": f"Preview one of: {choices}."})
    if dossier.status in FROZEN and dossier.snapshot:  # in review: exactly what the signer is asked to sign
        snapshot = dossier.snapshot
    else:
        evidence = dossier_evidence(dossier.version)
        snapshot = dossier_snapshot(dossier, actor=actor, evidence=evidence, completeness=dossier_completeness(dossier, evidence))
        snapshot = json.loads(json.dumps(snapshot, default=str))  # the shape a stored snapshot has
    institution = signing_institution(dossier)  # the provider, whose officers will sign
    charts = snapshot.get("charts") or []
    source = RenderSource(
        dossier_id=dossier.pk,
        revision=dossier.revision,
        snapshot=snapshot,
        snapshot_sha256=snapshot_hash(snapshot),
        signature={
            "signer": "not signed",
            "signer_name": "Not signed (draft preview)",
            "institution": institution.name,
            "institution_code": institution.code,
            "country": institution.country,
            "signed_at": dt.datetime.now(dt.UTC).isoformat(),
            "meaning": "draft preview, not a signature",
            "authentication": "",
            "snapshot_sha256": "",
            "audit_seq": None,
            "audit_hash": "",
        },
        attachments=Attachments(charts=charts, data=chart_bytes(charts), trust_radar=snapshot.get("trust_radar")),
        preview=True,
    )
    return render_pdf(kind, source).data
