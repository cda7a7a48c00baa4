"""The Bernoulli CUSUM on the disagreement rate: its design against simulation, false alarms
on a stable stream, detection delay after a rise, incremental state and input checks."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from compliance.monitoring import (
    AGREEMENT_OBSERVATION,
    CusumDesign,
    CusumState,
    cusum_arl,
    cusum_median_run_length,
    cusum_path,
    cusum_reset,
    cusum_run_lengths,
    cusum_update,
    design_cusum,
    disagreement_rate_ci,
)

AGREE, PARTLY, DISAGREE = (AGREEMENT_OBSERVATION[a] for a in ("agree", "partly", "disagree"))


def _first_alarms(design: CusumDesign, rates: np.ndarray, n_streams: int, seed: int, chunk: int = 250) -> np.ndarray:
    """0-based index of each simulated stream's first alarm, -1 where none; feedback ``t`` of
    every stream disagrees with probability ``rates[t]``."""
    rng = np.random.default_rng(seed)
    first = []
    for start in range(0, n_streams, chunk):
        x = rng.random((min(chunk, n_streams - start), rates.size)) < rates
        crossed = cusum_path(x, design) >= design.h
        first.append(np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1))
    return np.concatenate(first)


# ---------------------------------------------------------------------------
# Design
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("p0", [0.05, 0.15, 0.3])
def test_designed_threshold_gives_target_in_control_arl(p0):
    design = design_cusum(p0)
    length = 10 * design.target_arl0  # a run length beyond it has probability about e^-10
    first = _first_alarms(design, np.full(length, p0), n_streams=2000, seed=11)
    assert (first < 0).sum() <= 2
    arl0 = np.where(first < 0, length, first + 1).mean()
    # Measured (seed 11): p0 0.05 -> 1992, 0.15 -> 1976, 0.3 -> 1954 (chain: 2018, 2021, 2001).
    assert arl0 == pytest.approx(design.target_arl0, rel=0.15)
    assert arl0 == pytest.approx(design.arl0, rel=0.15)


@pytest.mark.parametrize("p0", [0.05, 0.2])
def test_chain_detection_delay_matches_simulation(p0):
    """The median and mean delay to flag a doubling of the odds, from the chain and from 3000
    simulated streams; run lengths are skewed, so the median is the typical delay."""
    design = design_cusum(p0)
    delays = cusum_run_lengths(design, design.p1, n_streams=3000, seed=21, limit=5000)
    assert (delays <= 5000).all()
    # Measured (seed 21): p0 0.05 median 121 (chain 120), p0 0.2 median 64 (chain 64).
    assert np.median(delays) == pytest.approx(design.median_delay, rel=0.06)
    assert delays.mean() == pytest.approx(design.arl1, rel=0.06)
    assert design.median_delay == cusum_median_run_length(design, design.p1) < design.arl1


def test_simulated_run_lengths_give_the_chain_in_control_arl():
    design = design_cusum(0.1)
    run_lengths = cusum_run_lengths(design, 0.1, n_streams=1500, seed=4, limit=30_000)
    assert (run_lengths <= 30_000).all()
    assert run_lengths.mean() == pytest.approx(design.arl0, rel=0.1)
    assert np.median(run_lengths) == pytest.approx(cusum_median_run_length(design, 0.1), rel=0.1)


def test_design_parameters():
    design = design_cusum(0.1)
    assert design.p1 == pytest.approx(2 * 0.1 / 1.1)  # odds(p1) = 2 odds(p0)
    assert design.odds_ratio == pytest.approx(2.0)
    assert design.w_disagree == pytest.approx(math.log(design.p1 / 0.1))
    assert design.w_agree == pytest.approx(math.log((1 - design.p1) / 0.9))
    assert design.target_arl0 <= design.arl0 < 1.05 * design.target_arl0
    assert design.arl1 < design.arl0 / 10
    assert cusum_arl(design, 0.1) == pytest.approx(design.arl0)
    assert cusum_arl(design, 0.35) < design.arl1 < cusum_arl(design, 0.12)


def test_arl_is_the_wait_for_one_disagreement_when_one_crosses_the_threshold():
    design = replace(design_cusum(0.1), h=0.5 * design_cusum(0.1).w_disagree)
    assert cusum_arl(design, 0.1) == pytest.approx(10.0, rel=1e-9)
    assert cusum_arl(design, 0.25) == pytest.approx(4.0, rel=1e-9)


def test_design_is_memoised_by_rounded_p0():
    """(Timings are measured in the README, not asserted: the machines are shared.)"""
    assert design_cusum(0.1) is design_cusum(0.10004)
    assert design_cusum(0.1) is not design_cusum(0.1, target_arl0=2001)
    for p0 in (0.01, 0.25, 0.345, 0.5):
        assert design_cusum(p0, target_arl0=1999).p0 == round(p0, 4)


# ---------------------------------------------------------------------------
# Behaviour on simulated feedback
# ---------------------------------------------------------------------------


def test_stable_stream_rarely_alarms():
    design = design_cusum(0.1)
    first = _first_alarms(design, np.full(300, 0.1), n_streams=500, seed=3)
    share = (first >= 0).mean()
    geometric = 1 - math.exp(-300 / design.arl0)  # 0.139 if run lengths were geometric
    # Measured 0.116 (seed 3). A fresh CUSUM starts at 0 and must build up evidence, so
    # early alarms are rarer than geometric: 0.121 over 20000 streams.
    assert 0.05 < share < 0.2
    assert share < geometric + 0.05


def test_rise_in_disagreement_is_detected_within_the_out_of_control_arl():
    design = design_cusum(0.1)
    delays = {}
    for rate in (design.p1, 0.35):
        rates = np.r_[np.full(200, 0.1), np.full(1500, rate)]
        first = _first_alarms(design, rates, n_streams=1000, seed=5)
        after_change = first >= 200  # streams with a false alarm before the change are left out
        assert (first < 0).sum() == 0 and after_change.mean() > 0.8
        delays[rate] = np.median(first[after_change] - 200 + 1)
    # Measured (seed 5): median 75.5 feedbacks at p1 = 0.18 (ARL1 from zero 100), 21 at 0.35 (26);
    # 8% of streams alarmed in the 200 in-control feedbacks.
    assert delays[design.p1] < design.arl1
    assert delays[0.35] < cusum_arl(design, 0.35)
    assert delays[0.35] < delays[design.p1] / 2


def test_partly_lies_between_agree_and_disagree():
    design = design_cusum(0.1)
    start = CusumState(statistic=1.0)
    after = {x: cusum_update(start, [x], design).statistic for x in (AGREE, PARTLY, DISAGREE)}
    assert after[AGREE] < after[PARTLY] < after[DISAGREE]
    assert after[PARTLY] - 1.0 == pytest.approx((design.w_agree + design.w_disagree) / 2, abs=1e-9)


def test_partly_at_the_in_control_mean_does_not_add_false_alarms():
    design = design_cusum(0.1)
    rng = np.random.default_rng(8)
    binary = rng.random((1000, 1000)) < 0.1
    mixed = rng.choice([AGREE, PARTLY, DISAGREE], p=[0.85, 0.10, 0.05], size=(1000, 1000))  # mean 0.1
    share = {name: (cusum_path(x, design) >= design.h).any(axis=1).mean() for name, x in (("binary", binary), ("mixed", mixed))}
    assert share["mixed"] <= share["binary"]


# ---------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------


def _stream(seed: int, n: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rate = np.r_[np.full(n // 2, 0.1), np.full(n - n // 2, 0.3)]
    disagree = rng.random(n) < rate
    partly = rng.random(n) < 0.1
    return np.where(partly, PARTLY, np.where(disagree, DISAGREE, AGREE))


def test_chunked_updates_give_exactly_the_whole_stream_state():
    design = design_cusum(0.1)
    x = _stream(1)
    whole = cusum_update(CusumState(), x, design)
    assert whole.alarmed

    chunked = CusumState()
    for chunk in np.split(x, [1, 2, 17, 400, 401, 1499, 1500, 2999]):
        chunked = cusum_update(chunked, chunk, design)
    one_by_one = CusumState()
    for value in x.tolist():
        one_by_one = cusum_update(one_by_one, [value], design)
    assert chunked == whole
    assert one_by_one == whole


def test_state_and_design_round_trip_through_json():
    design = design_cusum(0.1)
    x = _stream(2)
    state = cusum_update(CusumState(), x[:1700], design)
    stored = CusumState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert stored == state
    assert cusum_update(stored, x[1700:], design) == cusum_update(state, x[1700:], design)

    stored_design = CusumDesign.from_dict(json.loads(json.dumps(design.to_dict())))
    assert stored_design == design
    assert design.to_dict()["w_disagree"] == design.w_disagree
    assert CusumState.from_dict({}) == CusumState()


def test_alarm_keeps_first_crossing_until_reset():
    design = design_cusum(0.1)
    x = _stream(3)
    path = cusum_path(x, design)
    first_crossing = int(np.flatnonzero(path >= design.h)[0])

    state = cusum_update(CusumState(), x[: first_crossing + 1], design)
    assert state.alarmed and state.alarm_at == first_crossing
    state = cusum_update(state, x[first_crossing + 1 :], design)
    assert state.alarm_at == first_crossing
    assert state.statistic == path[-1] and state.peak == path.max()
    assert state.n == state.n_since_reset == x.size

    reset = cusum_reset(state)
    assert reset == CusumState(n=x.size)
    again = cusum_update(reset, x[-500:], design)  # the raised rate alarms again
    restarted = cusum_path(x[-500:], design)
    assert again.alarm_at == x.size + int(np.flatnonzero(restarted >= design.h)[0])
    assert again.n_since_reset == 500 and again.peak == restarted.max()


def test_path_matches_the_recursion_and_runs_streams_in_rows():
    design = design_cusum(0.2)
    x = _stream(4, n=500)
    expected, s = [], 0.0
    for value in x:
        s = max(0.0, s + value * design.w_disagree + (1 - value) * design.w_agree)
        expected.append(s)
    path = cusum_path(x, design)
    np.testing.assert_allclose(path, expected, atol=1e-7)  # increments in steps of 2^-32
    streams = np.stack([x, x[::-1], np.zeros_like(x)])
    rows = cusum_path(streams, design)
    np.testing.assert_array_equal(rows[0], path)
    np.testing.assert_array_equal(rows[1], cusum_path(x[::-1], design))
    assert not rows[2].any()
    assert cusum_update(CusumState(), [], design) == CusumState()


# ---------------------------------------------------------------------------
# Rates and input checks
# ---------------------------------------------------------------------------


def test_disagreement_rate_ci():
    assert disagreement_rate_ci(0, 0) == (None, None)
    low, high = disagreement_rate_ci(10, 100)
    assert (low, high) == pytest.approx((0.0552, 0.1744), abs=1e-4)
    low_partly, high_partly = disagreement_rate_ci(10.5, 100)  # one "partly" counts one half
    assert low < low_partly < 0.105 < high_partly and high < high_partly
    assert disagreement_rate_ci(0, 20)[0] == 0.0
    assert disagreement_rate_ci(20, 20)[1] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p0": 0.0}, "strictly between 0 and 1"),
        ({"p0": 1.2}, "strictly between 0 and 1"),
        ({"p0": "0.1"}, "strictly between 0 and 1"),
        ({"p0": 0.0004}, "outside"),
        ({"p0": 0.1, "odds_ratio": 1.0}, "odds_ratio must be a finite number above 1"),
        ({"p0": 0.1, "odds_ratio": math.inf}, "odds_ratio must be a finite number above 1"),
        ({"p0": 0.1, "target_arl0": 2000.0}, "whole number of feedbacks"),
        ({"p0": 0.1, "target_arl0": 10}, "above 1/p0 = 10"),
        ({"p0": 0.1, "target_arl0": 10**7}, "at most"),
        ({"p0": 0.001, "odds_ratio": 1.01, "target_arl0": 10**6}, "lattice states"),
    ],
)
def test_design_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        design_cusum(**kwargs)


@pytest.mark.parametrize(
    ("observations", "message"),
    [([0.0, 1.5], r"in \[0, 1\]"), ([0.0, math.nan], r"in \[0, 1\]"), ([-1.0], r"in \[0, 1\]"), ([[0.0, 1.0]], "dimension")],
)
def test_update_rejects_bad_observations(observations, message):
    with pytest.raises(ValueError, match=message):
        cusum_update(CusumState(), observations, design_cusum(0.1))


@pytest.mark.parametrize(
    ("args", "message"),
    [((5, 4), "between 0 and n = 4"), ((-1, 4), "between 0 and n"), ((1, -2), "at least 0"), ((1, 2.5), "whole number"), ((1, 4, 1.0), "confidence")],
)
def test_rate_ci_rejects_bad_counts(args, message):
    with pytest.raises(ValueError, match=message):
        disagreement_rate_ci(*args)


def test_hand_built_design_is_checked():
    design = CusumDesign(p0=0.1, p1=0.2, h=3.0)  # as read back from p0, p1 and h alone
    assert design.arl0 is None and cusum_arl(design, 0.1) > 100
    with pytest.raises(ValueError, match="0 < p0 < p1 < 1"):
        CusumDesign(p0=0.2, p1=0.1, h=3.0)
    with pytest.raises(ValueError, match="h must be positive"):
        CusumDesign(p0=0.1, p1=0.2, h=0.0)


def test_arl_rejects_a_rate_outside_0_1():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        cusum_arl(design_cusum(0.1), 1.0)
