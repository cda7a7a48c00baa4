"""Disclosure control for published tables of counts: which suppressed counts a reader could
recover from what is published, and which further cells to withhold so that none can.

Plain NumPy and SciPy (no Django). One implementation for every table RadTrust publishes with
small cells suppressed: a run's stratified report (``radtrust_engine.stratification``, and
through it the generalisation analysis) and a federated site summary
(``radtrust_engine.federated``; the server's check in ``radtrust_engine.federated_check``).

What a reader knows is a set of linear equations over the counts of the listed cells
(``partition_equations``): each cell of a grouping is the sum of the cells of every finer
published grouping that agree with it (overall is the sum of the values of each attribute;
``sex=F`` the sum of ``sex=F, age_band=*``), for every kind of count (cases, positives, the
confusion counts that a rate times its denominator gives); and within a cell, identities such
as ``n = positive + negative``. Counts are not negative, and a published reason bounds a
suppressed cell: one suppressed as small holds 1 to ``minimum - 1`` patients, one withheld to
protect it at least ``minimum``.

What counts as disclosed (``disclosures``: rules 1 and 2; ``bound_disclosures``: rule 3):

1. a suppressed count the equations determine: its unit vector lies in the row space of the
   equations restricted to the suppressed counts (overall minus the shown values of ``sex``);
2. a sum of small suppressed counts, under the minimum, that the equations determine (two
   small cells whose union a margin gives);
3. a suppressed count pinned at a bound the reader knows: a determined combination of counts
   that all sit at their bound fixes each one (a margin minus shown cells with no false
   negatives tells that every hidden cell under it has none).

``protect`` withholds one more cell at a time until nothing is disclosed (complementary
suppression, as statistical offices do it; ``suppression_reasons`` for a stratified report).
``recovered_counts`` is the reader's side: every hidden count that the published values and
``count >= 0`` pin to one number; ``published_disclosure_audit`` runs it on a published report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.linalg import null_space
from scipy.optimize import linprog

if TYPE_CHECKING:  # annotation only: stratification imports this module
    from radtrust_engine.stratification import SubgroupResult

CellKey = tuple[tuple[str, ...], tuple[str, ...]]
Equation = tuple[int, list[int]]
Identity = tuple[str, tuple[str, ...]]  # within a cell, ``total = sum(parts)``

# The counts of a cell a reader can derive: its cases, per class, and the confusion counts (a
# rate times its denominator), with the identities between them.
KINDS: tuple[str, ...] = ("n", "positive", "negative")
CLASS_SPLIT: tuple[Identity, ...] = (("n", ("positive", "negative")),)
COUNT_KINDS: tuple[str, ...] = (*KINDS, "tp", "fn", "tn", "fp")
COUNT_IDENTITIES: tuple[Identity, ...] = (*CLASS_SPLIT, ("positive", ("tp", "fn")), ("negative", ("tn", "fp")))
# Why a cell is suppressed; published with it, so a reader knows the bound it implies.
SUPPRESSION_REASONS: dict[str, str] = {
    "too_few_patients": "fewer patients than the minimum",
    "too_few_positive_patients": "fewer patients with a positive case than the minimum",
    "too_few_negative_patients": "fewer patients with a negative case than the minimum",
    "complementary": "withheld so that a small cell cannot be recovered by subtraction",
}
# Which patients a cell is too few of, in the order a reason is given: a cell with too few patients
# says so, one with few positive patients says that before few negative ones. A rate on a handful
# of patients of a class gives their results away (one positive patient shown with no false
# negatives was detected), so a cell needs the minimum in each class its rates are shares of.
SMALL_REASONS: dict[str, str] = {
    "n": "too_few_patients",
    "positive": "too_few_positive_patients",
    "negative": "too_few_negative_patients",
}
UNKNOWN = "unknown"  # the value a missing attribute becomes
_TOL = 1e-8
_MAX_ENUMERATED = 12  # dimensions of the space of determined sums searched exhaustively


def partition_equations(keys: Sequence[CellKey], groupings: Sequence[tuple[str, ...]]) -> list[Equation]:
    """Every published sum as ``(total, members)`` indices into ``keys``: for each cell ``h`` of
    a grouping ``H`` and each published grouping ``G`` whose attributes strictly contain
    ``H``'s, the cells of ``G`` that agree with ``h`` split its cases."""
    position = {k: i for i, k in enumerate(keys)}
    by_grouping: dict[tuple[str, ...], list[CellKey]] = {}
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
    def build(
        cls, n_cells: int, equations: Sequence[Equation], kinds: Sequence[str] = ("n",), identities: Sequence[Identity] = ()
    ) -> DisclosureSystem:
        """Partition sums for every kind, and each identity in every cell."""
        kinds = tuple(kinds)
        rows = []
        for k in range(len(kinds)):
            for total, members in equations:
                row = np.zeros(len(kinds) * n_cells)
                row[k * n_cells + total] = 1.0
                row[[k * n_cells + m for m in members]] -= 1.0
                rows.append(row)
        for total, parts in identities:
            for c in range(n_cells):
                row = np.zeros(len(kinds) * n_cells)
                row[kinds.index(total) * n_cells + c] = 1.0
                row[[kinds.index(p) * n_cells + c for p in parts]] = -1.0
                rows.append(row)
        matrix = np.array(rows) if rows else np.zeros((0, len(kinds) * n_cells))
        return cls(kinds, n_cells, tuple(equations), matrix)

    def var(self, kind: str, cell: int) -> int:
        return self.kinds.index(kind) * self.n_cells + cell

    def null_basis(self, known: np.ndarray) -> np.ndarray:
        """Rows spanning the null space of the equations restricted to the unknown variables, as
        full-width vectors (zero on the known ones). A combination ``a`` of unknown variables is
        determined by what is known exactly when ``null_basis @ a == 0``."""
        hidden = np.flatnonzero(~known)
        out = np.zeros((0, known.size))
        if hidden.size == 0:
            return out
        a = self.matrix[:, hidden]
        basis = np.eye(hidden.size) if a.shape[0] == 0 else null_space(a).T
        out = np.zeros((basis.shape[0], known.size))
        out[:, hidden] = basis
        return out

    def recover(self, known: np.ndarray, values: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Which unknown variables the equations determine (a boolean mask over all variables)
        and, given the known ``values``, what they are (the least-squares solution is exact
        on the determined ones)."""
        null = self.null_basis(known)
        derivable = ~known & np.all(np.abs(null) < _TOL, axis=0)
        if values is None:
            return derivable, None
        hidden = ~known
        out = np.where(known, values, np.nan).astype(np.float64)
        if hidden.any() and self.matrix.shape[0]:
            rhs = -self.matrix[:, known] @ values[known]
            out[hidden] = np.linalg.lstsq(self.matrix[:, hidden], rhs, rcond=None)[0]
        out[hidden & ~derivable] = np.nan
        return derivable, out


def determined_pairs(system: DisclosureSystem, known: np.ndarray, values: np.ndarray) -> list[tuple[int, int, float]]:
    """Pairs of hidden variables of one kind whose sum the equations determine though neither is
    (their null-space columns cancel), with that sum: what a reader of the published ``values``
    alone learns of two hidden cells together, through any combination of margins."""
    null = system.null_basis(known)
    hidden = np.flatnonzero(~known & np.any(np.abs(null) >= _TOL, axis=0))
    if hidden.size < 2:
        return []
    solution = np.where(known, values, 0.0).astype(np.float64)
    solution[~known] = np.linalg.lstsq(system.matrix[:, ~known], -system.matrix[:, known] @ values[known], rcond=None)[0]
    seen: dict[tuple, list[int]] = {}
    pairs = []
    for v in hidden:
        column = np.round(null[:, v], 6) + 0.0  # + 0.0: no negative zero in the key
        for w in seen.get(tuple(-column + 0.0), []):
            if w // system.n_cells == v // system.n_cells:
                pairs.append((int(w), int(v), float(solution[w] + solution[v])))
        seen.setdefault(tuple(column), []).append(int(v))
    return pairs


@dataclass(frozen=True)
class Bounds:
    """One kind of count as the site knows it (``value``) and the bounds a reader knows for it
    (``low``, ``high``; ``inf`` where none), over the variables of a ``DisclosureSystem``.
    ``public`` marks suppressed counts a single published cell already gives away (a count of 0
    makes the counts of every cell inside it 0): not a disclosure, but known to the reader."""

    value: np.ndarray
    low: np.ndarray
    high: np.ndarray
    public: np.ndarray


@dataclass(frozen=True)
class Disclosure:
    """What a reader could learn: the variables, and a combination of them that the published
    equations determine and that gives them away (with the ``given`` counts a reader has from a
    published cell of 0, where the derivation uses them)."""

    variables: tuple[int, ...]
    combination: np.ndarray
    how: str  # "recovered" | "small_sum" | "at_bound"
    given: np.ndarray | None = None

    def in_slot(self, joint: DisclosureSystem, kind: str) -> Disclosure:
        """The same disclosure, found in a one-kind system over the same cells, as variables of
        ``kind`` in ``joint``."""
        start = joint.kinds.index(kind) * joint.n_cells

        def lift(vector: np.ndarray) -> np.ndarray:
            out = np.zeros(len(joint.kinds) * joint.n_cells, dtype=vector.dtype)
            out[start : start + joint.n_cells] = vector
            return out

        given = None if self.given is None else lift(self.given)
        return Disclosure(tuple(start + v for v in self.variables), lift(self.combination), self.how, given)


def disclosures(
    system: DisclosureSystem,
    known: np.ndarray,
    *,
    small: np.ndarray,
    union_value: Callable[[str, list[int]], float],
    minimum: int,
) -> list[Disclosure]:
    """What the published equations give away about the suppressed variables by rules 1 and 2 of
    the module docstring. ``small`` marks the variables under the minimum, ``union_value`` gives
    the count of a union of cells (distinct patients)."""
    null = system.null_basis(known)
    found = _determined(null, known)
    for k, kind in enumerate(system.kinds):
        if found:
            return found
        variables = [v for v in range(k * system.n_cells, (k + 1) * system.n_cells) if not known[v] and small[v]]
        found = _small_sums(null, variables, lambda cells, kind=kind: union_value(kind, cells) < minimum, system.n_cells)
    return found


def bound_disclosures(system: DisclosureSystem, known: np.ndarray, bounds: Sequence[Bounds]) -> list[Disclosure]:
    """Rule 3 of the module docstring: suppressed counts pinned at a bound a reader knows, for each
    kind of count in ``bounds`` (``count_bounds``) that the system's variables carry."""
    null = system.null_basis(known)
    for b in bounds:
        if found := _at_bound(system, null, known, b):
            return found
    return []


def _determined(null: np.ndarray, known: np.ndarray) -> list[Disclosure]:
    """Rule 1: each suppressed variable that the equations determine."""
    determined = ~known & np.all(np.abs(null) < _TOL, axis=0)
    return [Disclosure((int(v),), np.eye(1, known.size, v).ravel(), "recovered") for v in np.flatnonzero(determined)]


def _small_sums(null: np.ndarray, variables: list[int], too_small: Callable[[list[int]], bool], n_cells: int) -> list[Disclosure]:
    """Determined sums of two or more of ``variables`` that are ``too_small``: the 0/1 vectors of
    the space of determined combinations supported on them, enumerated from its reduced
    row-echelon basis (a vector is fixed by its values at the pivots)."""
    if len(variables) < 2:
        return []
    basis = null_space(null[:, variables]) if null.shape[0] else np.eye(len(variables))
    dim = basis.shape[1]
    if dim == 0:
        return []
    if dim > _MAX_ENUMERATED:  # too many to search: withhold more until the space is smaller
        combination = np.zeros(null.shape[1])
        combination[variables] = basis[:, 0]
        return [Disclosure(tuple(variables), combination, "small_sum")]
    rows = _reduced_rows(basis.T)
    for choice in range(1, 2**dim):
        vector = sum(rows[i] for i in range(dim) if choice >> i & 1)
        ones = np.abs(vector - 1.0) < 1e-6
        if ones.sum() < 2 or not np.all(ones | (np.abs(vector) < 1e-6)):
            continue
        members = [variables[i] for i in np.flatnonzero(ones)]
        if too_small([v % n_cells for v in members]):
            combination = np.zeros(null.shape[1])
            combination[members] = 1.0
            return [Disclosure(tuple(members), combination, "small_sum")]
    return []


def _reduced_rows(a: np.ndarray) -> np.ndarray:
    """The reduced row-echelon form of ``a`` (full row rank), by Gauss-Jordan with partial pivoting."""
    a = a.astype(np.float64).copy()
    row = 0
    for col in range(a.shape[1]):
        if row == a.shape[0]:
            break
        pivot = row + int(np.argmax(np.abs(a[row:, col])))
        if abs(a[pivot, col]) < 1e-9:
            continue
        a[[row, pivot]] = a[[pivot, row]]
        a[row] /= a[row, col]
        others = np.arange(a.shape[0]) != row
        a[others] -= np.outer(a[others, col], a[row])
        row += 1
    a[np.abs(a) < 1e-12] = 0.0
    return a


def _at_bound(system: DisclosureSystem, null: np.ndarray, known: np.ndarray, b: Bounds) -> list[Disclosure]:
    """Suppressed counts of one kind pinned at a bound a reader knows (rule 3).

    A determined combination ``a`` with ``a >= 0`` on counts at their lower bound, ``a <= 0`` on
    counts at their upper bound and 0 elsewhere is at its smallest possible value, so every
    count it touches is at its bound. One linear programme finds all of them at once: maximise
    ``sum s`` with ``s <= |a|`` per count and ``s <= 1`` (a sum of such combinations is one).
    Counts the reader has from one published cell (``public``) count as known.
    """
    hidden = ~known & ~b.public
    given = b.public if b.public.any() else None
    if given is not None:
        known = known | given
        null = system.null_basis(known)
        if found := _determined(null, known):
            return [Disclosure(d.variables, d.combination, d.how, given) for d in found]
    low = np.flatnonzero(hidden & (b.value <= b.low))
    high = np.flatnonzero(hidden & (b.value >= b.high))
    n_low, n_high = low.size, high.size
    if n_low + n_high == 0 or null.shape[0] == 0:
        return []
    n = n_low + n_high
    a_eq = np.hstack([null[:, low], -null[:, high], np.zeros((null.shape[0], n))])
    a_ub = np.hstack([-np.eye(n), np.eye(n)])  # s - |a| <= 0
    objective = np.concatenate([np.zeros(n), -np.ones(n)])
    result = linprog(objective, A_ub=a_ub, b_ub=np.zeros(n), A_eq=a_eq, b_eq=np.zeros(null.shape[0]), bounds=[(0, None)] * n + [(0, 1)] * n)
    if result.status != 0 or -result.fun < 0.5:
        return []
    pinned = result.x[n:] > 0.5
    combination = np.zeros(known.size)
    combination[low] = result.x[:n_low]
    combination[high] = -result.x[n_low:n]
    combination /= np.abs(combination).max()
    return [Disclosure(tuple(int(v) for v in np.concatenate([low, high])[pinned]), combination, "at_bound", given)]


def protect(
    system: DisclosureSystem,
    known: np.ndarray,
    *,
    hides: Sequence[str],
    hideable: np.ndarray,
    order: Callable[[int], tuple],
    audit: Callable[[np.ndarray], list[Disclosure]],
) -> set[int]:
    """Withhold more cells until ``audit`` finds nothing; returns the cells it withheld.

    ``known`` (updated in place) says which variables are published; withholding a cell hides
    its variables of the kinds in ``hides``; only ``hideable`` cells may be withheld. Greedy,
    one cell at a time:

    1. Of what the audit finds, take the disclosure of the cell first in ``order`` (finer cells
       first: what a margin gives away often follows from its cells).
    2. Candidates: the shown cells that share an equation with it, in ``order``.
    3. Withhold the first whose withholding makes the disclosed combination undetermined without
       making itself determined; else the first that makes it undetermined; else the first.
    4. Repeat until the audit finds nothing, or no cell is left to withhold (the caller's audit
       then still reports what remains).
    """
    added: set[int] = set()
    while found := audit(known):
        target = min(found, key=lambda d: min(order(v % system.n_cells) for v in d.variables))
        cells = {v % system.n_cells for v in target.variables}
        touching = [c for t, ms in system.equations if t in cells or cells.intersection(ms) for c in (t, *ms)]

        def shown(pool: Sequence[int]) -> list[int]:
            return [c for c in dict.fromkeys(pool) if hideable[c] and known[system.var(hides[0], c)]]

        candidates = sorted(shown(touching) or shown(range(system.n_cells)), key=order)
        if not candidates:
            return added
        choice = _best_candidate(system, known, candidates, target, hides)
        for kind in hides:
            known[system.var(kind, choice)] = False
        added.add(choice)
    return added


def _best_candidate(system: DisclosureSystem, known: np.ndarray, candidates: list[int], target: Disclosure, hides: Sequence[str]) -> int:
    """Step 3 of ``protect``."""
    clears = None
    for c in candidates:
        trial = known.copy() if target.given is None else known | target.given
        variables = [system.var(kind, c) for kind in hides]
        trial[variables] = False
        null = system.null_basis(trial)
        if np.abs(null @ target.combination).max(initial=0.0) < _TOL:
            continue  # still determined
        if not np.all(np.abs(null[:, variables]) < _TOL, axis=0).any():
            return c
        clears = c if clears is None else clears
    return candidates[0] if clears is None else clears


def recovered_counts(system: DisclosureSystem, published: np.ndarray) -> dict[int, float]:
    """The reader's side: every hidden variable (NaN in ``published``) that the equations, the
    published values and ``count >= 0`` pin to one value, with that value.

    Counts forced to 0 are found by one linear programme (a feasible point scaled up makes every
    count that can be positive at least 1); the rest of what is pinned is what the equations
    then determine.
    """
    known = ~np.isnan(published)
    hidden = np.flatnonzero(~known)
    if hidden.size == 0 or system.matrix.shape[0] == 0:
        return {}
    a = system.matrix[:, hidden]
    rhs = -system.matrix[:, known] @ published[known]
    h = hidden.size
    # variables x (h), scale t >= 1, s (h) in [0, 1]: a x = t rhs, s <= x; maximise sum s
    a_eq = np.hstack([a, -rhs[:, None], np.zeros((a.shape[0], h))])
    a_ub = np.hstack([-np.eye(h), np.zeros((h, 1)), np.eye(h)])
    objective = np.concatenate([np.zeros(h + 1), -np.ones(h)])
    result = linprog(
        objective, A_ub=a_ub, b_ub=np.zeros(h), A_eq=a_eq, b_eq=np.zeros(a.shape[0]), bounds=[(0, None)] * h + [(1, None)] + [(0, 1)] * h
    )
    if result.status != 0:
        return {}  # the published values do not add up: nothing is pinned by them
    at_zero = hidden[result.x[h + 1 :] < 0.5]
    values = np.where(known, published, 0.0)
    fixed = known.copy()
    fixed[at_zero] = True
    derivable, solved = system.recover(fixed, values)
    out = dict.fromkeys((int(v) for v in at_zero), 0.0)
    out.update({int(v): round(float(solved[v]), 6) for v in np.flatnonzero(derivable)})
    return out


def small_reasons(small: Mapping[str, np.ndarray]) -> list[str | None]:
    """Each cell's reason for being small (``SMALL_REASONS``, the first kind of patients it has
    too few of), None where it has enough of every kind in ``small``."""
    n_cells = len(next(iter(small.values())))
    return [next((SMALL_REASONS[kind] for kind, mask in small.items() if mask[c]), None) for c in range(n_cells)]


def suppression_reasons(
    keys: Sequence[CellKey],
    groupings: Sequence[tuple[str, ...]],
    patients: Mapping[str, Sequence[np.ndarray]],
    counts: Mapping[str, np.ndarray],
    minimum: int,
) -> list[str | None]:
    """Why each cell of a stratified table is suppressed (None: shown), the overall (``keys[0]``)
    always shown: cells under ``minimum`` distinct patients of a kind in ``patients`` (``"n"``:
    all; with ``"positive"`` and ``"negative"``, those with a case of the class: each cell's
    patient indices), then complementary cells until ``disclosures`` finds nothing in any kind of
    count in ``counts`` (each a count per cell, ``"n"`` the cases; ``"positive"``, ``"tp"`` and
    ``"fn"`` add up like positive patients, ``"negative"``, ``"tn"`` and ``"fp"`` like negative ones).

    A table whose overall is under the minimum in a kind has every other cell small in it: those
    are suppressed and nothing more can be withheld.
    """
    n_cells = len(keys)
    kinds = tuple(patients)  # ("n",) or KINDS
    sizes = {kind: np.array([np.unique(p).size for p in patients[kind]]) for kind in kinds}
    small = {kind: size < minimum for kind, size in sizes.items()}
    for mask in small.values():
        mask[0] = False
    reasons: list[str | None] = small_reasons(small)
    hidden = np.array([r is not None for r in reasons])
    if not hidden.any() or any(size[0] < minimum for size in sizes.values()):
        return reasons
    system = DisclosureSystem.build(n_cells, partition_equations(keys, groupings), kinds, CLASS_SPLIT if kinds == KINDS else ())
    hideable = np.ones(n_cells, dtype=bool)
    hideable[0] = False

    def union_value(kind: str, cells: list[int]) -> float:
        return float(np.unique(np.concatenate([patients[kind][c] for c in cells])).size)

    def slot(kind: str) -> str:
        """The kind of variable a count adds up like."""
        if kind in kinds:
            return kind
        return next((k for k in kinds if k != "n" and kind in dict(COUNT_IDENTITIES)[k]), "n")

    def audit(known: np.ndarray) -> list[Disclosure]:
        limits = reason_bounds(small, known[:n_cells], minimum)
        bounds = [count_bounds(system, known, kind, sizes[kind], *limits[kind]) for kind in kinds]
        for kind, values in counts.items():
            low = limits[kind][0] if kind in kinds else 0.0  # cases are at least their patients
            bounds.append(count_bounds(system, known, slot(kind), values, low))
        found = disclosures(system, known, small=np.concatenate([small[k] for k in kinds]), union_value=union_value, minimum=minimum)
        return found or bound_disclosures(system, known, bounds)

    def order(cell: int) -> tuple:
        """Which cell to withhold first: the finest grouping (an intersection cell before an attribute
        value), then one of missing values (no group a finding is about), then the fewest patients."""
        attrs, values = keys[cell]
        return -len(attrs), UNKNOWN not in values, int(sizes["n"][cell]), int(counts["n"][cell]), attrs, values

    withheld = protect(system, np.tile(~hidden, len(kinds)), hides=kinds, hideable=hideable, order=order, audit=audit)
    for c in withheld:
        reasons[c] = "complementary"
    return reasons


def reason_bounds(small: Mapping[str, np.ndarray], known: np.ndarray, minimum: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """What the published reasons tell a reader about the patients of each kind in ``small`` (in
    ``SMALL_REASONS`` order) of each hidden cell: under the minimum in the kind its reason names
    (and in every kind if it names all patients), at least 1 patient in all; at least the minimum
    in a kind named after its reason's, or in every kind when it was withheld; else nothing."""
    kinds = list(small)
    named = np.full(known.size, len(kinds))  # which kind a cell's reason names; len(kinds): none
    for i in reversed(range(len(kinds))):
        named[small[kinds[i]]] = i
    out = {}
    for i, kind in enumerate(kinds):
        low = np.where(named > i, float(minimum), 1.0 if i == 0 else 0.0)
        low[(named < i) & (named > 0)] = 0.0
        high = np.where((named == i) | (named == 0), minimum - 1.0, np.inf)
        out[kind] = (np.where(known, 0.0, low), np.where(known, np.inf, high))
    return out


def count_bounds(
    system: DisclosureSystem, known: np.ndarray, kind: str, values: np.ndarray, low: float | np.ndarray = 0.0, high: float | np.ndarray = np.inf
) -> Bounds:
    """``Bounds`` of one count per cell, carried by the system's variables of ``kind`` (their
    known mask is the count's): at least ``low`` (not negative), at most ``high``; the cells
    inside a published cell with none of it are public (they have none either)."""
    start = system.kinds.index(kind) * system.n_cells
    slot = slice(start, start + system.n_cells)
    value, lower, upper = np.zeros(known.size), np.full(known.size, -np.inf), np.full(known.size, np.inf)
    value[slot], lower[slot], upper[slot] = values, low, high
    public = np.zeros(known.size, dtype=bool)
    for total, members in system.equations:
        if known[start + total] and values[total] == 0:
            public[[start + m for m in members]] = True
    return Bounds(value, lower, upper, public & ~known)


@dataclass(frozen=True)
class RecoveredCount:
    """A count of a suppressed subgroup that a reader pins down from a published report alone.
    ``implied``: a published subgroup that contains it has none of this count, so it has none
    either (the published figure says so; not counted as a disclosure)."""

    subgroup: str
    kind: str  # one of COUNT_KINDS
    value: float
    implied: bool


def published_disclosure_audit(cells: Sequence[SubgroupResult]) -> list[RecoveredCount]:
    """The reader's attack on a stratified report (``cells``: ``[report.overall, *report.subgroups]``,
    as published): every count of a suppressed subgroup that the published counts, the counts
    that the published rates give (``tp = sensitivity x positives``, ``tn = specificity x
    negatives``), the partition sums of every grouping, the identities within a cell and
    ``count >= 0`` pin to one value (``recovered_counts``)."""
    keys = [(c.attributes, c.values) for c in cells]
    system = DisclosureSystem.build(len(cells), partition_equations(keys, list(dict.fromkeys(k[0] for k in keys))), COUNT_KINDS, COUNT_IDENTITIES)
    published = np.full((len(COUNT_KINDS), len(cells)), np.nan)
    for i, c in enumerate(cells):
        if not c.suppressed:
            published[:, i] = _published_counts(c)
    zero_inside = np.zeros_like(published, dtype=bool)
    for total, members in system.equations:
        zero_inside[:, members] |= (published[:, total] == 0)[:, None]
    n = len(cells)
    return [
        RecoveredCount(cells[v % n].name, COUNT_KINDS[v // n], value, bool(zero_inside[v // n, v % n]) and value == 0)
        for v, value in sorted(recovered_counts(system, published.ravel()).items())
        if cells[v % n].suppressed
    ]


def _published_counts(cell: SubgroupResult) -> list[float]:
    """A shown subgroup's counts in ``COUNT_KINDS`` order; NaN where its figures do not give one."""
    n, positive = float(cell.n_cases), float(cell.n_positive)
    negative = n - positive

    def from_rate(metric: str, total: float) -> float:
        estimate = (cell.metrics or {}).get(metric)
        if total == 0:
            return 0.0
        return math.nan if estimate is None or estimate.value is None else float(round(estimate.value * total))

    tp, tn = from_rate("sensitivity", positive), from_rate("specificity", negative)
    return [n, positive, negative, tp, positive - tp, tn, negative - tn]
