"""The change log of a version against its parent (AI Act Annex IV 6), derived from the registry,
the validation evidence and the dossiers, and classified by the change plan in force
(``compliance.change_rules``: editorial, within the plan of Annex IV 2(f), or substantial under
Art. 43(4)).

The log is a JSON-safe dict (``ChangeLog.to_dict()``), frozen in dossier snapshots, so every
document (the Markdown here, the PDF chapter) is rendered from the dict, never from the database:

- ``format``: 2 (1: before plans were frozen in signed dossiers). ``generated_at``: ISO time.
- ``version``, ``parent``: ``{"id", "label", "version", "artifact_sha256", "status", "created_at"}``;
  ``parent`` is null and ``initial`` true for a first version, whose ``sections`` are empty.
- ``plan``: ``{"id", "version", "rationale", "proposed_by", "approved_by", "approved_at", "source",
  "rules"}``: the plan frozen in the parent's signed dossier; ``id`` null where none was
  pre-determined (``source`` says why, and the strict rules apply). Null for a first version.
- ``classification``: ``{"value": "none" | "editorial" | "within_plan" | "substantial", "label",
  "reasons"}``, each reason ``{"rule", "title", "effect", "text", "evidence": [str]}``, substantial
  reasons first.
- ``conformity``: ``{"required", "assessments": [{"route", "notified_body", "certificate_reference",
  "assessed_on", "recorded_by"}]}``: whether the classification asks for a new conformity
  assessment, and those recorded for the version when the log was built.
- ``sections``: in order artifact, output_schema, preprocessing, data, metrics, subgroup_gaps,
  trust, dossier; each ``{"key", "title", "changes": [item], "notes": [str]}``. An item is
  ``{"kind", "rule", "what", "before", "after", "why", "detail"}``: ``rule`` names the change rule it
  falls under (null: shown, not classified); ``detail`` holds the figures, e.g. for a paired
  metric ``{"dataset", "label", "metric", "delta", "ci_low", "ci_high", "p_value", "significant",
  "confidence", "parent_run", "child_run", "n_shared_patients", "reference", "forgetting"}``
  (``reference``: "parent", or "base" for a task of the base an adaptation's parent was not
  evaluated on; ``forgetting``: the interval's upper end below minus ``FORGETTING_MARGIN``); ``detail.amount``
  is what a rule's limit is compared with (for a paired metric, minus the interval's lower end),
  and ``detail.unassessed`` marks evidence that cannot be measured (substantial, fail safe).

Metrics are compared per dataset the parent or the version was evaluated on (newest succeeded
runs): on the same dataset and manifest the per-case tables are paired by patient
(``radtrust_engine.baseline.metric_deltas``) and judged by non-inferiority; otherwise both values
are shown unpaired, and a dataset the parent was evaluated on but the version was not is named,
since forgetting cannot be ruled out there. For a recorded adaptation the base's tasks are
compared the same way (forgetting across tasks; ``validation.forgetting`` queues the runs). Performance rules apply only where the model file,
its outputs or its preprocessing changed; a changed model without a paired comparison on the
same data is not assessable, hence substantial.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.utils import timezone

from compliance.change_rules import RULES_BY_ID, change_classify, change_plan_in_force
from compliance.choices import ChangeClass, DossierStatus
from compliance.dossier_fields import FIELDS
from compliance.trust.services import latest_assessment
from core.models import AuditEvent
from radtrust_engine.baseline import BaselineError, CaseTable, metric_deltas
from radtrust_engine.report import RunReport
from radtrust_engine.stratification import FairnessGap
from registry.adaptations import lineage_root
from registry.models import Adaptation, ModelVersion
from validation.choices import RunFileKind, RunStatus

FORMAT = 2
DEFAULT_THRESHOLD = 0.5  # what the engine uses for a class without one
FORGETTING_MARGIN = 0.02
"""A task is flagged as forgotten when the upper end of the confidence interval of a paired change
(this version minus the parent or base, on the same data) lies below minus this margin: the whole
interval says more than 0.02 of AUROC, sensitivity or specificity was lost. The same margin as the
default non-inferiority limit, so a flagged task always fails non-inferiority too."""
SECTIONS = (
    ("artifact", "Artifact"),
    ("output_schema", "Output schema and thresholds"),
    ("preprocessing", "Preprocessing"),
    ("data", "Data and provenance"),
    ("metrics", "Performance on the same data"),
    ("subgroup_gaps", "Subgroup gaps"),
    ("trust", "Trust scores"),
    ("dossier", "Dossier fields"),
)
DEFINING = frozenset({"artifact", "output_schema", "preprocessing", "data", "dossier"})  # what the version is; the rest is how it performs
BEHAVIOUR = frozenset({"artifact", "output_schema", "preprocessing"})  # what decides the outputs for a given image
PURPOSE_FIELD = "1a_purpose_statement"


@dataclass
class ChangeLog:
    """What changed from the parent, section by section, and how the change plan classes it."""

    version: dict
    parent: dict | None
    plan: dict | None
    classification: dict
    sections: list[dict] = field(default_factory=list)
    generated_at: str = ""
    conformity: dict = field(default_factory=dict)

    @property
    def initial(self) -> bool:
        return self.parent is None

    def to_dict(self) -> dict[str, Any]:
        body = {"format": FORMAT, "initial": self.initial, **asdict(self)}
        return json.loads(json.dumps(body, default=str))


def _item(kind: str, what: str, before: Any, after: Any, why: str, *, rule: str | None = None, **detail: Any) -> dict:
    return {"kind": kind, "rule": rule, "what": what, "before": before, "after": after, "why": why, "detail": detail}


def _identity(version: ModelVersion) -> dict:
    return {
        "id": version.pk,
        "label": str(version),
        "version": version.version,
        "artifact_sha256": version.artifact_sha256,
        "status": version.status,
        "created_at": version.created_at.isoformat() if version.created_at else None,
    }


# --- 1-3: artifact, outputs, preprocessing -----------------------------------------------


def _signature(tensors: list[dict]) -> dict[str, dict]:
    return {t.get("name"): {"dtype": t.get("dtype"), "shape": t.get("shape")} for t in tensors or []}


def _artifact(parent: ModelVersion, version: ModelVersion) -> tuple[list[dict], list[str]]:
    changes = []
    if parent.artifact_sha256 != version.artifact_sha256:
        changes.append(
            _item(
                "artifact_sha256",
                "Artifact sha256",
                parent.artifact_sha256,
                version.artifact_sha256,
                "A different model file: its behaviour must be shown again by validation.",
                rule="weights",
            )
        )
    if parent.parameter_count != version.parameter_count:
        changes.append(
            _item(
                "parameter_count",
                "Parameter count",
                parent.parameter_count,
                version.parameter_count,
                "A different number of weights means a different architecture.",
                rule="architecture",
            )
        )
    for name, label in (("opset", "ONNX opset"), ("ir_version", "ONNX IR version"), ("producer", "Exporter")):
        before, after = getattr(parent, name), getattr(version, name)
        if before != after:
            changes.append(_item(name, label, before, after, "The runtime that executes the model must support it.", rule="runtime_format"))
    for side in ("inputs", "outputs"):
        old, new = _signature(getattr(parent, side)), _signature(getattr(version, side))
        for name in sorted(old.keys() | new.keys(), key=str):
            if old.get(name) != new.get(name):
                changes.append(
                    _item(
                        f"{side}_signature",
                        f"{side[:-1].capitalize()} tensor {name}",
                        old.get(name),
                        new.get(name),
                        "Integrations that send images or read scores rely on the names, shapes and types.",
                        rule="signature",
                    )
                )
    return changes, []


def _thresholds(schema: dict) -> dict[str, float]:
    given = schema.get("thresholds") or {}
    return {name: float(given.get(name, DEFAULT_THRESHOLD)) for name in schema.get("class_names") or []}


def _output_schema(parent: ModelVersion, version: ModelVersion) -> tuple[list[dict], list[str]]:
    old, new = parent.output_schema or {}, version.output_schema or {}
    old_names, new_names = list(old.get("class_names") or []), list(new.get("class_names") or [])
    changes = [
        _item("class_added", f"Output class {name}", None, name, "A new finding the model claims to detect.", rule="output_classes")
        for name in new_names
        if name not in old_names
    ] + [
        _item("class_removed", f"Output class {name}", name, None, "A finding users may still expect is no longer reported.", rule="output_classes")
        for name in old_names
        if name not in new_names
    ]
    shared = [n for n in new_names if n in old_names]
    if [n for n in old_names if n in shared] != shared:
        changes.append(
            _item(
                "class_order",
                "Order of output classes",
                old_names,
                new_names,
                "Output columns map to classes by position: a reorder swaps the findings reported.",
                rule="output_classes",
            )
        )
    old_t, new_t = _thresholds(old), _thresholds(new)
    for name in shared:
        move = new_t[name] - old_t[name]
        if move:
            changes.append(
                _item(
                    "threshold",
                    f"Operating threshold of {name}",
                    old_t[name],
                    new_t[name],
                    f"Moves sensitivity against specificity for every reader (move {move:+.3f}).",
                    rule="threshold_move",
                    amount=round(abs(move), 12),
                )
            )
    if (old.get("activation") or "none") != (new.get("activation") or "none"):
        changes.append(
            _item(
                "activation",
                "Output activation",
                old.get("activation") or "none",
                new.get("activation") or "none",
                "Scores mean something else: thresholds and calibration no longer carry over.",
                rule="activation",
            )
        )
    return changes, []


def _preprocessing(parent: ModelVersion, version: ModelVersion) -> tuple[list[dict], list[str]]:
    old, new = parent.preprocessing or {}, version.preprocessing or {}
    changes = [
        _item(
            "preprocessing",
            f"Preprocessing {key}",
            old.get(key),
            new.get(key),
            "Images reach the model differently: a site's images may now be read differently.",
            rule="preprocessing",
        )
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]
    return changes, []


# --- 4: data -----------------------------------------------------------------------------


def _provenance(version: ModelVersion) -> dict[int, tuple[Any, set[str]]]:
    rows: dict[int, tuple[Any, set[str]]] = {}
    for p in version.provenance.select_related("dataset__institution").prefetch_related("dataset__source_institutions"):
        rows.setdefault(p.dataset_id, (p.dataset, set()))[1].add(p.role)
    return rows


def _sources(dataset) -> set[str]:
    return {dataset.institution.code, *(i.code for i in dataset.source_institutions.all())}


# Dataset fields about who may see what, not about the data: a change to them changes no evidence.
_DATASET_TERMS = frozenset({"case_outputs_shared_with_provider"})


def _dataset_edits(dataset, since) -> list[dict]:
    """Field changes of a dataset after ``since``, from the audit trail (first before, last after)."""
    merged: dict[str, list] = {}
    seqs = []
    for event in AuditEvent.objects.filter(object_type="registry.dataset", object_id=str(dataset.pk), occurred_at__gt=since).exclude(action="create"):
        seqs.append(event.seq)
        for name, change in (event.changes or {}).items():
            if name in _DATASET_TERMS:
                continue
            before, after = change if isinstance(change, list) and len(change) == 2 else (None, change)
            merged[name] = [merged[name][0] if name in merged else before, after]
    return [
        _item(
            "dataset_changed",
            f"{dataset.name}: {name}",
            before,
            after,
            "The data behind both versions changed after the parent was registered.",
            rule="dataset_contents",
            dataset_id=dataset.pk,
            audit_events=seqs,
        )
        for name, (before, after) in sorted(merged.items())
        if before != after
    ]


def _data(parent: ModelVersion, version: ModelVersion) -> tuple[list[dict], list[str]]:
    old, new = _provenance(parent), _provenance(version)
    parent_roles = {role for _, roles in old.values() for role in roles}
    role_sources: dict[str, set[str]] = defaultdict(set)
    for dataset, roles in old.values():
        for role in roles:
            role_sources[role] |= _sources(dataset)
    changes = []
    for dataset_id in sorted(old.keys() | new.keys(), key=lambda k: (old.get(k) or new.get(k))[0].name):
        dataset = (new.get(dataset_id) or old.get(dataset_id))[0]
        before, after = old.get(dataset_id, (None, set()))[1], new.get(dataset_id, (None, set()))[1]
        shown = (sorted(before) or None, sorted(after) or None)
        for role in sorted(after - before):
            sources = _sources(dataset)
            if role not in parent_roles:
                rule, why = "data_new_role", f"The parent had no {role} data: the way the model was built changed."
            elif sources <= role_sources[role]:
                rule, why = "data_same_sources", f"More {role} data from institutions that already supplied it."
            else:
                rule, why = "data_new_source", f"{role} data from {', '.join(sorted(sources - role_sources[role]))}, which did not supply it before."
            changes.append(_item("data_added", f"{dataset.name} as {role}", *shown, why, rule=rule, dataset_id=dataset_id, sources=sorted(sources)))
        for role in sorted(before - after):
            changes.append(
                _item(
                    "data_removed",
                    f"{dataset.name} as {role}",
                    *shown,
                    f"No longer used as {role} data for this version.",
                    rule="data_removed",
                    dataset_id=dataset_id,
                )
            )
        if before and after:
            changes.extend(_dataset_edits(dataset, parent.created_at))
    return changes, []


# --- 5-6: metrics and subgroup gaps ------------------------------------------------------


def _runs(version: ModelVersion) -> dict[int, list]:
    by_dataset: dict[int, list] = defaultdict(list)
    for run in version.validation_runs.filter(status=RunStatus.SUCCEEDED).select_related("dataset", "version").order_by("-finished_at", "-pk"):
        by_dataset[run.dataset_id].append(run)
    return by_dataset


def _case_table(run):
    """The run's own per-case table, or None (none kept, unreadable, or not matching its sha256)."""
    stored = run.files.filter(kind=RunFileKind.CASE_TABLE).first()
    if stored is None:
        return None
    try:
        with default_storage.open(stored.storage_name, "rb") as handle:
            data = handle.read()
        return CaseTable.from_file(io.BytesIO(data)) if hashlib.sha256(data).hexdigest() == stored.sha256 else None
    except (OSError, BaselineError):
        return None


