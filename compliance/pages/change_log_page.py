"""The change log page of a version: what changed against its parent, the paired metric deltas
with their intervals, and how the change plan classes it. Built by ``compliance.change_log``,
the same log the API returns and the documents freeze; this page only lays it out."""

from __future__ import annotations

import re
from typing import Any

from django.shortcuts import get_object_or_404, render
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html

from compliance.change_log import change_log_build
from compliance.change_rules import value_text
from compliance.choices import ChangeClass
from compliance.pages.render import label, text_diff
from core.pages import requires
from registry.selectors import version_list

EFFECTS = {ChangeClass.SUBSTANTIAL: "Substantial (Art. 43(4))", ChangeClass.WITHIN_PLAN: "Within the plan (Annex IV 2(f))"}


def _value(value: Any) -> str:
    """A before or after value in words: per-label headline metrics, a small record, a hash, or short JSON."""
    if value is None:
        return "—"
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
        return format_html('<code class="hash">{}</code>', value)
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return "; ".join(f"{name}: " + ", ".join(f"{label(m)} {value_text(x)}" for m, x in figures.items()) for name, figures in value.items())
    if isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
        return ", ".join(f"{label(k)} {value_text(v)}" for k, v in value.items())
    return value_text(value, 300)


def _section(section: dict) -> dict:
    """Paired metric deltas as their own table; dossier text as a word diff; the rest before and after."""
    metrics, items = [], []
    for item in section["changes"]:
        detail = item.get("detail") or {}
        if "delta" in detail:
            metrics.append({**item, **detail, "metric_label": label(detail["metric"])})
        elif item["kind"] == "dossier_field":
            items.append({**item, "diff": text_diff(item["before"] or "", item["after"] or "")})
        else:
            items.append({**item, "before_text": _value(item["before"]), "after_text": _value(item["after"])})
    return {**section, "metrics": metrics, "items": items}


@requires("dossier")  # the API's rule for the change log: it shows dossier text and run results
def change_log(request, pk: int):
    version = get_object_or_404(version_list(user=request.user), pk=pk)
    log = change_log_build(version).to_dict()
    reasons = [{**r, "effect_label": EFFECTS.get(r["effect"], r["effect"])} for r in log["classification"]["reasons"]]
    rules = [
        {"rule": rule, **spec, "effect_label": EFFECTS.get(spec.get("effect"), spec.get("effect"))}
        for rule, spec in ((log.get("plan") or {}).get("rules") or {}).items()
    ]
    return render(
        request,
        "compliance/change_log.html",
        {
            "version": version,
            "log": log,
            "generated_at": parse_datetime(log["generated_at"]),
            "reasons": reasons,
            "rules": rules,
            "sections": [_section(s) for s in log["sections"]],
        },
    )
