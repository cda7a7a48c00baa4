"""Scanner manufacturer and model names as one spelling per maker, so strata do not split by spelling.

DICOM's Manufacturer (0008,0070) is free text: one vendor arrives as "GE MEDICAL SYSTEMS",
"GE Medical Systems", "G.E. Medical Systems" and "GE Healthcare", which as three or four groups
are each too small to report and are suppressed. A name is reduced to a key (case folded,
punctuation dropped, corporate suffixes removed) and the key, or else its first word, looked up
in ``MANUFACTURERS``; an unknown maker keeps its key, title-cased, so two spellings of it still meet. Only the
stratification uses the normalised name; the manifest and the per-case table keep the raw value.
"""

from __future__ import annotations

import re

# Words that name the company form or the business line, not the maker.
_SUFFIXES = frozenset(
    {
        "medical",
        "systems",
        "system",
        "healthcare",
        "health",
        "care",
        "healthineers",
        "corporation",
        "corp",
        "company",
        "co",
        "inc",
        "ltd",
        "limited",
        "gmbh",
        "ag",
        "sa",
        "nv",
        "bv",
        "plc",
        "llc",
        "kk",
        "solutions",
        "imaging",
        "electric",
        "international",
        "group",
    }
)

# Key (after ``manufacturer_key``) -> the name strata are reported under.
MANUFACTURERS: dict[str, str] = {
    "ge": "GE HealthCare",
    "general": "GE HealthCare",  # "General Electric Healthcare" without its suffixes
    "gems": "GE HealthCare",  # GE Medical Systems' abbreviation in older headers
    "siemens": "Siemens Healthineers",
    "philips": "Philips",
    "toshiba": "Canon Medical Systems",
    "toshiba mec": "Canon Medical Systems",  # Toshiba Medical became Canon Medical in 2018
    "canon": "Canon Medical Systems",
    "fujifilm": "Fujifilm",
    "fuji": "Fujifilm",
    "fuji photo film": "Fujifilm",
    "agfa": "Agfa",
    "agfa gevaert": "Agfa",
    "carestream": "Carestream",
    "kodak": "Carestream",  # Kodak's health imaging became Carestream in 2007
    "eastman kodak": "Carestream",
    "hologic": "Hologic",
    "konica minolta": "Konica Minolta",
    "samsung": "Samsung",
    "samsung medison": "Samsung",
    "united": "United Imaging",
    "uih": "United Imaging",
    "hitachi": "Hitachi",
    "shimadzu": "Shimadzu",
    "esaote": "Esaote",
    "mindray": "Mindray",
    "neusoft": "Neusoft",
}


def manufacturer_key(raw: str) -> str:
    """Case folded, punctuation and corporate suffixes dropped: "G.E. Medical Systems" -> "ge"."""
    text = raw.casefold().replace(".", "")  # "G.E." is "ge"; other punctuation separates words
    words = re.sub(r"[^a-z0-9\s]", " ", text).split()
    kept = [w for w in words if w not in _SUFFIXES]
    return " ".join(kept or words)


def manufacturer_name(raw: str | None) -> str | None:
    """The one name a maker is grouped under; None stays None (an unknown maker)."""
    if raw is None or not raw.strip():
        return None
    key = manufacturer_key(raw)
    # A known maker followed by a country or division ("Philips Medical Systems Nederland B.V.") is that maker.
    return MANUFACTURERS.get(key) or MANUFACTURERS.get(key.split()[0]) or key.title()


def model_name(raw: str | None) -> str | None:
    """A model name with case, spacing and punctuation made uniform ("Optima  XR220amx" -> "OPTIMA XR220AMX")."""
    if raw is None or not raw.strip():
        return None
    return " ".join(re.sub(r"[^\w\s+-]", " ", raw).upper().split())