METRICS = (("auroc", "AUROC"), ("sensitivity", "sensitivity"), ("specificity", "specificity"))


def _headline(run) -> dict[str, dict[str, float | None]]:
    """Per label the overall AUROC, sensitivity and specificity of a run's summary."""
    return {
        label: {m: ((body.get("overall") or {}).get(m) or {}).get("value") for m, _ in METRICS}
        for label, body in ((run.summary or {}).get("labels") or {}).items()
    }


def _report(run) -> RunReport:
    """The run's report, typed (only succeeded runs are compared, and a succeeded run carries one)."""
    return RunReport.from_dict(run.results)


def _run_threshold(run, report: RunReport, label: str) -> float:
    """The threshold the run applied (its report records it), else its version's."""
    result = report.results.get(label)
    recorded = result.threshold if result is not None else None
    return float(recorded if recorded is not None else _thresholds(run.version.output_schema or {}).get(label, DEFAULT_THRESHOLD))


def _paired(dataset, parent_run, child_run, parent_table, child_table, reference: str = "parent") -> list[dict]:
    """Per shared label and metric the paired bootstrap delta. Each score column is centred on
    its run's own threshold, so one call compares each version at its own operating point
    (exact in floating point; AUROC does not move under a shift). ``reference`` names whose run
    ``parent_run`` is: the parent's, or the base's on a task the parent was not evaluated on."""
    parent_report, child_report = _report(parent_run), _report(child_run)
    confidence = child_report.confidence
    shared = int(np.intersect1d(parent_table.patient_keys, child_table.patient_keys).size)
    items = []
    for label in child_table.label_names:
        if label not in parent_table.label_names or label not in parent_table.class_names or label not in child_table.class_names:
            continue
        p, c = parent_table, child_table
        deltas = metric_deltas(
            p.labels[:, p.label_names.index(label)],
            p.scores[:, p.class_names.index(label)] - _run_threshold(parent_run, parent_report, label),
            p.patient_keys,
            c.labels[:, c.label_names.index(label)],
            c.scores[:, c.class_names.index(label)] - _run_threshold(child_run, child_report, label),
            c.patient_keys,
            threshold=0.0,
            n_resamples=child_report.n_resamples,
            seed=child_report.seed,
            confidence=confidence,
        )
        for d in deltas:
            title = dict(METRICS)[d.metric]
            detail = {
                "dataset": dataset.name,
                "dataset_id": dataset.pk,
                "label": label,
                "metric": d.metric,
                "delta": d.delta,
                "ci_low": d.ci_low,
                "ci_high": d.ci_high,
                "p_value": d.p_value,
                "confidence": confidence,
                "parent_run": parent_run.pk,
                "child_run": child_run.pk,
                "n_shared_patients": shared,
                "reference": reference,
            }
            if d.delta is None or d.ci_low is None or d.ci_high is None:
                items.append(
                    _item(
                        "metric",
                        f"{label} {title} on {dataset.name}",
                        d.baseline,
                        d.current,
                        "Undefined in one of the runs (no cases of a class): no interval of the change, so non-inferiority cannot be assessed.",
                        rule="non_inferiority",
                        **detail,
                        significant=False,
                        forgetting=False,
                        unassessed=True,
                    )
                )
                continue
            significant = d.ci_low > 0 or d.ci_high < 0
            forgetting = d.ci_high < -FORGETTING_MARGIN
            figures = f"change {d.delta:+.3f} ({confidence:.0%} CI {d.ci_low:+.3f} to {d.ci_high:+.3f}, p={d.p_value:.3g}, paired over {shared} shared patients)"
            if forgetting:
                why = (
                    f"Significant drop, {figures}, on data the {reference} was evaluated on: the whole interval lies more than "
                    f"{FORGETTING_MARGIN:g} below zero, possible catastrophic forgetting."
                )
            else:
                why = f"{'Significant improvement' if significant else 'No significant change'}, {figures}; the worst change the interval allows is {d.ci_low:+.3f}."
            items.append(
                _item(
                    "metric_drop" if significant and d.delta < 0 else "metric",
                    f"{label} {title} on {dataset.name}",
                    d.baseline,
                    d.current,
                    why,
                    rule="non_inferiority",
                    **detail,
                    significant=significant,
                    forgetting=forgetting,
                    amount=-d.ci_low,  # non-inferiority holds while the interval's lower end stays above minus the margin
                )
            )
    return items


