"""Post-market monitoring (AI Act Art. 72): a sequential test on each deployment's
clinician disagreement rate, a Bernoulli CUSUM (Page's CUSUM on the log-likelihood
ratio of p1 against p0, as in Reynolds & Stoumbos 1999).

Plain Python and NumPy (no Django): the service feeds it the observations of new
feedback and keeps the design and the state in the deployment monitor's JSON fields.

Parameters:

- ``p0``, the in-control disagreement rate: the rate in the deployment's first
  feedbacks (Phase I, ``in_control_rate``: the estimate itself, within [2%, 50%]; its
  95% interval and what the interval means for false alarms are kept beside the design,
  ``phase_one``), or a stated default. It is rounded to 4 decimals and must lie in
  [0.001, 0.999].
- ``p1``, the rate the test is built to detect: by default the odds ratio 2 shift,
  ``odds(p1) = 2 odds(p0)``, i.e. ``p1 = 2 p0 / (1 + p0)`` (0.1 -> 0.18, 0.3 -> 0.46).
- ``h``, the decision threshold, chosen so that the in-control average run length
  (feedbacks until a false alarm) is at least ``target_arl0`` (default 2000), with a
  Markov-chain approximation (Brook & Evans 1972).

Each feedback is an observation ``x``: 0 agree, 0.5 partly, 1 disagree
(``AGREEMENT_OBSERVATION``). Its increment is the log-likelihood ratio of a Bernoulli
observation, ``x w_disagree + (1 - x) w_agree`` with ``w_disagree = log(p1/p0)`` and
``w_agree = log((1-p1)/(1-p0))``; it is linear in ``x``, so "partly" counts as half a
disagreement: the evidence of one agreement and one disagreement at half weight each.
Counting it as a full disagreement would raise alarms on mild reservations; dropping
it would hide a drift that shows first as "partly". The baseline rate and the
per-period rates must use the same coding (``k = n_disagree + n_partly / 2``). At a
given mean, "partly" feedback varies less than agree/disagree, so false alarms are, if
anything, rarer than designed (with 10% "partly" at p0 = 0.1, about a third as many
in simulation); by the same token a rise that shows only as "partly" is detected later.

The test:

1. ``S_0 = 0``; after each feedback ``S_t = max(0, S_{t-1} + z_t)``: evidence for p1
   accumulates, evidence for p0 drains it, never below zero.
2. An alarm is raised at the first ``t`` with ``S_t >= h``. ``S_t`` is the largest
   log-likelihood ratio of p1 against p0 over the runs of feedback ending at ``t``, so
   an alarm means that the latest run of feedback is at least ``e^h`` times as likely
   under the raised rate as under the rate at deployment: an officer should review the
   deployment. It is a signal, not proof of a fault: at the in-control rate it comes on
   average once in ``arl0`` feedbacks.
3. After the alarm the statistic keeps running (the chart shows whether the evidence
   keeps growing) but ``alarm_at`` stays the first crossing, until an officer resets
   the test (``cusum_reset``) once the alert is handled.

The design:

1. ``p1`` from the odds ratio; increments ``w_disagree > 0 > w_agree``.
2. A lattice of unit ``delta``: the smaller step (in absolute value) is a whole
   number of units, the larger at least ``LATTICE_MIN_STEP`` units. The statistic is
   then a Markov chain on states ``0 .. H-1``, absorbed (alarm) at ``H = h / delta``.
   The larger step falls between two states; it is split between them with the
   weights that keep its mean. Rounding it instead biases the drift, which moved the
   ARL by up to 9% in simulation; split, the chain's ARL is within 3% of simulation.
3. The zero-state average run length at a rate ``p`` is ``L_0`` where
   ``(I - R) L = 1`` and ``R`` is the chain's transition matrix among the
   non-alarm states.
4. ``H`` is the smallest integer whose in-control ARL reaches ``target_arl0``
   (doubling, then bisection: the ARL grows with ``H``); ``h = H delta``. ``arl0`` is
   the ARL it gives: within 2% of the target for p0 in [0.01, 0.5], far above it when
   ``p0`` is so small that one or two disagreements decide (p0 = 0.001: 3000).
5. The detection delay at ``p1``: its mean (``arl1``, step 3) and its median
   (``median_delay``): the chain's distribution over the states, stepped forward one
   observation at a time from ``S = 0``, until half of it has been absorbed. Against
   simulated streams (``cusum_run_lengths``) the chain's ARL0 is within 4% and its
   median delay within 2% for p0 in [0.02, 0.3].

The statistic is kept in fixed point, as a whole number of ``TICK`` (2^-32): the
vectorised update then sums integers, so feeding a stream one feedback at a time or
all at once gives exactly the same state.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import cache, lru_cache
from typing import Any

import numpy as np

from radtrust_engine.stats import wilson_interval

AGREEMENT_OBSERVATION = {"agree": 0.0, "partly": 0.5, "disagree": 1.0}
P0_RANGE = (0.001, 0.999)
MAX_TARGET_ARL0 = 1_000_000
LATTICE_MIN_STEP = 50
MAX_LATTICE_STATES = 4000
MEDIAN_STEP_LIMIT = 200_000
TICK = 2.0**-32
METHOD = "markov-chain"


@dataclass(frozen=True)
class CusumDesign:
    """The parameters of one deployment's test and, when ``design_cusum`` chose them, the
    run lengths they imply."""

    p0: float  # in-control disagreement rate
    p1: float  # rate to detect
    h: float  # decision threshold on the statistic
    target_arl0: int | None = None
    arl0: float | None = None  # in-control ARL at h (Markov chain), >= target_arl0
    arl1: float | None = None  # zero-state ARL at p1: the expected delay to detect p1
    method: str = METHOD
    median_delay: int | None = None  # zero-state median run length at p1: the typical delay to detect p1

    def __post_init__(self) -> None:
        if not 0.0 < self.p0 < self.p1 < 1.0:
            raise ValueError(f"a design needs 0 < p0 < p1 < 1 (a rise to detect), got p0={self.p0}, p1={self.p1}")
        if not self.h > 0.0:
            raise ValueError(f"the threshold h must be positive, got {self.h}")

    @property
    def odds_ratio(self) -> float:
        return (self.p1 / (1.0 - self.p1)) / (self.p0 / (1.0 - self.p0))

    @property
    def w_disagree(self) -> float:
        return math.log(self.p1 / self.p0)

    @property
    def w_agree(self) -> float:
        return math.log((1.0 - self.p1) / (1.0 - self.p0))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "odds_ratio": self.odds_ratio, "w_disagree": self.w_disagree, "w_agree": self.w_agree}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CusumDesign:
        """Read back ``to_dict()``; the odds ratio and increments are derived, not read."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class CusumState:
    """Where a deployment's test stands; kept in a JSON field and updated with each feedback."""

    statistic: float = 0.0  # S >= 0, a whole number of TICK
    n: int = 0  # observations since monitoring began
    n_since_reset: int = 0
    alarmed: bool = False
    alarm_at: int | None = None  # 0-based index (in all n observations) of the first crossing
    peak: float = 0.0  # largest statistic since the last reset

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CusumState:
        """Read back ``to_dict()``; an empty dict (a new monitor) is the initial state."""
        return cls(**data)


