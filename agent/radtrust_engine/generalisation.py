"""Generalisation across sites and scanner vendors: each group's metric against the pooled one,
and the leave-one-group-out spread.

For each grouping (``site``, ``scanner_manufacturer``): every group's AUROC and
its difference from the pooled AUROC, and the AUROC of all cases except that
group (leave-one-out), each with a patient-level bootstrap CI. The spread of
the leave-one-out values says how much the pooled figure depends on any one
site or vendor. Groups below the minimum patient count are listed as
suppressed, as everywhere.

Plain NumPy (no Django).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from radtrust_engine.stratification import UNKNOWN, stratified_metrics

GROUPINGS = ("site", "scanner_manufacturer")


def generalisation_report(
    y_true: np.ndarray,
    y_score: np.ndarray,
    patient_id: np.ndarray,
    attributes: Mapping[str, np.ndarray],
    *,
    threshold: float,
    n_resamples: int,
    seed: int,
    min_patients: int,
    confidence: float,
) -> dict[str, Any]:
    """Per grouping: groups against pooled and leave-one-out AUROC with CIs, and the spread."""
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    pid = np.asarray(patient_id)

    def auroc(mask: np.ndarray | None) -> dict[str, Any]:
        sub = slice(None) if mask is None else mask
        report = stratified_metrics(
            y[sub], s[sub], pid[sub], threshold=threshold, n_resamples=n_resamples, seed=seed, min_patients=min_patients, confidence=confidence
        )
        metrics = report.overall.metrics
        return {
            "n_cases": report.overall.n_cases,
            "n_patients": report.overall.n_patients,
            "suppressed": report.overall.suppressed,
            "auroc": None if metrics is None else metrics["auroc"].to_dict(),
        }

    pooled = auroc(None)
    result: dict[str, Any] = {"pooled": pooled, "groupings": {}, "not_evaluated": []}
    pooled_value = (pooled["auroc"] or {}).get("value")
    for name in GROUPINGS:
        labels = attributes.get(name)
        if labels is None:
            result["not_evaluated"].append({"grouping": name, "reason": "not among the run's attributes, or not collected"})
            continue
        labels = np.asarray(labels, dtype=str)
        values = [v for v in np.unique(labels) if v != UNKNOWN]
        if len(values) < 2:
            result["not_evaluated"].append({"grouping": name, "reason": f"{len(values)} known group(s); at least 2 are needed"})
            continue
        groups = []
        for value in values:
            inside = labels == value
            group, rest = auroc(inside), auroc(~inside)
            group_value = (group["auroc"] or {}).get("value")
            groups.append(
                {
                    "group": value,
                    **group,
                    "difference_from_pooled": None if group_value is None or pooled_value is None else group_value - pooled_value,
                    "leave_one_out": rest,
                }
            )
        left_out = [
            g["leave_one_out"]["auroc"]["value"] for g in groups if g["leave_one_out"]["auroc"] and g["leave_one_out"]["auroc"]["value"] is not None
        ]
        result["groupings"][name] = {
            "groups": groups,
            "leave_one_out_spread": (max(left_out) - min(left_out)) if len(left_out) >= 2 else None,
        }
    return result
