"""A reader's attack on suppressed cells: every count a published table pins down exactly.

Written from the reader's side, independently of the engine's own disclosure check
(``radtrust_engine.disclosure``), so the statistics benchmark can test that check
rather than repeat it. What a reader sees is the published dict: a run's stratified report
(``StratifiedReport.to_dict()``) or a site's federated payload (``SiteSummary.to_dict()``).

1. Each listed cell (overall, each attribute value, each intersection cell) gets seven counts,
   ``n``, ``positive``, ``negative``, ``tp``, ``fn``, ``tn``, ``fp``. A count is known where it is
   published, or where a published rate gives it (``tp = sensitivity * positives``, ``tn =
   specificity * negatives``); otherwise it is hidden.
2. Equations over the hidden counts: within a cell ``n = positive + negative``, ``positive =
   tp + fn``, ``negative = tn + fp``; across groupings, for every kind, a cell of a grouping is the
   sum of the cells of each finer published grouping that agree with it (overall is the sum of
   the values of each attribute; ``sex=F`` the sum of ``sex=F, age_band=*``).
3. Counts are whole and not negative, and a listed cell holds at least one case. For each hidden count two linear programmes give its
   smallest and largest value under the equations; where exactly one whole number lies between
   them the count is recovered. This finds what the row-space test finds (a count fixed by
   subtraction) and what bounds add (a hidden sum of 0 makes each member 0).
4. A count that the cell's own published figures already fix (a cell published with 0
   positives has ``tp = fn = 0``) is not counted as recovered: publishing it was the choice.

Every listed cell enters, suppressed or not; both formats list a suppressed cell with its
attributes and values. Patient counts are left out: they add up across cells only when every
attribute is constant within a patient, which a reader cannot know.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linprog

KINDS = ("n", "positive", "negative", "tp", "fn", "tn", "fp")
IDENTITIES = (("n", ("positive", "negative")), ("positive", ("tp", "fn")), ("negative", ("tn", "fp")))
CellKey = tuple[tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True)
class PublishedCell:
    """One cell as a reader sees it: its counts where the table gives them (None where hidden),
    and whether the table marks it as suppressed."""

    key: CellKey
    counts: dict[str, int | None]
    suppressed: bool


def _count_from_rate(rate: float | None, total: int | None) -> int | None:
    if total is None:
        return None
    if total == 0:
        return 0
    return None if rate is None else round(rate * total)


def cells_from_report(report: Mapping[str, Any]) -> list[PublishedCell]:
    """The cells of a stratified report's dict: counts as published, confusion counts from the
    rates (step 1). A suppressed subgroup shows whatever counts the report still gives."""
    cells = []
    for entry in [report["overall"], *report["subgroups"]]:
        n, positive = entry.get("n_cases"), entry.get("n_positive")
        negative = None if n is None or positive is None else n - positive
        metrics = entry.get("metrics") or {}
        tp = _count_from_rate((metrics.get("sensitivity") or {}).get("value"), positive)
        tn = _count_from_rate((metrics.get("specificity") or {}).get("value"), negative)
        counts = {
            "n": n,
            "positive": positive,
            "negative": negative,
            "tp": tp,
            "fn": None if tp is None else positive - tp,
            "tn": tn,
            "fp": None if tn is None else negative - tn,
        }
        cells.append(PublishedCell((tuple(entry["attributes"]), tuple(entry["values"])), counts, bool(entry.get("suppressed"))))
    return cells


def cells_from_payload(payload: Mapping[str, Any], label: str) -> list[PublishedCell]:
    """The cells of a federated site payload for one label: a suppressed stratum hides all its
    counts, a suppressed label block its class and confusion counts."""
    cells = []
    for stratum in payload["strata"]:
        key = (tuple(stratum["attributes"]), tuple(stratum["values"]))
        counts: dict[str, int | None] = dict.fromkeys(KINDS)
        suppressed = bool(stratum["suppressed"])
        if not suppressed:
            counts["n"] = stratum["n_cases"]
            block = stratum["labels"][label]
            suppressed = bool(block["suppressed"])
            if not suppressed:
                counts.update(positive=block["cases"]["positive"], negative=block["cases"]["negative"], **block["confusion"])
        cells.append(PublishedCell(key, counts, suppressed))
    return cells


def _equations(cells: Sequence[PublishedCell]) -> list[list[tuple[int, str, float]]]:
    """Every equation of step 2 as ``[(cell, kind, coefficient), ...]`` summing to 0."""
    equations = []
    for c in range(len(cells)):
        for total, parts in IDENTITIES:
            equations.append([(c, total, 1.0), *((c, part, -1.0) for part in parts)])
    groupings = list(dict.fromkeys(cell.key[0] for cell in cells))
    for coarse in groupings:
        for fine in groupings:
            if not set(coarse) < set(fine):
                continue
            where = [fine.index(a) for a in coarse]
            for c, cell in enumerate(cells):
                if cell.key[0] != coarse:
                    continue
                members = [m for m, other in enumerate(cells) if other.key[0] == fine and tuple(other.key[1][i] for i in where) == cell.key[1]]
                for kind in KINDS:
                    equations.append([(c, kind, 1.0), *((m, kind, -1.0) for m in members)])
    return equations


def _pinned(cells: Sequence[PublishedCell], equations: list[list[tuple[int, str, float]]]) -> dict[tuple[int, str], int]:
    """The hidden counts that the equations and ``count >= 0`` fix to one whole number (step 3)."""
    hidden = [(c, kind) for c, cell in enumerate(cells) for kind in KINDS if cell.counts[kind] is None]
    if not hidden:
        return {}
    column = {v: i for i, v in enumerate(hidden)}
    rows, rhs = [], []
    for equation in equations:
        row = np.zeros(len(hidden))
        constant = 0.0
        for c, kind, coefficient in equation:
            value = cells[c].counts[kind]
            if value is None:
                row[column[(c, kind)]] += coefficient
            else:
                constant += coefficient * value
        if row.any():
            rows.append(row)
            rhs.append(-constant)
    if not rows:
        return {}
    a, b = np.array(rows), np.array(rhs)
    bounds = [(1 if kind == "n" else 0, None) for _, kind in hidden]  # a listed cell has a case
    # The smallest and largest value of each count among the solutions met so far: a count that
    # already spans two whole numbers is not pinned, and needs no programme of its own.
    seen_low, seen_high = np.full(len(hidden), np.inf), np.full(len(hidden), -np.inf)
    pinned = {}
    for i, variable in enumerate(hidden):
        if np.ceil(seen_low[i] - 1e-6) < np.floor(seen_high[i] + 1e-6):
            continue
        objective = np.zeros(len(hidden))
        objective[i] = 1.0
        low = linprog(objective, A_eq=a, b_eq=b, bounds=bounds, method="highs")
        high = linprog(-objective, A_eq=a, b_eq=b, bounds=bounds, method="highs")
        for solution in (low, high):
            if solution.status == 0:
                seen_low, seen_high = np.minimum(seen_low, solution.x), np.maximum(seen_high, solution.x)
        if low.status != 0 or high.status != 0:
            continue  # unbounded above (a free sum) or, for a table that does not add up, infeasible
        smallest, largest = math.ceil(low.fun - 1e-6), math.floor(-high.fun + 1e-6)
        if smallest == largest:
            pinned[variable] = smallest
    return pinned


def recover_hidden_counts(cells: Sequence[PublishedCell]) -> dict[tuple[CellKey, str], int]:
    """The hidden counts a reader recovers exactly, by cell key and kind (steps 2 to 4)."""
    everything = _pinned(cells, _equations(cells))
    recovered = {}
    for (c, kind), value in everything.items():
        if (0, kind) in _pinned([cells[c]], _equations([cells[c]])):
            continue  # fixed by the cell's own figures (step 4)
        recovered[(cells[c].key, kind)] = value
    return recovered


def true_cell_counts(
    y: np.ndarray, scores: np.ndarray, attributes: Mapping[str, np.ndarray], intersections: Sequence[Sequence[str]], threshold: float
) -> dict[CellKey, dict[str, int]]:
    """The counts of every cell from the cases themselves: the truth a recovery is checked against."""
    y = np.asarray(y).astype(bool)
    called = np.asarray(scores) >= threshold
    groupings = [(), *((a,) for a in attributes), *(tuple(i) for i in intersections)]
    truth = {}
    for attrs in groupings:
        combined = np.array(["\x1f".join(row) for row in zip(*(np.asarray(attributes[a]).astype(str) for a in attrs))]) if attrs else None
        for value in [""] if combined is None else np.unique(combined):
            mask = np.ones(y.size, dtype=bool) if combined is None else combined == value
            yy, cc = y[mask], called[mask]
            key = (attrs, tuple(value.split("\x1f")) if attrs else ())
            truth[key] = {
                "n": int(mask.sum()),
                "positive": int(yy.sum()),
                "negative": int((~yy).sum()),
                "tp": int((yy & cc).sum()),
                "fn": int((yy & ~cc).sum()),
                "tn": int((~yy & ~cc).sum()),
                "fp": int((~yy & cc).sum()),
            }
    return truth
