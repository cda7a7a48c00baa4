"""The evidence of a frozen dossier snapshot as print elements: small tables, figures and text
that the document templates lay out without knowing the evidence's shape.

Each source named in ``compliance.dossier_fields.EVIDENCE_SOURCES`` has one formatter here that
picks what a reader of the technical documentation needs (metrics with their confidence
intervals, subgroup and robustness tables, the charts the snapshot references) instead of
dumping the data. Plain values only: the templates escape every string.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from compliance.change_log_text import EFFECT_WORDS, conformity_text, plan_text, rule_texts, rule_title
from compliance.change_rules import value_text
from core.readable import date, metric, number, percent, title
from core.readable import words as _text
from radtrust_engine.disclosure import SUPPRESSION_REASONS
from radtrust_engine.stratification import suppressed_count_text
from registry.choices import MdrClass, Modality, ProvenanceRole, RiskClass, Task
from validation.task_tables import detection_section, reader_section, volume_section

METRICS = ("auroc", "auprc", "sensitivity", "specificity", "ppv", "npv", "f1", "fnr", "fpr", "dice", "iou")
SUBGROUP_METRICS = ("auroc", "sensitivity", "specificity")
# What a run is for its version (compliance.release_evidence.run_role).
RUN_ROLES = {
    "declared": "Declared performance (pinned release evidence)",
    "test": "Test data, not declared",
    "post_market": "Post-market evidence",
}
# Which charts of a cited run each evidence block embeds, by file-name prefix (validation.charts.report_charts).
CHART_PREFIXES: dict[str, tuple[str, ...]] = {
    "subgroup_performance": ("charts/forest-",),
    "robustness": ("charts/robustness-",),
    "calibration_uncertainty": ("charts/reliability-",),
    "detection_volumes": ("charts/froc", "charts/reliability-detection"),
}


@dataclass(frozen=True)
class Pairs:
    caption: str
    rows: list[tuple[str, str]]
    kind: str = "pairs"


@dataclass(frozen=True)
class Table:
    caption: str
    head: list[str]
    rows: list[list[str]]
    kind: str = "table"


@dataclass(frozen=True)
class Figure:
    caption: str
    alt: str
    src: str
    note: str = ""
    kind: str = "figure"


@dataclass(frozen=True)
class Text:
    text: str
    muted: bool = False
    kind: str = "text"


Element = Pairs | Table | Figure | Text


@dataclass
class Attachments:
    """What the formatters need beside the evidence: chart bytes by (run, name), verified, and the radar.
    ``plain`` is for readers at the bedside (the instructions for use): figures name their run, not their hash."""

    charts: list[dict] = field(default_factory=list)
    data: dict[tuple[int, str], bytes] = field(default_factory=dict)
    trust_radar: str | None = None
    plain: bool = False

    def figures(self, source: str) -> list[Figure]:
        return [
            Figure(
                caption=c["title"] or c["name"],
                alt=c["alt"],
                src=svg_data_uri(self.data[(c["run"], c["name"])]),
                note=f"Validation run {c['run']}" if self.plain else f"Run {c['run']}, {c['name']}, sha256 {c['sha256']}",
            )
            for c in self.charts
            if c.get("source") == source and (c["run"], c["name"]) in self.data
        ]


def svg_data_uri(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def _tensors(specs: list | None) -> str:
    return "; ".join(f"{s.get('name')} {s.get('dtype')} [{', '.join(map(str, s.get('shape') or []))}]" for s in specs or []) or "—"


def _model_description(data: dict, _: Attachments) -> list[Element]:
    keys = (
        ("name", "Name"),
        ("provider", "Provider"),
        ("intended_purpose", "Intended purpose"),
        ("intended_users", "Intended users"),
        ("instructions_for_use", "Instructions for use"),
        ("known_limitations", "Known limitations"),
        ("body_region", "Body region"),
        ("modality", "Modality"),
        ("task", "Task"),
        ("risk_class", "AI Act risk class"),
        ("mdr_class", "MDR class"),
        ("licence", "Licence"),
        ("general_purpose", "Offered as a general-purpose AI model"),
    )
    choices = {"risk_class": RiskClass, "mdr_class": MdrClass, "modality": Modality, "task": Task}
    rows = []
    for key, label in keys:
        if key in data:
            value = data[key]
            known = choices.get(key)
            rows.append((label, known(value).label if known is not None and value in known.values else _text(value)))
    return [Pairs("The foundation model as registered", rows)]


def _version_identity(data: dict, _: Attachments) -> list[Element]:
    schema = data.get("output_schema") or {}
    thresholds = ", ".join(f"{k}: {number(v)}" for k, v in (schema.get("thresholds") or {}).items())
    return [
        Pairs(
            "The version as registered",
            [
                ("Version", _text(data.get("version"))),
                ("Artifact sha256", _text(data.get("artifact_sha256"))),
                ("ONNX opset", _text(data.get("opset"))),
                ("Parameters", _text(data.get("parameters"))),
                ("Inputs", _tensors(data.get("inputs"))),
                ("Outputs", _tensors(data.get("outputs"))),
                ("Classes", ", ".join(schema.get("class_names") or []) or "—"),
                ("Operating thresholds", thresholds or "—"),
                ("Output activation", _text(schema.get("activation"))),
                ("Preprocessing", _text(data.get("preprocessing"))),
                ("Earlier versions", " ← ".join(data.get("lineage") or []) or "none: a first version"),
                ("Status at submission", _text(data.get("status"))),
            ],
        )
    ]


def _role(role: str) -> str:
    return ProvenanceRole(role).label if role in ProvenanceRole.values else role


def provenance_table(rows: list[dict], caption: str) -> Table:
    return Table(
        caption,
        ["Dataset", "Role", "Steward", "Datasheet complete", "Known limitations"],
        [[r["dataset"], _role(r["role"]), r["steward"], percent(r.get("datasheet_completeness")), r.get("known_limitations") or "—"] for r in rows],
    )


def _provenance(data: list, _: Attachments) -> list[Element]:
    return [provenance_table(data, "Datasets linked to this version"), *data_use_tables(data)]


def data_use_tables(rows: list[dict]) -> list[Table]:
    """The data-use agreements under which another institution's datasets were used (none for a
    snapshot frozen before grants were recorded)."""
    grants = [[r["dataset"], r["steward"], g] for r in rows for g in r.get("data_use") or []]
    return [Table("Data-use agreements", ["Dataset", "Steward", "Agreement, purpose and period"], grants)] if grants else []


def _overall_table(caption: str, labels: Mapping[str, Any]) -> Table:
    """Metrics down, labels across: one label with nine metrics reads better than nine columns."""
    present = [m for m in METRICS if any(m in ((summary or {}).get("overall") or {}) for summary in labels.values())]
    return Table(
        caption,
        ["Metric (95% CI)", *labels],
        [[title(m), *(metric(((summary or {}).get("overall") or {}).get(m)) for summary in labels.values())] for m in present],
    )


def _validation_runs(data: list, _: Attachments) -> list[Element]:
    elements: list[Element] = []
    for run in data:
        summary = run.get("summary") or {}
        labels = summary.get("labels") or {}
        elements.append(
            Pairs(
                f"Run {run['run']}: {run['dataset']}",
                [
                    *([("Evidence", RUN_ROLES.get(run["role"], run["role"]))] if run.get("role") else []),
                    ("Finished", date(run.get("finished_at"))),
                    ("Cases evaluated", _text(summary.get("n_evaluated"))),
                    ("Cases skipped", _text(summary.get("n_skipped"))),
                    ("Artifact sha256", _text(run.get("artifact_sha256"))),
                    ("Manifest sha256", _text(run.get("manifest_sha256"))),
                ],
            )
        )
        if labels:
            elements.append(_overall_table(f"Run {run['run']}: overall performance", labels))
        gaps = [(label, name, gap) for label, s in labels.items() for name, gap in ((s or {}).get("largest_gaps") or {}).items() if gap]
        if gaps:
            elements.append(
                Table(
                    f"Run {run['run']}: largest subgroup gaps",
                    ["Label", "Gap", "Grouping", "Value (95% CI)"],
                    [[label, title(name), _text(gap.get("grouping")), metric(gap)] for label, name, gap in gaps],
                )
            )
    return elements


def _from_run(data: dict) -> Text:
    if data.get("declared"):
        return Text(f"From validation run {data['run']} on {data['dataset']}, part of the declared release evidence.")
    if data.get("declared") is False:
        return Text(f"From validation run {data['run']} on {data['dataset']}: no release evidence was pinned, so these figures are not declared.")
    return Text(f"From validation run {data['run']} on {data['dataset']}.")


def operating_point_text(label: str, threshold: Any) -> str:
    if not isinstance(threshold, (int, float)):
        return f"{label}: no threshold (segmentation)"
    return f"{label}: a score of {number(float(threshold))} or more is flagged as positive"


def _declared_performance(data: dict, _: Attachments) -> list[Element]:
    """The pinned release evidence: population, operating point, and each run's overall figures."""
    runs = data.get("runs") or []
    elements: list[Element] = [
        Pairs(
            "Declared performance",
            [
                ("Intended population", _text(data.get("population"))),
                ("Operating threshold", "; ".join(operating_point_text(k, v) for k, v in (data.get("operating_points") or {}).items()) or "—"),
                (
                    "Release evidence",
                    "; ".join(f"validation run {r['run']} on {r['dataset']} ({date(r.get('finished_at'))[:10]})" for r in runs) or "—",
                ),
                ("Pinned by", f"{data.get('pinned_by') or '—'} on {date(data.get('pinned_at'))[:10]}"),
            ],
        )
    ]
    for run in runs:
        labels = run.get("labels") or {}
        patients = f"{number(run.get('n_patients'))} patients, " if run.get("n_patients") is not None else ""
        elements.append(_overall_table(f"Declared performance on {run['dataset']} ({patients}run {run['run']})", labels))
    return elements


