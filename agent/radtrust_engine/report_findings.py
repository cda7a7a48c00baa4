"""Findings stated in a free-text radiology report: the 14 CheXpert observations, each present,
uncertain, absent or not mentioned.

A generated report is judged by what it asserts, so the evaluation of report generation
(``radtrust_engine.report_evaluation``) needs the assertions first. This is a NegEx-style rule
labeller (Chapman et al. 2001, as adapted by the CheXpert labeller, Irvin et al. 2019), in plain
Python so that every rule can be read and tested (docs/methods.md, "Finding extraction"):

1. The report is split into sentences (``.``, ``;``, ``?``, ``!`` and line breaks; a decimal
   point such as "1.5 cm" does not split).
2. In each sentence every mention of a finding is found from its synonyms (``FINDINGS``), and
   every trigger phrase (``TRIGGERS``): negation before or after a mention ("no", "without",
   "has resolved"), uncertainty before or after ("possible", "cannot exclude", "cannot be
   excluded"), pseudo-triggers that look like negation but are not ("no change in", "no
   interval change"), and scope terminators ("but", "however", a comma before a new
   assertion). Overlapping phrases are resolved longest first, so "cannot exclude" is never
   read as "not".
3. A mention takes the nearest trigger before it in its scope (after the last terminator): a
   negation makes it absent, an uncertainty uncertain, a pseudo-trigger leaves it present.
   Otherwise the first post-trigger within ``POST_WINDOW`` words after it, before a terminator,
   decides. A phrase that names the finding as normal ("heart size is normal") is an absent
   mention.
4. Mentions of one finding in one report combine as the CheXpert labeller does: present beats
   uncertain beats absent.
5. "No Finding" is present when no other observation except "Support Devices" is present or
   uncertain; a report that states none is then normal.

Plain Python (no Django).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Assertion(StrEnum):
    """What a report says about a finding."""

    PRESENT = "present"
    UNCERTAIN = "uncertain"
    ABSENT = "absent"
    NOT_MENTIONED = "not_mentioned"

    @property
    def label(self) -> str:
        return ASSERTION_LABELS[self]


ASSERTION_LABELS = {
    Assertion.PRESENT: "stated as present",
    Assertion.UNCERTAIN: "stated as uncertain",
    Assertion.ABSENT: "stated as absent",
    Assertion.NOT_MENTIONED: "not mentioned",
}
# Present beats uncertain beats absent when a report mentions a finding twice.
_RANK = {Assertion.NOT_MENTIONED: 0, Assertion.ABSENT: 1, Assertion.UNCERTAIN: 2, Assertion.PRESENT: 3}

NO_FINDING = "No Finding"
SUPPORT_DEVICES = "Support Devices"

_SIZE = r"(?:(?:mild(?:ly)?|moderate(?:ly)?|severe(?:ly)?|marked(?:ly)?|slight(?:ly)?|minimal(?:ly)?|significant(?:ly)?|massive(?:ly)?) )?"
_BE = r"(?:is |are |appears |appear |remains |remain |seems |was |were |again )*"
_SILHOUETTE = r"(?:heart|heart size|cardiac silhouette|cardiac size|cardiac shadow|cardiac contour)"
_MEDIASTINUM = r"(?:mediastinum|mediastinal (?:silhouette|contours?|width)|cardiomediastinal (?:silhouette|contours?|width))"
_NORMAL = r"(?:normal(?: in size)?|within normal limits|unremarkable|not enlarged|not widened|of normal size|normal size)"

# Each observation: phrases that mention it as abnormal, and phrases that state it normal.
FINDINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "Enlarged Cardiomediastinum": {
        "terms": (
            r"enlarged (?:cardio)?mediastin\w*",
            r"widen(?:ed|ing) (?:of the )?(?:superior )?mediastin\w*",
            r"mediastinal (?:widening|enlargement)",
            rf"{_MEDIASTINUM} {_BE}{_SIZE}(?:widened|enlarged|prominent)",
        ),
        "normal": (rf"{_MEDIASTINUM} {_BE}{_NORMAL}", rf"normal {_MEDIASTINUM}"),
    },
    "Cardiomegaly": {
        "terms": (
            r"cardiomegaly",
            r"cardiac enlargement",
            rf"enlarge(?:d|ment of the) {_SILHOUETTE}",
            rf"{_SILHOUETTE} {_BE}{_SIZE}(?:enlarged|increased|large)",
        ),
        "normal": (
            rf"{_SILHOUETTE} {_BE}(?:(?:top )?{_NORMAL}|upper limits? of normal)",
            rf"normal {_SILHOUETTE}",
        ),
    },
    "Lung Opacity": {
        "terms": (
            r"opacit(?:y|ies)",
            r"opacification",
            r"infiltrat(?:e|es|ion)",
            r"air[- ]?space (?:disease|opacit(?:y|ies))",
            r"ground[- ]glass",
            r"hazy (?:density|densities)",
        ),
        "normal": (r"lungs? (?:are |is )?(?:clear|well expanded and clear)", r"clear lungs"),
    },
    "Lung Lesion": {
        "terms": (
            r"nodul(?:e|es|ar opacit(?:y|ies))",
            r"(?:lung|pulmonary|hilar|spiculated|cavitary|apical) mass(?:es)?",
            r"\bmass(?:es)?\b",
            r"(?:lung|pulmonary|cavitary) lesions?",
            r"tumou?r",
            r"neoplasm",
            r"carcinoma",
            r"metasta(?:sis|ses|tic)",
        ),
        "normal": (),
    },
    "Edema": {
        "terms": (
            r"o?edema",
            r"(?:pulmonary )?(?:vascular|venous) congestion",
            r"fluid overload",
            r"kerley b lines",
            r"cephali[sz]ation",
        ),
        "normal": (),
    },
    "Consolidation": {"terms": (r"consolidat\w*",), "normal": ()},
    "Pneumonia": {
        "terms": (r"(?:broncho)?pneumonia", r"pneumonitis", r"infectio(?:n|us process)", r"infectious"),
        "normal": (),
    },
    "Atelectasis": {
        "terms": (r"atelecta\w*", r"(?:lobar|lobe|lung|segmental) collapse", r"collapse of the (?:left|right)"),
        "normal": (),
    },
    "Pneumothorax": {"terms": (r"pneumothora(?:x|ces)", r"\bptx\b"), "normal": ()},
    "Pleural Effusion": {
        "terms": (
            r"(?<!pericardial )effusions?",
            r"hydrothora(?:x|ces)",
            r"pleural fluid",
            r"blunting of the (?:(?:left|right|bilateral) )?costophrenic",
            r"costophrenic (?:angle )?blunting",
        ),
        "normal": (r"costophrenic angles? (?:is |are )?(?:sharp|clear)",),
    },
    "Pleural Other": {
        "terms": (
            r"pleural (?:thickening|plaques?|scarring|calcifications?)",
            r"fibrothorax",
            r"pleural[- ]parenchymal scarring",
        ),
        "normal": (),
    },
    "Fracture": {"terms": (r"fractur(?:e|es|ed)", r"\bfx\b"), "normal": ()},
    "Support Devices": {
        "terms": (
            r"(?:endotracheal|tracheostomy|nasogastric|orogastric|enteric|feeding|chest|et|ng|og) tubes?",
            r"tracheostomy",
            r"catheters?",
            r"\bpicc\b",
            r"(?:central venous|central|midline|ij|subclavian|swan[- ]ganz) (?:line|catheter)s?",
            r"pacemaker",
            r"defibrillator",
            r"\bicd\b",
            r"pacer",
            r"(?:pacing |cardiac )?leads?\b",
            r"sternotomy wires",
            r"(?:port[- ]a[- ]cath|chest port|power port)",
            r"\bstents?\b",
            r"lines and tubes",
            r"tubes and lines",
            r"drains?",
        ),
        "normal": (),
    },
}
OBSERVATIONS: tuple[str, ...] = (NO_FINDING, *FINDINGS)

# Trigger phrases by kind. The longest phrase wins where two overlap.
NEG_PRE = "negation before"
NEG_POST = "negation after"
UNC_PRE = "uncertainty before"
UNC_POST = "uncertainty after"
PSEUDO = "pseudo-negation"
TERMINATOR = "scope terminator"

_DEGREE_START = r"(?:mild|moderate|severe|small|large|trace|new|persistent|stable|unchanged|increased|increasing|decreased|worsening|improved|improving|there|which|but|however|likely|possibl[ey])"

TRIGGERS: dict[str, tuple[str, ...]] = {
    PSEUDO: (
        r"no (?:significant |substantial |definite |appreciable )?(?:interval )?change (?:in|of)",
        r"no (?:significant |substantial )?interval change",
        r"no (?:significant )?change",
        r"without (?:significant |interval )*change",
        r"not (?:significantly )?changed",
        r"no (?:significant )?(?:increase|decrease|worsening|improvement) (?:in|of)",
        r"not only",
        r"no longer (?:intubated)",
        r"gram[- ]negative",
        r"without difficulty",
    ),
    UNC_PRE: (
        r"can ?not (?:exclude|rule out)",
        r"could not (?:exclude|rule out)",
        r"(?:differential )?(?:diagnosis |considerations? )?(?:includes?|include)",
        r"may (?:represent|reflect|be|indicate|relate to|have)",
        r"might (?:represent|reflect|be|indicate)?",
        r"could (?:represent|reflect|be|indicate)",
        r"possibl[ey]",
        r"probabl[ey]",
        r"presumabl[ey]",
        r"presumed",
        r"likely",
        r"questionabl[ey]",
        r"question of",
        r"suspicious (?:for|of)",
        r"suspected",
        r"concerning for",
        r"worrisome for",
        r"suggestive of",
        r"(?<!to )suggest(?:s|ing)?",  # "no consolidation to suggest pneumonia" negates
        r"equivocal",
        r"borderline",
        r"(?:evaluate|assess|evaluation) for",
        r"rule out",
        r"r/o",
        r"cannot be distinguished from",
        r"indeterminate",
        r"atypical for",
    ),
    UNC_POST: (
        r"(?:can ?not|could not) be (?:excluded|ruled out|entirely excluded)",
        r"(?:is |are )?not (?:entirely |completely )?(?:excluded|ruled out)",
        r"(?:is |are )?(?:possible|suspected|questioned|likely|probable|not certain)",
        r"versus",
        r"\bvs\b",
        r"(?:is |are )?difficult to exclude",
        r"cannot be distinguished",
    ),
    NEG_PRE: (
        r"no (?:evidence|signs?|findings?) (?:of|to suggest|for)",
        r"no (?:new|definite|obvious|focal|acute|significant|appreciable|visible|discrete|large|residual|further|overt|frank|convincing|radiographic) (?:evidence of )?",
        r"no longer",
        r"\bno\b",
        r"\bnot\b",
        r"without (?:evidence of )?",
        r"negative for",
        r"free of",
        r"absence of",
        r"resolution of",
        r"rules? out",
        r"ruled out",
        r"clear of",
        r"neither",
        r"\bnor\b",
        r"fails? to (?:show|reveal|demonstrate)",
        r"(?:is|are)n't",
        r"removal of",
        r"interval removal of",
    ),
    NEG_POST: (
        r"(?:has|have) (?:since |nearly |almost |completely )?resolved",
        r"(?:is|are|was|were) (?:now )?(?:absent|resolved|gone|no longer (?:seen|present|visualized|identified))",
        r"no longer (?:seen|present|visualized|identified|evident|appreciated)",
        r"(?:is|are|was|were) (?:not|no longer) (?:seen|present|visualized|identified|evident|appreciated|demonstrated|appreciable)",
        r"not (?:seen|present|visualized|identified|evident|appreciated|demonstrated)",
        r"(?:is|are) (?:unlikely|ruled out|excluded)",
        r"unlikely",
        r"resolved",
        r"(?:has|have) been removed",
        r"(?:is|are|was|were) removed",
    ),
    TERMINATOR: (
        r"\bbut\b",
        r"however",
        r"although",
        r"though",
        r"whereas",
        r"\bwhile\b",
        r"except",
        r"aside from",
        r"apart from",
        r"other than",
        r"with the exception of",
        r"otherwise",
        r"there (?:is|are|has been|have been)",
        r"\bwhich\b",
        r"\band (?:a|an|the)\b",
        r"\bwith (?:a |an |new |small |mild |moderate |large )",
        rf", (?={_DEGREE_START}\b)",
        r"\bremains?\b",
        r"\bstill\b",
        r"\bnow\b",
        r"\bagain\b",
    ),
}
# Triggers that act on both sides of a mention ("resolved pneumothorax", "pneumothorax resolved").
BOTH_WAYS = frozenset({"resolved", "versus", "vs", "unlikely", "suspected", "possible", "questionable"})
POST_WINDOW = 6  # words after a mention in which a post-trigger counts

_KIND_ORDER = (PSEUDO, UNC_PRE, NEG_PRE, UNC_POST, NEG_POST, TERMINATOR)  # ties of equal length


@dataclass(frozen=True)
class Mention:
    """One mention of a finding in a sentence, with the rule that decided it."""

    finding: str
    text: str
    assertion: Assertion
    trigger: str | None
    sentence: str

    def to_dict(self) -> dict[str, str | None]:
        return {"finding": self.finding, "text": self.text, "assertion": self.assertion.value, "trigger": self.trigger, "sentence": self.sentence}


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


_TERMS = {name: _compile(spec["terms"]) for name, spec in FINDINGS.items()}
_NORMALS = {name: _compile(spec["normal"]) for name, spec in FINDINGS.items() if spec["normal"]}
_TRIGGERS = [(kind, _compile(TRIGGERS[kind])) for kind in _KIND_ORDER]
_SENTENCE_END = re.compile(r"(?<!\d)\.(?!\d)|\.(?=\s|$)|[;?!\n]+")
_WORD = re.compile(r"[a-z0-9/'-]+")


def sentences(text: str) -> list[str]:
    """The report's sentences, lower-cased with spaces normalised; a decimal point does not split."""
    parts = _SENTENCE_END.split(text.lower())
    return [" ".join(p.split()) for p in parts if p.strip()]


