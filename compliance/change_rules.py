"""The rules that classify a version's changes against its parent (Art. 43(4), Annex IV 2(f)):
a change is editorial, within the pre-determined change plan, or a substantial modification that
needs a new conformity assessment. Fail safe throughout: what was not pre-determined, or cannot
be assessed, is substantial.

1. ``RULES`` is the catalogue: one rule per kind of change, with the text officers read, its
   default effect in a plan and, for changes measured by size, a default limit. Rules marked
   ``evidence`` judge how the changed system performs, not what changed.
2. A rule set maps rule ids to ``{"effect": "within_plan" | "substantial", "limit": number}``;
   ``limit`` only where the catalogue has one. A plan may name only the rules it changes; it is
   stored merged with ``DEFAULT_CHANGE_RULES``, so its meaning never moves.
3. The plan in force is the one frozen in the parent's signed dossier that was signed before
   the version was registered (``change_plan_in_force``): a plan approved later applies to later
   versions only. Without one nothing was pre-determined and ``NO_PLAN_RULES`` apply: every
   change but editorial documentation is substantial.
4. A rule with a limit applies its effect to changes larger than the limit (``limit_within``
   false: at the limit too); changes under it are within the plan. A sized change without a
   measured amount is not assessable and substantial. A rule without a limit applies its effect
   to every change of its kind.
5. Performance is judged by non-inferiority: a paired metric is within the plan only when the
   lower end of the confidence interval of its change (version minus parent) stays above minus
   the plan's margin. "Not significantly worse" is never enough: a wide interval fails.
6. The classification is ``substantial`` when any rule says so; ``within_plan`` when a change
   that is not editorial stays within the plan; ``editorial`` when only documentation changed;
   ``none`` when nothing that defines the version changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from compliance.choices import ChangeClass, DossierStatus
from compliance.models import ChangePlan
from radtrust_engine.hashing import sha256_matches

SUBSTANTIAL, WITHIN_PLAN = ChangeClass.SUBSTANTIAL.value, ChangeClass.WITHIN_PLAN.value
EFFECTS = (WITHIN_PLAN, SUBSTANTIAL)


@dataclass(frozen=True)
class ChangeRule:
    """One kind of change: its name, what it says, its default effect in a plan, and for sized changes its limit."""

    id: str
    title: str
    text: str
    effect: str
    limit: float | None = None
    within_text: str = ""  # for rules with a limit: what stays within the plan
    unassessed_text: str = ""  # for rules with a limit: what a change without a measured amount means
    limit_within: bool = True  # whether a change exactly at the limit stays within the plan
    limit_text: str = "within the plan up to {limit}, {effect} beyond it"  # how a rule set's limit reads
    editorial: bool = False  # documentation only: the system itself does not change
    evidence: bool = False  # judges the changed system's performance rather than naming a change

    def describe(self, limit: float | None, state: str) -> str:
        text = {"over": self.text, "within": self.within_text, "unassessed": self.unassessed_text}[state]
        return text.format(limit=limit_words(limit))

    def describe_spec(self, spec: Mapping[str, Any], effect_words: str) -> str:
        """What a rule set's entry for this rule makes of a change, in words."""
        if "limit" not in spec or self.limit is None:
            return effect_words
        return self.limit_text.format(limit=limit_words(spec["limit"]), effect=effect_words)


def limit_words(limit: float | None) -> str:
    """A limit as officers write it: 0.05, 0 (never 0.0 or 5e-02)."""
    return "none" if limit is None else f"{limit:g}"