# ---------------------------------------------------------------------------
# Design
# ---------------------------------------------------------------------------


def _lattice(w_disagree: float, w_agree: float) -> tuple[float, float, float]:
    """The steps up and down in lattice units, and the unit (design step 2)."""
    small, large = sorted((w_disagree, -w_agree))
    delta = small / math.ceil(LATTICE_MIN_STEP * small / large)
    return w_disagree / delta, -w_agree / delta, delta


def _moves(rate: float, up: float, down: float, n_states: int) -> list[tuple[np.ndarray, float]]:
    """The chain's moves: for each, every state's target and the move's probability. A step
    between two whole numbers of units is split between them with the weights that keep its
    mean (linear interpolation); targets below 0 are 0, those at or above ``n_states`` the
    alarm (absorbed)."""
    i = np.arange(n_states)
    moves = []
    for step, prob in ((up, rate), (-down, 1.0 - rate)):
        base = math.floor(step)
        for offset, weight in ((base, 1.0 - (step - base)), (base + 1, step - base)):
            moves.append((np.maximum(i + offset, 0), prob * weight))
    return moves


def _chain_arl(rate: float, up: float, down: float, n_states: int) -> float:
    """Zero-state ARL of the lattice chain absorbed at ``n_states`` (design step 3)."""
    a = np.eye(n_states)
    i = np.arange(n_states)
    for target, prob in _moves(rate, up, down, n_states):
        stays = target < n_states
        np.subtract.at(a, (i[stays], target[stays]), prob)
    return float(np.linalg.solve(a, np.ones(n_states))[0])


