"""The EU declaration of conformity as one document for both laws (AI Act Art. 47(3)): every item of
AI Act Annex V and MDR Annex IV, each with the dossier fields and registry entries that state it.

1. ``ITEMS`` lists the items in the MDR's order with the provisions each answers; an item names the
   dossier fields that hold its text. The MDR-only items (Basic UDI-DI, class and rule, SRN) apply
   to a medical device only (the registry names an MDR class); the notified body's number to a
   class IIa, IIb or III device.
2. ``declaration_missing`` names each item whose fields are not yet answered
   (``dossier_fields.field_problem``), so submission is refused naming what the declaration lacks.
3. ``declaration_rows`` is what the rendered declaration prints, item by item.

Plain Python: it reads a snapshot's values and registry description.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from compliance.dossier_fields import FIELDS, field_problem

NOTIFIED_BODY_CLASSES = frozenset({"IIa", "IIb", "III"})
RISK_CLASS_WORDS = {
    "high": "High-risk AI system (AI Act Art. 6)",
    "limited": "Limited risk (AI Act Art. 50)",
    "minimal": "Minimal risk",
    "gpai": "General-purpose AI model (AI Act Art. 51-55)",
}


@dataclass(frozen=True)
class DeclarationItem:
    title: str
    ai_act: str  # the AI Act Annex V point, or "" for an MDR-only item
    mdr: str  # the MDR Annex IV point, or "" for an AI Act-only item
    fields: tuple[str, ...]
    optional: bool = False

    @property
    def provisions(self) -> str:
        return "; ".join(p for p in (f"AI Act Annex V({self.ai_act})" if self.ai_act else "", f"MDR Annex IV({self.mdr})" if self.mdr else "") if p)


ITEMS: tuple[DeclarationItem, ...] = (
    DeclarationItem(
        "Provider (manufacturer): name, address and single registration number", "2", "1", ("8_v2_provider", "13_3a_provider_address", "mdr_srn")
    ),
    DeclarationItem("Statement of sole responsibility", "3", "2", ("8_v3_sole_responsibility",)),
    DeclarationItem("Basic UDI-DI", "", "3", ("mdr_basic_udi_di",)),
    DeclarationItem("Product, trade name and traceability reference, and intended purpose", "1", "4", ("8_v1_identification", "mdr_udi_di")),
    DeclarationItem("Risk class and classification rule", "", "5", ("mdr_class_rule",)),
    DeclarationItem("Statement of conformity", "4", "6", ("8_v4_conformity",)),
    DeclarationItem("Personal data", "5", "", ("8_v5_data_protection",)),
    DeclarationItem("Harmonised standards and common specifications", "6", "7", ("8_v6_standards",)),
    DeclarationItem("Notified body, procedure and certificate", "7", "8", ("8_v7_notified_body", "mdr_notified_body_number")),
    DeclarationItem("Additional information", "", "9", ("8_additional_information",), optional=True),
    DeclarationItem("Place and date of issue, name and function of the signatory", "8", "10", ("8_v8_issue_and_signatory",)),
)


def applies(key: str, mdr_class: str) -> bool:
    """Whether a declaration field is asked of this model (step 1)."""
    if key == "mdr_notified_body_number":
        return mdr_class in NOTIFIED_BODY_CLASSES
    return bool(mdr_class) or not FIELDS[key].device_only


def declaration_gaps(values: Mapping[str, Any], mdr_class: str) -> list[tuple[DeclarationItem, list[str]]]:
    """Each item the declaration cannot state yet, with the keys of its unanswered fields (step 2)."""
    gaps = []
    for item in ITEMS:
        if item.optional:
            continue
        unanswered = [k for k in item.fields if applies(k, mdr_class) and field_problem(FIELDS[k], values.get(k))]
        if unanswered:
            gaps.append((item, unanswered))
    return gaps


def declaration_missing(values: Mapping[str, Any], mdr_class: str) -> list[str]:
    """``declaration_gaps`` as sentences: each item with the titles of the fields that hold it."""
    return [f"{item.title} ({item.provisions}: {', '.join(FIELDS[k].title for k in keys)})" for item, keys in declaration_gaps(values, mdr_class)]


def declaration_rows(values: Mapping[str, Any], model: Mapping[str, Any], version_label: str) -> list[dict]:
    """The declaration item by item (step 3): what the dossier states, and what it does not yet."""
    mdr_class = str(model.get("mdr_class") or "")
    rows = []
    for number, item in enumerate(ITEMS, start=1):
        statements = [(FIELDS[k].title, str(values.get(k) or "").strip()) for k in item.fields if applies(k, mdr_class)]
        if item.mdr == "4":
            statements += [("Version", version_label), ("Intended purpose", str(model.get("intended_purpose") or "").strip())]
        if item.mdr == "5":
            statements.append(("AI Act class", RISK_CLASS_WORDS.get(str(model.get("risk_class") or ""), "not recorded")))
        rows.append(
            {
                "number": number,
                "title": item.title,
                "provisions": item.provisions,
                "statements": [(label, text) for label, text in statements if text],
                "missing": [label for label, text in statements if not text and not item.optional],
                "applies": bool(statements),
            }
        )
    return [r for r in rows if r["applies"]]