RULES: tuple[ChangeRule, ...] = (
    ChangeRule("output_classes", "Output classes", "An output class is added, removed or reordered (what the model claims to detect)", SUBSTANTIAL),
    ChangeRule("activation", "Output activation", "The output activation changes (how raw outputs become probabilities)", SUBSTANTIAL),
    ChangeRule("intended_purpose", "Intended purpose", "The clinical claim (dossier field 1a) changes", SUBSTANTIAL),
    ChangeRule("signature", "Input or output signature", "The model's input or output signature changes (names, shapes, data types)", SUBSTANTIAL),
    ChangeRule("architecture", "Architecture", "The number of parameters changes (a new architecture)", SUBSTANTIAL),
    ChangeRule(
        "weights",
        "New weights",
        "A new model file, e.g. re-trained or fine-tuned weights (signature and size changes have rules of their own)",
        WITHIN_PLAN,
    ),
    ChangeRule("runtime_format", "Runtime format", "A new ONNX opset, IR version or exporter", WITHIN_PLAN),
    ChangeRule(
        "threshold_move",
        "Operating threshold",
        "An operating threshold moves by more than {limit}",
        SUBSTANTIAL,
        0.05,
        "Operating threshold moves of at most {limit}",
        "An operating threshold moved by an unknown amount",
    ),
    ChangeRule("preprocessing", "Preprocessing", "The preprocessing changes (resize, intensity normalisation, windowing, channels)", WITHIN_PLAN),
    ChangeRule(
        "data_same_sources",
        "More data from the same sources",
        "New data in a role the parent had, from institutions that already supplied that role",
        WITHIN_PLAN,
    ),
    ChangeRule(
        "data_new_source",
        "Data from a new source",
        "New data in a role the parent had, from an institution that did not supply that role before",
        SUBSTANTIAL,
    ),
    ChangeRule("data_new_role", "Data in a new role", "Data in a role the parent had no data for (e.g. a first fine-tuning set)", SUBSTANTIAL),
    ChangeRule("data_removed", "Data removed", "A dataset no longer has a role it had for the parent", WITHIN_PLAN),
    ChangeRule(
        "dataset_contents",
        "Dataset contents",
        "A dataset linked to both versions changed its recorded contents after the parent was registered",
        WITHIN_PLAN,
    ),
    ChangeRule(
        "non_inferiority",
        "Performance on the same data (non-inferiority)",
        "Non-inferiority not shown: the lower end of the confidence interval of the change in AUROC, sensitivity or specificity "
        "on the same data lies {limit} or more below zero",
        SUBSTANTIAL,
        0.02,
        "Non-inferior: the lower end of the confidence interval of the change lies less than {limit} below zero",
        "Non-inferiority not assessable: no confidence interval of the change on the same data, so it counts as substantial",
        limit_within=False,
        limit_text="within the plan while the lower end of the interval of the change lies less than {limit} below zero, otherwise {effect}",
        evidence=True,
    ),
    ChangeRule(
        "gap_widening",
        "Subgroup gaps",
        "A subgroup gap widens by more than {limit} on the same data",
        SUBSTANTIAL,
        0.05,
        "Subgroup gaps that widen by at most {limit} on the same data",
        "A subgroup gap widened by an unknown amount",
        evidence=True,
    ),
    ChangeRule(
        "not_reevaluated",
        "Not re-evaluated",
        "A dataset the parent was evaluated on has no evaluation of this version on the same contents: forgetting cannot be ruled out",
        SUBSTANTIAL,
        evidence=True,
    ),
    ChangeRule("documentation", "Documentation", "Other officer-written dossier fields change", WITHIN_PLAN, editorial=True),
)
RULES_BY_ID: dict[str, ChangeRule] = {r.id: r for r in RULES}


def _spec(rule: ChangeRule, effect: str, limit: float | None) -> dict[str, Any]:
    return {"effect": effect, **({"limit": limit} if rule.limit is not None else {})}


DEFAULT_CHANGE_RULES: dict[str, dict[str, Any]] = {r.id: _spec(r, r.effect, r.limit) for r in RULES}
"""What a change plan says for the rules it does not name: ``{rule id: {"effect": ..., "limit": ...}}``."""

NO_PLAN_RULES: dict[str, dict[str, Any]] = {r.id: _spec(r, WITHIN_PLAN if r.editorial else SUBSTANTIAL, 0.0) for r in RULES}
"""The rules where no change plan was pre-determined: every change but editorial documentation is substantial."""