def _spans(pattern: re.Pattern[str], sentence: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in pattern.finditer(sentence) if m.end() > m.start()]


def _triggers(sentence: str) -> list[tuple[int, int, str]]:
    """Trigger phrases in the sentence, overlaps resolved longest first (then by ``_KIND_ORDER``)."""
    found = [(s, e, kind) for kind, pattern in _TRIGGERS for s, e in _spans(pattern, sentence)]
    found.sort(key=lambda t: (-(t[1] - t[0]), _KIND_ORDER.index(t[2]), t[0]))
    kept: list[tuple[int, int, str]] = []
    for s, e, kind in found:
        if all(e <= ks or s >= ke for ks, ke, _ in kept):
            kept.append((s, e, kind))
    return sorted(kept)


def _mentions(sentence: str) -> list[tuple[int, int, str, bool]]:
    """Every mention (start, end, finding, stated normal), a finding's overlapping mentions once."""
    found = []
    for name, pattern in _TERMS.items():
        spans = [(s, e, False) for s, e in _spans(pattern, sentence)]
        if name in _NORMALS:
            spans += [(s, e, True) for s, e in _spans(_NORMALS[name], sentence)]
        spans.sort(key=lambda t: (t[0], -(t[1] - t[0])))
        last_end = -1
        for s, e, normal in spans:
            if s >= last_end:
                found.append((s, e, name, normal))
                last_end = e
    return sorted(found)


