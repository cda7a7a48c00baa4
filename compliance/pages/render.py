"""Evidence and text differences made readable on the dossier pages.

Evidence providers (``compliance.dossier_evidence``) return JSON-safe data of many shapes.
``evidence_html`` turns it into small tables by shape rather than by source, so a new provider
needs no new template:

1. A metric with a confidence interval (``value``, ``ci_low``, ``ci_high``) is one cell.
2. A mapping of such cells is a two-column table; a list of them (or a mapping of them, such
   as per-principle scores) is a table with a column per key, where a nested mapping of cells
   (a subgroup's ``metrics``) becomes one column per metric.
3. Anything deeper is shown part by part under a heading, and past five levels as JSON in a
   collapsed ``<details>``; the whole data is always there too, collapsed.
Keys that name a run, dataset, deployment, incident or trust assessment become links.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from difflib import SequenceMatcher
from typing import Any

from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format
from django.utils.html import conditional_escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import is_aware, localtime

Links = Mapping[str, Callable[[Any], str]]

_ACRONYMS = {"auroc", "auprc", "ppv", "npv", "f1", "fnr", "fpr", "tpr", "ece", "mce", "ci", "id", "mdr", "onnx", "sha256", "loo"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_DEPTH = 5
_WORDS = re.compile(r"\S+\s*|\s+")
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_CODE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")


def label(key: str) -> str:
    """``datasheet_completeness`` -> ``Datasheet completeness``, ``overall: auroc`` -> ``Overall: AUROC``."""
    parts = []
    for part in str(key).split(": "):
        text = " ".join(w.upper() if w.lower() in _ACRONYMS else w for w in part.split("_"))
        parts.append(text[:1].upper() + text[1:])
    return ": ".join(parts)


def _is_metric(value: Any) -> bool:
    return isinstance(value, dict) and {"value", "ci_low", "ci_high"} <= value.keys()


def _is_cell(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)) or _is_metric(value):
        return True
    return isinstance(value, list) and len(value) <= 12 and all(isinstance(v, (str, int, float)) for v in value)


def _number(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"


def _metric(value: dict) -> SafeString:
    if value["value"] is None:
        return mark_safe('<span class="muted">not estimable</span>')
    ci = "" if value["ci_low"] is None else format_html(' <span class="ci">({} to {})</span>', _number(value["ci_low"]), _number(value["ci_high"]))
    by = format_html(' <span class="ci">by {}</span>', value["grouping"]) if value.get("grouping") else ""
    return format_html("{}{}{}", _number(value["value"]), ci, by)


def _cell(key: str, value: Any, links: Links) -> SafeString:
    if value is None or value == "" or value == []:
        return mark_safe("—")
    if isinstance(value, bool):
        return mark_safe("yes" if value else "no")
    if _is_metric(value):
        return _metric(value)
    if isinstance(value, list):
        return conditional_escape(", ".join(str(v) for v in value))
    if key in links and isinstance(value, int):
        return format_html('<a href="{}">{}</a>', links[key](value), value)
    if isinstance(value, float):
        return conditional_escape(_number(value))
    if isinstance(value, str) and _SHA256.match(value):
        return format_html('<code class="hash">{}</code>', value)
    if isinstance(value, str) and _CODE.match(value):  # a stored code (``not_met``, ``fine_tuning``) in words
        return conditional_escape(label(value))
    if isinstance(value, str) and _ISO_TIME.match(value) and (moment := parse_datetime(value)):
        return format_html('<time datetime="{}">{}</time>', value, date_format(localtime(moment) if is_aware(moment) else moment, "j M Y H:i"))
    return conditional_escape(value)


def _flatten(row: dict) -> dict | None:
    """A row whose values are cells, or mappings of cells (one column each); None if deeper."""
    nested = [k for k, v in row.items() if not _is_cell(v)]
    if not all(isinstance(row[k], dict) and all(_is_cell(v) for v in row[k].values()) for k in nested):
        return None
    flat = {}
    for key, value in row.items():
        if key not in nested:
            flat[key] = value
        else:  # a subgroup's metrics: one column per metric, prefixed only where two mappings could clash
            flat.update({(f"{key}: {inner}" if len(nested) > 1 else inner): v for inner, v in value.items()})
    return flat


def _table(rows: list[dict], caption: str, links: Links, first: str | None = None) -> SafeString:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    if first and len(rows) <= 3 and len(columns) > 6:  # one label with twelve metrics reads better down than across
        rows = [{first: label(c), **{str(row[first]): row.get(c) for row in rows}} for c in columns if c != first]
        columns = list(dict.fromkeys(k for row in rows for k in row))
    head = format_html_join("", '<th scope="col">{}</th>', ((label(c),) for c in columns))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        (
            (
                format_html_join(
                    "",
                    "<{0}{1}>{2}</{0}>",
                    (
                        (
                            "th" if c == first else "td",
                            mark_safe(' scope="row"') if c == first else "",
                            _cell(c.rsplit(": ", 1)[-1], row.get(c), links),
                        )
                        for c in columns
                    ),
                ),
            )
            for row in rows
        ),
    )
    return format_html(
        '<div class="table-wrap" tabindex="0" role="region" aria-label="{}"><table class="evidence"><caption>{}</caption>'
        "<thead><tr>{}</tr></thead><tbody>{}</tbody></table></div>",
        caption,
        caption,
        head,
        body,
    )


def _pairs(data: dict, caption: str, links: Links) -> SafeString:
    body = format_html_join("", '<tr><th scope="row">{}</th><td>{}</td></tr>', ((label(k), _cell(k, v, links)) for k, v in data.items()))
    return format_html(
        '<div class="table-wrap" tabindex="0" role="region" aria-label="{}"><table class="evidence pairs"><caption>{}</caption><tbody>{}</tbody></table></div>',
        caption,
        caption,
        body,
    )


def _json(data: Any, summary: str) -> SafeString:
    return format_html(
        '<details class="json"><summary>{}</summary><pre>{}</pre></details>', summary, json.dumps(data, indent=1, sort_keys=True, default=str)
    )


def _item(row: dict, number: int) -> str:
    """A list entry's name: the record it is about where it names one."""
    for key in ("run", "deployment", "incident", "dataset", "name"):
        if _is_cell(row.get(key)) and row.get(key) not in (None, ""):
            return f"{label(key)} {row[key]}" if key in {"run", "deployment", "incident"} else str(row[key])
    return f"Item {number}"


