"""Scoring policies: which criteria make up each FUTURE-AI principle, with their rule, weight,
params and whether they are required; and the check every stored policy passes.

A policy is JSON so it can be stored, versioned and shown as it was: a new version never
rewrites an assessment made under an older one. ``validate_policy`` refuses anything a
rule could not honour (unknown rule or param, param out of its declared range, weights not
summing to 1) with a message naming the principle and criterion.
"""

from __future__ import annotations

import math
from typing import Any

from compliance.trust.rules import RULES, Rule

__all__ = ["DEFAULT_POLICY", "PRINCIPLES", "RULES", "PolicyError", "Rule", "rule_params", "validate_policy"]

PRINCIPLES = ("fairness", "universality", "traceability", "usability", "robustness", "explainability")
WEIGHT_TOLERANCE = 0.001
_CRITERION_KEYS = {"key", "rule", "weight", "required", "params", "title", "recommendation"}


class PolicyError(ValueError):
    """A policy definition that cannot be used; the message says what to fix."""


def _c(
    key: str, weight: float, title: str, recommendation: str, *, required: bool = False, rule: str | None = None, **params: float
) -> dict[str, Any]:
    return {
        "key": key,
        "rule": rule or key,
        "weight": weight,
        "required": required,
        "params": params,
        "title": title,
        "recommendation": recommendation,
    }


DEFAULT_POLICY: dict[str, Any] = {
    # Version 2 added no_forgetting to robustness, the other robustness weights scaled by 0.85 so
    # that a version without the criterion scores as under version 1. A stored, active version 1
    # stays in force until two officers adopt a new one (compliance.trust.services, step 4).
    "version": 2,
    "name": "FUTURE-AI default",
    "principles": {
        "fairness": {
            "minimum": 50,
            "criteria": [
                _c("demographic_completeness", 0.05, "Attributes collected (sex, age, ethnicity)", "FUTURE-AI Fairness 2"),
                _c("subgroup_coverage", 0.20, "Subgroup evaluation for each collected attribute", "FUTURE-AI Fairness 3", required=True),
                _c("largest_auroc_gap", 0.25, "Largest subgroup AUROC gap", "FUTURE-AI Fairness 3", required=True, threshold=0.05),
                _c("largest_fnr_gap", 0.20, "Underdiagnosis (false-negative-rate) gap", "FUTURE-AI Fairness 3", threshold=0.10),
                _c("equalized_odds_difference", 0.20, "Equalized-odds difference", "FUTURE-AI Fairness 3", threshold=0.10),
                _c("bias_sources", 0.10, "Sources of bias identified (dossier and datasheets)", "FUTURE-AI Fairness 1"),
            ],
        },
        "universality": {
            "minimum": 50,
            "criteria": [
                _c("clinical_settings", 0.15, "Clinical settings defined", "FUTURE-AI Universality 1", required=True),
                _c("community_standards", 0.10, "Community standards used (ONNX, DICOM, structured findings)", "FUTURE-AI Universality 2"),
                _c("external_sites", 0.20, "External sites evaluated", "FUTURE-AI Universality 3", required=True, target_sites=3),
                _c("scanner_vendors", 0.10, "Scanner vendors evaluated", "FUTURE-AI Universality 3", target_vendors=2),
                _c("site_auroc_gap", 0.10, "AUROC spread across sites", "FUTURE-AI Universality 3", threshold=0.05),
                _c(
                    "site_heterogeneity",
                    0.15,
                    "Between-site heterogeneity of AUROC (federated meta-analysis)",
                    "FUTURE-AI Universality 3",
                    min_auroc=0.7,
                    max_i2=0.5,
                ),
                _c("local_validation", 0.20, "Local validation before go-live at every deployment site", "FUTURE-AI Universality 4"),
            ],
        },
        "traceability": {
            "minimum": 50,
            "criteria": [
                _c("datasheet_completeness", 0.15, "Datasheet completeness", "FUTURE-AI Traceability 2", required=True),
                _c("dossier_completeness", 0.10, "Technical dossier completeness", "FUTURE-AI Traceability 2"),
                _c("artifact_verified", 0.10, "Artifact hash verified by the runs", "FUTURE-AI Traceability 2", required=True),
                _c("outputs_computed_here", 0.05, "Outputs computed by RadTrust from the verified artifact", "FUTURE-AI Traceability 2"),
                _c("lineage_complete", 0.10, "Lineage with training provenance", "FUTURE-AI Traceability 2"),
                _c(
                    "human_oversight",
                    0.15,
                    "Human oversight and governance (oversight documented, clinicians assigned, override documented and used)",
                    "FUTURE-AI Traceability 6",
                ),
                _c(
                    "quality_control",
                    0.15,
                    "Input and output quality control (uncertainty, out-of-distribution, calibration)",
                    "FUTURE-AI Traceability 3",
                ),
                _c("revalidation_on_schedule", 0.10, "Revalidation on schedule", "FUTURE-AI Traceability 4"),
                _c("usage_logging", 0.10, "Usage logged at every active site", "FUTURE-AI Traceability 5"),
            ],
        },
        "usability": {
            "minimum": 50,
            "criteria": [
                _c("intended_use", 0.20, "Intended use and users documented", "FUTURE-AI Usability 1", required=True),
                _c("feedback_interface", 0.10, "Feedback interface in use", "FUTURE-AI Usability 2"),
                _c("agreement_rate", 0.30, "Clinician agreement rate", "FUTURE-AI Usability 4, 5", target=0.8, min_n=30),
                _c("usability_rating", 0.20, "Usability ratings (workflow fit, uncertainty display)", "FUTURE-AI Usability 4", target=3.5, min_n=30),
                _c("minutes_saved", 0.20, "Time saved or lost per case", "FUTURE-AI Usability 5", scale=5, min_n=30),
            ],
        },
        "robustness": {
            "minimum": 50,
            "criteria": [
                _c("variation_sources", 0.1275, "Sources of variation documented (scanners, protocols)", "FUTURE-AI Robustness 1"),
                _c(
                    "training_diversity",
                    0.17,
                    "Training data diversity across scanners and protocols",
                    "FUTURE-AI Robustness 2",
                    target_vendors=3,
                    target_protocols=3,
                ),
                _c("perturbation_drop", 0.34, "Worst AUROC drop under perturbation", "FUTURE-AI Robustness 3", required=True, threshold=0.10),
                _c("generalisation_spread", 0.2125, "Site and vendor generalisation spread", "FUTURE-AI Robustness 3", threshold=0.05),
                _c(
                    "no_forgetting",
                    0.15,
                    "An adaptation keeps its base's and parent's tasks (no forgetting across tasks)",
                    "FUTURE-AI Robustness 3",
                    margin=0.02,
                ),
            ],
        },
        "explainability": {
            "minimum": 50,
            "criteria": [
                _c("explainability_needs", 0.20, "Explainability needs stated", "FUTURE-AI Explainability 1", required=True),
                _c(
                    "faithfulness",
                    0.50,
                    "Explanation faithfulness (deletion and insertion against random)",
                    "FUTURE-AI Explainability 2",
                    required=True,
                    min_difference=0.02,
                ),
                _c("explanation_rating", 0.30, "Clinicians' rating of the explanations", "FUTURE-AI Explainability 2", target=3.5, min_n=30),
            ],
        },
    },
}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def rule_params(rule: str, params: dict[str, Any] | None) -> dict[str, float]:
    """The rule's params with defaults filled in (``params`` already validated)."""
    return {name: (params or {}).get(name, default) for name, (default, _, _) in RULES[rule].params.items()}


