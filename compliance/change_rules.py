"""The rules that classify a version's changes against its parent (Art. 43(4), Annex IV 2(f)):
a change either stays within the pre-determined change plan or is a substantial modification
that needs a new conformity assessment.

1. ``RULES`` is the catalogue: one rule per kind of change, with the text officers read, its
   default effect and, for changes measured by size, a default limit.
2. A rule set (``DEFAULT_CHANGE_RULES``, or a ``ChangePlan.rules``) maps rule ids to
   ``{"effect": "within_plan" | "substantial", "limit": number}``; ``limit`` only where the
   catalogue has one. A plan may name only the rules it changes; the others keep their
   defaults, and a plan is stored with the full, merged set so its meaning never moves.
3. A rule with a limit applies its effect to changes larger than the limit; changes at or
   under it are within the plan. A rule without a limit applies its effect to every change
   of its kind.
4. The classification is ``substantial`` when any triggered rule says so, ``within_plan``
   when the version changed but no rule did, and ``none`` when the version itself (artifact,
   outputs, preprocessing, data, documentation) did not change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from compliance.choices import ChangeClass
from compliance.models import ChangePlan
from core.errors import Conflict

SUBSTANTIAL, WITHIN_PLAN = ChangeClass.SUBSTANTIAL.value, ChangeClass.WITHIN_PLAN.value
EFFECTS = (WITHIN_PLAN, SUBSTANTIAL)


@dataclass(frozen=True)
class ChangeRule:
    """One kind of change: what it says, its default effect, and for sized changes its limit."""

    id: str
    text: str
    effect: str
    limit: float | None = None
    within_text: str = ""  # for rules with a limit: what stays within the plan

    def describe(self, limit: float | None, over: bool) -> str:
        return (self.text if over else self.within_text).format(limit=limit)


RULES: tuple[ChangeRule, ...] = (
    ChangeRule("output_classes", "An output class is added, removed or reordered (what the model claims to detect)", SUBSTANTIAL),
    ChangeRule("activation", "The output activation changes (how raw outputs become probabilities)", SUBSTANTIAL),
    ChangeRule("intended_purpose", "The clinical claim (dossier field 1a) changes", SUBSTANTIAL),
    ChangeRule("signature", "The model's input or output signature changes (names, shapes, data types)", SUBSTANTIAL),
    ChangeRule("architecture", "The number of parameters changes (a new architecture)", SUBSTANTIAL),
    ChangeRule(
        "weights", "A new model file, e.g. re-trained or fine-tuned weights (signature and size changes have rules of their own)", WITHIN_PLAN
    ),
    ChangeRule("runtime_format", "A new ONNX opset, IR version or exporter", WITHIN_PLAN),
    ChangeRule(
        "threshold_move",
        "An operating threshold moves by more than {limit}",
        SUBSTANTIAL,
        0.05,
        "Operating threshold moves of at most {limit}",
    ),
    ChangeRule("preprocessing", "The preprocessing changes (resize, intensity normalisation, windowing, channels)", WITHIN_PLAN),
    ChangeRule("data_same_sources", "New data in a role the parent had, from institutions that already supplied that role", WITHIN_PLAN),
    ChangeRule("data_new_source", "New data in a role the parent had, from an institution that did not supply that role before", SUBSTANTIAL),
    ChangeRule("data_new_role", "Data in a role the parent had no data for (e.g. a first fine-tuning set)", SUBSTANTIAL),
    ChangeRule("data_removed", "A dataset no longer has a role it had for the parent", WITHIN_PLAN),
    ChangeRule("dataset_contents", "A dataset linked to both versions changed its recorded contents after the parent was registered", WITHIN_PLAN),
    ChangeRule(
        "metric_drop",
        "A significant drop of more than {limit} in AUROC, sensitivity or specificity on the same data, the parent's evaluation data included",
        SUBSTANTIAL,
        0.02,
        "Significant drops of at most {limit} on the same data",
    ),
    ChangeRule(
        "gap_widening",
        "A subgroup gap widens by more than {limit} on the same data",
        SUBSTANTIAL,
        0.05,
        "Subgroup gaps that widen by at most {limit} on the same data",
    ),
    ChangeRule(
        "not_reevaluated",
        "A dataset the parent was evaluated on has no evaluation of this version on the same contents: forgetting cannot be ruled out",
        SUBSTANTIAL,
    ),
    ChangeRule("documentation", "Other officer-written dossier fields change", WITHIN_PLAN),
)
RULES_BY_ID: dict[str, ChangeRule] = {r.id: r for r in RULES}

DEFAULT_CHANGE_RULES: dict[str, dict[str, Any]] = {r.id: {"effect": r.effect, **({"limit": r.limit} if r.limit is not None else {})} for r in RULES}
"""The rules used where no change plan exists: ``{rule id: {"effect": ..., "limit": ...}}`` (see ``RULES``)."""


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


def change_rules_effective(rules: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``rules`` over the defaults, rule by rule (a plan may name only what it changes)."""
    given = rules or {}
    return {rule_id: {**default, **(given.get(rule_id) or {})} for rule_id, default in DEFAULT_CHANGE_RULES.items()}