def _words(text: str) -> int:
    return len(_WORD.findall(text))


_JOINED = re.compile(r"^(?:\s|,|/|\bor\b|\band\b|\bversus\b|\bvs\b)*$")


def _post_limit(sentence: str, end: int, starts: list[int]) -> int:
    """Where a post-trigger stops reaching back to the mention ending at ``end``: at the next
    mention of another finding, unless only "or", "and" or a comma joins them ("atelectasis or
    pneumonia cannot be excluded" hedges both; "effusion with atelectasis, pneumonia not
    excluded" hedges only pneumonia)."""
    for start in starts:
        if start >= end and not _JOINED.match(sentence[end:start]):
            return start
    return len(sentence)


def _decide(sentence: str, start: int, end: int, triggers: list[tuple[int, int, str]], limit: int) -> tuple[Assertion, str | None]:
    """The assertion of the mention at ``[start, end)`` from the triggers around it (step 3), a
    post-trigger counting only before ``limit``."""
    for s, e, kind in reversed([t for t in triggers if t[1] <= start]):
        phrase = sentence[s:e].strip()
        if kind in (TERMINATOR, PSEUDO):
            break
        if kind in (NEG_POST, UNC_POST) and phrase not in BOTH_WAYS:
            continue
        return (Assertion.ABSENT if kind in (NEG_PRE, NEG_POST) else Assertion.UNCERTAIN), phrase
    for s, e, kind in triggers:
        if s < end:
            continue
        if kind == TERMINATOR or s >= limit or _words(sentence[end:s]) > POST_WINDOW:
            break
        phrase = sentence[s:e].strip()
        if kind == NEG_POST or (kind == NEG_PRE and phrase in BOTH_WAYS):
            return Assertion.ABSENT, phrase
        if kind == UNC_POST or (kind == UNC_PRE and phrase in BOTH_WAYS):
            return Assertion.UNCERTAIN, phrase
    return Assertion.PRESENT, None