def _gap_key(gap: FairnessGap) -> tuple:
    return gap.kind, gap.attributes, gap.component


def _gaps(dataset, parent_run, child_run) -> list[dict]:
    """Fairness gaps of both runs on the same data, per label, kind and attribute, where they moved."""
    old_results, new_results = (_report(r).results for r in (parent_run, child_run))
    items = []
    for label in sorted(old_results.keys() & new_results.keys()):
        old = {_gap_key(g): g for g in old_results[label].gaps if g.value is not None}
        for gap in new_results[label].gaps:
            before = old.get(_gap_key(gap))
            if before is None or gap.value is None or round(gap.value - before.value, 6) == 0:
                continue
            widening = gap.value - before.value
            kind, attributes, component = _gap_key(gap)
            what = f"{label} {kind}{f' ({component})' if component else ''} by {' x '.join(attributes)} on {dataset.name}"
            low, high = gap.ci_low, gap.ci_high
            interval = f" (this version's interval {low:.3f} to {high:.3f})" if None not in (low, high) else ""
            why = (
                f"The gap widened by {widening:.3f}{interval}: the model serves one group less well than before."
                if widening > 0
                else f"The gap narrowed by {-widening:.3f}{interval}."
            )
            items.append(
                _item(
                    "gap",
                    what,
                    before.value,
                    gap.value,
                    why,
                    rule="gap_widening" if widening > 0 else None,
                    dataset=dataset.name,
                    label=label,
                    parent_run=parent_run.pk,
                    child_run=child_run.pk,
                    parent_ci=[before.ci_low, before.ci_high],
                    child_ci=[gap.ci_low, gap.ci_high],
                    **({"amount": widening} if widening > 0 else {}),
                )
            )
    return items