def _post_market_runs(data: list, _: Attachments) -> list[Element]:
    """Monitoring runs, each with why it is not release evidence; never presented as the declared performance."""
    elements: list[Element] = [
        Text("These runs are post-market evidence: they watch the version in use and are never its declared performance.", muted=True)
    ]
    for run in data:
        labels = (run.get("summary") or {}).get("labels") or {}
        caption = f"Run {run['run']} on {run['dataset']}, {date(run.get('finished_at'))[:10]}: {run.get('why') or 'post-market'}"
        elements.append(_overall_table(caption, labels) if labels else Text(caption))
    return elements


def _subgroup_performance(data: dict, attachments: Attachments) -> list[Element]:
    elements: list[Element] = [_from_run(data)]
    for label, section in data["labels"].items():
        rows = []
        for s in section.get("subgroups") or []:
            if s.get("suppressed"):  # never its count, even where an older snapshot kept one
                rows.append(
                    [s["name"], suppressed_count_text(s.get("reason"), section.get("min_patients")), *[_suppressed(s)] * len(SUBGROUP_METRICS)]
                )
            else:
                rows.append([s["name"], number(s.get("n_patients")), *(metric((s.get("metrics") or {}).get(m)) for m in SUBGROUP_METRICS)])
        elements.append(
            Table(f"Performance by subgroup: {label}", ["Subgroup", "Patients", *(f"{title(m)} (95% CI)" for m in SUBGROUP_METRICS)], rows)
        )
        gaps = section.get("gaps") or []
        if gaps:
            elements.append(
                Table(
                    f"Fairness gaps: {label}",
                    ["Gap", "Grouping", "Higher", "Lower", "Value (95% CI)"],
                    [
                        [
                            title(g.get("kind", "")) + (f" ({g['component']})" if g.get("component") else ""),
                            _text(g.get("grouping")),
                            ", ".join(g.get("group_high") or []) or "—",
                            ", ".join(g.get("group_low") or []) or "—",
                            metric(g),
                        ]
                        for g in gaps
                    ],
                )
            )
    return [*elements, *attachments.figures("subgroup_performance")]


