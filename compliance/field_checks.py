"""Checks of what an officer writes in a dossier field, each returning what to fix or None.

Two kinds (``compliance.dossier_fields`` names which a field gets):

1. Substance, for every narrative answer: at least the field's minimum length once a sentence
   that only points elsewhere ("See section 3.", "As listed under standards applied.") is set
   aside, and no placeholder ("TBD"). A reference may follow an answer; it never replaces one.
2. Format, for the identifiers the MDR and the declaration of conformity require: the
   manufacturer's SRN (Art. 31), the Basic UDI-DI (a GS1 Global Model Number, whose check
   character pair is verified, or a HIBCC code), the UDI-DI (a GS1 GTIN, check digit verified,
   or a HIBCC code), the notified body's four-digit number, the device class with its Annex VIII
   rule, a postal address, a lifetime stated as a duration, a licence link, and hardware stated
   with its memory. HIBCC codes are checked for their shape only (their check character is not).

Plain Python, like the catalogue that uses it.
"""

from __future__ import annotations

import re

WHITESPACE = re.compile(r"\s+")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n+")
# A sentence that only sends the reader elsewhere.
_POINTER = re.compile(
    r"^\s*(?:see\b|refer(?:\s+to)?\b|cf\.?\s|as\s+(?:listed|described|stated|given|shown|detailed|above|below|per)\b|per\s+section\b|"
    r"(?:details\s+)?(?:are|is)\s+(?:in|under)\s+section\b)",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(r"\b(?:tbd|tba|todo|fixme|to be (?:completed|confirmed|defined|determined|added)|lorem ipsum|xxx+)\b", re.IGNORECASE)

MDR_CLASSES = ("I", "IIa", "IIb", "III")
_CLASS = re.compile(r"\bclass\s+(III|IIb|IIa|II|I)(?![A-Za-z])", re.IGNORECASE)
_RULE = re.compile(r"\brule\s+(\d{1,2})\b", re.IGNORECASE)
_SRN = re.compile(r"^([A-Z]{2})-(MF|AR|IM|PR)-(\d{9})$")
_NOTIFIED_BODY = re.compile(r"^\d{4}$")
_HIBCC = re.compile(r"^\+[A-Z][A-Z0-9]{3}[A-Z0-9]{2,20}$")
_NUMBER_WORDS = "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|eighteen|twenty-four|thirty-six"
_DURATION = re.compile(rf"\b(?:\d+(?:\.\d+)?|{_NUMBER_WORDS})\s*(?:-\s*)?(?:years?|months?|weeks?)\b", re.IGNORECASE)
_URL = re.compile(r"\bhttps://[^\s/]+\.[^\s]+", re.IGNORECASE)
_MEMORY = re.compile(r"\b\d+(?:\.\d+)?\s*(?:GiB|GB|MiB|MB|TiB|TB)\b")
_PROCESSOR = re.compile(r"\b(?:CPU|GPU|core|cores|processor|vCPU|x86|arm64|ARM)\b", re.IGNORECASE)

# GS1 Global Model Number (the GS1 Basic UDI-DI): its character set, prime weights and check characters
# (GS1 General Specifications, 7.9.5), as published with GS1's helper libraries.
_GMN_CHARACTERS = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_GMN_CHECK = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_GMN_WEIGHTS = (83, 79, 73, 71, 67, 61, 59, 53, 47, 43, 41, 37, 31, 29, 23, 19, 17, 13, 11, 7, 5, 3, 2)


def plain(text: str | None) -> str:
    """The text with its whitespace collapsed, as its length is judged."""
    return WHITESPACE.sub(" ", text or "").strip()


def substance_problem(text: str, min_length: int) -> str | None:
    """Why ``text`` is not yet an answer (step 1), or None."""
    flat = plain(text)
    placeholder = _PLACEHOLDER.search(flat)
    if placeholder:
        return f"Holds the placeholder '{placeholder.group()}': write the answer itself."
    sentences = [s for s in _SENTENCE.split(flat) if s.strip()]
    pointers = [s for s in sentences if _POINTER.match(s)]
    answer = " ".join(s for s in sentences if not _POINTER.match(s))
    if pointers and len(answer) < min_length:
        return (
            f"Points elsewhere ('{pointers[0][:60]}') instead of answering: write the answer here; a reference to where the detail is may follow it."
        )
    if len(flat) < min_length:
        return f"Too short to answer this item: {len(flat)} characters, at least {min_length}. Say what was done and what it rests on."
    return None


def gtin_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit of ``body`` (all the GTIN's digits but the last)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def gmn_check_characters(part: str) -> str:
    """The GS1 check character pair of a Global Model Number without its pair."""
    offset = len(_GMN_WEIGHTS) - len(part)
    total = sum(_GMN_CHARACTERS.index(c) * _GMN_WEIGHTS[offset + i] for i, c in enumerate(part)) % 1021
    return _GMN_CHECK[total // 32] + _GMN_CHECK[total % 32]


def _hibcc_problem(code: str, what: str) -> str | None:
    if _HIBCC.match(code):
        return None
    return f"A HIBCC {what} is '+', a four-character labeler code starting with a letter, then the product code (capital letters and digits)."


def udi_di_problem(text: str) -> str | None:
    """A UDI-DI: a GS1 GTIN (8, 12, 13 or 14 digits, check digit verified) or a HIBCC code."""
    code = re.sub(r"^\(01\)|[\s-]", "", plain(text))
    if code.startswith("+"):
        return _hibcc_problem(code, "UDI-DI")
    if not code.isdigit() or len(code) not in (8, 12, 13, 14):
        return "Give the UDI-DI your issuing entity assigned: a GS1 GTIN of 8, 12, 13 or 14 digits (e.g. 04012345000016), or a HIBCC code starting with '+'."
    if int(code[-1]) != gtin_check_digit(code[:-1]):
        return f"The GTIN's check digit is wrong: {code[:-1]} ends in {gtin_check_digit(code[:-1])}, not {code[-1]}."
    return None


def basic_udi_di_problem(text: str) -> str | None:
    """A Basic UDI-DI: a GS1 Global Model Number (check character pair verified) or a HIBCC code."""
    code = re.sub(r"^\(8013\)", "", plain(text).replace(" ", ""))
    if code.startswith("+"):
        return _hibcc_problem(code, "Basic UDI-DI")
    if not 8 <= len(code) <= 25 or not code[:5].isdigit():
        return (
            "A GS1 Basic UDI-DI is 8 to 25 characters: the GS1 Company Prefix (at least five digits), the model reference and two check characters."
        )
    bad = sorted({c for c in code[:-2] if c not in _GMN_CHARACTERS} | {c for c in code[-2:] if c not in _GMN_CHECK})
    if bad:
        return f"Characters a GS1 Basic UDI-DI cannot hold: {' '.join(bad)}."
    expected = gmn_check_characters(code[:-2])
    if code[-2:] != expected:
        return f"The check characters are wrong: {code[:-2]} ends in {expected}, not {code[-2:]}."
    return None


def srn_problem(text: str) -> str | None:
    """The manufacturer's single registration number from EUDAMED: country, MF, nine digits."""
    match = _SRN.match(plain(text).upper())
    if match is None:
        return "An SRN reads like DE-MF-000012345: the country code, the actor type and nine digits."
    if match.group(2) != "MF":
        return f"This is the SRN of {'an authorised representative' if match.group(2) == 'AR' else 'an importer or producer'}; give the manufacturer's (…-MF-…)."
    return None


def notified_body_problem(text: str) -> str | None:
    if _NOTIFIED_BODY.match(plain(text)):
        return None
    return "The notified body's identification number is four digits, as listed in NANDO (e.g. 0123)."


def mdr_class_rule(text: str) -> tuple[str | None, int | None]:
    """The MDR class (``I``, ``IIa``, ``IIb``, ``III``) and Annex VIII rule a text states; None for what it does not."""
    found = _CLASS.search(text or "")
    mdr_class = None
    if found:
        raw = found.group(1)
        mdr_class = next((c for c in MDR_CLASSES if c.lower() == raw.lower()), None)
    rule = _RULE.search(text or "")
    return mdr_class, int(rule.group(1)) if rule else None


def mdr_class_rule_problem(text: str) -> str | None:
    mdr_class, rule = mdr_class_rule(text)
    if mdr_class is None:
        return "Name the device class: Class I, IIa, IIb or III."
    if rule is None or not 1 <= rule <= 22:
        return "Name the classification rule of MDR Annex VIII that gives the class (Rules 1 to 22; Rule 11 for most software)."
    return None


def address_problem(text: str) -> str | None:
    parts = [p for p in re.split(r"[,\n]", text or "") if p.strip()]
    if len(parts) >= 3 and any(c.isdigit() for c in text):
        return None
    return "Give the postal address: street and number, postcode and town, country (separated by commas or lines)."


def duration_problem(text: str) -> str | None:
    if _DURATION.search(text or ""):
        return None
    return "State the expected lifetime as a duration, e.g. '24 months from release', and what ends it."


def url_problem(text: str) -> str | None:
    if _URL.search(text or ""):
        return None
    return "Give an https link to the licence text."


def hardware_problem(text: str) -> str | None:
    if _MEMORY.search(text or "") and _PROCESSOR.search(text or ""):
        return None
    return "State the minimum processor (CPU cores or GPU) and memory (e.g. 4 GiB) the software needs."