def _base_tasks(parent: ModelVersion, version: ModelVersion) -> dict[int, list]:
    """The base's succeeded runs by dataset when ``version`` is a recorded adaptation whose base
    (the top of its lineage) is not ``parent``; empty otherwise."""
    if not Adaptation.objects.filter(version=version).exists():
        return {}
    base = lineage_root(version)
    return {} if base.pk in (parent.pk, version.pk) else _runs(base)


def _evaluations(parent: ModelVersion, version: ModelVersion) -> tuple[tuple[list[dict], list[str]], tuple[list[dict], list[str]]]:
    """Sections 5 and 6: each dataset either version was evaluated on, paired where the data are the same.
    For a recorded adaptation the base's tasks count too (forgetting across tasks): a dataset the
    base was evaluated on and the parent was not is compared with the base's run."""
    old, new = _runs(parent), _runs(version)
    reference = dict.fromkeys(old, "parent")
    for dataset_id, runs in _base_tasks(parent, version).items():
        if dataset_id not in old:
            old[dataset_id], reference[dataset_id] = runs, "base"
    metrics, gaps, notes = [], [], []
    datasets = {r.dataset_id: r.dataset for runs in (*old.values(), *new.values()) for r in runs}
    for dataset_id in sorted(datasets, key=lambda k: datasets[k].name):
        dataset, p_runs, c_runs = datasets[dataset_id], old.get(dataset_id, []), new.get(dataset_id, [])
        pair = next(((p, c) for c in c_runs for p in p_runs if c.manifest_sha256 and c.manifest_sha256 == p.manifest_sha256), None)
        if pair is not None:
            tables = _case_table(pair[0]), _case_table(pair[1])
            gaps.extend(_gaps(dataset, *pair))
            if None not in tables:
                metrics.extend(_paired(dataset, *pair, *tables, reference=reference.get(dataset_id, "parent")))
                continue
            notes.append(
                f"{dataset.name}: run {pair[0].pk if tables[0] is None else pair[1].pk} kept no readable per-case table; values shown unpaired."
            )
            metrics.append(
                _item(
                    "unpaired",
                    dataset.name,
                    _headline(pair[0]),
                    _headline(pair[1]),
                    "Same data, but without per-case tables there is no paired interval of the change: non-inferiority cannot be assessed.",
                    rule="non_inferiority",
                    unassessed=True,
                    dataset=dataset.name,
                    dataset_id=dataset_id,
                    parent_run=pair[0].pk,
                    child_run=pair[1].pk,
                )
            )
        elif p_runs and c_runs:
            p, c = p_runs[0], c_runs[0]
            metrics.append(
                _item(
                    "different_data",
                    dataset.name,
                    _headline(p),
                    _headline(c),
                    f"Evaluated on different contents (manifest {p.manifest_sha256[:12]} vs {c.manifest_sha256[:12]}): both values shown unpaired, "
                    "no significance test is possible and forgetting cannot be ruled out.",
                    rule="not_reevaluated",
                    dataset=dataset.name,
                    dataset_id=dataset_id,
                    parent_run=p.pk,
                    child_run=c.pk,
                    reference=reference[dataset_id],
                )
            )
        elif p_runs:
            metrics.append(
                _item(
                    "not_reevaluated",
                    dataset.name,
                    _headline(p_runs[0]),
                    None,
                    f"Not re-evaluated: the {reference[dataset_id]} was evaluated on it, this version was not, so forgetting cannot be ruled out.",
                    rule="not_reevaluated",
                    dataset=dataset.name,
                    dataset_id=dataset_id,
                    parent_run=p_runs[0].pk,
                    reference=reference[dataset_id],
                )
            )
        else:
            metrics.append(
                _item(
                    "new_evaluation",
                    dataset.name,
                    None,
                    _headline(c_runs[0]),
                    "New evidence: the parent was not evaluated on this dataset, so there is nothing to compare with.",
                    dataset=dataset.name,
                    dataset_id=dataset_id,
                    child_run=c_runs[0].pk,
                )
            )
    if not datasets:
        notes.append("Neither version has a succeeded validation run.")
    return (metrics, notes), (gaps, [])


