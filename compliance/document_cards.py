"""The model card of a signed dossier revision in the Hugging Face format (Markdown with YAML
front matter, and the same content as JSON), from the frozen snapshot.

Its performance is the declared performance only (the pinned release evidence), each metric
rounded to three significant figures with its confidence interval; a post-market run never
appears as the model's performance. A version derived from another names it as ``base_model``;
``license_link`` is the dossier's link to the licence text.

The YAML is written here (no YAML library at run time): every string is a double-quoted
scalar with JSON escapes, which YAML 1.2 reads back unchanged, so no text an officer or a
registry entry holds can change the structure.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from compliance.document_evidence import METRICS, NO_DECLARED_PERFORMANCE, operating_point_text
from core.readable import metric, number, title
from registry.choices import Task

# Hugging Face's licence identifiers the registry is likely to hold; anything else is "other" with its name.
HF_LICENCES = frozenset(
    {
        "apache-2.0",
        "mit",
        "bsd-3-clause",
        "bsd-2-clause",
        "gpl-3.0",
        "lgpl-3.0",
        "agpl-3.0",
        "mpl-2.0",
        "cc-by-4.0",
        "cc-by-sa-4.0",
        "cc-by-nc-4.0",
        "cc-by-nc-sa-4.0",
        "cc-by-nc-nd-4.0",
        "openrail",
        "unlicense",
    }
)
PIPELINE_TAGS = {"segmentation": "image-segmentation", "detection": "object-detection"}
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
# What JSON leaves raw but YAML may not hold as is (non-printable, or a line break it would fold): escaped as \uXXXX.
_NOT_PRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")


def _quote(text: str) -> str:
    return _NOT_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def md(text: Any) -> str:
    """Registry and officer text inside Markdown: shown as written, never as HTML."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _task(model: dict) -> str:
    """The registry task in words (a snapshot may hold a code this version no longer knows: shown as written)."""
    code = model.get("task")
    return Task(code).label if code in Task.values else str(code or "not recorded")


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf") if math.isinf(value) else repr(value)
    return _quote(str(value))


def _key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) else _quote(key)


