"""The change log in words, from its dict (``compliance.change_log``): the plan it was judged by,
the rules, what the classification asks for, and the Markdown document. The page and the PDF
chapter use the same sentences, so a frozen log reads the same everywhere. Logs frozen in the
first format (before plans were frozen in signed dossiers) still render."""

from __future__ import annotations

from typing import Any

from compliance.change_rules import RULES_BY_ID, SUBSTANTIAL, WITHIN_PLAN, value_text

EFFECT_WORDS = {WITHIN_PLAN: "within the plan", SUBSTANTIAL: "substantial"}


def plan_text(plan: dict | None) -> str:
    """Which change plan judged the changes, who put it in force, and where it was found."""
    plan = plan or {}
    if not plan.get("id"):
        return plan.get("source") or "No change plan was recorded: the rules of the time applied."
    if "source" not in plan:  # the first format: the newest plan of the time
        return f"Change plan {plan.get('version')} ({plan.get('applies_to')})."
    return f"{plan['source']} Proposed by {plan.get('proposed_by') or 'an unknown officer'}, approved by {plan.get('approved_by')}."


def rule_texts(rules: dict[str, dict[str, Any]]) -> list[str]:
    """Each rule of a set in one line: its name and what it makes of a change."""
    lines = []
    for rule_id, spec in rules.items():
        rule = RULES_BY_ID.get(rule_id)
        effect = EFFECT_WORDS.get(spec.get("effect"), str(spec.get("effect")))
        lines.append(f"{rule.title}: {rule.describe_spec(spec, effect)}" if rule else f"{rule_id}: {effect}")
    return lines


def conformity_text(log: dict) -> str:
    """What the classification asks for and which conformity assessments are recorded."""
    conformity = log.get("conformity") or {}
    recorded = [
        f"{a['route']}"
        + (f", {a['notified_body']}, certificate {a['certificate_reference']}" if a.get("notified_body") else "")
        + f", concluded {a['assessed_on']} (recorded by {a['recorded_by']})"
        for a in conformity.get("assessments") or []
    ]
    if conformity.get("required"):
        if recorded:
            return "A new conformity assessment is required (Art. 43(4)) and is recorded: " + "; ".join(recorded) + "."
        return "A new conformity assessment is required (Art. 43(4)) and none is recorded: the version cannot be approved until one is."
    if recorded:
        return "Conformity assessments recorded: " + "; ".join(recorded) + "."
    return "No new conformity assessment is required by these changes."


def _cell(value: Any, limit: int = 160) -> str:
    """One Markdown table cell or list entry in words: pipes and HTML written out as text."""
    text = "—" if value is None else value_text(value, limit)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<").replace(">", "\\>")


def change_log_markdown(log: dict) -> str:
    """The change log as Markdown, from its dict (a frozen snapshot renders the same)."""
    version, parent = log["version"], log.get("parent")
    lines = [f"# Change log: {version['label']}", ""]
    if log.get("initial") or parent is None:
        return "\n".join([*lines, "First version: there is no parent version to compare with.", ""])
    classification, plan = log["classification"], log.get("plan") or {}
    lines += [
        f"Against parent **{_cell(parent['label'])}** (artifact {_cell(parent.get('artifact_sha256'))}); "
        f"this version's artifact {_cell(version.get('artifact_sha256'))}. Generated {log.get('generated_at', '')}.",
        "",
        f"**Classification: {classification['label']}**",
        "",
        conformity_text(log),
        "",
        f"Plan: {_cell(plan_text(plan), 600)}",
    ]
    if plan.get("rationale"):
        lines.append(f"Its text: {_cell(plan['rationale'], 600)}")
    lines += ["", "Rules applied:", "", *(f"- {_cell(text, 200)}" for text in rule_texts(plan.get("rules") or {})), ""]
    if classification["reasons"]:
        lines += ["## Why", ""]
        for reason in classification["reasons"]:
            title = reason.get("title") or reason["rule"]
            lines.append(f"- **{title}: {EFFECT_WORDS.get(reason['effect'], reason['effect'])}.** {reason['text']}.")
            lines += [f"  - {_cell(e, 200)}" for e in reason["evidence"][:10]]
            if len(reason["evidence"]) > 10:
                lines.append(f"  - and {len(reason['evidence']) - 10} more")
        lines.append("")
    for number, section in enumerate(log["sections"], 1):
        lines += [f"## {number}. {section['title']}", ""]
        lines += [f"_{_cell(note, 400)}_" for note in section["notes"]] + ([""] if section["notes"] else [])
        if not section["changes"]:
            lines += ["No change.", ""]
            continue
        lines += ["| What | Before | After | Why it matters | Rule |", "|---|---|---|---|---|"]
        lines += [
            f"| {_cell(i['what'])} | {_cell(i['before'])} | {_cell(i['after'])} | {_cell(i['why'], 400)} | {rule_title(i['rule'])} |"
            for i in section["changes"]
        ]
        lines.append("")
    return "\n".join(lines)


def rule_title(rule_id: str | None) -> str:
    rule = RULES_BY_ID.get(rule_id or "")
    return rule.title if rule else (rule_id or "—")
