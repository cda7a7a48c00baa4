"""Robustness of a classifier to acquisition shift: the metric change under each perturbation
and severity, with a paired patient-level bootstrap CI, and the worst case.

1. The preprocessed tensors of a sample of cases are kept from the run's own
   inference (no image is read from disk twice).
2. Each perturbation of ``radtrust_engine.perturbations`` that applies to
   the modality is run at severities 1-3 on those tensors (per-image seeds
   from the case's position, so results do not depend on batch size) and the
   model scores them again, once for all labels (``perturbed_scores``): its
   output holds every label, so each label reads its column, and the forward
   passes do not grow with the number of labels.
3. The change of each metric against the unperturbed scores of the same
   cases is computed on every bootstrap resample with the same patient
   weights for all conditions (a paired bootstrap), giving its percentile CI.
   A condition that fails (NaNs, bad outputs) is reported with its reason;
   the others go on.

Plain NumPy; the caller wraps the model (no Django, no onnxruntime).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from radtrust_engine.metrics import LayoutSet, ScoreLayout, finite_or_none, seeded_bootstrap_chunks
from radtrust_engine.perturbations import SEVERITIES, SEVERITY_LEVELS, PerturbationError, perturb_batch, perturbations_for

ROBUSTNESS_METRICS = ("auroc", "sensitivity", "specificity")


@dataclass(frozen=True)
class MetricChange:
    """A metric under a condition, its change from the unperturbed value, and the change's CI."""

    value: float | None
    change: float | None
    ci_low: float | None
    ci_high: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "change": self.change, "ci_low": self.ci_low, "ci_high": self.ci_high}


def paired_metric_changes(
    y_true: np.ndarray,
    reference: np.ndarray,
    conditions: Mapping[str, np.ndarray],
    patient_id: np.ndarray,
    *,
    threshold: float,
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
    metrics: tuple[str, ...] = ROBUSTNESS_METRICS,
) -> dict[str, dict[str, MetricChange]]:
    """Per condition and metric: the value, its change from ``reference`` scores and a paired bootstrap CI."""
    y = np.asarray(y_true).astype(bool)
    _, patient_index = np.unique(np.asarray(patient_id), return_inverse=True)
    n_patients = int(patient_index.max()) + 1 if patient_index.size else 0

    def layout(scores: np.ndarray) -> ScoreLayout:
        order = np.argsort(scores, kind="stable")
        return ScoreLayout.build(order, scores[order], y[order], threshold)

    layouts = {"reference": layout(np.asarray(reference, dtype=np.float64))}
    layouts.update({name: layout(np.asarray(s, dtype=np.float64)) for name, s in conditions.items()})
    together = LayoutSet.of(list(layouts.values()), [patient_index[lay.positions] for lay in layouts.values()], n_patients)
    every_case = together.metrics(np.ones((1, n_patients)), metrics)  # each case once
    point = {name: {m: every_case[m][0, i] for m in metrics} for i, name in enumerate(layouts)}
    samples: dict[str, dict[str, list[np.ndarray]]] = {name: {m: [] for m in metrics} for name in conditions}
    for counts in seeded_bootstrap_chunks(seed, n_patients, n_resamples, 64):
        values = together.metrics(counts, metrics)  # the reference first, then each condition
        for i, name in enumerate(conditions, start=1):
            for m in metrics:
                samples[name][m].append(values[m][:, i] - values[m][:, 0])
    alpha = (1 - confidence) / 2
    result: dict[str, dict[str, MetricChange]] = {}
    for name in conditions:
        result[name] = {}
        for m in metrics:
            diffs = np.concatenate(samples[name][m]) if samples[name][m] else np.empty(0)
            diffs = diffs[np.isfinite(diffs)]
            low, high = np.quantile(diffs, [alpha, 1 - alpha]) if diffs.size else (np.nan, np.nan)
            result[name][m] = MetricChange(
                value=finite_or_none(point[name][m]),
                change=finite_or_none(point[name][m] - point["reference"][m]),
                ci_low=finite_or_none(low),
                ci_high=finite_or_none(high),
            )
    return result


