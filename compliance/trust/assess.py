"""A trust assessment: the six FUTURE-AI principle scores of one version under one policy.

1. Each criterion's rule reads the evidence (``compliance.trust.rules``) and gives a value in
   [0, 1] or None when there is no evidence.
2. A principle's score is 100 x the weighted mean of the values that exist (weights
   renormalised over them). If a required criterion (or every criterion) has no value, the
   principle is "insufficient_evidence" with no score: a missing measurement never becomes a number.
3. Evidence strength is the weakest band among the criteria that have a sample size:
   strong (n >= 500 and CI width <= 0.10), moderate (n >= 100 or CI width <= 0.20), weak otherwise.
4. The summary names the criteria that lowered the score most (weight x (1 - value)), or the
   required criteria that lack evidence.

Plain Python (no Django); ``assessment_to_dict`` gives the JSON stored with the assessment and
``assessment_diff`` compares two stored forms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compliance.trust.evidence import Link, VersionEvidence
from compliance.trust.label_quality import LABEL_DEPENDENT_PRINCIPLES, with_label_caveat
from compliance.trust.policy import PRINCIPLES, RULES, rule_params, validate_policy
from compliance.trust.rule_kit import status_label

STRONG_N, STRONG_WIDTH = 500, 0.10
MODERATE_N, MODERATE_WIDTH = 100, 0.20
_BANDS = ("weak", "moderate", "strong")


@dataclass(frozen=True)
class CriterionResult:
    """One criterion's value with what it was computed from."""

    key: str
    principle: str
    title: str
    recommendation: str
    value: float | None
    status: str  # met | partly | not_met | uncertain | no_evidence
    weight: float
    required: bool
    inputs: dict
    links: tuple[Link, ...]
    n: int | None
    ci_width: float | None
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "principle": self.principle,
            "title": self.title,
            "recommendation": self.recommendation,
            "value": self.value,
            "status": self.status,
            "weight": self.weight,
            "required": self.required,
            "inputs": self.inputs,
            "links": [link.to_dict() for link in self.links],
            "n": self.n,
            "ci_width": self.ci_width,
            "explanation": self.explanation,
        }


@dataclass(frozen=True)
class PrincipleResult:
    """A principle's score (None when a required criterion lacks evidence) and its criteria."""

    principle: str
    score: float | None
    status: str  # assessed | insufficient_evidence
    strength: str | None
    minimum: float
    below_minimum: bool | None
    criteria: tuple[CriterionResult, ...]
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "status": self.status,
            "strength": self.strength,
            "minimum": self.minimum,
            "below_minimum": self.below_minimum,
            "summary": self.summary,
            "criteria": [c.to_dict() for c in self.criteria],
        }


def evidence_strength(criteria: tuple[CriterionResult, ...] | list[CriterionResult]) -> str | None:
    """The weakest band among criteria with a sample size (see step 3); None if none has one."""
    bands = []
    for c in criteria:
        if c.n is None:
            continue
        width_ok = c.ci_width is not None
        if c.n >= STRONG_N and width_ok and c.ci_width <= STRONG_WIDTH:
            bands.append(2)
        elif c.n >= MODERATE_N or (width_ok and c.ci_width <= MODERATE_WIDTH):
            bands.append(1)
        else:
            bands.append(0)
    return _BANDS[min(bands)] if bands else None


def _summary(name: str, criteria: tuple[CriterionResult, ...], score: float | None) -> str:
    if score is None:
        lacking = [c for c in criteria if c.required and c.value is None]
        return f"Insufficient evidence for {name}: " + " ".join(f"{c.title}: {c.explanation}" for c in lacking)
    scored = [c for c in criteria if c.value is not None]
    lowering = sorted((c for c in scored if c.value < 1), key=lambda c: c.weight * (1 - c.value), reverse=True)[:2]
    unscored = [c.title for c in criteria if c.value is None]
    weight = sum(c.weight for c in scored) / sum(c.weight for c in criteria)
    tail = (
        f" The score rests on {len(scored)} of {len(criteria)} criteria ({weight:.0%} of the weight); without evidence: {', '.join(unscored)}."
        if unscored
        else ""
    )
    if not lowering:
        return ("The criterion with evidence is met." if len(scored) == 1 else f"All {len(scored)} criteria with evidence are met.") + tail
    return " ".join(c.explanation for c in lowering) + tail