def _suppressed(group: Mapping[str, Any]) -> str:
    """Why a subgroup's figures are not shown."""
    reason = group.get("reason")
    if reason == "complementary":
        return "withheld: would reveal a smaller group"
    if reason in ("too_few_positive_patients", "too_few_negative_patients"):
        return f"suppressed: {SUPPRESSION_REASONS[reason]}"
    return "suppressed: too few patients"


def _robustness(data: dict, attachments: Attachments) -> list[Element]:
    elements: list[Element] = [_from_run(data)]
    for label, section in data["labels"].items():
        worst = section.get("worst_case")
        if worst:
            changes = [
                (
                    title(name),
                    f"{number(m.get('value'))} (change {number(m.get('change'))}, 95% CI {number(m.get('ci_low'))} to {number(m.get('ci_high'))})",
                )
                for name, m in (worst.get("metrics") or {}).items()
            ]
            elements.append(
                Pairs(
                    f"Worst case under image perturbation: {label}",
                    [
                        ("Condition", _text(worst.get("condition"))),
                        ("Perturbation", _text(worst.get("perturbation"))),
                        ("Severity", _text(worst.get("severity"))),
                        ("Setting", f"{_text(worst.get('setting'))} ({_text(worst.get('parameter'))})"),
                        *changes,
                    ],
                )
            )
        generalisation = section.get("generalisation") or {}
        for grouping, part in (generalisation.get("groupings") or {}).items():
            elements.append(
                Table(
                    f"Generalisation across {grouping}: {label} (pooled AUROC {metric((generalisation.get('pooled') or {}).get('auroc'))})",
                    ["Group", "Cases", "Patients", "AUROC (95% CI)", "Difference from pooled", "AUROC without this group"],
                    [
                        [g["group"], *[suppressed_count_text(g.get("reason"), generalisation.get("min_patients"))] * 2, _suppressed(g), "—", "—"]
                        if g.get("suppressed")
                        else [
                            g["group"],
                            number(g.get("n_cases")),
                            number(g.get("n_patients")),
                            metric(g.get("auroc")),
                            number(g.get("difference_from_pooled")),
                            metric((g.get("leave_one_out") or {}).get("auroc")),
                        ]
                        for g in part.get("groups") or []
                    ],
                )
            )
        for missing in generalisation.get("not_evaluated") or []:
            elements.append(Text(f"Not evaluated across {missing.get('grouping')}: {missing.get('reason')}.", muted=True))
    return [*elements, *attachments.figures("robustness")]


