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
   PDF's dates are the signature's, so the same snapshot gives the same bytes: the unchanged
   prefix of the file once ``compliance.pdf_signing`` has sealed it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from django.template.loader import render_to_string

from compliance.choices import DocumentKind
from compliance.claims import VERDICT_WORDS
from compliance.declaration import NOTIFIED_BODY_CLASSES, declaration_rows
from compliance.document_evidence import Attachments, Element, Pairs, Text, evidence_elements, provenance_table, residual_risk_elements
from compliance.dossier_checks import dossier_claims
from compliance.dossier_fields import EVIDENCE_SOURCES, FIELDS, SECTIONS, DossierField
from compliance.field_checks import mdr_class_rule

TRAINING_ROLES = ("pretraining", "fine_tuning")
CHANGE_LOG_ANCHOR = "change-log"
PDF_VARIANT = "pdf/ua-1"  # tagged structure, document language and title for screen readers (WeasyPrint's PDF/UA-1)
SERIOUS_INCIDENT_NOTICE = (
    "Any serious incident that has occurred in relation to this device should be reported to the manufacturer, {provider}, and to the "
    "competent authority of the Member State in which the user or patient is established (MDR Annex I 23.4(z)). A serious incident is one "
    "that led, or might have led, to the death of a patient, user or other person, to a serious deterioration of their state of health, "
    "or to a serious public health threat (MDR Art. 2(65)); a breach of fundamental-rights obligations is reported as well (AI Act Art. 73)."
)


@dataclass
class RenderSource:
    """Everything a document is rendered from, all frozen at submission or signature."""

    dossier_id: int
    revision: int
    snapshot: dict
    snapshot_sha256: str
    signature: dict  # signer, signer_name, institution (name, code, country), signed_at (ISO), meaning, authentication, hashes
    attachments: Attachments = field(default_factory=Attachments)
    preview: bool = False  # the dossier as it stands, before anyone signed it (``compliance.document_preview``)

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


