"""Datasheet rules: the shape of composition fields and how complete a datasheet is.

Completeness feeds the traceability score later, so the list of required items is
explicit and each is named in the API response.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.core.exceptions import ValidationError

# (field, what it answers) for every required datasheet item.
REQUIRED_ITEMS: tuple[tuple[str, str], ...] = (
    ("description", "What the dataset is"),
    ("source_institutions", "Source institutions (Art. 10(2)(b))"),
    ("collection_start", "Start of the collection period"),
    ("collection_end", "End of the collection period"),
    ("modality", "Imaging modality"),
    ("body_region", "Body region"),
    ("collection_purpose", "Origin and original purpose (Art. 10(2)(b))"),
    ("patient_count", "Number of patients"),
    ("study_count", "Number of studies"),
    ("scanners", "Scanners with counts (FUTURE-AI Robustness 1)"),
    ("protocols", "Acquisition protocols with counts"),
    ("demographics", "Demographic composition with counts (FUTURE-AI Fairness 2)"),
    ("label_source", "Reference standard and labelling (Art. 10(2)(c))"),
    ("rater_count", "Number of raters"),
    ("rater_agreement", "Inter-rater agreement"),
    ("preparation", "Preparation: annotation, cleaning (Art. 10(2)(c))"),
    ("legal_basis", "Legal basis for processing"),
    ("deidentification", "De-identification method"),
    ("licence", "Licence or data-use agreement"),
    ("known_limitations", "Known gaps and limitations (Art. 10(2)(h))"),
    ("location", "Where the data lives"),
)
DEMOGRAPHIC_ATTRIBUTES = ("sex", "age_band", "ethnicity")
# The largest count a datasheet may record (patients, studies, images, per category): no dataset holds a
# billion of anything, and a count of 10**30 would otherwise be stored and summed into documents.
MAX_COUNT = 10**9
MAX_RATERS = 1000


@dataclass(frozen=True)
class Completeness:
    filled: list[str]
    missing: list[str]
    ratio: float

    def to_dict(self) -> dict:
        return asdict(self)


def _is_filled(dataset, name: str) -> bool:
    if name == "source_institutions":
        return dataset.pk is not None and dataset.source_institutions.exists()
    value = getattr(dataset, name)
    return value not in (None, "", [], {})


def datasheet_completeness(dataset) -> Completeness:
    """Which required datasheet items are filled, and the share of them."""
    filled = [name for name, _ in REQUIRED_ITEMS if _is_filled(dataset, name)]
    missing = [name for name, _ in REQUIRED_ITEMS if name not in filled]
    return Completeness(filled=filled, missing=missing, ratio=round(len(filled) / len(REQUIRED_ITEMS), 4))


def _count(value, where: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT:
        raise ValidationError(f"{where} must be a non-negative whole number, at most {MAX_COUNT}.")


def validate_scanners(value) -> None:
    """A list of ``{"manufacturer": str, "model": str, "count": int}``."""
    if not isinstance(value, list):
        raise ValidationError('Give scanners as a list such as [{"manufacturer": "Siemens", "model": "Skyra", "count": 120}].')
    for i, row in enumerate(value):
        if not isinstance(row, dict) or not isinstance(row.get("manufacturer"), str) or not row["manufacturer"].strip():
            raise ValidationError(f"Scanner {i + 1} needs a manufacturer name.")
        if "model" in row and not isinstance(row["model"], str):
            raise ValidationError(f"Scanner {i + 1}: model must be text.")
        _count(row.get("count"), f"Scanner {i + 1}: count")
        unknown = set(row) - {"manufacturer", "model", "count"}
        if unknown:
            raise ValidationError(f"Scanner {i + 1} has unknown keys: {', '.join(sorted(unknown))}.")


def validate_counts(value) -> None:
    """``{"category": count}``, used for protocols."""
    if not isinstance(value, dict):
        raise ValidationError('Give counts as an object such as {"PA chest": 800, "AP portable": 200}.')
    for key, count in value.items():
        _count(count, f"Count for {key!r}")


def validate_demographics(value) -> None:
    """``{"sex": {"F": 10, "M": 12}, "age_band": {...}, "ethnicity": {...}}``."""
    if not isinstance(value, dict):
        raise ValidationError('Give demographics as {"sex": {"F": 10, "M": 12}, "age_band": {"18-40": 5}}.')
    unknown = set(value) - set(DEMOGRAPHIC_ATTRIBUTES)
    if unknown:
        raise ValidationError(f"Unknown demographic attributes: {', '.join(sorted(unknown))} (use {', '.join(DEMOGRAPHIC_ATTRIBUTES)}).")
    for attribute, counts in value.items():
        if not isinstance(counts, dict):
            raise ValidationError(f"Demographics {attribute!r} must map each category to a count.")
        for key, count in counts.items():
            _count(count, f"Demographics {attribute}/{key}")