def yaml_dump(value: Any, indent: int = 0) -> str:
    """Block-style YAML of dicts, lists and scalars (see the module docstring)."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        out = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{_key(str(k))}:\n{yaml_dump(v, indent + 2)}")
            else:
                out.append(f"{pad}{_key(str(k))}: {_inline_empty(v)}\n")
        return "".join(out)
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        out = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested = yaml_dump(item, indent + 2)
                out.append(f"{pad}- {nested[indent + 2 :]}")  # the first line goes after the dash
            else:
                out.append(f"{pad}- {_inline_empty(item)}\n")
        return "".join(out)
    return pad + _scalar(value) + "\n"


def _inline_empty(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def _slug(text: str, fallback: str = "") -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or fallback


def rounded(value: Any) -> Any:
    """A float to three significant figures, as a number (the card's YAML and JSON keep it numeric)."""
    return float(number(value).replace(",", "")) if isinstance(value, float) and math.isfinite(value) else value


def _declared(snapshot: dict) -> list[dict]:
    """(run, dataset, label, metric, estimate) rows of the declared performance."""
    declared = (snapshot.get("evidence") or {}).get("declared_performance") or {}
    return [
        {"run": run, "label": label, "metric": m, "estimate": section["overall"][m]}
        for run in declared.get("runs") or []
        for label, section in (run.get("labels") or {}).items()
        for m in METRICS
        if isinstance(((section or {}).get("overall") or {}).get(m), dict) and isinstance(section["overall"][m].get("value"), (int, float))
    ]


def _model_index(name: str, model: dict, snapshot: dict) -> list[dict]:
    """Hugging Face's model-index of the declared performance: one result per declared run and label."""
    task = PIPELINE_TAGS.get(model.get("task"), "image-classification")
    results: dict[tuple[int, str], dict] = {}
    for row in _declared(snapshot):
        run, label, estimate = row["run"], row["label"], row["estimate"]
        result = results.setdefault(
            (run["run"], label),
            {
                "task": {"type": task, "name": f"{label} ({_task(model).lower()})"},
                "dataset": {"name": run["dataset"], "type": _slug(run["dataset"], "dataset"), "split": "test"},
                "metrics": [],
            },
        )
        result["metrics"].append(
            {
                "type": row["metric"],
                "value": rounded(estimate["value"]),
                "name": f"{title(row['metric'])} ({label}): {metric(estimate)}",
                "verified": False,
            }
        )
    return [{"name": name, "results": list(results.values())}]


def _base_model(snapshot: dict) -> dict:
    """The version this one was derived from (``base_model``), and how, where the registry says."""
    evidence = snapshot.get("evidence") or {}
    lineage = (evidence.get("version_identity") or {}).get("lineage") or []
    if not lineage:
        return {}
    fine_tuned = any(r.get("role") == "fine_tuning" for r in evidence.get("provenance") or [])
    return {"base_model": lineage[0], **({"base_model_relation": "finetune"} if fine_tuned else {})}


def _metadata(snapshot: dict, signature: dict) -> dict:
    evidence = snapshot.get("evidence") or {}
    model = evidence.get("model_description") or {}
    version = snapshot.get("version") or {}
    values = snapshot.get("values") or {}
    licence = str(model.get("licence") or "").strip()
    licence_fields = (
        {"license": licence.lower()} if licence.lower() in HF_LICENCES else {"license": "other", "license_name": licence or "not recorded"}
    )
    link = str(values.get("1d_licence_link") or "").strip()
    if link:
        licence_fields["license_link"] = link
    declared = evidence.get("declared_performance") or {}
    tags = ["medical-imaging", "radiology", "onnx", "eu-ai-act", str(model.get("modality") or "").lower(), _slug(model.get("body_region") or "")]
    return {
        **licence_fields,
        **_base_model(snapshot),
        "library_name": "onnx",
        "pipeline_tag": PIPELINE_TAGS.get(model.get("task"), "image-classification"),
        "tags": [t for t in dict.fromkeys(tags) if t],
        "datasets": sorted({r["dataset"] for r in evidence.get("provenance") or []}),
        "model-index": _model_index(version.get("label") or model.get("name") or "model", model, snapshot),
        "radtrust": {
            "version": version.get("label"),
            "artifact_sha256": version.get("artifact_sha256"),
            "dossier_revision": snapshot.get("revision"),
            "snapshot_sha256": signature["snapshot_sha256"],
            "signed_by": signature["signer"],
            "signed_by_name": signature.get("signer_name") or signature["signer"],
            "signed_for": signature.get("institution"),
            "signed_at": signature["signed_at"],
            "signature_meaning": signature.get("meaning"),
            "audit_head_at_signing": {"seq": signature.get("audit_seq"), "hash": signature.get("audit_hash")},
            "risk_class": model.get("risk_class"),
            "mdr_class": model.get("mdr_class"),
            "operating_points": {k: rounded(v) for k, v in (declared.get("operating_points") or {}).items()},
            "declared_performance": [
                {
                    "run": row["run"]["run"],
                    "dataset": row["run"]["dataset"],
                    "label": row["label"],
                    "metric": row["metric"],
                    **{k: rounded(row["estimate"].get(k)) for k in ("value", "ci_low", "ci_high")},
                    "confidence": (row["run"]["labels"][row["label"]] or {}).get("confidence"),
                }
                for row in _declared(snapshot)
            ],
        },
    }


def _sections(snapshot: dict) -> list[dict]:
    evidence = snapshot.get("evidence") or {}
    values = snapshot.get("values") or {}
    model = evidence.get("model_description") or {}

    def text(*parts: str) -> str:
        """Registry texts (``model:<key>``) and officer fields, escaped, in order; a note when all are empty."""
        found = [(model.get(p[6:]) if p.startswith("model:") else values.get(p)) or "" for p in parts]
        return "\n\n".join(md(t.strip()) for t in found if t.strip()) or "Not stated in the dossier."

    provenance = "\n".join(
        f"- {md(r['dataset'])} ({r['role'].replace('_', ' ')}; steward {md(r['steward'])})" for r in evidence.get("provenance") or []
    )
    declared = evidence.get("declared_performance") or {}
    evaluation = []
    if declared:
        points = "; ".join(operating_point_text(md(k), v) for k, v in (declared.get("operating_points") or {}).items())
        evaluation.append(
            f"Declared performance on {md(declared.get('population') or 'the intended population')}. Operating threshold: {points or 'none'}."
        )
    for run in declared.get("runs") or []:
        for label, section in (run.get("labels") or {}).items():
            overall = (section or {}).get("overall") or {}
            rows = "\n".join(f"| {title(m)} | {metric(overall[m])} |" for m in METRICS if m in overall)
            evaluation.append(f"Run {run['run']} on {md(run['dataset'])}, {md(label)}:\n\n| Metric | Value (95% CI) |\n|---|---|\n{rows}")
    details = (
        f"- Provider: {md(model.get('provider') or 'not recorded')}\n- Version: {md((snapshot.get('version') or {}).get('label'))}\n"
        f"- Task: {md(_task(model))}; modality {md(model.get('modality'))}; body region {md(model.get('body_region'))}\n"
        f"- AI Act risk class: {md(model.get('risk_class'))}; MDR class: {md(model.get('mdr_class') or 'none')}"
    )
    return [
        {"title": "Model details", "content": details},
        {"title": "Intended use", "content": text("model:intended_purpose", "1a_purpose_statement")},
        {"title": "Intended users", "content": text("model:intended_users")},
        {"title": "Out-of-scope use and risks", "content": text("13_3b_iii_risk_circumstances", "3_unintended_outcomes")},
        {"title": "Limitations", "content": text("model:known_limitations", "3_capabilities_limitations", "10_2h_data_gaps")},
        {"title": "Training and evaluation data", "content": provenance or "No dataset is linked to this version."},
        {"title": "Evaluation", "content": "\n\n".join(evaluation) or NO_DECLARED_PERFORMANCE},
        {"title": "Performance for specific groups", "content": text("13_3b_v_group_statement", "2g_results_assessment")},
        {"title": "Human oversight", "content": text("13_3d_oversight", "14_4d_override")},
        {"title": "How to interpret the output", "content": text("13_3b_vii_output_interpretation")},
    ]


def model_card(snapshot: dict, signature: dict) -> dict:
    """The card as data: Hugging Face metadata and the sections of its body."""
    model = (snapshot.get("evidence") or {}).get("model_description") or {}
    heading = f"Model card: {model.get('name') or 'model'} {(snapshot.get('version') or {}).get('label', '')}".strip()
    return {"metadata": _metadata(snapshot, signature), "title": heading, "sections": _sections(snapshot)}


def model_card_markdown(card: dict) -> str:
    body = "\n\n".join(f"## {s['title']}\n\n{s['content']}" for s in card["sections"])
    return f"---\n{yaml_dump(card['metadata'])}---\n\n# {card['title']}\n\n{body}\n"


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