def report_mentions(text: str) -> list[Mention]:
    """Every mention of a finding in the report with its assertion and the trigger that decided it."""
    mentions = []
    for sentence in sentences(text):
        triggers, found = _triggers(sentence), _mentions(sentence)
        starts = [m[0] for m in found]
        for start, end, name, normal in found:
            if normal:
                assertion, trigger = Assertion.ABSENT, "stated normal"
            else:
                limit = _post_limit(sentence, end, starts)
                assertion, trigger = _decide(sentence, start, end, triggers, limit)
            mentions.append(Mention(name, sentence[start:end], assertion, trigger, sentence))
    return mentions


def extract_findings(text: str) -> dict[str, Assertion]:
    """Each of ``OBSERVATIONS`` as the report states it (steps 4 and 5 of the module docstring)."""
    result = dict.fromkeys(FINDINGS, Assertion.NOT_MENTIONED)
    for m in report_mentions(text):
        if _RANK[m.assertion] > _RANK[result[m.finding]]:
            result[m.finding] = m.assertion
    pathology = [a for name, a in result.items() if name != SUPPORT_DEVICES]
    normal = all(a in (Assertion.ABSENT, Assertion.NOT_MENTIONED) for a in pathology)
    return {NO_FINDING: Assertion.PRESENT if normal else Assertion.ABSENT, **result}