def _calibration_uncertainty(data: dict, attachments: Attachments) -> list[Element]:
    elements: list[Element] = [_from_run(data)]
    for label, section in data["labels"].items():
        calibration, uncertainty = section.get("calibration") or {}, section.get("uncertainty") or {}
        referral = uncertainty.get("referral") or {}
        elements.append(
            Pairs(
                f"Calibration and uncertainty: {label}",
                [
                    ("Expected calibration error (95% CI)", metric(calibration.get("ece"))),
                    ("Brier score (95% CI)", metric(calibration.get("brier"))),
                    ("Bins", f"{_text(calibration.get('n_bins'))} ({_text(calibration.get('strategy'))})"),
                    ("Referral", _text(referral.get("message"))),
                    ("Cases flagged as uncertain", f"{_text(uncertainty.get('n_flagged'))} of {_text(uncertainty.get('n_cases'))}"),
                    ("Uncertainty measure", _text(uncertainty.get("measure"))),
                ],
            )
        )
    return [*elements, *attachments.figures("calibration_uncertainty")]


def _detection_volumes(data: dict, attachments: Attachments) -> list[Element]:
    """The run page's detection, volume and reader tables (``validation.task_tables``), as print elements."""
    elements: list[Element] = [_from_run(data)]
    for section in (detection_section(data), volume_section(data), reader_section(data)):
        if section is None:
            continue
        elements += [Text(note) for note in section.notes]
        elements += [Table(f"{section.title}: {t.caption}", t.head, t.rows) for t in section.tables]
    if data.get("skipped"):
        elements.append(Text(f"{number(data['skipped'])} cases were left out of the run, each with its reason in the run's report.", muted=True))
    return [*elements, *attachments.figures("detection_volumes")]