def _instructions_for_use(source: RenderSource) -> list[Part]:
    """The instructions for use in the order a deployer reads them: purpose, the declared performance at the
    operating threshold, requirements, lifetime, oversight, and how to report a serious incident."""
    notice = Text(SERIOUS_INCIDENT_NOTICE.format(provider=source.model.get("provider") or "the provider"))
    oversight = [f.key for s in SECTIONS if s.key == "art_14_4" for f in s.fields]
    return [
        _part(
            "ifu-purpose", "Intended purpose and users", "Art. 13(3)(b)(i); MDR Annex I 23.4(b)", ["13_3b_i_intended_purpose", "1a_purpose_statement"]
        ),
        _part(
            "ifu-performance",
            "Declared performance and operating threshold",
            "Art. 13(3)(b)(ii), (vii); MDR Annex I 23.4(e)",
            ["13_3b_ii_accuracy", "13_3b_vii_output_interpretation", "13_3b_ii_robustness_security"],
        ),
        _part(
            "ifu-groups",
            "Performance for the groups it is intended for",
            "Art. 13(3)(b)(v)",
            ["13_3b_v_group_performance", "13_3b_v_group_statement"],
        ),
        _part("ifu-risks", "Circumstances that may lead to risks", "Art. 13(3)(b)(iii); MDR Annex I 23.4(g)", ["13_3b_iii_risk_circumstances"]),
        _part(
            "ifu-residual-risks",
            "Residual risks",
            "Art. 13(3)(b)(iii); MDR Annex I 23.4(g)",
            [],
            residual_risk_elements(source.evidence.get("risk_file")),
        ),
        _part("ifu-explanations", "Explaining the output", "Art. 13(3)(b)(iv)", ["13_3b_iv_explanations", "13_3b_iv_explainability"]),
        _part("ifu-inputs", "Input specifications and data", "Art. 13(3)(b)(vi)", ["13_3b_vi_input_and_data"]),
        _part(
            "ifu-requirements",
            "Hardware and software requirements",
            "Art. 13(3)(e); MDR Annex I 23.4(ab)",
            ["1e_hardware", "1c_update_requirements", "13_3e_resources_lifetime"],
        ),
        _part("ifu-lifetime", "Expected lifetime and changes", "Art. 13(3)(c), (e)", ["13_3e_lifetime", "13_3c_changes"]),
        _part("ifu-oversight", "Human oversight", "Art. 13(3)(d); Art. 14(4)", ["13_3d_oversight", *oversight]),
        _part("ifu-logs", "Logs", "Art. 13(3)(f)", ["13_3f_logs"]),
        _part("ifu-incidents", "Reporting a serious incident", "MDR Annex I 23.4(z); AI Act Art. 73", ["9_incident_reporting"], [notice]),
        _part("ifu-provider", "Provider", "Art. 13(3)(a); MDR Annex I 23.2", ["13_3a_provider", "13_3a_provider_address"]),
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
        "compliance/documents/instructions_for_use.html",
        _instructions_for_use,
        "What deployers and radiologists need to use this version safely: Art. 13(3) of Regulation (EU) 2024/1689 with the "
        "human-oversight measures of Art. 14(4), and Annex I 23.4 of Regulation (EU) 2017/745.",
    ),
    DocumentKind.DECLARATION_OF_CONFORMITY: PdfKind(
        "compliance/documents/declaration_of_conformity.html",
        lambda s: [],
        "One declaration for Regulation (EU) 2024/1689 (AI Act Art. 47 and Annex V) and Regulation (EU) 2017/745 (MDR Art. 19 and "
        "Annex IV), as Art. 47(3) asks, with every item as written in the signed dossier. This is a draft for the provider's signatory: "
        "it is not a declaration of conformity until it is signed and issued.",
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


def _field_view(f: DossierField, source: RenderSource, shown: dict[str, tuple[str, str]], attachments: Attachments) -> dict:
    """One field: its officer text, its evidence in full, or a pointer to where that evidence was shown (step 2)."""
    view = {"field": f, "anchor": f"field-{f.key}", "text": None, "elements": (), "see": None}
    if f.source == "officer":
        view["text"] = (source.snapshot.get("values") or {}).get(f.key) or ""
    elif f.evidence in shown:
        view["see"] = shown[f.evidence]
    else:
        shown[f.evidence] = (view["anchor"], f.title)
        view["elements"] = evidence_elements(f.evidence, source.evidence.get(f.evidence), attachments)
    return view


def _part_views(parts: list[Part], source: RenderSource, shown: dict[str, tuple[str, str]], attachments: Attachments) -> list[dict]:
    return [{"part": p, "fields": [_field_view(f, source, shown, attachments) for f in p.fields]} for p in parts]


def identification(source: RenderSource) -> dict:
    """Who provides the device and how it is identified, as the covers of the instructions for use and
    the declaration print it: address, UDI-DI, class, CE marking and the date of issue."""
    values, model = source.snapshot.get("values") or {}, source.model
    mdr_class = str(model.get("mdr_class") or "")
    _stated, rule = mdr_class_rule(str(values.get("mdr_class_rule") or ""))
    body = str(values.get("mdr_notified_body_number") or "").strip()
    marking = ""
    if mdr_class:
        marking = f"CE {body}" if mdr_class in NOTIFIED_BODY_CLASSES and body else "CE"
    return {
        "provider": model.get("provider") or "",
        "address": str(values.get("13_3a_provider_address") or "").strip(),
        "udi_di": str(values.get("mdr_udi_di") or "").strip(),
        "basic_udi_di": str(values.get("mdr_basic_udi_di") or "").strip(),
        "srn": str(values.get("mdr_srn") or "").strip(),
        "device_class": f"Class {mdr_class} medical device" + (f" (MDR Annex VIII Rule {rule})" if rule else "") if mdr_class else "",
        "ce_marking": marking,
        "issued": source.signature["signed_at"][:10],
    }


def claim_rows(source: RenderSource) -> list[dict]:
    """Each performance claim in the dossier's text with what the declared figures say about it."""
    checks = dossier_claims(source.snapshot.get("values") or {}, source.evidence)
    return [{"field": FIELDS[c.claim.field], "check": c, "verdict": VERDICT_WORDS[c.verdict]} for c in checks]


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
    # the instructions for use are read at the bedside: figures name their run, never a hash
    attachments = replace(source.attachments, plain=True) if kind == DocumentKind.INSTRUCTIONS_FOR_USE else source.attachments
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
        "draft": spec.draft or source.preview,
        "preview": source.preview,
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
        "parts": _part_views(parts, source, shown, attachments),
        "change_log": change_log,
        "change_log_anchor": CHANGE_LOG_ANCHOR,
        "identification": identification(source),
        "declaration": declaration_rows(source.snapshot.get("values") or {}, source.model, (source.snapshot.get("version") or {}).get("label") or "")
        if kind == DocumentKind.DECLARATION_OF_CONFORMITY
        else [],
        "claims": claim_rows(source) if kind == DocumentKind.TECHNICAL_DOCUMENTATION else [],
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
    data = document.write_pdf(pdf_variant=PDF_VARIANT)
    return Pdf(data, len(document.pages), time.perf_counter() - started)


def render_pdf(kind: str, source: RenderSource) -> Pdf:
    return html_to_pdf(document_html(kind, source), created=source.signature["signed_at"])