def _principle(name: str, spec: dict, evidence: VersionEvidence) -> PrincipleResult:
    criteria = []
    for item in spec["criteria"]:
        outcome = RULES[item["rule"]].function(evidence, rule_params(item["rule"], item.get("params")))
        if name in LABEL_DEPENDENT_PRINCIPLES:
            outcome = with_label_caveat(outcome, evidence)
        criteria.append(
            CriterionResult(
                key=item["key"],
                principle=name,
                title=item.get("title") or item["key"],
                recommendation=item.get("recommendation", ""),
                value=outcome.value,
                status=outcome.status,
                weight=float(item["weight"]),
                required=bool(item.get("required", False)),
                inputs=outcome.inputs,
                links=outcome.links,
                n=outcome.n,
                ci_width=outcome.ci_width,
                explanation=outcome.explanation,
            )
        )
    criteria = tuple(criteria)
    scored = [c for c in criteria if c.value is not None]
    insufficient = not scored or any(c.required and c.value is None for c in criteria)
    score = None if insufficient else round(100 * sum(c.weight * c.value for c in scored) / sum(c.weight for c in scored), 1)
    minimum = float(spec.get("minimum", 0))
    return PrincipleResult(
        principle=name,
        score=score,
        status="insufficient_evidence" if insufficient else "assessed",
        strength=evidence_strength(criteria),
        minimum=minimum,
        below_minimum=None if score is None else score < minimum,
        criteria=criteria,
        summary=_summary(name, criteria, score),
    )


def assess(evidence: VersionEvidence, policy: dict) -> dict[str, PrincipleResult]:
    """Score every principle of ``policy`` on ``evidence``; raises ``PolicyError`` for a bad policy."""
    validate_policy(policy)
    return {name: _principle(name, policy["principles"][name], evidence) for name in PRINCIPLES}


def assessment_to_dict(results: dict[str, PrincipleResult]) -> dict[str, Any]:
    return {name: result.to_dict() for name, result in results.items()}


# --- Comparing two stored assessments -------------------------------------------------


_INPUT_WORDS = {"ci_low": "lower CI bound", "ci_high": "upper CI bound", "n": "sample size", "mdd": "smallest detectable difference"}


def _fmt(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _score(score: float | None) -> str:
    return "no score" if score is None else f"{score:.1f}"


def _criterion_change(principle: str, key: str, old: dict | None, new: dict | None) -> dict[str, Any] | None:
    if old is None or new is None:
        present = new or old
        sentence = f"{present['title']} is {'new in' if old is None else 'no longer in'} the policy."
        return {
            "principle": principle,
            "criterion": key,
            "title": present["title"],
            "before": None if old is None else {"value": old["value"], "status": old["status"]},
            "after": None if new is None else {"value": new["value"], "status": new["status"]},
            "changed_inputs": {},
            "sentence": sentence,
        }
    if old["value"] == new["value"] and old["status"] == new["status"]:
        return None
    was, now = old.get("inputs") or {}, new.get("inputs") or {}
    changed = {k: {"before": was.get(k), "after": now.get(k)} for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)}
    why = "; ".join(
        f"{_INPUT_WORDS.get(k, k.replace('_', ' '))} {_fmt(v['before'])} → {_fmt(v['after'])}"
        for k, v in list(changed.items())[:3]
        if not isinstance(v["after"], (dict, list))
    )
    sentence = f"{new['title']}: {_fmt(old['value'])} ({status_label(old['status'])}) → {_fmt(new['value'])} ({status_label(new['status'])})" + (
        f" because {why}." if why else f". {new['explanation']}"
    )
    return {
        "principle": principle,
        "criterion": key,
        "title": new["title"],
        "before": {"value": old["value"], "status": old["status"]},
        "after": {"value": new["value"], "status": new["status"]},
        "changed_inputs": changed,
        "sentence": sentence,
    }


def assessment_diff(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """What moved between two stored assessments (``assessment_to_dict`` forms): per principle
    the score and status change, then each criterion whose value or status changed, and why."""
    changes: list[dict[str, Any]] = []
    for name in [p for p in PRINCIPLES if p in before or p in after]:
        old, new = before.get(name) or {}, after.get(name) or {}
        if old.get("score") != new.get("score") or old.get("status") != new.get("status"):
            delta = None if old.get("score") is None or new.get("score") is None else round(new["score"] - old["score"], 1)
            sentence = (
                f"{name.capitalize()}: {_score(old.get('score'))} ({status_label(old.get('status'))}) → {_score(new.get('score'))} ({status_label(new.get('status'))})"
                + (f", {delta:+.1f} points." if delta is not None else ".")
            )
            changes.append(
                {
                    "principle": name,
                    "criterion": None,
                    "before": {"score": old.get("score"), "status": old.get("status")},
                    "after": {"score": new.get("score"), "status": new.get("status")},
                    "change": delta,
                    "sentence": sentence,
                }
            )
        olds = {c["key"]: c for c in old.get("criteria", [])}
        news = {c["key"]: c for c in new.get("criteria", [])}
        for key in [*news, *(k for k in olds if k not in news)]:
            change = _criterion_change(name, key, olds.get(key), news.get(key))
            if change:
                changes.append(change)
    return changes