def _chain_median(rate: float, up: float, down: float, n_states: int) -> int:
    """Zero-state median run length of the chain: the first ``t`` with ``P(alarm by t) >= 1/2``,
    from the distribution of the statistic stepped forward one observation at a time (design step 5)."""
    moves = [(target[target < n_states], np.flatnonzero(target < n_states), prob) for target, prob in _moves(rate, up, down, n_states)]
    alive = np.zeros(n_states)
    alive[0] = 1.0
    t = 0
    while alive.sum() > 0.5:
        if t >= MEDIAN_STEP_LIMIT:
            raise ValueError(f"the median run length at rate {rate} is over {MEDIAN_STEP_LIMIT} observations")
        alive = sum(np.bincount(target, weights=alive[source] * prob, minlength=n_states) for target, source, prob in moves)
        t += 1
    return t


def _threshold_states(design: CusumDesign) -> tuple[float, float, int]:
    up, down, delta = _lattice(design.w_disagree, design.w_agree)
    return up, down, max(1, math.ceil(design.h / delta - 1e-9))


def cusum_arl(design: CusumDesign, rate: float) -> float:
    """Expected feedbacks from a fresh start (S = 0) to an alarm when the true
    disagreement rate is ``rate``: ``arl0`` at ``p0``, the detection delay at a higher rate."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be strictly between 0 and 1, got {rate}")
    return _chain_arl(rate, *_threshold_states(design))


def cusum_median_run_length(design: CusumDesign, rate: float) -> int:
    """Median feedbacks from a fresh start (S = 0) to an alarm when the true disagreement rate is
    ``rate``: at ``p1`` the typical detection delay (``median_delay``). Run lengths are skewed, so
    the median is below the mean (``cusum_arl``)."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be strictly between 0 and 1, got {rate}")
    return _chain_median(rate, *_threshold_states(design))


def cusum_run_lengths(design: CusumDesign, rate: float, *, n_streams: int, seed: int, limit: int) -> np.ndarray:
    """Monte Carlo check of the chain: the run length (feedbacks to the first alarm, from a fresh
    start) of ``n_streams`` simulated Bernoulli streams at ``rate``; ``limit + 1`` for a stream
    with no alarm in ``limit`` feedbacks. Streams are run in blocks, each carrying its statistic on."""
    rng = np.random.default_rng(seed)
    run_length = np.full(n_streams, limit + 1)
    ticks = np.zeros((n_streams, 1), dtype=np.int64)
    block = max(64, min(limit, 4096))
    for start in range(0, limit, block):
        width = min(block, limit - start)
        path = _path_ticks((rng.random((n_streams, width)) < rate).astype(np.float64), design, ticks)
        crossed = (path * TICK >= design.h) & (run_length > limit)[:, None]
        first = crossed.any(axis=1)
        run_length[first] = start + crossed[first].argmax(axis=1) + 1
        ticks = path[:, -1:]
        if (run_length <= limit).all():
            break
    return run_length