@dataclass(frozen=True)
class ConditionScores:
    """One perturbation at one severity, scored once for every label: ``scores`` is ``(N, L)``, or
    None with the ``error`` that stopped the condition (it then fails for every label)."""

    perturbation: str
    severity: int
    scores: np.ndarray | None
    error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.perturbation}@{self.severity}"

    def describe(self) -> dict[str, Any]:
        """The condition as the report names it, with the parameter its severity sets."""
        scale = SEVERITIES[self.perturbation]
        return {
            "condition": self.key,
            "perturbation": self.perturbation,
            "severity": self.severity,
            "parameter": scale.parameter,
            "setting": scale.at(self.severity),
        }

    def label_scores(self, label: int) -> np.ndarray:
        """One label's probabilities; ``PerturbationError`` where the condition failed or that label's
        outputs are not finite (a NaN in another label's column leaves this one alone)."""
        if self.scores is None:
            raise PerturbationError(self.error)
        scores = np.ascontiguousarray(self.scores[:, label])
        if not np.isfinite(scores).all():
            raise PerturbationError(f"the model returned NaN or infinite outputs under {self.key}")
        return scores


def perturbed_scores(
    predict: Callable[[np.ndarray], np.ndarray], tensors: np.ndarray, *, modality: str, batch_size: int, seed: int
) -> list[ConditionScores]:
    """Every applicable perturbation at every severity on the kept ``tensors`` (module docstring, step 2).

    ``predict`` maps a batch to the ``(n, L)`` probabilities of every label: the
    model gives all labels from one forward pass, so each perturbed batch runs
    once and every label's report reads its own column.
    """
    conditions: list[ConditionScores] = []
    for perturbation in perturbations_for(modality):
        for severity in SEVERITY_LEVELS:
            try:
                chunks = [
                    predict(perturb_batch(tensors[start : start + batch_size], perturbation.name, severity, seed, start=start))
                    for start in range(0, len(tensors), batch_size)
                ]
                conditions.append(ConditionScores(perturbation.name, severity, np.concatenate(chunks)))
            except (PerturbationError, ValueError) as exc:
                conditions.append(ConditionScores(perturbation.name, severity, None, str(exc)))
    return conditions


def robustness_report(
    conditions: Sequence[ConditionScores],
    label: int,
    y_true: np.ndarray,
    patient_id: np.ndarray,
    reference: np.ndarray,
    *,
    threshold: float,
    n_resamples: int,
    seed: int,
    confidence: float,
) -> dict[str, Any]:
    """One label's metric changes under the scored ``conditions`` (module docstring, step 3).

    ``label`` is the label's column in the conditions' scores; ``reference`` are
    its unperturbed probabilities of the same cases.
    """
    scored: dict[str, np.ndarray] = {}
    failed: list[dict[str, Any]] = []
    described: list[dict[str, Any]] = []
    for condition in conditions:
        try:
            scored[condition.key] = condition.label_scores(label)
        except PerturbationError as exc:
            failed.append({"condition": condition.key, "error": str(exc)})
            continue
        described.append(condition.describe())
    changes = paired_metric_changes(
        y_true,
        reference,
        scored,
        patient_id,
        threshold=threshold,
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
    )
    for entry in described:
        entry["metrics"] = {m: c.to_dict() for m, c in changes[entry["condition"]].items()}
    drops = [(e["metrics"]["auroc"]["change"], e["condition"]) for e in described if e["metrics"]["auroc"]["change"] is not None]
    worst = min(drops) if drops else None
    return {
        "n_cases": int(len(reference)),
        "metrics": list(ROBUSTNESS_METRICS),
        "conditions": described,
        "failed": failed,
        "worst_case": None if worst is None else next(e for e in described if e["condition"] == worst[1]),
    }