def _validate_criterion(where: str, criterion: Any, seen: set[str]) -> float:
    if not isinstance(criterion, dict):
        raise PolicyError(f"{where}: each criterion is an object with key, rule, weight, required, params, title, recommendation.")
    unknown = set(criterion) - _CRITERION_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_CRITERION_KEYS))}.")
    key = criterion.get("key")
    if not isinstance(key, str) or not key.strip():
        raise PolicyError(f'{where}: give each criterion a non-empty "key".')
    where = f"{where} {key!r}"
    if key in seen:
        raise PolicyError(f"{where}: duplicate criterion key; keys must be unique in the policy.")
    seen.add(key)
    rule = criterion.get("rule")
    if rule not in RULES:
        raise PolicyError(f"{where}: unknown rule {rule!r}; known rules: {', '.join(sorted(RULES))}.")
    weight = criterion.get("weight")
    if not _number(weight) or weight <= 0:
        raise PolicyError(f"{where}: weight must be a number above 0, not {weight!r}.")
    if not isinstance(criterion.get("required", False), bool):
        raise PolicyError(f'{where}: "required" is true or false.')
    for field in ("title", "recommendation"):
        if not isinstance(criterion.get(field, ""), str):
            raise PolicyError(f"{where}: {field} must be text.")
    params = criterion.get("params", {})
    if not isinstance(params, dict):
        raise PolicyError(f"{where}: params must be an object.")
    schema = RULES[rule].params
    for name, value in params.items():
        if name not in schema:
            allowed = ", ".join(sorted(schema)) or "none"
            raise PolicyError(f"{where}: rule {rule!r} has no param {name!r}; its params: {allowed}.")
        _, low, high = schema[name]
        if not _number(value) or not low <= value <= high:
            raise PolicyError(f"{where}: param {name!r} must be a number from {low:g} to {high:g}, not {value!r}.")
    return float(weight)


def validate_policy(definition: Any) -> None:
    """Raise ``PolicyError`` naming the first problem that makes ``definition`` unusable."""
    if not isinstance(definition, dict):
        raise PolicyError("A policy is an object with version, name and principles.")
    version = definition.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
        raise PolicyError(f"version must be a whole number of 1 or more, not {version!r}.")
    principles = definition.get("principles")
    if not isinstance(principles, dict):
        raise PolicyError("principles must be an object with one entry per FUTURE-AI principle.")
    unknown = [p for p in principles if p not in PRINCIPLES]
    if unknown:
        raise PolicyError(f"unknown principle(s) {', '.join(map(repr, unknown))}; the principles are {', '.join(PRINCIPLES)}.")
    missing = [p for p in PRINCIPLES if p not in principles]
    if missing:
        raise PolicyError(f"missing principle(s) {', '.join(missing)}; a policy scores all six.")
    seen: set[str] = set()
    for name in PRINCIPLES:
        principle = principles[name]
        if not isinstance(principle, dict):
            raise PolicyError(f"{name}: give an object with minimum and criteria.")
        minimum = principle.get("minimum", 0)
        if not _number(minimum) or not 0 <= minimum <= 100:
            raise PolicyError(f"{name}: minimum must be a number from 0 to 100, not {minimum!r}.")
        criteria = principle.get("criteria")
        if not isinstance(criteria, list) or not criteria:
            raise PolicyError(f"{name}: give at least one criterion.")
        total = sum(_validate_criterion(f"{name} criterion {i + 1}", c, seen) for i, c in enumerate(criteria))
        if abs(total - 1) > WEIGHT_TOLERANCE:
            raise PolicyError(f"{name}: criterion weights sum to {total:g}; they must sum to 1 (within {WEIGHT_TOLERANCE:g}).")