def design_cusum(p0: float, *, odds_ratio: float = 2.0, target_arl0: int = 2000) -> CusumDesign:
    """The CUSUM for a deployment whose baseline disagreement rate is ``p0``: detects an
    ``odds_ratio`` rise, with a false alarm on average once in ``target_arl0`` feedbacks
    or fewer. Deterministic and memoised by (p0 to 4 decimals, odds_ratio, target_arl0)."""
    if not isinstance(p0, numbers.Real) or not 0.0 < p0 < 1.0:
        raise ValueError(f"p0 must be a disagreement rate strictly between 0 and 1, got {p0!r}")
    p0 = round(float(p0), 4)
    if not P0_RANGE[0] <= p0 <= P0_RANGE[1]:
        raise ValueError(
            f"p0 = {p0} is outside [{P0_RANGE[0]}, {P0_RANGE[1]}]: with so few disagreements (or "
            "agreements) a baseline cannot be told apart from 0 (or 1); state a default rate inside the range"
        )
    if not isinstance(odds_ratio, numbers.Real) or not odds_ratio > 1.0 or not math.isfinite(odds_ratio):
        raise ValueError(f"odds_ratio must be a finite number above 1 (the rise to detect), got {odds_ratio!r}")
    if isinstance(target_arl0, bool) or not isinstance(target_arl0, int):
        raise ValueError(f"target_arl0 must be a whole number of feedbacks, got {target_arl0!r}")
    if not 1.0 / p0 < target_arl0 <= MAX_TARGET_ARL0:
        raise ValueError(
            f"target_arl0 must be above 1/p0 = {1.0 / p0:.0f} feedbacks (the wait for a single "
            f"disagreement, which any threshold meets) and at most {MAX_TARGET_ARL0}; got {target_arl0}"
        )
    return _design(p0, float(odds_ratio), target_arl0)


@lru_cache(maxsize=256)
def _design(p0: float, odds_ratio: float, target_arl0: int) -> CusumDesign:
    p1 = odds_ratio * p0 / (1.0 - p0 + odds_ratio * p0)
    up, down, delta = _lattice(math.log(p1 / p0), math.log((1.0 - p1) / (1.0 - p0)))

    @cache
    def arl0(n_states: int) -> float:
        if n_states > MAX_LATTICE_STATES:
            raise ValueError(
                f"the design for p0 = {p0}, odds_ratio = {odds_ratio}, target_arl0 = {target_arl0} needs "
                f"more than {MAX_LATTICE_STATES} lattice states: use a larger odds_ratio or a smaller target_arl0"
            )
        return _chain_arl(p0, up, down, n_states)

    low, high = 1, 2  # invariant: arl0(low) < target <= arl0(high)
    while arl0(high) < target_arl0:
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if arl0(mid) >= target_arl0 else (mid, high)
    return CusumDesign(
        p0=p0,
        p1=p1,
        h=high * delta,
        target_arl0=target_arl0,
        arl0=arl0(high),
        arl1=_chain_arl(p1, up, down, high),
        median_delay=_chain_median(p1, up, down, high),
    )


# ---------------------------------------------------------------------------
# Running the test
# ---------------------------------------------------------------------------


def _check_observations(observations: Sequence[float] | np.ndarray, ndim: tuple[int, ...]) -> np.ndarray:
    x = np.asarray(observations, dtype=np.float64)
    if x.ndim not in ndim:
        raise ValueError(f"observations must have {' or '.join(map(str, ndim))} dimension(s), got shape {x.shape}")
    if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
        raise ValueError("observations must lie in [0, 1]: 0 agree, 0.5 partly, 1 disagree")
    return x


def _path_ticks(x: np.ndarray, design: CusumDesign, start_ticks: int | np.ndarray = 0) -> np.ndarray:
    """The statistic after each observation (last axis), in ticks. ``S_t = max(0, S_{t-1} + z_t)``
    unrolls to ``C_t - min(-S_0, min_{j<=t} C_j)`` with ``C`` the running sum of increments;
    ``start_ticks`` is ``S_0``, one per stream (a column) or one for all."""
    z = np.rint((x * design.w_disagree + (1.0 - x) * design.w_agree) / TICK).astype(np.int64)
    c = np.cumsum(z, axis=-1)
    return c - np.minimum(np.minimum.accumulate(c, axis=-1), -start_ticks)


def cusum_path(observations: Sequence[float] | np.ndarray, design: CusumDesign) -> np.ndarray:
    """The statistic after each observation from a fresh start, for the monitoring chart.
    A 2-D array is many independent streams (one per row), as used in simulation."""
    x = _check_observations(observations, (1, 2))
    return _path_ticks(x, design) * TICK