def task_changes(version: ModelVersion) -> list[dict] | None:
    """For a recorded adaptation, the change on each task of its parent and base: the paired AUROC
    items of section 5 and the tasks it was not re-evaluated on (the trust rule ``no_forgetting``
    reads them); None for a version that is not a recorded adaptation."""
    if version.parent is None or not Adaptation.objects.filter(version=version).exists():
        return None
    (metrics, _notes), _gaps = _evaluations(version.parent, version)
    kinds = {"unpaired", "different_data", "not_reevaluated"}
    return [i for i in metrics if i["detail"].get("metric") == "auroc" or i["kind"] in kinds]


# --- 7-8: trust and dossier --------------------------------------------------------------


def _trust(parent: ModelVersion, version: ModelVersion) -> tuple[list[dict], list[str]]:
    old, new = latest_assessment(parent), latest_assessment(version)
    missing = [f"{v} has no trust assessment yet." for v, a in ((parent, old), (version, new)) if a is None]
    if missing:
        return [], missing
    changes = []
    for name in sorted(old.principles.keys() | new.principles.keys()):
        before, after = ({k: (a.principles.get(name) or {}).get(k) for k in ("score", "status")} for a in (old, new))
        if before != after:
            delta = f" ({after['score'] - before['score']:+.1f} points)" if None not in (before["score"], after["score"]) else ""
            changes.append(
                _item(
                    "trust_score",
                    f"FUTURE-AI {name}",
                    before,
                    after,
                    f"The score or status changed{delta}.",
                    parent_assessment=old.pk,
                    child_assessment=new.pk,
                )
            )
    return changes, [f"Assessments {old.pk} (parent) and {new.pk} (this version)."]


