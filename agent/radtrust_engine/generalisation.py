"""Generalisation across sites and scanner vendors: each group's metric against the pooled one,
and the leave-one-group-out spread.

For each grouping (``site``, ``scanner_manufacturer``): every group's AUROC and
its difference from the pooled AUROC, and the AUROC of all cases except that
group (leave-one-out), each with a patient-level bootstrap CI. The spread of
the leave-one-out values says how much the pooled figure depends on any one
site or vendor.

The groups and the pooled figure are the label's stratified report's own, so they obey its
suppression (``radtrust_engine.disclosure``): a site or vendor under the minimum, or withheld
so that one cannot be recovered by subtraction, shows no count, no AUROC and no leave-one-out
figure (all cases but it would give its counts away). Plain NumPy (no Django).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from radtrust_engine.stratification import UNKNOWN, StratifiedReport, SubgroupResult, category_labels, stratified_metrics

GROUPINGS = ("site", "scanner_manufacturer")


def _auroc_figures(group: SubgroupResult) -> dict[str, Any]:
    return {
        "n_cases": group.n_cases,
        "n_patients": group.n_patients,
        "suppressed": group.suppressed,
        "auroc": None if group.metrics is None else group.metrics["auroc"].to_dict(),
    }


def generalisation_report(
    report: StratifiedReport,
    y_true: np.ndarray,
    y_score: np.ndarray,
    patient_id: np.ndarray,
    attributes: Mapping[str, np.ndarray],
    *,
    n_resamples: int,
    seed: int,
    confidence: float,
) -> dict[str, Any]:
    """Per grouping of ``report`` (computed on these cases, with these attributes): groups against
    pooled and leave-one-out AUROC with CIs, and the spread over the groups shown."""
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    pid = np.asarray(patient_id)

    def leave_out(inside: np.ndarray) -> dict[str, Any]:
        rest = stratified_metrics(
            y[~inside],
            s[~inside],
            pid[~inside],
            threshold=report.threshold,
            n_resamples=n_resamples,
            seed=seed,
            min_patients=report.min_patients,
            confidence=confidence,
            metric_names=("auroc",),  # the only figure read here
        )
        return _auroc_figures(rest.overall)

    pooled = _auroc_figures(report.overall)
    result: dict[str, Any] = {"min_patients": report.min_patients, "pooled": pooled, "groupings": {}, "not_evaluated": []}
    pooled_value = (pooled["auroc"] or {}).get("value")
    for name in GROUPINGS:
        subgroups = [g for g in report.subgroups if g.attributes == (name,) and g.values[0] != UNKNOWN]
        if name not in attributes:
            result["not_evaluated"].append({"grouping": name, "reason": "not among the run's attributes, or not collected"})
            continue
        if len(subgroups) < 2:
            result["not_evaluated"].append({"grouping": name, "reason": f"{len(subgroups)} known group(s); at least 2 are needed"})
            continue
        labels = category_labels(attributes[name], y.size, name)
        groups = []
        for group in subgroups:
            figures = _auroc_figures(group)
            group_value = (figures["auroc"] or {}).get("value")
            groups.append(
                {
                    "group": group.values[0],
                    **figures,
                    "reason": group.reason,
                    "difference_from_pooled": None if group_value is None or pooled_value is None else group_value - pooled_value,
                    "leave_one_out": None if group.suppressed else leave_out(labels == group.values[0]),
                }
            )
        left_out = [g["leave_one_out"]["auroc"]["value"] for g in groups if g["leave_one_out"] and g["leave_one_out"]["auroc"]]
        left_out = [v for v in left_out if v is not None]
        result["groupings"][name] = {
            "groups": groups,
            "leave_one_out_spread": (max(left_out) - min(left_out)) if len(left_out) >= 2 else None,
        }
    return result
