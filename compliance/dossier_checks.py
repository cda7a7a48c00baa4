"""What must hold before a dossier revision is submitted, beyond each field being filled: one place
for the rules that read several fields and the evidence together.

1. Every required field is answered (``dossier_fields.completeness``: substance and form).
2. Release evidence is pinned: there is declared performance, not "the newest run".
3. The declaration of conformity can state every item of AI Act Annex V and MDR Annex IV
   (``compliance.declaration``), and a medical device's statement of conformity cites both laws.
4. The AI Act risk class and the MDR class agree: the class the dossier states is the registry's,
   a class IIa-III device (a notified body assesses it) is high-risk under AI Act Art. 6(1), and
   a class I device (no notified body) is not made high-risk by it.
5. No claim in the dossier ("sensitivity at least 0.85") is contradicted by the declared
   performance (``compliance.claims``).
6. An adaptation answers every risk and weakness it inherits from its base, one paragraph per
   numbered item (``compliance.inherited_items``).

``submission_problems`` returns each failure as a sentence in plain words that says what to fix,
with the fields to open to fix it (the page links each to its field); the dossier page shows the
same list before the officer submits, and the API refuses with the same sentences.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from compliance.claims import ClaimCheck, claims_check
from compliance.declaration import NOTIFIED_BODY_CLASSES, RISK_CLASS_WORDS, declaration_gaps
from compliance.dossier_fields import FIELDS, field_label
from compliance.field_checks import mdr_class_rule
from compliance.inherited_items import ANSWER_FIELD, unanswered

NO_DECLARED_PERFORMANCE = (
    "No declared performance yet: a compliance officer pins the release evidence (the validation runs on the intended population, "
    "at the version's operating threshold) before the dossier is submitted."
)
_AI_ACT = re.compile(r"2024/1689|\bAI Act\b|Artificial Intelligence Act", re.I)
_MDR = re.compile(r"2017/745|\bMDR\b|Medical Devices? Regulation", re.I)
OFFICER_FIELDS = tuple(k for k, f in FIELDS.items() if f.editable)


@dataclass(frozen=True)
class SubmissionProblem:
    """One reason a revision cannot be submitted: a sentence, and the keys of the fields that fix it."""

    message: str
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.message


def class_problems(*, risk_class: str, mdr_class: str, values: Mapping[str, Any]) -> list[str]:
    """Step 4."""
    problems = []
    stated, _rule = mdr_class_rule(str(values.get("mdr_class_rule") or ""))
    title = FIELDS["mdr_class_rule"].title
    if stated and not mdr_class:
        problems.append(
            f"The dossier states MDR class {stated} ({title}), but the registry records no MDR class (not a medical device); correct one of them."
        )
    elif stated and stated != mdr_class:
        problems.append(f"The dossier states MDR class {stated} ({title}), but the registry records class {mdr_class}; correct one of them.")
    risk = RISK_CLASS_WORDS.get(risk_class, risk_class or "no class")
    if mdr_class in NOTIFIED_BODY_CLASSES and risk_class != "high":
        problems.append(
            f"An MDR class {mdr_class} device is assessed by a notified body, which makes it a high-risk AI system (AI Act Art. 6(1), "
            f"Annex I Section A), but the registry records '{risk}'; correct the AI Act class or the MDR class."
        )
    if mdr_class == "I" and risk_class == "high":
        problems.append(
            "An MDR class I device needs no notified body, so AI Act Art. 6(1) does not make it high-risk, yet the registry records it as "
            "high-risk: software that informs diagnosis is class IIa or higher under Annex VIII Rule 11. Correct the MDR class or the AI Act class."
        )
    return problems


def conformity_statement_problem(values: Mapping[str, Any], mdr_class: str) -> str | None:
    """Step 3: one declaration covers both laws (Art. 47(3))."""
    text = str(values.get("8_v4_conformity") or "")
    if not text.strip():
        return None  # named as missing already
    lacking = [
        name
        for name, pattern, needed in (
            ("the AI Act (Regulation (EU) 2024/1689)", _AI_ACT, True),
            ("the MDR (Regulation (EU) 2017/745)", _MDR, bool(mdr_class)),
        )
        if needed and not pattern.search(text)
    ]
    if not lacking:
        return None
    return f"The statement of conformity does not cite {' or '.join(lacking)}: one declaration covers every Union law that asks for one (AI Act Art. 47(3))."


def contradicted(checks: list[ClaimCheck]) -> list[SubmissionProblem]:
    """Step 5: each contradicted claim as a sentence, with the field that makes it."""
    return [
        SubmissionProblem(
            f"'{FIELDS[c.claim.field].title}' claims {c.claim.statement} (\"{c.claim.text[:120]}\"), but the declared performance shows "
            f"{c.evidence}. Correct the claim, or pin release evidence that supports it.",
            (c.claim.field,),
        )
        for c in checks
        if c.verdict == "contradicted"
    ]


def dossier_claims(values: Mapping[str, Any], evidence: Mapping[str, Any]) -> list[ClaimCheck]:
    return claims_check(values, evidence.get("declared_performance"), OFFICER_FIELDS)


def _unfilled(key: str) -> SubmissionProblem:
    if FIELDS[key].editable:
        return SubmissionProblem(f"{field_label(key)} is not written yet.", (key,))
    return SubmissionProblem(
        f"{field_label(key)} has no evidence yet. It is read from the registry and the runs, not typed here: record what it shows and it fills itself.",
        (key,),
    )


def submission_problems(values: Mapping[str, Any], evidence: Mapping[str, Any], done: Mapping[str, Any]) -> list[SubmissionProblem]:
    """Every reason the revision cannot be submitted yet, one sentence each, in the order an officer fixes them."""
    sections = done["sections"].values()
    declared = bool(evidence.get("declared_performance"))
    # the fields that show the declared performance are named once, by the sentence of step 2
    problems = [
        _unfilled(k)
        for s in sections
        for k in s["missing"]
        if k not in s.get("problems", {}) and (declared or FIELDS[k].evidence != "declared_performance")
    ]
    problems += [
        SubmissionProblem(f"{field_label(k)} is not yet an answer: {message}", (k,))
        for s in sections
        for k, message in (s.get("problems") or {}).items()
    ]
    model = evidence.get("model_description") or {}
    mdr_class = str(model.get("mdr_class") or "")
    if not declared:
        problems.append(SubmissionProblem(NO_DECLARED_PERFORMANCE))
    problems += [
        SubmissionProblem(
            f"The declaration of conformity lacks: {item.title} ({item.provisions}: {', '.join(FIELDS[k].title for k in keys)}).", tuple(keys)
        )
        for item, keys in declaration_gaps(values, mdr_class)
    ]
    statement = conformity_statement_problem(values, mdr_class)
    if statement:
        problems.append(SubmissionProblem(statement, ("8_v4_conformity",)))
    problems += [
        SubmissionProblem(p, ("mdr_class_rule",))
        for p in class_problems(risk_class=str(model.get("risk_class") or ""), mdr_class=mdr_class, values=values)
    ]
    problems += contradicted(dossier_claims(values, evidence))
    problems += [SubmissionProblem(p, (ANSWER_FIELD,)) for p in inherited_problems(values, evidence)]
    return problems


def inherited_problems(values: Mapping[str, Any], evidence: Mapping[str, Any]) -> list[str]:
    """Step 6: the inherited items the officer has not answered yet, in one sentence."""
    open_items = unanswered(evidence.get("inherited_items"), str(values.get(ANSWER_FIELD) or ""))
    if not open_items:
        return []
    listed = "; ".join(f"{i['number']}. {i['source']}: {i['item'][:160]}" for i in open_items)
    return [
        f"This adaptation inherits risks and weaknesses of its base that the dossier does not answer yet ({listed}). "
        f"In '{FIELDS[ANSWER_FIELD].title}', write one paragraph per item starting with its number (e.g. '{open_items[0]['number']}. ...'): "
        "how this adaptation controls it, or why it does not apply to its intended purpose."
    ]