def _dossier_values(version: ModelVersion, *, signed_first: bool):
    revisions = version.dossiers.order_by("-revision")
    return (revisions.filter(status=DossierStatus.SIGNED).first() if signed_first else None) or revisions.first()


def _dossier(parent: ModelVersion, version: ModelVersion) -> tuple[list[dict], list[str]]:
    """Officer-written fields: the parent as signed (else its open revision), this version as written now."""
    old, new = _dossier_values(parent, signed_first=True), _dossier_values(version, signed_first=False)
    if old is None or new is None:
        return [], [f"{v} has no dossier yet: its fields cannot be compared." for v, d in ((parent, old), (version, new)) if d is None]
    changes = []
    for key, f in FIELDS.items():
        before, after = (str(d.values.get(key) or "").strip() for d in (old, new))
        if f.editable and before != after:
            purpose = key == PURPOSE_FIELD
            changes.append(
                _item(
                    "dossier_field",
                    f"{f.title} ({key})",
                    before or None,
                    after or None,
                    "The clinical claim defines the intended purpose the conformity assessment covered."
                    if purpose
                    else f"Documentation under {f.article} changed.",
                    rule="intended_purpose" if purpose else "documentation",
                    key=key,
                    article=f.article,
                )
            )
    notes = [f"Parent dossier revision {old.revision} ({old.status}); this version's revision {new.revision} ({new.status})."]
    return changes, notes