def change_plan_for(foundation_model):
    """``(plan, rules)``: the model's newest plan, else the newest plan for every model, else
    ``(None, DEFAULT_CHANGE_RULES)``."""
    plan = (
        ChangePlan.objects.filter(foundation_model=foundation_model).order_by("-version").first()
        or ChangePlan.objects.filter(foundation_model__isnull=True).order_by("-version").first()
    )
    return plan, change_rules_effective(plan.rules if plan else None)


def change_plan_create(*, actor, foundation_model, rules: Mapping[str, Any], rationale: str):
    """Store the next version of the change plan of ``foundation_model`` (None: every model),
    with the full rule set, so that later defaults never change what an approved plan says."""
    errors = change_rules_validate(rules)
    if errors:
        raise ValidationError({"rules": [f"{path}: {message}" for path, message in sorted(errors.items())]})
    if not (rationale or "").strip():
        raise ValidationError({"rationale": "Say which change plan text (Annex IV 2(f)) these rules implement."})
    latest = ChangePlan.objects.filter(foundation_model=foundation_model).order_by("-version").first()
    plan = ChangePlan(
        foundation_model=foundation_model,
        version=(latest.version if latest else 0) + 1,
        rules=change_rules_effective(rules),
        rationale=rationale.strip(),
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    try:
        with transaction.atomic():
            plan.save()
    except IntegrityError:
        raise Conflict("Another change plan version was added at the same time; reload and try again.", code="change_plan_race") from None
    return plan


def value_text(value: Any, limit: int = 80) -> str:
    """A before or after value in one short line: floats to 4 decimals, structures as JSON."""
    if value is None:
        text = "none"
    elif isinstance(value, float):
        text = repr(round(value, 4)) if value == 0 or abs(value) >= 1e-3 else f"{value:.3g}"
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _evidence(item: Mapping[str, Any]) -> str:
    return f"{item['what']}: {value_text(item['before'])} → {value_text(item['after'])}"


def change_classify(items: Iterable[Mapping[str, Any]], rules: Mapping[str, Mapping[str, Any]], *, changed: bool) -> dict[str, Any]:
    """The classification of change items under ``rules`` (steps 3 and 4 of the module docstring):
    ``{"value", "label", "reasons": [{"rule", "effect", "text", "evidence": [...]}]}``."""
    if not changed:
        return {"value": ChangeClass.NONE.value, "label": ChangeClass.NONE.label, "reasons": []}
    grouped: dict[tuple[str, bool], dict[str, Any]] = {}
    for item in items:
        rule = RULES_BY_ID.get(item.get("rule") or "")
        if rule is None:
            continue
        spec = rules.get(rule.id) or DEFAULT_CHANGE_RULES[rule.id]
        limit = spec.get("limit") if rule.limit is not None else None
        over = limit is None or (item.get("detail") or {}).get("amount", 0) > limit
        effect = (WITHIN_PLAN if spec.get("effect") == WITHIN_PLAN else SUBSTANTIAL) if over else WITHIN_PLAN
        reason = grouped.setdefault((rule.id, over), {"rule": rule.id, "effect": effect, "text": rule.describe(limit, over), "evidence": []})
        reason["evidence"].append(_evidence(item))
    order = {r.id: n for n, r in enumerate(RULES)}
    reasons = sorted(grouped.values(), key=lambda r: (r["effect"] != SUBSTANTIAL, order[r["rule"]]))
    value = ChangeClass.SUBSTANTIAL if any(r["effect"] == SUBSTANTIAL for r in reasons) else ChangeClass.WITHIN_PLAN
    return {"value": value.value, "label": value.label, "reasons": reasons}
