"""Which suppressed counts of a site summary a reader could recover by subtraction.

Plain NumPy (no Django). Suppressing a small stratum is not enough when the
published strata add up: overall minus the visible values of ``sex`` gives the
hidden one. A reader of a payload knows linear equations between the counts of
its cells:

- partition sums: each cell of a grouping is split by the cells of every finer
  published grouping (``sex=F`` by ``sex=F, age_band=*``; overall by every
  attribute), for the case count ``n`` and, per label, the positive and negative
  case counts;
- per label, ``n = positive + negative`` in every cell.

A suppressed count is recoverable exactly when its unit vector lies in the row
space of these equations restricted to the suppressed counts (``recover``). The
site (``protect``) hides further cells until no small count is recoverable and
the suppressed members of every published sum hold at least the minimum
together; the server (``radtrust_engine.federated_check``) recomputes what can
be recovered from the payload alone and refuses it where a recovered count is
under the minimum. This is the single-table protection statistical offices
apply (complementary suppression); it keeps the exact values of small cells
out of reach, not every bound on them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from radtrust_engine.federated_payload import StratumKey

Equation = tuple[int, list[int]]
KINDS = ("n", "positive", "negative")


def partition_equations(keys: Sequence[StratumKey], groupings: Sequence[tuple[str, ...]]) -> list[Equation]:
    """Every published sum as ``(total, members)`` indices into ``keys``: for each cell ``h`` of
    a grouping ``H`` and each published grouping ``G`` whose attributes strictly contain
    ``H``'s, the cells of ``G`` that agree with ``h`` split its cases."""
    position = {k: i for i, k in enumerate(keys)}
    by_grouping: dict[tuple[str, ...], list[StratumKey]] = {}
    for k in keys:
        by_grouping.setdefault(k[0], []).append(k)
    equations = []
    for coarse in groupings:
        for fine in groupings:
            if not set(coarse) < set(fine):
                continue
            where = [fine.index(a) for a in coarse]
            for total in by_grouping.get(coarse, []):
                members = [position[k] for k in by_grouping.get(fine, []) if tuple(k[1][i] for i in where) == total[1]]
                equations.append((position[total], members))
    return equations


@dataclass(frozen=True)
class DisclosureSystem:
    """The equations a reader knows, over the variables ``(kind, cell)`` (kind-major)."""

    kinds: tuple[str, ...]
    n_cells: int
    equations: tuple[Equation, ...]
    matrix: np.ndarray  # one row per equation, one column per variable

    @classmethod
    def build(cls, n_cells: int, equations: Sequence[Equation], kinds: Sequence[str] = ("n",)) -> DisclosureSystem:
        """Partition sums for every kind; with all three kinds, also ``n = positive + negative``."""
        kinds = tuple(kinds)
        rows = []
        for k in range(len(kinds)):
            for total, members in equations:
                row = np.zeros(len(kinds) * n_cells)
                row[k * n_cells + total] = 1.0
                row[[k * n_cells + m for m in members]] -= 1.0
                rows.append(row)
        if kinds == KINDS:
            for c in range(n_cells):
                row = np.zeros(3 * n_cells)
                row[[c, n_cells + c, 2 * n_cells + c]] = (1.0, -1.0, -1.0)
                rows.append(row)
        matrix = np.array(rows) if rows else np.zeros((0, len(kinds) * n_cells))
        return cls(kinds, n_cells, tuple(equations), matrix)

    def var(self, kind: str, cell: int) -> int:
        return self.kinds.index(kind) * self.n_cells + cell

    def recover(self, known: np.ndarray, values: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Which unknown variables the equations determine (a boolean mask over all variables)
        and, given the known ``values``, what they are (the least-squares solution is exact
        on the determined ones)."""
        hidden = ~known
        derivable = np.zeros(known.size, dtype=bool)
        a = self.matrix[:, hidden]
        if a.shape[1] == 0 or a.shape[0] == 0:
            return derivable, None if values is None else np.where(known, values, np.nan)
        _, s, vt = np.linalg.svd(a, full_matrices=True)
        rank = int((s > 1e-9 * max(a.shape) * (s[0] if s.size else 1.0)).sum())
        null = vt[rank:]
        derivable[np.flatnonzero(hidden)] = np.all(np.abs(null) < 1e-8, axis=0)
        if values is None:
            return derivable, None
        rhs = -self.matrix[:, known] @ values[known]
        solution = np.linalg.lstsq(a, rhs, rcond=None)[0]
        out = np.where(known, values, np.nan).astype(np.float64)
        out[np.flatnonzero(hidden)] = solution
        out[hidden & ~derivable] = np.nan
        return derivable, out


def protect(
    system: DisclosureSystem,
    known: np.ndarray,
    small: np.ndarray,
    *,
    hides: Sequence[str],
    union_ok: Callable[[str, list[int]], bool],
    order: Callable[[int], tuple],
) -> set[int]:
    """Hide more cells until the suppressed counts are safe; returns the cells it hid.

    ``known`` (updated in place) says which variables are published, ``small`` which
    counts are under the minimum; hiding a cell hides its variables of the kinds in
    ``hides``. Greedy, as statistical offices do it:

    1. For each published sum whose total is shown, the hidden members must together
       pass ``union_ok(kind, cells)``; otherwise hide the smallest shown member.
    2. No small count may be recoverable (``DisclosureSystem.recover``); otherwise hide
       the smallest shown cell of a sum that holds it.
    3. Repeat until neither applies; hiding everything always satisfies both.
    """
    added: set[int] = set()
    first = hides[0]
    while True:
        candidates = _union_violation(system, known, hides, union_ok)
        if candidates is None:
            derivable, _ = system.recover(known)
            bad = np.flatnonzero(derivable & small)
            if bad.size == 0:
                return added
            cell = int(bad[0]) % system.n_cells
            candidates = [c for t, ms in system.equations if cell == t or cell in ms for c in (t, *ms)]
        shown = [c for c in candidates if known[system.var(first, c)]]
        if not shown:
            shown = [c for c in range(system.n_cells) if known[system.var(first, c)]]
        if not shown:
            raise RuntimeError("nothing left to hide, yet a small count is recoverable")
        choice = min(shown, key=order)
        for kind in hides:
            known[system.var(kind, choice)] = False
        added.add(choice)


def _union_violation(
    system: DisclosureSystem, known: np.ndarray, hides: Sequence[str], union_ok: Callable[[str, list[int]], bool]
) -> list[int] | None:
    for kind in hides:
        for total, members in system.equations:
            if not known[system.var(kind, total)]:
                continue
            hidden = [m for m in members if not known[system.var(kind, m)]]
            if hidden and not union_ok(kind, hidden):
                return members
    return None
