"""Label quality: a fairness or robustness verdict resting on labels the readers disagree about says so.

A gap between groups, or a drop under perturbation, measured against labels with a between-reader
kappa below ``LOW_AGREEMENT_KAPPA`` (0.6, docs/methods.md, reader variability) may reflect the
readers as much as the model. The criterion keeps its value; its explanation and inputs name the
labels and their kappa, so the officer reading the verdict knows what it rests on. Only criteria
that link a run are touched: a dossier or datasheet criterion rests on no labels. No Django import."""

from __future__ import annotations

from dataclasses import replace

from compliance.trust.evidence import RunEvidence, VersionEvidence
from compliance.trust.rule_kit import Outcome
from radtrust_engine.readers import LOW_AGREEMENT_KAPPA

LABEL_DEPENDENT_PRINCIPLES = frozenset({"fairness", "robustness"})


def low_agreement_labels(runs: tuple[RunEvidence, ...] | list[RunEvidence]) -> dict[str, dict]:
    """``{label: reader section}`` of the labels whose readers agree below the threshold in ``runs``
    (the lowest kappa where several runs have the label)."""
    found: dict[str, dict] = {}
    for run in runs:
        for label, section in (run.report.readers or {}).items():
            value = (section.get("kappa") or {}).get("value")
            if value is None or value >= LOW_AGREEMENT_KAPPA:
                continue
            if label not in found or value < found[label]["kappa"]["value"]:
                found[label] = section
    return found


def low_agreement_caveat(found: dict[str, dict]) -> str:
    """The sentence added to a verdict resting on the labels ``found``."""
    parts = []
    for label, section in sorted(found.items()):
        kappa = section["kappa"]
        interval = f", CI {kappa['low']:.2f} to {kappa['high']:.2f}" if kappa.get("low") is not None and kappa.get("high") is not None else ""
        parts.append(f"{label} ({section.get('statistic', 'kappa')} {kappa['value']:.2f}{interval})")
    return f" The readers of {', '.join(parts)} agree below kappa {LOW_AGREEMENT_KAPPA}: this verdict rests on labels the readers themselves disagree about."


def with_label_caveat(outcome: Outcome, evidence: VersionEvidence) -> Outcome:
    """``outcome`` with the caveat added when it has a value and links a run whose labels the
    readers agree on below the threshold; unchanged otherwise."""
    if outcome.value is None:
        return outcome
    linked = {link.id for link in outcome.links if link.type == "run"}
    found = low_agreement_labels([run for run in evidence.runs if run.id in linked])
    if not found:
        return outcome
    return replace(
        outcome,
        explanation=outcome.explanation + low_agreement_caveat(found),
        inputs={**outcome.inputs, "low_reader_agreement": sorted(found)},
    )
