"""HTML and PDF of the documents rendered from a signed dossier's frozen snapshot.

Nothing here reads a live row: the snapshot, the signature and the verified chart bytes come in
a ``RenderSource`` (``compliance.documents.render_source``), so a document shows exactly what
was signed.

1. A PDF is a cover and a list of parts; a part is a dossier section (``dossier_fields.SECTIONS``)
   or a group of dossier fields under another provision's heading (Art. 13(3), Annex V, XI, XII,
   Art. 53(1)(d)). A field shows the officer's text, or its evidence as tables and charts
   (``compliance.document_evidence``).
2. Evidence cited by several fields is shown in full where it first appears; later fields point
   to it with its page number, so a document stays readable and cheap to lay out.
3. The HTML goes through Django templates under ``templates/compliance/documents/`` (autoescaped,
   one print stylesheet); WeasyPrint lays it out once and writes the PDF from that layout. The
   PDF's dates are the signature's, so the same snapshot gives the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.template.loader import render_to_string

from compliance.choices import DocumentKind
from compliance.document_evidence import Attachments, Element, Pairs, Text, evidence_elements, provenance_table
from compliance.dossier_fields import EVIDENCE_SOURCES, FIELDS, SECTIONS, DossierField

TRAINING_ROLES = ("pretraining", "fine_tuning")
CHANGE_LOG_ANCHOR = "change-log"


@dataclass
class RenderSource:
    """Everything a document is rendered from, all frozen at submission or signature."""

    dossier_id: int
    revision: int
    snapshot: dict
    snapshot_sha256: str
    signature: dict  # signer, signed_at (ISO), meaning, snapshot_sha256
    attachments: Attachments = field(default_factory=Attachments)

    @property
    def evidence(self) -> dict:
        return self.snapshot.get("evidence") or {}

    @property
    def model(self) -> dict:
        return self.evidence.get("model_description") or {}


@dataclass(frozen=True)
class Part:
    """A chapter: a heading, the provision it answers, the dossier fields it shows and any extra elements."""

    anchor: str
    title: str
    article: str
    fields: tuple[DossierField, ...]
    extra: tuple[Element, ...] = ()


@dataclass(frozen=True)
class Pdf:
    data: bytes
    pages: int
    weasyprint_seconds: float


def _part(anchor: str, title: str, article: str, keys: Iterable[str], extra: Iterable[Element] = ()) -> Part:
    return Part(anchor, title, article, tuple(FIELDS[k] for k in keys), tuple(extra))


def _sections(*keys: str) -> list[Part]:
    chosen = [s for s in SECTIONS if not keys or s.key in keys]
    return [Part(f"part-{s.key}", s.title, s.article, s.fields) for s in chosen]


def _licence(source: RenderSource) -> list[Element]:
    return [Pairs("Licence", [("Licence", source.model.get("licence") or "not recorded in the registry")])]


def _annex_xi(source: RenderSource) -> list[Part]:
    return [
        _part("xi-1a", "Tasks and the AI systems it can be integrated in", "Annex XI 1(a)", ["1a_intended_purpose", "1a_purpose_statement"]),
        _part("xi-1b", "Acceptable-use policy", "Annex XI 1(b)", ["13_3b_iii_risk_circumstances", "3_capabilities_limitations"]),
        _part("xi-1c", "Release and methods of distribution", "Annex XI 1(c)", ["1d_forms_supplied", "1c_update_requirements"]),
        _part("xi-1d", "Architecture and number of parameters", "Annex XI 1(d)", ["2c_architecture_facts"]),
        _part("xi-1e", "Modality and format of inputs and outputs", "Annex XI 1(e)", ["1c_software_versions", "3_input_specifications"]),
        _part("xi-1f", "Licence", "Annex XI 1(f)", [], _licence(source)),
        _part("xi-2a", "Technical means for integration", "Annex XI 2(a)", ["1b_interactions", "1h_instructions_reference"]),
        _part("xi-2b", "Design specifications and training process", "Annex XI 2(b)", ["2a_development_methods", "2b_design_specifications"]),
        _part(
            "xi-2c",
            "Data used for training, testing and validation",
            "Annex XI 2(c)",
            [
                "2d_data_provenance",
                "2d_data_requirements",
                "10_2b_collection",
                "10_2c_preparation",
                "10_2e_availability",
                "10_2f_bias_examination",
                "10_2g_bias_measures",
            ],
        ),
        _part("xi-2d", "Computational resources, training time and energy", "Annex XI 2(d)-(e)", ["2c_architecture_resources"]),
    ]


def _annex_xii(source: RenderSource) -> list[Part]:
    return [
        _part("xii-1a", "Tasks and the AI systems it can be integrated in", "Annex XII 1(a)", ["1a_intended_purpose", "1a_purpose_statement"]),
        _part("xii-1b", "Acceptable-use policy", "Annex XII 1(b)", ["13_3b_iii_risk_circumstances", "3_capabilities_limitations"]),
        _part("xii-1c", "Release and methods of distribution", "Annex XII 1(c)", ["1d_forms_supplied"]),
        _part("xii-1d", "Interaction with hardware and software", "Annex XII 1(d)-(e)", ["1b_interactions", "1c_update_requirements", "1e_hardware"]),
        _part("xii-1f", "Architecture and number of parameters", "Annex XII 1(f)", ["2c_architecture_facts"]),
        _part("xii-1g", "Modality and format of inputs and outputs", "Annex XII 1(g), 2(b)", ["1c_software_versions", "3_input_specifications"]),
        _part("xii-1h", "Licence", "Annex XII 1(h)", [], _licence(source)),
        _part(
            "xii-2a",
            "Technical means for integration",
            "Annex XII 2(a)",
            ["1h_instructions_reference", "13_3b_vii_output_interpretation", "13_3d_oversight"],
        ),
        _part(
            "xii-2c",
            "Data used for training, testing and validation",
            "Annex XII 2(c)",
            ["2d_data_provenance", "10_2b_collection", "10_2c_preparation"],
        ),
        _part(
            "xii-perf",
            "Performance and limitations",
            "Annex XII 2; Art. 53(1)(b)",
            ["3_accuracy_overall", "3_accuracy_groups", "13_3b_v_group_statement"],
        ),
    ]


def _training_summary(source: RenderSource) -> list[Part]:
    rows = [r for r in source.evidence.get("provenance") or [] if r.get("role") in TRAINING_ROLES]
    content = (
        provenance_table(rows, "Datasets used to train or fine-tune the model")
        if rows
        else Text("No training dataset is linked to this version in the registry.")
    )
    return [
        _part("ts-content", "Training content", "Art. 53(1)(d)", ["10_2a_design_choices", "10_2b_collection"], [content]),
        _part(
            "ts-curation", "Preparation, quantity and suitability", "Art. 53(1)(d)", ["10_2c_preparation", "10_2e_availability", "10_2h_data_gaps"]
        ),
        _part("ts-lawful", "Lawful use of the data", "Art. 53(1)(c)-(d)", ["8_v5_data_protection"]),
    ]


@dataclass(frozen=True)
class PdfKind:
    template: str
    parts: Callable[[RenderSource], list[Part]]
    intro: str = ""
    draft: bool = False


PDF_KINDS: dict[str, PdfKind] = {
    DocumentKind.TECHNICAL_DOCUMENTATION: PdfKind("compliance/documents/technical_documentation.html", lambda s: _sections()),
    DocumentKind.INSTRUCTIONS_FOR_USE: PdfKind(
        "compliance/documents/document.html",
        lambda s: _sections("art_13_3", "art_14_4"),
        "The information deployers receive under Art. 13(3) of Regulation (EU) 2024/1689, with the human-oversight measures of Art. 14(4).",
    ),
    DocumentKind.DECLARATION_OF_CONFORMITY: PdfKind(
        "compliance/documents/document.html",
        lambda s: _sections("annex_iv_8"),
        "The items of Annex V as written in the signed dossier. This is a draft for the provider's signatory: it is not a declaration "
        "of conformity until it is signed and issued (Art. 47).",
        draft=True,
    ),
    DocumentKind.GPAI_TECHNICAL: PdfKind(
        "compliance/documents/document.html",
        _annex_xi,
        "Technical documentation of the general-purpose AI model for the AI Office and national competent authorities (Art. 53(1)(a), Annex XI, Section 1).",
    ),
    DocumentKind.GPAI_DOWNSTREAM: PdfKind(
        "compliance/documents/document.html",
        _annex_xii,
        "Information and documentation for providers of AI systems who intend to integrate the general-purpose AI model (Art. 53(1)(b), Annex XII).",
    ),
    DocumentKind.TRAINING_CONTENT_SUMMARY: PdfKind(
        "compliance/documents/document.html",
        _training_summary,
        "The public summary of the content used to train the general-purpose AI model (Art. 53(1)(d)).",
    ),
}


def _field_view(f: DossierField, source: RenderSource, shown: dict[str, tuple[str, str]]) -> dict:
    """One field: its officer text, its evidence in full, or a pointer to where that evidence was shown (step 2)."""
    view = {"field": f, "anchor": f"field-{f.key}", "text": None, "elements": (), "see": None}
    if f.source == "officer":
        view["text"] = (source.snapshot.get("values") or {}).get(f.key) or ""
    elif f.evidence in shown:
        view["see"] = shown[f.evidence]
    else:
        shown[f.evidence] = (view["anchor"], f.title)
        view["elements"] = evidence_elements(f.evidence, source.evidence.get(f.evidence), source.attachments)
    return view


def _part_views(parts: list[Part], source: RenderSource, shown: dict[str, tuple[str, str]]) -> list[dict]:
    return [{"part": p, "fields": [_field_view(f, source, shown) for f in p.fields]} for p in parts]


def _appendices(source: RenderSource, parts: list[Part]) -> dict:
    cited: dict[str, list[DossierField]] = {}
    for p in parts:
        for f in p.fields:
            if f.evidence:
                cited.setdefault(f.evidence, []).append(f)
    index = [
        {
            "name": name,
            "description": description,
            "present": bool(source.evidence.get(name)),
            "run": (source.evidence.get(name) or {}).get("run") if isinstance(source.evidence.get(name), dict) else None,
            "fields": cited.get(name, []),
        }
        for name, description in EVIDENCE_SOURCES.items()
    ]
    completeness = source.snapshot.get("completeness") or {}
    sections = [{"section": s, **(completeness.get("sections") or {}).get(s.key, {})} for s in SECTIONS]
    return {"evidence_index": index, "completeness": sections, "overall": completeness.get("overall") or {}}


def utc(moment: str | None) -> str:
    """An ISO time from the snapshot as ``2025-03-01 14:02 UTC``."""
    if not moment:
        return "—"
    parsed = datetime.fromisoformat(moment)
    return (parsed.astimezone(UTC) if parsed.tzinfo else parsed).strftime("%Y-%m-%d %H:%M UTC")


def document_context(kind: str, source: RenderSource) -> dict:
    spec = PDF_KINDS[kind]
    parts = spec.parts(source)
    shown: dict[str, tuple[str, str]] = {}
    log = source.evidence.get("change_log")
    change_log = None
    if kind == DocumentKind.TECHNICAL_DOCUMENTATION:  # its own chapter after the sections; Annex IV 6 points to it
        shown["change_log"] = (CHANGE_LOG_ANCHOR, "Changes against the parent version")
        change_log = evidence_elements("change_log", log, source.attachments) if log else None
    revisions = [
        {**r, "submitted_at_text": utc(r.get("submitted_at")), "signed_at_text": utc(r.get("signed_at"))}
        for r in source.snapshot.get("revisions") or []
    ]
    return {
        "kind": kind,
        "title": DocumentKind(kind).label,
        "intro": spec.intro,
        "draft": spec.draft,
        "model": source.model,
        "version": source.snapshot.get("version") or {},
        "revision": source.revision,
        "snapshot": source.snapshot,
        "snapshot_sha256": source.snapshot_sha256,
        "signature": {**source.signature, "signed_at_text": utc(source.signature["signed_at"])},
        "signed_on": source.signature["signed_at"][:10],
        "submitted_at_text": utc(source.snapshot.get("submitted_at")),
        "version_lineage": (source.evidence.get("version_identity") or {}).get("lineage"),
        "revisions": revisions,
        "charts": source.attachments.charts,
        "parts": _part_views(parts, source, shown),
        "change_log": change_log,
        "change_log_anchor": CHANGE_LOG_ANCHOR,
        **(_appendices(source, parts) if kind == DocumentKind.TECHNICAL_DOCUMENTATION else {}),
    }


def document_html(kind: str, source: RenderSource) -> str:
    return render_to_string(PDF_KINDS[kind].template, document_context(kind, source))


def html_to_pdf(html: str, *, created: str) -> Pdf:
    """Lay out once, count the pages from that layout, write the PDF from it (step 3)."""
    from weasyprint import HTML  # heavy; only PDF rendering needs it

    started = time.perf_counter()
    document = HTML(string=html).render()
    document.metadata.created = document.metadata.modified = created
    data = document.write_pdf()
    return Pdf(data, len(document.pages), time.perf_counter() - started)


def render_pdf(kind: str, source: RenderSource) -> Pdf:
    return html_to_pdf(document_html(kind, source), created=source.signature["signed_at"])
