"""dynsweep.stats: intervals of a mean over seeds, Welch and paired comparisons against SciPy and
the textbook formulas, and the bootstrap over seeds on values whose resampling law is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from dynsweep import stats

A = [0.912, 0.905, 0.921, 0.917]
B = [0.884, 0.899, 0.871, 0.890]


def test_mean_interval_is_students_t_interval():
    interval = stats.mean_interval(A)
    mean, sem = np.mean(A), scipy_stats.sem(A)
    low, high = scipy_stats.t.interval(0.95, len(A) - 1, loc=mean, scale=sem)
    assert (interval.mean, interval.std, interval.n) == (pytest.approx(mean), pytest.approx(np.std(A, ddof=1)), 4)
    assert (interval.low, interval.high) == (pytest.approx(low), pytest.approx(high))
    wider = stats.mean_interval(A, confidence=0.99)
    assert wider.low < interval.low and wider.high > interval.high and wider.confidence == 0.99


def test_mean_interval_of_one_value_none_and_nothing():
    one = stats.mean_interval([0.9])
    assert one.mean == 0.9 and one.n == 1 and math.isnan(one.std) and not one.known
    assert math.isnan(one.low) and math.isnan(one.high)
    unfinished = stats.mean_interval([0.9, None, 0.8])  # a seed still training is left out
    assert unfinished.n == 2 and unfinished.mean == pytest.approx(0.85)
    nothing = stats.mean_interval([None])
    assert nothing.n == 0 and math.isnan(nothing.mean)


def test_two_values_interval_by_hand():
    # mean 0.5, std sqrt(0.02), std / sqrt(2) = 0.1, t(0.975, 1) = 12.706: half width 1.2706
    interval = stats.mean_interval([0.4, 0.6])
    assert interval.high - interval.mean == pytest.approx(1.27062047, rel=1e-6)


def test_overlap_of_intervals():
    first = stats.Interval(0.90, 0.01, 0.88, 0.92, 3)
    assert first.overlaps(stats.Interval(0.93, 0.01, 0.915, 0.945, 3)) is True
    assert first.overlaps(stats.Interval(0.95, 0.01, 0.93, 0.97, 3)) is False
    assert first.overlaps(stats.mean_interval([0.91])) is None  # one seed: unknown


def test_welch_difference_is_the_textbook_interval():
    difference = stats.compare_means(A, B)
    va, vb = np.var(A, ddof=1) / len(A), np.var(B, ddof=1) / len(B)
    df = (va + vb) ** 2 / (va**2 / (len(A) - 1) + vb**2 / (len(B) - 1))  # Welch-Satterthwaite
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    estimate = np.mean(A) - np.mean(B)
    assert difference.method == "welch t"
    assert difference.estimate == pytest.approx(estimate)
    assert (difference.low, difference.high) == (pytest.approx(estimate - half), pytest.approx(estimate + half))
    assert difference.p_value == pytest.approx(scipy_stats.ttest_ind(A, B, equal_var=False).pvalue)
    assert difference.p_value < 0.05 and difference.known
    assert difference.a == stats.mean_interval(A) and difference.b == stats.mean_interval(B)


def test_paired_when_both_sides_trained_the_same_seeds():
    seeds = [3, 1, 2, 0]
    shuffled = [B[1], B[2], B[0], B[3]]  # B's values for seeds 3, 1, 2, 0 as seeds_b orders them
    difference = stats.compare_means(A, shuffled, seeds_a=seeds, seeds_b=[1, 2, 3, 0])
    matched_b = [dict(zip([1, 2, 3, 0], shuffled))[s] for s in seeds]
    expected = scipy_stats.ttest_rel(A, matched_b)
    low, high = expected.confidence_interval(0.95)
    assert difference.method == "paired t"
    assert difference.p_value == pytest.approx(expected.pvalue)
    assert (difference.low, difference.high) == (pytest.approx(low), pytest.approx(high))
    other_seeds = stats.compare_means(A, B, seeds_a=[0, 1, 2, 3], seeds_b=[4, 5, 6, 7])
    assert other_seeds.method == "welch t"
    unfinished = stats.compare_means(A, [*B[:3], None], seeds_a=[0, 1, 2, 3], seeds_b=[0, 1, 2, 3])
    assert unfinished.method == "welch t"  # seed 3 only on one side: not the same seeds


def test_one_seed_on_a_side_tells_no_difference():
    difference = stats.compare_means(A, [0.88])
    assert difference.estimate == pytest.approx(np.mean(A) - 0.88)
    assert not difference.known and math.isnan(difference.p_value)


def test_bootstrap_of_one_point_follows_the_resampling_law():
    # One point with seeds {0, 1}: a resampled mean is 0, 0.5 or 1 with probability 1/4, 1/2, 1/4,
    # so the statistic's bootstrap spread is sqrt(1/8) and its 95% percentile interval [0, 1].
    difference = stats.bootstrap_difference([[0.0, 1.0]], [[0.25]], np.sum, np.sum, resamples=20000, seed=1)
    assert difference.method == "bootstrap" and difference.estimate == pytest.approx(0.25)
    assert difference.a.std == pytest.approx(math.sqrt(1 / 8), rel=0.03)
    assert (difference.a.low, difference.a.high) == (0.0, 1.0) and difference.a.n == 1
    assert (difference.b.low, difference.b.high, difference.b.std) == (0.25, 0.25, 0.0)  # one seed: fixed
    assert (difference.low, difference.high) == (-0.25, 0.75)
    # share of resamples with a - b <= 0 is P(mean = 0) = 1/4: p = 2 x 1/4
    assert difference.p_value == pytest.approx(0.5, abs=0.02)


def test_bootstrap_is_seeded_and_separates_clear_differences():
    better = [[0.91, 0.92, 0.90], [0.95, 0.96, 0.94]]
    worse = [[0.81, 0.82, 0.80], [0.85, 0.86]]
    first = stats.bootstrap_difference(better, worse, np.sum, np.sum, resamples=500, seed=7)
    assert first == stats.bootstrap_difference(better, worse, np.sum, np.sum, resamples=500, seed=7)
    assert first != stats.bootstrap_difference(better, worse, np.sum, np.sum, resamples=500, seed=8)
    assert first.low > 0 and first.p_value == pytest.approx(2 / 501)  # no resample at or below 0
    assert first.estimate == pytest.approx(0.91 + 0.95 - 0.81 - 0.855)
    same = stats.bootstrap_difference(better, better, np.sum, np.sum, resamples=500, seed=7)
    assert same.low < 0 < same.high and same.p_value > 0.2


def test_bootstrap_without_any_repeated_point_has_no_interval():
    difference = stats.bootstrap_difference([[0.9], [0.8]], [[0.7]], np.max, np.max)
    assert difference.estimate == pytest.approx(0.2) and not difference.known and math.isnan(difference.p_value)
    with pytest.raises(ValueError, match="resamples: 0"):
        stats.bootstrap_difference([[0.9]], [[0.7]], np.max, np.max, resamples=0)
    with pytest.raises(ValueError, match="every point needs at least one finished value"):
        stats.bootstrap_difference([[None]], [[0.7]], np.max, np.max)