def _block(data: Any, caption: str, links: Links, depth: int) -> SafeString:
    """``caption`` names where in the data this is: the field's title at the top, then the path."""
    if data is None or data == [] or data == {}:
        return format_html('<p class="muted">{}: none.</p>', caption)
    if _is_cell(data):
        return format_html("<p>{}</p>", _cell("", data, links))
    within = (lambda name: f"{caption}: {name}") if depth else (lambda name: name)
    if isinstance(data, list):
        if all(isinstance(row, dict) for row in data) and all(flat := [_flatten(row) for row in data]):
            return _table(flat, caption, links)
        if depth < _MAX_DEPTH and all(isinstance(row, dict) for row in data):
            return format_html_join("", "{}", ((_block(row, within(_item(row, i)), links, depth + 1),) for i, row in enumerate(data, 1)))
        return _json(data, f"{caption} (JSON)")
    if all(_is_cell(v) for v in data.values()):
        return _pairs(data, caption, links)
    rows = {name: _flatten(v) if isinstance(v, dict) else None for name, v in data.items()}
    if all(rows.values()):
        return _table([{"name": name, **row} for name, row in rows.items()], caption, links, first="name")
    if depth >= _MAX_DEPTH:
        return _json(data, f"{caption} (JSON)")
    cells = {k: v for k, v in data.items() if _is_cell(v)}
    parts = [_pairs(cells, caption, links)] if cells else []
    parts += [_block(value, within(label(key)), links, depth + 1) for key, value in data.items() if key not in cells]
    return mark_safe("".join(parts))


def evidence_html(data: Any, *, caption: str, links: Links) -> SafeString:
    """Tables for one evidence provider's data (see the module docstring), then the raw data collapsed."""
    tables = _block(data, caption, links, 0)
    if isinstance(data, (dict, list)) and data:
        return format_html("{}{}", tables, _json(data, "All of this evidence as data (JSON)"))
    return tables


def text_diff(old: str, new: str) -> list[tuple[str, str]]:
    """Word by word: ``("equal" | "delete" | "insert", text)`` segments that turn ``old`` into ``new``."""
    a, b = _WORDS.findall(old or ""), _WORDS.findall(new or "")  # a word with the space after it: spaces never match alone
    segments: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            segments.append(("equal", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            segments.append(("delete", "".join(a[i1:i2])))
        if j2 > j1:
            segments.append(("insert", "".join(b[j1:j2])))
    return segments
