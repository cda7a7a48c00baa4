"""The change log page of a version: what changed against its parent, the paired metric deltas
with their intervals, and how the change plan classes it. Built by ``compliance.change_log``,
the same log the API returns and the documents freeze; this page only lays it out."""

from __future__ import annotations

from django.shortcuts import get_object_or_404, render
from django.utils.dateparse import parse_datetime

from compliance.change_log import change_log_build
from compliance.change_log_text import conformity_text, plan_text, rule_texts, rule_title
from compliance.change_rules import value_text
from compliance.choices import ChangeClass
from compliance.pages.render import label, text_diff
from core.pages import requires
from registry.selectors import version_list

EFFECTS = {ChangeClass.SUBSTANTIAL: "Substantial (Art. 43(4))", ChangeClass.WITHIN_PLAN: "Within the plan (Annex IV 2(f))"}


def _section(section: dict) -> dict:
    """Paired metric deltas as their own table; dossier text as a word diff; the rest before and after, in words."""
    metrics, items = [], []
    for item in section["changes"]:
        detail = item.get("detail") or {}
        named = {**item, "rule_title": rule_title(item["rule"]) if item["rule"] else ""}
        if "delta" in detail:
            metrics.append({**named, **detail, "metric_label": label(detail["metric"])})
        elif item["kind"] == "dossier_field":
            items.append({**named, "diff": text_diff(item["before"] or "", item["after"] or "")})
        else:
            items.append({**named, **{f"{side}_text": "—" if item[side] is None else value_text(item[side], 300) for side in ("before", "after")}})
    return {**section, "metrics": metrics, "items": items}


@requires("dossier")  # the API's rule for the change log: it shows dossier text and run results
def change_log(request, pk: int):
    version = get_object_or_404(version_list(user=request.user), pk=pk)
    log = change_log_build(version).to_dict()
    reasons = [{**r, "effect_label": EFFECTS.get(r["effect"], r["effect"])} for r in log["classification"]["reasons"]]
    plan = log.get("plan") or {}
    return render(
        request,
        "compliance/change_log.html",
        {
            "version": version,
            "log": log,
            "generated_at": parse_datetime(log["generated_at"]),
            "reasons": reasons,
            "plan_text": plan_text(plan),
            "rules": rule_texts(plan.get("rules") or {}),
            "conformity_text": conformity_text(log),
            "sections": [_section(s) for s in log["sections"]],
        },
    )
