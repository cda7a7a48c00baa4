"""The risk matrix of a risk management file (ISO 14971:2019 5.5, 6; AI Act Art. 9(2)(b)):
probability and severity levels with the words people use for them, and the acceptability region
of each cell.

A risk file keeps its own matrix (JSON, copied from ``DEFAULT_MATRIX`` when the file is opened), so
the provider's risk policy can differ from the default and a later change of the default never
re-judges an approved file. ``matrix_clean`` refuses a matrix that could not be applied, with a
message naming what to fix. Plain Python: no Django import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REGIONS = {
    "acceptable": "Acceptable",
    "review": "Acceptable only after benefit-risk review",
    "unacceptable": "Unacceptable",
}

DEFAULT_MATRIX: dict[str, Any] = {
    "probability": [
        {"level": 1, "label": "Improbable", "meaning": "fewer than 1 in 100,000 uses"},
        {"level": 2, "label": "Remote", "meaning": "1 in 100,000 to 1 in 10,000 uses"},
        {"level": 3, "label": "Occasional", "meaning": "1 in 10,000 to 1 in 1,000 uses"},
        {"level": 4, "label": "Probable", "meaning": "1 in 1,000 to 1 in 100 uses"},
        {"level": 5, "label": "Frequent", "meaning": "more than 1 in 100 uses"},
    ],
    "severity": [
        {"level": 1, "label": "Negligible", "meaning": "inconvenience or temporary discomfort"},
        {"level": 2, "label": "Minor", "meaning": "temporary injury or a short delay of diagnosis, no intervention needed"},
        {"level": 3, "label": "Serious", "meaning": "injury or delayed diagnosis needing medical intervention"},
        {"level": 4, "label": "Critical", "meaning": "permanent impairment or life-threatening injury"},
        {"level": 5, "label": "Catastrophic", "meaning": "death"},
    ],
    # One row per probability level (1 first), one column per severity level (1 first).
    "regions": [
        ["acceptable", "acceptable", "acceptable", "review", "review"],
        ["acceptable", "acceptable", "review", "review", "unacceptable"],
        ["acceptable", "review", "review", "unacceptable", "unacceptable"],
        ["review", "review", "unacceptable", "unacceptable", "unacceptable"],
        ["review", "unacceptable", "unacceptable", "unacceptable", "unacceptable"],
    ],
}


class MatrixError(ValueError):
    """A matrix that cannot be applied; the message says what to fix."""


@dataclass(frozen=True)
class RiskMatrix:
    """A validated matrix: labels per level and the region of each (probability, severity) cell."""

    probability: tuple[dict, ...]
    severity: tuple[dict, ...]
    regions: tuple[tuple[str, ...], ...]

    def region(self, probability: int | None, severity: int | None) -> str | None:
        """The cell's region code, or None while the risk is not estimated."""
        if probability is None or severity is None:
            return None
        return self.regions[probability - 1][severity - 1]

    def probability_label(self, level: int | None) -> str:
        return self.probability[level - 1]["label"] if level else "not estimated"

    def severity_label(self, level: int | None) -> str:
        return self.severity[level - 1]["label"] if level else "not estimated"

    def estimate_text(self, probability: int | None, severity: int | None) -> str:
        """``Occasional x Critical: Unacceptable``, the way the risk table prints an estimate."""
        region = self.region(probability, severity)
        if region is None:
            return "not estimated"
        return f"{self.probability_label(probability)} x {self.severity_label(severity)}: {REGIONS[region]}"

    def to_dict(self) -> dict[str, Any]:
        return {"probability": list(self.probability), "severity": list(self.severity), "regions": [list(r) for r in self.regions]}


def _levels(data: Any, axis: str) -> tuple[dict, ...]:
    if not isinstance(data, list) or not 2 <= len(data) <= 10:
        raise MatrixError(f"The {axis} scale needs between 2 and 10 levels.")
    levels = []
    for i, item in enumerate(data, start=1):
        if not isinstance(item, dict) or item.get("level") != i or not str(item.get("label") or "").strip():
            raise MatrixError(f"{axis.capitalize()} level {i} needs its number ({i}, in order) and a label.")
        levels.append({"level": i, "label": str(item["label"]).strip()[:60], "meaning": str(item.get("meaning") or "").strip()[:200]})
    return tuple(levels)


def matrix_clean(data: Any) -> RiskMatrix:
    """The matrix ``data`` describes, or ``MatrixError`` naming what is wrong with it."""
    if not isinstance(data, dict):
        raise MatrixError("A risk matrix has a probability scale, a severity scale and their regions.")
    probability, severity = _levels(data.get("probability"), "probability"), _levels(data.get("severity"), "severity")
    regions = data.get("regions")
    if not isinstance(regions, list) or len(regions) != len(probability):
        raise MatrixError(f"The regions need one row per probability level ({len(probability)}).")
    rows = []
    for p, row in enumerate(regions, start=1):
        if not isinstance(row, list) or len(row) != len(severity) or any(cell not in REGIONS for cell in row):
            raise MatrixError(f"Region row {p} needs {len(severity)} cells, each one of {', '.join(REGIONS)}.")
        rows.append(tuple(row))
    return RiskMatrix(probability=probability, severity=severity, regions=tuple(rows))