# --- Build --------------------------------------------------------------------------------


def change_log_build(version: ModelVersion, *, against: ModelVersion | None = None) -> ChangeLog:
    """The change log of ``version`` against its parent (or ``against``, another version of the
    same model); a first version gets an initial log."""
    now = timezone.now().isoformat()
    if against is not None and against.foundation_model_id != version.foundation_model_id:
        raise ValidationError(
            {
                "against": f"A change log compares versions of one model: {version} is a {version.foundation_model.name} version, "
                f"{against} a {against.foundation_model.name} version."
            }
        )
    if against is not None and against.pk == version.pk:
        raise ValidationError({"against": "Compare a version with another version, not with itself."})
    parent = against if against is not None else version.parent
    if parent is None:
        return ChangeLog(
            version=_identity(version),
            parent=None,
            plan=None,
            generated_at=now,
            classification={"value": "none", "label": "First version: no parent to compare with", "reasons": []},
            conformity=_conformity(version, required=False),
        )
    plan = change_plan_in_force(parent, version)
    metrics, gaps = _evaluations(parent, version)
    found = {
        "artifact": _artifact(parent, version),
        "output_schema": _output_schema(parent, version),
        "preprocessing": _preprocessing(parent, version),
        "data": _data(parent, version),
        "metrics": metrics,
        "subgroup_gaps": gaps,
        "trust": _trust(parent, version),
        "dossier": _dossier(parent, version),
    }
    behaviour = any(found[key][0] for key in BEHAVIOUR)
    if not behaviour:
        found["metrics"][1].append(
            "The model file, its outputs and its preprocessing are unchanged: performance differences are shown, not classified."
        )
    elif not any(i["rule"] == "non_inferiority" for i in found["metrics"][0]):
        found["metrics"][0].append(
            _item(
                "no_paired_evidence",
                "Performance on the same data",
                None,
                None,
                "No run of this version is paired with a run of the parent on the same data: non-inferiority cannot be assessed.",
                rule="non_inferiority",
                unassessed=True,
            )
        )
    sections = [{"key": key, "title": title, "changes": found[key][0], "notes": found[key][1]} for key, title in SECTIONS]
    changed = any(s["changes"] for s in sections if s["key"] in DEFINING)
    classified = (i for s in sections for i in s["changes"] if behaviour or not (i["rule"] in RULES_BY_ID and RULES_BY_ID[i["rule"]].evidence))
    classification = change_classify(classified, plan.rules, changed=changed)
    return ChangeLog(
        version=_identity(version),
        parent=_identity(parent),
        generated_at=now,
        sections=sections,
        classification=classification,
        plan=plan.to_dict(),
        conformity=_conformity(version, required=classification["value"] == ChangeClass.SUBSTANTIAL),
    )


def _conformity(version: ModelVersion, *, required: bool) -> dict:
    """Whether the classification asks for a new conformity assessment, and those recorded for the version."""
    return {
        "required": required,
        "assessments": [
            {
                "route": a.get_route_display(),
                "notified_body": a.notified_body,
                "certificate_reference": a.certificate_reference,
                "assessed_on": a.assessed_on.isoformat(),
                "recorded_by": a.recorded_by.username,
            }
            for a in version.conformity_assessments.select_related("recorded_by")
        ],
    }
