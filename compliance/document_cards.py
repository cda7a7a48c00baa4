"""The model card of a signed dossier revision in the Hugging Face format (Markdown with YAML
front matter, and the same content as JSON), from the frozen snapshot.

The YAML is written here (no YAML library at run time): every string is a double-quoted
scalar with JSON escapes, which YAML 1.2 reads back unchanged, so no text an officer or a
registry entry holds can change the structure.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from compliance.document_evidence import METRICS, metric, title

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
PIPELINE_TAGS = {"segmentation": "image-segmentation"}
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
# What JSON leaves raw but YAML may not hold as is (non-printable, or a line break it would fold): escaped as \uXXXX.
_NOT_PRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")


def _quote(text: str) -> str:
    return _NOT_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def md(text: Any) -> str:
    """Registry and officer text inside Markdown: shown as written, never as HTML."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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


def _model_index(name: str, model: dict, runs: list) -> list[dict]:
    task = PIPELINE_TAGS.get(model.get("task"), "image-classification")
    results = []
    for run in runs:
        for label, summary in ((run.get("summary") or {}).get("labels") or {}).items():
            overall = (summary or {}).get("overall") or {}
            metrics = [
                {"type": m, "value": overall[m]["value"], "name": f"{title(m)} ({label})", "verified": False}
                for m in METRICS
                if isinstance(overall.get(m), dict) and isinstance(overall[m].get("value"), (int, float))
            ]
            if metrics:
                results.append(
                    {
                        "task": {"type": task, "name": f"{label} ({model.get('task') or 'classification'})"},
                        "dataset": {
                            "name": run["dataset"],
                            "type": _slug(run["dataset"], "dataset"),
                            "split": "test",
                            "revision": run.get("manifest_sha256") or "",
                        },
                        "metrics": metrics,
                    }
                )
    return [{"name": name, "results": results}]


def _metadata(snapshot: dict, signature: dict) -> dict:
    evidence = snapshot.get("evidence") or {}
    model = evidence.get("model_description") or {}
    version = snapshot.get("version") or {}
    licence = str(model.get("licence") or "").strip()
    licence_fields = (
        {"license": licence.lower()} if licence.lower() in HF_LICENCES else {"license": "other", "license_name": licence or "not recorded"}
    )
    tags = ["medical-imaging", "radiology", "onnx", "eu-ai-act", str(model.get("modality") or "").lower(), _slug(model.get("body_region") or "")]
    return {
        **licence_fields,
        "library_name": "onnx",
        "pipeline_tag": PIPELINE_TAGS.get(model.get("task"), "image-classification"),
        "tags": [t for t in dict.fromkeys(tags) if t],
        "datasets": sorted({r["dataset"] for r in evidence.get("provenance") or []}),
        "model-index": _model_index(version.get("label") or model.get("name") or "model", model, evidence.get("validation_runs") or []),
        "radtrust": {
            "version": version.get("label"),
            "artifact_sha256": version.get("artifact_sha256"),
            "dossier_revision": snapshot.get("revision"),
            "snapshot_sha256": signature["snapshot_sha256"],
            "signed_by": signature["signer"],
            "signed_at": signature["signed_at"],
            "risk_class": model.get("risk_class"),
            "mdr_class": model.get("mdr_class"),
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
    evaluation = []
    for run in evidence.get("validation_runs") or []:
        for label, summary in ((run.get("summary") or {}).get("labels") or {}).items():
            overall = (summary or {}).get("overall") or {}
            rows = "\n".join(f"| {title(m)} | {metric(overall[m])} |" for m in METRICS if m in overall)
            evaluation.append(f"Run {run['run']} on {md(run['dataset'])}, {md(label)}:\n\n| Metric | Value (95% CI) |\n|---|---|\n{rows}")
    details = (
        f"- Provider: {md(model.get('provider') or 'not recorded')}\n- Version: {md((snapshot.get('version') or {}).get('label'))}\n"
        f"- Task: {md(model.get('task'))}; modality {md(model.get('modality'))}; body region {md(model.get('body_region'))}\n"
        f"- AI Act risk class: {md(model.get('risk_class'))}; MDR class: {md(model.get('mdr_class') or 'none')}"
    )
    return [
        {"title": "Model details", "content": details},
        {"title": "Intended use", "content": text("model:intended_purpose", "1a_purpose_statement")},
        {"title": "Intended users", "content": text("model:intended_users")},
        {"title": "Out-of-scope use and risks", "content": text("13_3b_iii_risk_circumstances", "3_unintended_outcomes")},
        {"title": "Limitations", "content": text("model:known_limitations", "3_capabilities_limitations", "10_2h_data_gaps")},
        {"title": "Training and evaluation data", "content": provenance or "No dataset is linked to this version."},
        {"title": "Evaluation", "content": "\n\n".join(evaluation) or "No succeeded validation run at submission."},
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