def _faithfulness_table(title: str, methods: dict) -> Table:
    return Table(
        title,
        ["Method", "Deletion AUC", "Insertion AUC", "Deletion minus random (95% CI)", "Insertion minus random (95% CI)", "Verdict"],
        [
            [
                name,
                number(m.get("deletion_auc")),
                number(m.get("insertion_auc")),
                metric(m.get("deletion_difference")),
                metric(m.get("insertion_difference")),
                _text(m.get("verdict")),
            ]
            for name, m in methods.items()
        ],
    )


def _explainability(data: dict, _: Attachments) -> list[Element]:
    """The verdict over all explained cases first (``pooled``, the same in every label's section: the
    labels share one set of cases), then each label's own share of them."""
    elements: list[Element] = [_from_run(data)]
    pooled = next((p for section in data["labels"].values() if (p := section.get("pooled") or {}).get("methods")), None)
    if pooled is not None and len(data["labels"]) > 1:
        title = f"Saliency faithfulness on all {number(pooled.get('n_cases'))} explained cases, shared by the labels (the verdict that counts)"
        elements.append(_faithfulness_table(title, pooled["methods"]))
    for label, section in data["labels"].items():
        elements.append(
            _faithfulness_table(f"Saliency faithfulness on {number(section.get('n_cases'))} cases: {label}", section.get("methods") or {})
        )
        baseline = section.get("random_baseline") or {}
        elements.append(
            Text(
                f"Random baseline: deletion AUC {number(baseline.get('deletion_auc'))}, insertion AUC {number(baseline.get('insertion_auc'))} "
                f"({_text(baseline.get('map'))}). {section.get('interpretation') or ''}".strip(),
                muted=True,
            )
        )
    return elements


def _trust_scores(data: dict, attachments: Attachments) -> list[Element]:
    elements: list[Element] = [
        Text(f"Assessment {data['assessment']} under scoring policy {data['policy']}, computed {date(data.get('computed_at'))}."),
        Table(
            "FUTURE-AI trust scores",
            ["Principle", "Score", "Status", "Evidence strength", "Summary"],
            [
                [
                    name.capitalize(),
                    number(p.get("score")),
                    _text(p.get("status")).replace("_", " "),
                    _text(p.get("strength")),
                    _text(p.get("summary")),
                ]
                for name, p in data["principles"].items()
            ],
        ),
    ]
    if attachments.trust_radar:
        elements.append(
            Figure(
                "Trust scores per principle",
                "Radar chart of the six FUTURE-AI principle scores listed in the table above.",
                svg_data_uri(attachments.trust_radar.encode()),
            )
        )
    return elements


def _deployments(data: list, _: Attachments) -> list[Element]:
    return [
        Table(
            "Deployments at submission",
            ["Institution", "Status", "Since", "Revalidation every (days)", "Revalidation state"],
            [
                [d["institution"], d["status"], date(d.get("since")), _text(d.get("revalidation_cadence_days")), _text(d.get("revalidation_state"))]
                for d in data
            ],
        )
    ]


def _post_market_feedback(data: dict, _: Attachments) -> list[Element]:
    feedback = data.get("feedback") or {}
    return [
        Pairs(
            "Post-market feedback at submission",
            [
                ("Clinician reports", _text(feedback.get("n"))),
                ("Disagreements", _text(feedback.get("disagree"))),
                ("Partial agreements", _text(feedback.get("partly"))),
                ("Open monitoring alerts", _text(data.get("open_alerts"))),
            ],
        )
    ]


