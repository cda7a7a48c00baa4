"""Performance claims written in a dossier, checked against the declared performance.

An officer may write "sensitivity at least 0.85" in the design specification while every run
shows 0.72. This module finds such claims and compares them with the figures of the pinned
release evidence (``compliance.release_evidence``), so a contradiction stops submission.

1. A claim is a metric with a bound in one sentence: "sensitivity >= 0.85", "a specificity of at
   least 90%", "AUC above 0.9", "false-positive rate no more than 0.1", "0.85 or higher
   sensitivity", "at least 85% sensitivity". The bound is the comparator with its number ("at
   least 0.85", "0.85 or higher"); its metric is the nearest metric named before it in the same
   sentence with no other number in between, or the one named right after it. A percentage is a
   proportion; "95% of cases" or "95% CI" is no bound. Statements of a value without a bound
   ("sensitivity was 0.72") are not claims.
2. Each claim is checked against the overall figure of every declared run and label (only the
   labels the sentence names, when it names one):

   - contradicted: a declared point estimate breaks the bound (0.72 against "at least 0.85");
     this blocks submission;
   - not demonstrated: every point estimate keeps the bound but a 95% confidence interval
     crosses it, so the data cannot show the claim holds;
   - consistent: every interval lies on the claimed side;
   - not checkable: no declared figure for that metric, or the sentence is about a group.

What this cannot see: a claim about a subgroup ("sensitivity at least 0.8 for patients over 65")
is reported as not checkable rather than compared with the group's row, a claim in words
without a number ("high sensitivity") is not found, and a number written in words is not read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from core.readable import metric, number, title

# Words a dossier uses for each metric of the run report, longest first when matched.
METRIC_WORDS: dict[str, tuple[str, ...]] = {
    "auroc": (
        "auroc",
        "auc",
        "roc auc",
        "auc-roc",
        "area under the roc curve",
        "area under the curve",
        "area under the receiver operating characteristic curve",
        "c-statistic",
    ),
    "auprc": ("auprc", "pr auc", "average precision", "area under the precision-recall curve"),
    "sensitivity": ("sensitivity", "recall", "true positive rate", "true-positive rate", "tpr", "detection rate"),
    "specificity": ("specificity", "true negative rate", "true-negative rate", "tnr"),
    "ppv": ("ppv", "positive predictive value", "precision"),
    "npv": ("npv", "negative predictive value"),
    "f1": ("f1 score", "f1-score", "f1", "f-score"),
    "fnr": ("false negative rate", "false-negative rate", "fnr", "miss rate"),
    "fpr": ("false positive rate", "false-positive rate", "fpr", "false alarm rate", "false-alarm rate"),
    "dice": ("dice coefficient", "dice score", "dice", "dsc"),
    "iou": ("iou", "jaccard index", "intersection over union"),
}
_WORD_TO_METRIC = {w: m for m, words in METRIC_WORDS.items() for w in words}
_METRIC = re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in sorted(_WORD_TO_METRIC, key=len, reverse=True)) + r")(?![\w-])", re.I)

_NUMBER = r"(?P<num>\d+(?:\.\d+)?|\.\d+)(?!\.?\d)\s*(?P<pct>%|per\s*cent\b|percent\b)?"
_NOT_A_BOUND = r"(?!\s*(?:%|per\s*cent|percent|of\b|ci\b|confidence\b))"  # "95% of cases", "95% CI"
# Comparators before the number, negated forms first so "not below" never reads as "below".
_BEFORE: tuple[tuple[str, str], ...] = (
    (r"not\s+(?:be\s+)?(?:less|lower)\s+than|no\s+(?:less|lower)\s+than|not\s+(?:fall\s+)?below|never\s+below", ">="),
    (r"not\s+(?:be\s+)?(?:more|greater|higher)\s+than|no\s+(?:more|greater|higher)\s+than|not\s+(?:exceed|above)|never\s+above", "<="),
    (r">=|≥|=>|at\s+least|a\s+minimum\s+of|minimum(?:\s+of)?|of\s+at\s+least", ">="),
    (r"<=|≤|=<|at\s+most|a\s+maximum\s+of|maximum(?:\s+of)?|up\s+to", "<="),
    (r">|above|over|greater\s+than|more\s+than|higher\s+than|exceeds?|exceeding|in\s+excess\s+of", ">"),
    (r"<|below|under|less\s+than|lower\s+than|fewer\s+than", "<"),
)
_AFTER: tuple[tuple[str, str], ...] = (
    (r"or\s+(?:higher|more|above|better|greater)", ">="),
    (r"or\s+(?:lower|less|below|fewer)", "<="),
)
_BOUND_BEFORE = re.compile(r"(?<![\w])(?P<cmp>" + "|".join(f"(?:{p})" for p, _ in _BEFORE) + r")\s*" + _NUMBER + _NOT_A_BOUND, re.I)
_BOUND_AFTER = re.compile(_NUMBER + r"\s*(?P<cmp>" + "|".join(f"(?:{p})" for p, _ in _AFTER) + r")\b", re.I)
_SENTENCE = re.compile(r"[.!?;](?=\s|$)|\n+")  # a decimal point is never followed by a space
_GROUP_WORDS = re.compile(
    r"\b(?:aged?|age\s+band|years?\s+old|over\s+\d+|under\s+\d+|women|men|female|male|sex|children|paediatric|pediatric|elderly|"
    r"subgroups?|groups?|site\s+\w+|at\s+site|scanner|vendor|ethnic\w*)\b",
    re.I,
)
_GAP = 70  # characters a metric may stand before its bound
PROPORTIONS = frozenset({"auroc", "auprc", "sensitivity", "specificity", "ppv", "npv", "f1", "fnr", "fpr", "dice", "iou"})
WORST_FIRST = ("contradicted", "not_demonstrated", "not_checkable", "consistent")
VERDICT_WORDS = {
    "contradicted": "contradicted by the declared performance",
    "not_demonstrated": "not demonstrated: a 95% confidence interval crosses the bound",
    "not_checkable": "not checked",
    "consistent": "consistent with the declared performance",
}


@dataclass(frozen=True)
class Claim:
    """A bound on a metric, as an officer wrote it in one field."""

    field: str
    text: str
    metric: str
    op: str  # >=, >, <=, <
    bound: float
    labels: tuple[str, ...]  # the declared labels the sentence names; empty: every label
    about_group: bool

    @property
    def statement(self) -> str:
        words = {">=": "at least", ">": "above", "<=": "at most", "<": "below"}
        return f"{title(self.metric)} {words[self.op]} {number(self.bound)}"


@dataclass(frozen=True)
class ClaimCheck:
    """A claim and what the declared figures say about it."""

    claim: Claim
    verdict: str
    evidence: str  # the declared figures it was compared with, in words

    def to_dict(self) -> dict[str, Any]:
        return {"claim": asdict(self.claim), "statement": self.claim.statement, "verdict": self.verdict, "evidence": self.evidence}


def _bound(match: re.Match, table: tuple[tuple[str, str], ...]) -> tuple[str, float, bool]:
    comparator = match.group("cmp")
    op = next(o for pattern, o in table if re.fullmatch(pattern, comparator, re.I))
    return op, float(match.group("num")), bool(match.group("pct"))


def _metric_for(sentence: str, start: int, end: int) -> str | None:
    """The metric a bound at ``sentence[start:end]`` is about (step 1)."""
    before = [m for m in _METRIC.finditer(sentence, 0, start) if start - m.end() <= _GAP]
    for m in reversed(before):
        between = sentence[m.end() : start]
        if not re.search(r"\d", between) and not _METRIC.search(between):
            return _WORD_TO_METRIC[m.group(1).lower()]
    after = _METRIC.match(sentence, len(sentence) - len(sentence[end:].lstrip()))  # "at least 85% sensitivity"
    return _WORD_TO_METRIC[after.group(1).lower()] if after else None


def claims_in_text(key: str, text: str, labels: Iterable[str] = ()) -> list[Claim]:
    """Every claim in one field's text (step 1); ``labels`` are the declared labels a sentence may name."""
    found = []
    for sentence in _SENTENCE.split(text or ""):
        named = tuple(
            label for label in labels if re.search(rf"(?<![\w]){re.escape(label.replace('_', ' '))}(?![\w])", sentence.replace("_", " "), re.I)
        )
        bounds = [(m, *_bound(m, _BEFORE)) for m in _BOUND_BEFORE.finditer(sentence)]
        bounds += [
            (m, *_bound(m, _AFTER)) for m in _BOUND_AFTER.finditer(sentence) if not any(b[0].start() <= m.start() < b[0].end() for b in bounds)
        ]
        for match, op, value, percent in bounds:
            name = _metric_for(sentence, match.start(), match.end())
            if name is None:
                continue
            if percent or (name in PROPORTIONS and 1 < value <= 100):
                value /= 100
            found.append(
                Claim(
                    field=key,
                    text=" ".join(sentence.split()),
                    metric=name,
                    op=op,
                    bound=value,
                    labels=named,
                    about_group=bool(_GROUP_WORDS.search(sentence)),
                )
            )
    return found