def cusum_update(state: CusumState, observations: Sequence[float] | np.ndarray, design: CusumDesign) -> CusumState:
    """The state after the new observations, in order; ``state`` is left unchanged."""
    x = _check_observations(observations, (1,))
    if x.size == 0:
        return replace(state)
    path = _path_ticks(x, design, round(state.statistic / TICK)) * TICK
    alarm_at = state.alarm_at
    if not state.alarmed:
        crossed = np.flatnonzero(path >= design.h)
        alarm_at = state.n + int(crossed[0]) if crossed.size else None
    return CusumState(
        statistic=float(path[-1]),
        n=state.n + x.size,
        n_since_reset=state.n_since_reset + x.size,
        alarmed=alarm_at is not None,
        alarm_at=alarm_at,
        peak=max(state.peak, float(path.max())),
    )


def cusum_reset(state: CusumState) -> CusumState:
    """Restart the test after an officer has handled its alert; the observation count goes on."""
    return CusumState(n=state.n)


def disagreement_rate_ci(k: float, n: int, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson interval of a period's disagreement rate ``k / n``, ``k`` counting "partly" as
    one half (conservative then: such feedback varies less than a 0/1 outcome). None, None for n = 0."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a whole number of feedbacks, at least 0, got {n!r}")
    if not 0.0 <= k <= n:
        raise ValueError(f"k (disagreements, partly counting one half) must be between 0 and n = {n}, got {k}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    return wilson_interval(float(k), int(n), confidence)


# ---------------------------------------------------------------------------
# Phase I: the rate at deployment
# ---------------------------------------------------------------------------

MIN_BASELINE_REPORTS = 50
DESIGN_RATE_FLOOR = 0.02
DESIGN_RATE_CEILING = 0.5  # a site disagreeing half the time needs people, not a test


@dataclass(frozen=True)
class PhaseOne:
    """The rate at deployment, estimated from the first reports (Phase I), and what its
    uncertainty means for the test designed at it: the in-control ARL if the true rate were
    either end of its 95% interval."""

    n: int  # reports
    k: float  # disagreements, partly counting one half
    rate: float  # k / n
    ci_low: float
    ci_high: float
    arl0_if_ci_high: float  # fewer reports between false alarms than designed
    arl0_if_ci_low: float | None  # more; None when the interval reaches 0 (no alarm without a disagreement)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhaseOne:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def in_control_rate(k: float, n: int) -> float:
    """Phase I: the rate the test is designed at, the disagreement rate ``k / n`` of the first
    ``n`` reports (at least ``MIN_BASELINE_REPORTS``), kept within [2%, 50%].

    The point estimate, so that the false-alarm interval and the detection delay the design
    states hold at the estimated rate; the estimate's uncertainty is stated beside them
    (``phase_one``) rather than hidden in a deliberately high rate, which made the stated
    figures wrong at the true rate. Below 2% the test is designed at 2%: false alarms are then
    rarer, and a rise is flagged later, than stated."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < MIN_BASELINE_REPORTS:
        raise ValueError(f"the rate at deployment needs at least {MIN_BASELINE_REPORTS} reports, got {n!r}")
    if not 0.0 <= k <= n:
        raise ValueError(f"k (disagreements, partly counting one half) must be between 0 and n = {n}, got {k}")
    return min(max(k / n, DESIGN_RATE_FLOOR), DESIGN_RATE_CEILING)


def phase_one(k: float, n: int, design: CusumDesign) -> PhaseOne:
    """The Phase I estimate with its 95% Wilson interval, and the in-control ARL of ``design``
    at both ends of the interval: how far the stated false-alarm interval can be off because
    the rate at deployment was estimated from ``n`` reports."""
    low, high = disagreement_rate_ci(k, n)
    return PhaseOne(
        n=int(n),
        k=float(k),
        rate=k / n,
        ci_low=low,
        ci_high=high,
        arl0_if_ci_high=cusum_arl(design, min(high, P0_RANGE[1])),
        arl0_if_ci_low=cusum_arl(design, low) if low > 0 else None,
    )
