"""What an adaptation inherits from its base that its dossier must answer: the known weaknesses
the lineage records (``registry.adaptations.inherited_risks``: the base models' limitations and
those of the data they were trained on) and the hazards of every ancestor's risk file.

The items are numbered; the officer answers them in one dossier field
(``5_inherited_items_addressed``), one paragraph per item starting with its number ("2. ..."),
and a submission is refused while an item has no such paragraph (``compliance.dossier_checks``).
A version that is not a recorded adaptation has no items.
"""

from __future__ import annotations

import re

from compliance.models import RiskFile
from registry.adaptations import inherited_risks
from registry.models import Adaptation, ModelVersion

ANSWER_FIELD = "5_inherited_items_addressed"
MIN_ANSWER_CHARACTERS = 20  # past the number: a short sentence, never a bare "ok" or "n/a"


def _ancestor_hazards(version: ModelVersion) -> list[dict]:
    """The hazards of each ancestor's risk file, nearest ancestor first, each hazard once."""
    items, seen, current = [], {version.pk}, version.parent
    while current is not None and current.pk not in seen:
        seen.add(current.pk)
        risk_file = RiskFile.objects.filter(version=current).first()
        for hazard in risk_file.hazards.order_by("number") if risk_file is not None else ():
            items.append(
                {
                    "source": f"Risk file of {current}, hazard H{hazard.number}",
                    "item": f"{hazard.hazard} Situation: {hazard.situation} Harm: {hazard.harm}",
                }
            )
        current = current.parent
    return items


def inherited_items(version: ModelVersion) -> list[dict] | None:
    """The numbered items (``{"number", "source", "item"}``) an adaptation's dossier must answer;
    None for a version that is not a recorded adaptation."""
    if not Adaptation.objects.filter(version=version).exists():
        return None
    found = [risk.to_dict() for risk in inherited_risks(version)] + _ancestor_hazards(version)
    return [{"number": n, **item} for n, item in enumerate(found, start=1)]


def _answered(text: str) -> set[int]:
    numbers = set()
    for paragraph in re.split(r"\n", text or ""):
        match = re.match(r"\s*(?:item\s*)?(\d+)\s*[.):-]\s*(.*)$", paragraph, re.I)
        if match and len(match.group(2).strip()) >= MIN_ANSWER_CHARACTERS:
            numbers.add(int(match.group(1)))
    return numbers


def unanswered(items: list[dict] | None, text: str) -> list[dict]:
    """The items without a paragraph of their own in ``text`` (one starting with the item's number)."""
    answered = _answered(text)
    return [item for item in items or () if item["number"] not in answered]