def change_rules_validate(rules: Any) -> dict[str, str]:
    """What is wrong with a rule set, by path (``"threshold_move.limit"``); empty when it is valid."""
    if not isinstance(rules, Mapping):
        return {"rules": 'Give the rules as a JSON object: {"<rule id>": {"effect": "within_plan" or "substantial", "limit": number}}.'}
    errors: dict[str, str] = {}
    for rule_id, spec in rules.items():
        rule = RULES_BY_ID.get(rule_id)
        if rule is None:
            errors[str(rule_id)] = f"Unknown rule; the rules are: {', '.join(RULES_BY_ID)}."
            continue
        if not isinstance(spec, Mapping):
            errors[rule_id] = 'Give {"effect": "within_plan" or "substantial"' + (', "limit": number}.' if rule.limit is not None else "}.")
            continue
        allowed = {"effect", "limit"} if rule.limit is not None else {"effect"}
        if unknown := sorted(set(spec) - allowed):
            errors[rule_id] = f"Unknown keys {', '.join(unknown)}; this rule takes {' and '.join(sorted(allowed))}."
        if "effect" in spec and spec["effect"] not in EFFECTS:
            errors[f"{rule_id}.effect"] = f"Choose {WITHIN_PLAN} or {SUBSTANTIAL}, not {spec['effect']!r}."
        if "limit" in spec and rule.limit is not None:
            limit = spec["limit"]
            if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0 <= limit <= 1:
                errors[f"{rule_id}.limit"] = f"Give the limit as a number from 0 to 1 (the default is {rule.limit}), not {limit!r}."
    return errors


def change_rules_effective(
    rules: Mapping[str, Any] | None, *, fill: Mapping[str, Mapping[str, Any]] = DEFAULT_CHANGE_RULES
) -> dict[str, dict[str, Any]]:
    """``rules`` over ``fill``, rule by rule: a proposal names only what it changes (filled from the
    defaults); a frozen plan read back is filled from ``NO_PLAN_RULES``, so a rule it predates is strict."""
    given = rules or {}
    return {rule_id: {**default, **(given.get(rule_id) or {})} for rule_id, default in fill.items()}


# --- The plan in force ---------------------------------------------------------------------------


def change_plan_pin(foundation_model) -> dict[str, Any] | None:
    """The model's change plan in force now (its newest approved version), as a dossier snapshot
    freezes it; None when no plan has been approved."""
    plan = (
        ChangePlan.objects.filter(foundation_model=foundation_model, approval__isnull=False)
        .select_related("created_by", "approval__approved_by")
        .order_by("-version")
        .first()
    )
    if plan is None:
        return None
    return {
        "id": plan.pk,
        "version": plan.version,
        "rules": plan.rules,
        "rationale": plan.rationale,
        "proposed_by": plan.created_by.username if plan.created_by else None,
        "approved_by": plan.approval.approved_by.username,
        "approved_at": plan.approval.approved_at.isoformat(),
    }


@dataclass(frozen=True)
class PlanInForce:
    """The change plan that judges a version's changes against its parent, and where it was found."""

    rules: dict[str, dict[str, Any]]
    pinned: dict[str, Any] | None  # the plan as the parent's signed dossier froze it; None: nothing was pre-determined
    source: str  # where the plan comes from, or why there is none, in words

    def to_dict(self) -> dict[str, Any]:
        pinned = self.pinned or {}
        keys = ("id", "version", "rationale", "proposed_by", "approved_by", "approved_at")
        return {**{key: pinned.get(key) for key in keys}, "source": self.source, "rules": self.rules}


def change_plan_in_force(parent, version) -> PlanInForce:
    """The plan frozen in the newest revision of ``parent``'s dossier that was signed before
    ``version`` was registered (step 3 of the module docstring); ``NO_PLAN_RULES`` without one."""
    strict = "so every change that is not editorial is a substantial modification."
    signed = (
        parent.dossiers.filter(status=DossierStatus.SIGNED, signature__signed_at__lte=version.created_at)
        .select_related("signature")
        .order_by("-revision")
        .first()
    )
    if signed is None:
        return PlanInForce(
            NO_PLAN_RULES, None, f"No change plan was pre-determined: {parent} had no signed dossier when {version} was registered, {strict}"
        )
    where = f"the signed dossier of {parent} (revision {signed.revision}, signed {signed.signature.signed_at:%Y-%m-%d})"
    if not sha256_matches(signed.snapshot, signed.signature.snapshot_sha256):
        return PlanInForce(
            NO_PLAN_RULES, None, f"The snapshot of {where} no longer matches its signature: its change plan cannot be relied on, {strict}"
        )
    pinned = (signed.snapshot or {}).get("change_plan")
    if not pinned:
        return PlanInForce(NO_PLAN_RULES, None, f"No change plan was pre-determined: {where} records no approved change plan, {strict}")
    return PlanInForce(
        change_rules_effective(pinned.get("rules"), fill=NO_PLAN_RULES), pinned, f"Change plan {pinned.get('version')}, frozen in {where}."
    )