def _incidents(data: list, _: Attachments) -> list[Element]:
    if not data:
        return [Text("No incidents were recorded for this version at submission.")]
    return [
        Table(
            "Incidents at submission",
            ["Incident", "Title", "Type", "Legal basis", "Deadline", "Status", "Reported on"],
            [
                [
                    str(i["incident"]),
                    i["title"],
                    i["type"],
                    i["legal_basis"] or "—",
                    i["deadline"] or "none due",
                    i["status"],
                    i.get("reported_on") or "—",
                ]
                for i in data
            ],
        )
    ]


def _audit(data: dict, _: Attachments) -> list[Element]:
    return [
        Pairs(
            "Audit trail at submission",
            [
                ("Hash chain intact", _text(data.get("chain_intact"))),
                ("Events checked", _text(data.get("events_checked"))),
                ("Broken at event", _text(data.get("broken_at"))),
                ("Reason", _text(data.get("reason"))),
            ],
        )
    ]


def _change_log(data: dict, _: Attachments) -> list[Element]:
    """The log of ``compliance.change_log``: the classification, the plan in force and what it asks
    for, why (each rule with its evidence), then each section's changes, in the log's own words."""
    parent, plan, classification = data.get("parent") or {}, data.get("plan") or {}, data.get("classification") or {}
    elements: list[Element] = [
        Pairs(
            "Classification",
            [
                (
                    "Against parent",
                    f"{parent.get('label', '—')} (artifact sha256 {parent.get('artifact_sha256') or '—'})" if parent else "none: a first version",
                ),
                ("Classification", _text(classification.get("label"))),
                ("Change plan", plan_text(plan)),
                ("Conformity assessment", conformity_text(data)),
                ("Generated", date(data.get("generated_at"))),
            ],
        )
    ]
    if plan.get("rules"):
        elements.append(Text("Rules applied: " + "; ".join(rule_texts(plan["rules"])) + ".", muted=True))
    reasons = classification.get("reasons") or []
    if reasons:
        elements.append(
            Table(
                "Why",
                ["Effect", "Rule", "Reason", "Evidence"],
                [
                    [
                        EFFECT_WORDS.get(r.get("effect"), _text(r.get("effect"))),
                        _text(r.get("title") or r.get("rule")),
                        _text(r.get("text")),
                        "; ".join(r.get("evidence") or []) or "—",
                    ]
                    for r in reasons
                ],
            )
        )
    for section in data.get("sections") or []:
        notes = " ".join(section.get("notes") or [])
        if not section.get("changes"):
            elements.append(Text(f"{section.get('title')}: no change. {notes}".strip(), muted=True))
            continue
        elements.append(
            Table(
                section.get("title") or "Changes",
                ["What", "Before", "After", "Why it matters", "Rule"],
                [
                    [
                        _text(i.get("what")),
                        value_text(i.get("before"), 160),
                        value_text(i.get("after"), 160),
                        _text(i.get("why")),
                        rule_title(i.get("rule")),
                    ]
                    for i in section["changes"]
                ],
            )
        )
        if notes:
            elements.append(Text(notes, muted=True))
    return elements


def _risk_file(data: dict, _: Attachments) -> list[Element]:
    """The risk table of Annex IV 5: each hazard from its harm to its residual risk, controls with their verification."""
    approved = f", approved by {data['approved_by']} on {date(data['approved_at'])}" if data.get("approved_by") else ""
    carried = f" Carried forward from the risk file of {data['carried_from']}." if data.get("carried_from") else ""
    elements: list[Element] = [Text(f"Risk management file: {data['status'].lower()}{approved}.{carried}")]
    rows = [
        [
            f"H{h['number']}",
            h["hazard"],
            h["situation"],
            h["harm"],
            h["initial"],
            "; ".join(f"{c['description']} ({c['kind'].lower()}; verified by: {c['verification']})" for c in h["controls"]) or "none",
            h["residual"],
            h["state"],
        ]
        for h in data["hazards"]
    ]
    head = ["", "Hazard", "Hazardous situation", "Harm", "Risk before control", "Controls and their verification", "Residual risk", "Status"]
    elements.append(Table("Risk table (ISO 14971:2019; AI Act Art. 9)", head, rows) if rows else Text("The file lists no hazard."))
    signals = [f"H{h['number']}: {s}" for h in data["hazards"] for s in h["signals"]]
    if signals:
        elements.append(Table("Post-market signals linked to hazards (Art. 9(2)(c))", ["Signal"], [[s] for s in signals]))
    elements.append(Pairs("Overall residual risk", [("Benefit-risk conclusion", data.get("benefit_risk") or "not written")]))
    return elements