def _breaks(op: str, value: float, bound: float) -> bool:
    return {">=": value < bound, ">": value <= bound, "<=": value > bound, "<": value >= bound}[op]


def _figures(claim: Claim, declared: Mapping[str, Any]) -> list[tuple[str, dict]]:
    """(where, estimate) of every declared overall figure the claim speaks about."""
    figures = []
    for run in declared.get("runs") or []:
        for label, section in (run.get("labels") or {}).items():
            estimate = ((section or {}).get("overall") or {}).get(claim.metric)
            if (not claim.labels or label in claim.labels) and isinstance(estimate, Mapping) and estimate.get("value") is not None:
                figures.append((f"{label} on {run['dataset']} (run {run['run']})", dict(estimate)))
    return figures


def claim_check(claim: Claim, declared: Mapping[str, Any] | None) -> ClaimCheck:
    """What the declared figures say about one claim (step 2)."""
    if claim.about_group:
        return ClaimCheck(claim, "not_checkable", "It is about a group; compare it with the declared figures per group.")
    figures = _figures(claim, declared or {})
    if not figures:
        return ClaimCheck(claim, "not_checkable", f"No declared figure for {title(claim.metric)}.")
    seen = "; ".join(f"{title(claim.metric)} {metric(e)} for {where}" for where, e in figures)
    if any(_breaks(claim.op, e["value"], claim.bound) for _, e in figures):
        return ClaimCheck(claim, "contradicted", seen)
    side = "ci_low" if claim.op in (">=", ">") else "ci_high"
    if any(e.get(side) is None or _breaks(claim.op, e[side], claim.bound) for _, e in figures):
        return ClaimCheck(claim, "not_demonstrated", seen)
    return ClaimCheck(claim, "consistent", seen)


def claims_check(values: Mapping[str, Any], declared: Mapping[str, Any] | None, fields: Iterable[str]) -> list[ClaimCheck]:
    """Every claim in the officer fields ``fields`` (in catalogue order), each checked; worst first."""
    labels = sorted({label for run in (declared or {}).get("runs") or [] for label in run.get("labels") or {}})
    checks = [claim_check(c, declared) for key in fields for c in claims_in_text(key, str(values.get(key) or ""), labels)]
    return sorted(checks, key=lambda c: WORST_FIRST.index(c.verdict))