# --- Classification ------------------------------------------------------------------------------

_HASH = re.compile(r"[0-9a-f]{64}")


def _words(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return repr(round(value, 4)) if value == 0 or abs(value) >= 1e-3 else f"{value:.3g}"
    if isinstance(value, str):
        return f"{value[:12]}…" if _HASH.fullmatch(value) else value
    if isinstance(value, Mapping):
        nested = any(isinstance(v, Mapping) for v in value.values())
        parts = [f"{str(k).replace('_', ' ')}{': ' if isinstance(v, Mapping) else ' '}{_words(v)}" for k, v in value.items()]
        return ("; " if nested else ", ").join(parts) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(_words(v) for v in value) or "none"
    return str(value)


def value_text(value: Any, limit: int = 80) -> str:
    """A before or after value in one short line of words: numbers rounded, hashes shortened,
    records as "name value" pairs (never JSON)."""
    text = " ".join(_words(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _evidence(item: Mapping[str, Any]) -> str:
    detail = item.get("detail") or {}
    if None not in (detail.get("delta"), detail.get("ci_low"), detail.get("ci_high")):
        return (
            f"{item['what']}: {value_text(item['before'])} → {value_text(item['after'])}, change {detail['delta']:+.3f} "
            f"({detail.get('confidence') or 0.95:.0%} CI {detail['ci_low']:+.3f} to {detail['ci_high']:+.3f})"
        )
    if detail.get("unassessed"):
        return f"{item['what']}: {item['why']}"
    return f"{item['what']}: {value_text(item['before'])} → {value_text(item['after'])}"


def _state(rule: ChangeRule, limit: float | None, item: Mapping[str, Any]) -> str:
    """over, within or unassessed (step 4)."""
    if limit is None:
        return "over"
    amount = (item.get("detail") or {}).get("amount")
    if amount is None:
        return "unassessed"
    return "over" if amount > limit or (amount == limit and not rule.limit_within) else "within"


def change_classify(items: Iterable[Mapping[str, Any]], rules: Mapping[str, Mapping[str, Any]], *, changed: bool) -> dict[str, Any]:
    """The classification of change items under ``rules`` (steps 4 to 6 of the module docstring):
    ``{"value", "label", "reasons": [{"rule", "title", "effect", "text", "evidence": [...]}]}``."""
    if not changed:
        return {"value": ChangeClass.NONE.value, "label": ChangeClass.NONE.label, "reasons": []}
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        rule = RULES_BY_ID.get(item.get("rule") or "")
        if rule is None:
            continue
        spec = rules.get(rule.id) or NO_PLAN_RULES[rule.id]
        limit = spec.get("limit") if rule.limit is not None else None
        state = _state(rule, limit, item)
        if state == "unassessed":
            effect = SUBSTANTIAL
        elif state == "over":
            effect = WITHIN_PLAN if spec.get("effect") == WITHIN_PLAN else SUBSTANTIAL
        else:
            effect = WITHIN_PLAN
        reason = grouped.setdefault(
            (rule.id, state), {"rule": rule.id, "title": rule.title, "effect": effect, "text": rule.describe(limit, state), "evidence": []}
        )
        reason["evidence"].append(_evidence(item))
    order = {r.id: n for n, r in enumerate(RULES)}
    reasons = sorted(grouped.values(), key=lambda r: (r["effect"] != SUBSTANTIAL, order[r["rule"]]))
    if any(r["effect"] == SUBSTANTIAL for r in reasons):
        value = ChangeClass.SUBSTANTIAL
    elif any(not (RULES_BY_ID[r["rule"]].editorial or RULES_BY_ID[r["rule"]].evidence) for r in reasons):
        value = ChangeClass.WITHIN_PLAN
    else:
        value = ChangeClass.EDITORIAL
    return {"value": value.value, "label": value.label, "reasons": reasons}
