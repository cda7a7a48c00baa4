"""Robustness of a lesion detector to acquisition shift: the FROC's change (CPM and sensitivity at
1 false positive per image) under each perturbation and severity, with a paired patient-level
bootstrap interval, and the worst case; as ``radtrust_engine.robustness`` does for a classifier.

1. A seeded sample of the run's cases (at most the suite's ``sample_max_cases``) is perturbed
   while its input is in memory for the run's own inference (``PerturbedDetections.observe``,
   called by ``detection.match_cases``), so no case is read twice and one case's pixels are held
   at a time. Each perturbation of ``radtrust_engine.perturbations`` that applies to the modality
   runs at severities 1-3 (per-case seeds from the case's position in the run); the detections
   are checked, suppressed and matched to the unmoved ground truth as in the run.
2. Perturbations that move the anatomy (``Perturbation.moves_anatomy``: rotation, translation)
   do not apply: the ground-truth boxes would no longer mark the lesions. They are listed as not
   applicable with that reason.
3. Each condition's CPM and sensitivity are compared with the unperturbed detections of the same
   cases on every resample of one set of patient weights (a paired bootstrap), giving the
   percentile interval of the change. A condition under which a case's output breaks the
   contract fails with its reason; the others go on.

Plain NumPy (no Django); the caller wraps the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radtrust_engine.detection import (
    FP_RATES,
    DetectionCase,
    DetectionConfig,
    DetectionError,
    Lesions,
    MatchedCase,
    detect,
    froc_weighted,
    matched_case,
    patient_order,
)
from radtrust_engine.metrics import finite_or_none, patient_bootstrap_counts
from radtrust_engine.perturbations import SEVERITIES, SEVERITY_LEVELS, PerturbationError, perturb_batch, perturbations_for

RATE = 1.0  # the false-positive rate whose sensitivity is reported beside the CPM (one of ``FP_RATES``)
_CHUNK = 64


@dataclass
class PerturbedDetections:
    """The sampled cases' unperturbed and perturbed matches, collected during the run's inference."""

    forward: Callable[[np.ndarray], Sequence[np.ndarray]]
    n_classes: int
    config: DetectionConfig
    modality: str
    seed: int
    sample: frozenset[str]  # case ids to perturb
    reference: list[MatchedCase] = field(default_factory=list)
    conditions: dict[str, list[MatchedCase]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0  # spent perturbing and detecting, apart from the run's own inference
    forward_passes: int = 0

    def keys(self) -> list[tuple[str, int]]:
        return [(p.name, s) for p in perturbations_for(self.modality) if not p.moves_anatomy for s in SEVERITY_LEVELS]

    def observe(self, case: DetectionCase, pixels: np.ndarray, lesions: Lesions, matched: MatchedCase) -> None:
        """Perturb a sampled case's input under every condition and match the detections (step 1)."""
        if case.case_id not in self.sample:
            return
        started = time.perf_counter()
        position = len(self.reference)
        self.reference.append(matched)
        for name, severity in self.keys():
            key = f"{name}@{severity}"
            if key in self.failed:
                continue
            try:
                perturbed = perturb_batch(pixels.astype(np.float32), name, severity, self.seed, start=position)
                self.forward_passes += 1
                found = detect(perturbed, self.forward, self.n_classes, self.config)
            except (PerturbationError, DetectionError) as exc:
                self.failed[key] = f"sampled case {position + 1}: {exc}"  # not its path: the report leaves the hospital's site
                self.conditions.pop(key, None)
                continue
            self.conditions.setdefault(key, []).append(matched_case(case, found, lesions, self.config))
        self.seconds += time.perf_counter() - started


def _not_applicable(modality: str) -> list[dict[str, str]]:
    return [
        {"perturbation": p.name, "reason": "moves the anatomy, so the ground-truth boxes would no longer mark the lesions"}
        for p in perturbations_for(modality)
        if p.moves_anatomy
    ]


def _summaries(cases: list[MatchedCase], weights: np.ndarray) -> dict[str, np.ndarray]:
    """CPM and sensitivity at ``RATE`` under each row of patient ``weights`` (row 0: the point value)."""
    sensitivity = np.vstack([froc_weighted(cases, weights[s : s + _CHUNK]) for s in range(0, len(weights), _CHUNK)])
    return {"cpm": sensitivity.mean(axis=1), "sensitivity_at_1_fp": sensitivity[:, FP_RATES.index(RATE)]}


def _change(point: float, samples: np.ndarray, base: float, base_samples: np.ndarray, alpha: float) -> dict[str, float | None]:
    diffs = samples - base_samples
    diffs = diffs[np.isfinite(diffs)]
    low, high = np.quantile(diffs, [alpha, 1 - alpha]) if diffs.size else (np.nan, np.nan)
    return {"value": finite_or_none(point), "change": finite_or_none(point - base), "ci_low": finite_or_none(low), "ci_high": finite_or_none(high)}


def detection_robustness_report(collected: PerturbedDetections, *, n_resamples: int, seed: int, confidence: float) -> dict[str, Any]:
    """The CPM and sensitivity changes of every condition with paired intervals (module docstring, step 3)."""
    not_applicable = _not_applicable(collected.modality)
    reference = collected.reference
    if not reference:
        return {"error": "no case was kept for this analysis", "not_applicable": not_applicable}
    n_patients = patient_order(reference).size
    rng = np.random.default_rng(seed)
    weights = np.vstack(
        [np.ones(n_patients)] + [patient_bootstrap_counts(rng, n_patients, min(_CHUNK, n_resamples - s)) for s in range(0, n_resamples, _CHUNK)]
    )
    summaries = {"reference": _summaries(reference, weights)}
    for key, cases in collected.conditions.items():
        summaries[key] = _summaries(cases, weights)
    alpha = (1 - confidence) / 2
    base = summaries["reference"]
    described = []
    for name, severity in collected.keys():
        key = f"{name}@{severity}"
        if key not in summaries:
            continue
        metrics = {m: _change(summaries[key][m][0], summaries[key][m][1:], base[m][0], base[m][1:], alpha) for m in ("cpm", "sensitivity_at_1_fp")}
        scale = SEVERITIES[name]
        described.append(
            {
                "condition": key,
                "perturbation": name,
                "severity": severity,
                "parameter": scale.parameter,
                "setting": scale.at(severity),
                "metrics": metrics,
            }
        )
    drops = [(e["metrics"]["cpm"]["change"], e["condition"]) for e in described if e["metrics"]["cpm"]["change"] is not None]
    worst = min(drops)[1] if drops else None
    return {
        "n_cases": len(reference),
        "n_patients": int(n_patients),
        "metrics": ["cpm", "sensitivity_at_1_fp"],
        "cpm": finite_or_none(base["cpm"][0]),
        "sensitivity_at_1_fp": finite_or_none(base["sensitivity_at_1_fp"][0]),
        "conditions": described,
        "failed": [
            {"condition": k, "perturbation": k.partition("@")[0], "severity": int(k.partition("@")[2]), "error": v}
            for k, v in collected.failed.items()
        ],
        "not_applicable": not_applicable,
        "worst_case": next((e for e in described if e["condition"] == worst), None),
    }
