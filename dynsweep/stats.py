"""Seed noise in numbers: the interval of a mean over seeds, the difference of two means, and the
bootstrap over seeds of a statistic of several points (a front's hypervolume).

The bottom layer of the statistics (NumPy and SciPy only): the sweep driver fills a trial's
``value_std``/``value_ci`` with :func:`mean_interval`, the analysis compares trials and fronts
with :func:`compare_means` and :func:`bootstrap_difference`. Every function takes the finished
values of one training per seed; ``None`` (a seed still training or failed) is left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
"""The confidence level of every interval dynsweep reports."""

RESAMPLES = 2000
"""Bootstrap resamples of :func:`bootstrap_difference` unless told otherwise."""

NAN = float("nan")


class _Bounded:
    """An interval ``[low, high]`` that is NaN where the data cannot give one."""

    low: float
    high: float

    @property
    def known(self) -> bool:
        """True when the interval exists (not NaN)."""
        return not (math.isnan(self.low) or math.isnan(self.high))


@dataclass(frozen=True)
class Interval(_Bounded):
    """A mean over ``n`` values with its spread and its confidence interval [low, high].

    ``std`` and the interval are NaN with fewer than two values: one training says nothing of
    the seed noise. For a bootstrapped statistic, ``std`` is the resamples' and ``n`` the points'.
    """

    mean: float
    std: float
    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE

    def overlaps(self, other: Interval) -> bool | None:
        """Whether the two intervals share a value; None when either has no interval.

        Overlapping 95% intervals do not mean the two means are equal (their difference may still
        be significant), but intervals that do not overlap differ at well under 5%."""
        if not (self.known and other.known):
            return None
        return self.low <= other.high and other.low <= self.high


@dataclass(frozen=True)
class Difference(_Bounded):
    """``a`` against ``b``: each side's interval, the difference ``a - b`` with its interval and
    the two-sided p-value of "no difference"; NaN where the data cannot tell (one seed a side).

    ``method`` names the test: "welch t", "paired t" or "bootstrap".
    """

    a: Interval
    b: Interval
    estimate: float
    low: float
    high: float
    p_value: float
    method: str
    confidence: float = CONFIDENCE


def finished(values: Iterable[float | None]) -> np.ndarray:
    """The values that exist (None, a seed still training or failed, left out), as floats."""
    return np.asarray([v for v in values if v is not None], dtype=float)


def mean_interval(values: Iterable[float | None], confidence: float = CONFIDENCE) -> Interval:
    """Mean, standard deviation (ddof=1) and Student-t confidence interval of the mean of
    ``values`` (one per seed); with one value, std and interval are NaN; with none, all are."""
    data = finished(values)
    n = len(data)
    if n == 0:
        return Interval(NAN, NAN, NAN, NAN, 0, confidence)
    mean = float(data.mean())
    if n == 1:
        return Interval(mean, NAN, NAN, NAN, 1, confidence)
    std = float(data.std(ddof=1))
    from scipy import stats as scipy_stats  # here: SciPy's import costs every sweep process a second

    half = float(scipy_stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Interval(mean, std, mean - half, mean + half, n, confidence)


def compare_means(
    a: Sequence[float | None],
    b: Sequence[float | None],
    seeds_a: Sequence[int] | None = None,
    seeds_b: Sequence[int] | None = None,
    confidence: float = CONFIDENCE,
) -> Difference:
    """The difference of the means of ``a`` and ``b`` (one value per seed) with its interval and
    p-value: a paired t-test when both sides finished the same seeds (``seeds_a``/``seeds_b``
    give each value's seed), else Welch's t-test (unequal variances).

    Pairing removes what one seed does to both sides (the same data order and augmentation);
    without the same seeds there is nothing to pair. Fewer than two values on a side: NaN.
    """
    from scipy import stats as scipy_stats

    interval_a, interval_b = mean_interval(a, confidence), mean_interval(b, confidence)
    estimate = interval_a.mean - interval_b.mean
    paired = _paired(a, b, seeds_a, seeds_b)
    if paired is not None and len(paired[0]) >= 2:
        result = scipy_stats.ttest_rel(*paired)
        method = "paired t"
    elif interval_a.n >= 2 and interval_b.n >= 2:
        result = scipy_stats.ttest_ind(finished(a), finished(b), equal_var=False)
        method = "welch t"
    else:
        return Difference(interval_a, interval_b, estimate, NAN, NAN, NAN, "welch t", confidence)
    low, high = result.confidence_interval(confidence_level=confidence)
    return Difference(
        interval_a, interval_b, estimate, float(low), float(high), float(result.pvalue), method, confidence
    )


def _paired(
    a: Sequence[float | None], b: Sequence[float | None], seeds_a: Sequence[int] | None, seeds_b: Sequence[int] | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The values of ``a`` and ``b`` matched by seed when both finished the same seeds, else None."""
    if seeds_a is None or seeds_b is None or len(seeds_a) != len(a) or len(seeds_b) != len(b):
        return None
    by_seed_a = {s: v for s, v in zip(seeds_a, a) if v is not None}
    by_seed_b = {s: v for s, v in zip(seeds_b, b) if v is not None}
    if not by_seed_a or set(by_seed_a) != set(by_seed_b):
        return None
    seeds = sorted(by_seed_a)
    return np.asarray([by_seed_a[s] for s in seeds], float), np.asarray([by_seed_b[s] for s in seeds], float)


def bootstrap_difference(
    samples_a: Sequence[Sequence[float | None]],
    samples_b: Sequence[Sequence[float | None]],
    statistic_a: Callable[[np.ndarray], float],
    statistic_b: Callable[[np.ndarray], float],
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Difference:
    """The bootstrap over seeds of ``statistic_a - statistic_b``, each a function of its side's
    point means (e.g. the hypervolume of a front, given its points' accuracies).

    ``samples_a`` holds one list of per-seed values per point of side A. Each resample redraws
    every point's seeds with replacement (as many as it has), takes their mean and evaluates both
    statistics; the interval is the percentile interval of the differences, the p-value twice the
    share of resamples on the far side of 0 ((count + 1) / (resamples + 1), never 0). A point with
    one seed stays at its value in every resample (its noise is unknown, not zero); with no point
    of two or more seeds on either side there is nothing to resample, and the interval is NaN.
    """
    if resamples < 1:
        raise ValueError(f"resamples: {resamples} is not a positive number of resamples")
    data_a, data_b = [finished(s) for s in samples_a], [finished(s) for s in samples_b]
    if any(len(d) == 0 for d in data_a + data_b):
        raise ValueError("samples: every point needs at least one finished value")
    observed_a = float(statistic_a(np.array([d.mean() for d in data_a])))
    observed_b = float(statistic_b(np.array([d.mean() for d in data_b])))
    if all(len(d) < 2 for d in data_a + data_b):
        side_a, side_b = (
            Interval(observed_a, NAN, NAN, NAN, len(data_a)),
            Interval(observed_b, NAN, NAN, NAN, len(data_b)),
        )
        return Difference(side_a, side_b, observed_a - observed_b, NAN, NAN, NAN, "bootstrap", confidence)
    rng = np.random.default_rng(seed)
    drawn_a = np.array([statistic_a(means) for means in _resampled_means(data_a, resamples, rng)])
    drawn_b = np.array([statistic_b(means) for means in _resampled_means(data_b, resamples, rng)])
    differences = drawn_a - drawn_b
    tails = ((1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100)
    low, high = np.percentile(differences, tails)
    below, above = np.count_nonzero(differences <= 0), np.count_nonzero(differences >= 0)
    p_value = min(1.0, 2 * (int(min(below, above)) + 1) / (resamples + 1))
    return Difference(
        _bootstrap_interval(observed_a, drawn_a, len(data_a), tails, confidence),
        _bootstrap_interval(observed_b, drawn_b, len(data_b), tails, confidence),
        observed_a - observed_b,
        float(low),
        float(high),
        p_value,
        "bootstrap",
        confidence,
    )


def _resampled_means(data: list[np.ndarray], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``resamples`` x points: each point's mean over its seeds drawn with replacement."""
    columns = []
    for values in data:
        picks = rng.integers(0, len(values), size=(resamples, len(values)))
        columns.append(values[picks].mean(axis=1))
    return np.stack(columns, axis=1)


def _bootstrap_interval(
    observed: float, drawn: np.ndarray, n: int, tails: tuple[float, float], confidence: float
) -> Interval:
    low, high = np.percentile(drawn, tails)
    return Interval(observed, float(drawn.std(ddof=1)), float(low), float(high), n, confidence)