def residual_risk_elements(data: dict | None) -> list[Element]:
    """The residual risks as the instructions for use tell them to deployers (Art. 13(3)(b)(iii); MDR Annex I 23.4(g))."""
    if not data or not data.get("hazards"):
        return [Text("No residual risk was recorded in the risk management file when the dossier was submitted.", muted=True)]
    rows = [[h["harm"], h["residual"], "; ".join(c["description"] for c in h["controls"]) or "none"] for h in data["hazards"]]
    return [Table("Residual risks after the risk controls", ["Harm", "Residual risk", "What reduces it"], rows)]


def _inherited_items(data: list, _: Attachments) -> list[Element]:
    """An adaptation's numbered inheritance from its base, which field 5_inherited_items_addressed answers item by item."""
    rows = [[str(i["number"]), i["source"], i["item"]] for i in data]
    return [Table("Risks and weaknesses inherited from the base", ["Item", "From", "What"], rows)]


def _qms_register(data: dict, _: Attachments) -> list[Element]:
    elements: list[Element] = []
    standards = [
        [s["reference"], s["edition"], s["title"], s["harmonised"] + (f" ({s['published']})" if s["published"] else "")] for s in data["standards"]
    ]
    if standards:
        elements.append(Table("Standards applied (Art. 17(1)(e))", ["Standard", "Edition", "Title", "Status"], standards))
    procedures = [
        [
            p["reference"],
            p["title"],
            p["owner"],
            "; ".join(p["articles"]),
            date(p["reviewed_on"]),
            date(p["next_review"]) + (" (overdue)" if p["overdue"] else ""),
        ]
        for p in data["procedures"]
    ]
    if procedures:
        head = ["Procedure", "Title", "Owner", "Art. 17(1)", "Last reviewed", "Next review"]
        elements.append(Table("Quality management procedures (Art. 17(1))", head, procedures))
    if data.get("uncovered"):
        elements.append(Text("No procedure is registered for: " + "; ".join(data["uncovered"]) + "."))
    return elements or [Text("The quality management register is empty.", muted=True)]


FORMATTERS: dict[str, Callable[[Any, Attachments], list[Element]]] = {
    "model_description": _model_description,
    "version_identity": _version_identity,
    "provenance": _provenance,
    "validation_runs": _validation_runs,
    "subgroup_performance": _subgroup_performance,
    "robustness": _robustness,
    "detection_volumes": _detection_volumes,
    "calibration_uncertainty": _calibration_uncertainty,
    "explainability": _explainability,
    "trust_scores": _trust_scores,
    "deployments": _deployments,
    "post_market_feedback": _post_market_feedback,
    "incidents": _incidents,
    "change_log": _change_log,
    "declared_performance": _declared_performance,
    "post_market_runs": _post_market_runs,
    "audit": _audit,
    "risk_file": _risk_file,
    "qms_register": _qms_register,
    "inherited_items": _inherited_items,
}
NO_DECLARED_PERFORMANCE = "No declared performance yet: no release evidence was pinned for this version."


def evidence_elements(source: str, data: Any, attachments: Attachments) -> list[Element]:
    """What the document shows for one evidence source's frozen data."""
    if source == "declared_performance" and not data:
        return [Text(NO_DECLARED_PERFORMANCE)]
    if data in (None, {}, []) and source != "incidents":
        return [Text("No such evidence was recorded when the dossier was submitted.", muted=True)]
    return FORMATTERS[source](data, attachments)
