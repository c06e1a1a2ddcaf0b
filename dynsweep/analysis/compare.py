"""Comparisons that carry seed noise: which front points their neighbours' intervals overlap, the
dynamic front against the static one of each architecture, and any two kinds of trial
(``dynsweep sweep pareto --compare dy fix``).

Two statistics, each where it fits:

- Two single points (a Dy preset against its Fix twin or its baseline): the difference of their
  mean accuracies over seeds, with Welch's t interval and p-value, or the paired t-test when both
  trained the same seeds (``dynsweep.stats.compare_means``).
- Two fronts (the dynamic and the static trials of an architecture, or a side with several
  points): the bootstrap over seeds of the hypervolume difference
  (``dynsweep.stats.bootstrap_difference``). We chose it over a paired test per matched MACs
  budget because the two fronts' points rarely share a budget (a dynamic layer adds its
  coefficient predictor's MACs, and searched points fall where the sampler put them), so matching
  would need a pairing or interpolation rule that decides the answer; per-budget tests would also
  be several tests to correct for, where the hypervolume is one number per front, in the study's
  stored reference point. Each resample redraws the seeds of every eligible point, so a point on
  the front by seed luck leaves it in some resamples: the interval includes the noise of which
  points make the front, not only of their heights.

What neither tells: the search's luck (which points the sampler happened to train) is not seed
noise; a point with one seed counts as exact in the bootstrap and has no interval of its own; with
two or three seeds the bootstrap's percentiles are too narrow (the spread of a mean of n resampled
values is (n - 1) / n of the usual estimate's), so read its p-value as optimistic; and a large
p-value says the data cannot tell, not that the two are equal.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from dynsweep import stats
from dynsweep.analysis.pareto import (
    AnalysisError,
    Objectives,
    eligible,
    hypervolume_of_losses,
    losses,
    objectives_of,
    reference_losses,
    required_accuracy,
)
from dynsweep.analysis.study import KINDS
from dynsweep.errors import UsageError

COMPARE_COLUMNS = [
    "arch", "a", "b", "measure",
    "a_mean", "a_low", "a_high", "a_n", "a_macs",
    "b_mean", "b_low", "b_high", "b_n", "b_macs",
    "difference", "low", "high", "p_value", "test",
]  # fmt: skip
"""``compare``'s table: per architecture each side's mean and interval (``*_n``: seeds of a point,
points of a front), the difference a - b with its interval and p-value, and the test used."""

DYNAMIC_COLUMNS = [
    "arch", "dynamic_points", "static_points", "one_seed_points",
    "hv_dynamic", "hv_static", "difference", "low", "high", "p_value",
]  # fmt: skip


def seed_interval(row: pd.Series, accuracy: str) -> stats.Interval:
    """The interval of the row's mean accuracy over its seeds (one seed: no interval)."""
    return stats.mean_interval(_seed_values(row, accuracy))


def _seed_values(row: pd.Series, accuracy: str) -> list[float | None]:
    """The row's per-seed accuracies; a table without them (or a row with none finished) has its value."""
    values = row.get("seed_values")
    if isinstance(values, list) and any(v is not None for v in values):
        return values
    return [row[accuracy]]


def _seeds(row: pd.Series) -> list[int] | None:
    seeds = row.get("seeds")
    return seeds if isinstance(seeds, list) and isinstance(row.get("seed_values"), list) else None


def neighbour_overlaps(front: pd.DataFrame, objectives: Objectives | None = None) -> list[dict[int, bool | None]]:
    """For each row of ``front`` (in its order, e.g. by cost), its neighbouring rows' trial numbers
    -> whether their accuracy intervals overlap (True: the data cannot rank the two), None when
    either has one seed."""
    accuracy = required_accuracy(objectives_of(front, objectives), "a seed interval")
    intervals = [seed_interval(row, accuracy) for _, row in front.iterrows()]
    numbers = front["number"].tolist()
    marks = []
    for position, interval in enumerate(intervals):
        neighbours = [p for p in (position - 1, position + 1) if 0 <= p < len(intervals)]
        marks.append({int(numbers[p]): interval.overlaps(intervals[p]) for p in neighbours})
    return marks


def any_repeated(frame: pd.DataFrame, objectives: Objectives | None = None) -> bool:
    """True when some eligible row has two or more finished seeds."""
    return "n_seeds" in frame.columns and bool((frame.loc[eligible(frame, objectives), "n_seeds"] >= 2).any())


def hypervolume_difference(
    frame_a: pd.DataFrame,
    frame_b: pd.DataFrame,
    reference_point: Mapping[str, float],
    objectives: Objectives | None = None,
    resamples: int = stats.RESAMPLES,
    seed: int = 0,
    confidence: float = stats.CONFIDENCE,
) -> stats.Difference:
    """Hypervolume of A's eligible rows minus B's, with the bootstrap over seeds of the difference
    (see the module's docstring); NaN interval when no row of either has two seeds."""
    objectives = objectives_of(frame_a, objectives)
    accuracy = required_accuracy(objectives, "a seed comparison")
    reference = reference_losses(reference_point, objectives)
    column = list(objectives).index(accuracy)
    sides = [frame[eligible(frame, objectives)] for frame in (frame_a, frame_b)]
    if not all(len(side) for side in sides):
        raise AnalysisError("hypervolume_difference: each side needs a finished feasible trial")

    def statistic(rows: pd.DataFrame):
        base = losses(rows, objectives)

        def of(means: np.ndarray) -> float:
            points = base.copy()
            points[:, column] = -means  # the accuracy, maximized, as a loss
            return hypervolume_of_losses(points, reference)

        return of

    samples = [[_seed_values(row, accuracy) for _, row in side.iterrows()] for side in sides]
    return stats.bootstrap_difference(
        samples[0], samples[1], statistic(sides[0]), statistic(sides[1]), resamples, seed, confidence
    )


def dynamic_against_static(
    frame: pd.DataFrame,
    reference_point: Mapping[str, float],
    resamples: int = stats.RESAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """Per architecture with both: the hypervolume of its dynamic trials minus its static ones',
    with the bootstrap interval and p-value, and how many of their points have one seed."""
    objectives = objectives_of(frame)
    rows = []
    for arch, group in frame.groupby("arch", sort=True):
        dynamic, static = group[group["dynamic"] == True], group[group["dynamic"] == False]  # noqa: E712
        dynamic, static = dynamic[eligible(dynamic, objectives)], static[eligible(static, objectives)]
        if not (len(dynamic) and len(static)):
            continue
        result = hypervolume_difference(dynamic, static, reference_point, objectives, resamples, seed)
        accuracy = required_accuracy(objectives, "a seed comparison")
        both = pd.concat([dynamic, static])
        one_seed = sum(len(stats.finished(_seed_values(row, accuracy))) < 2 for _, row in both.iterrows())
        values = [len(dynamic), len(static), one_seed, result.a.mean, result.b.mean, result.estimate]
        rows.append(dict(zip(DYNAMIC_COLUMNS, [arch, *values, result.low, result.high, result.p_value])))
    return pd.DataFrame(rows, columns=DYNAMIC_COLUMNS)


def _front_name(side: str, rows: pd.DataFrame) -> str:
    """A side of a front comparison: its one point's label, else the side and its count of points."""
    return str(rows["label"].iloc[0]) if len(rows) == 1 else f"{side}: {len(rows)} points"


def side_names(frame: pd.DataFrame) -> list[str]:
    """What ``compare`` takes as a side: a kind, or a preset or architecture in the table."""
    names = {str(v) for column in ("preset", "arch") if column in frame.columns for v in frame[column].dropna()}
    return list(KINDS) + sorted(names - set(KINDS))


def side_mask(frame: pd.DataFrame, name: str) -> pd.Series:
    """The rows of one side: a kind (dy, fix, baseline, searched), else a preset (a warm start or
    baseline by name), else an architecture (all its trials); anything else is a UsageError."""
    if name in KINDS:
        return frame["kind"] == name
    for column in ("preset", "arch"):
        if column in frame.columns and (frame[column] == name).any():
            return frame[column] == name
    raise UsageError(
        f"compare: {name!r} is not one of {', '.join(side_names(frame))} (a kind, or a preset or architecture in the study)"
    )


def compare(
    frame: pd.DataFrame,
    a: str,
    b: str,
    reference_point: Mapping[str, float] | None = None,
    resamples: int = stats.RESAMPLES,
    seed: int = 0,
    confidence: float = stats.CONFIDENCE,
) -> pd.DataFrame:
    """Side ``a`` against side ``b`` (see :func:`side_mask`) in each architecture that has both.

    One point a side (e.g. ``compare(frame, "dy", "fix")``): their mean accuracies over seeds and
    the difference by Welch's (or the paired) t-test. Several points on a side: their fronts'
    hypervolumes and the bootstrap over seeds of the difference, against ``reference_point``
    (default: the one stored in the study). Columns: :data:`COMPARE_COLUMNS`.
    """
    if a == b:
        raise UsageError(f"compare: both sides are {a!r}; name two different kinds, presets or architectures")
    objectives = objectives_of(frame)
    accuracy = required_accuracy(objectives, "a comparison")
    in_a, in_b = side_mask(frame, a), side_mask(frame, b)
    ready = eligible(frame, objectives)
    rows = []
    for arch in sorted(frame.loc[ready & (in_a | in_b), "arch"].dropna().unique()):
        here = ready & (frame["arch"] == arch)
        side_a, side_b = frame[here & in_a], frame[here & in_b]
        if not (len(side_a) and len(side_b)):
            continue
        if len(side_a) == 1 and len(side_b) == 1:
            row_a, row_b = side_a.iloc[0], side_b.iloc[0]
            result = stats.compare_means(
                _seed_values(row_a, accuracy), _seed_values(row_b, accuracy), _seeds(row_a), _seeds(row_b), confidence
            )
            names = (row_a["label"], row_b["label"])
            macs = (row_a.get("macs", np.nan), row_b.get("macs", np.nan))
            measure, test = accuracy, result.method
        else:
            reference = reference_point or frame.attrs.get("reference_point")
            if reference is None:
                raise AnalysisError(
                    f"reference_point: comparing the fronts of {a} and {b} needs one (store it with "
                    "sweep pareto --reference-point, or pass reference_point)"
                )
            result = hypervolume_difference(side_a, side_b, reference, objectives, resamples, seed, confidence)
            names = (_front_name(a, side_a), _front_name(b, side_b))
            macs, measure, test = (np.nan, np.nan), "hypervolume", f"bootstrap ({resamples} resamples)"
        sides = [
            [side.mean, side.low, side.high, side.n, cost] for side, cost in ((result.a, macs[0]), (result.b, macs[1]))
        ]
        values = [
            arch,
            *names,
            measure,
            *sides[0],
            *sides[1],
            result.estimate,
            result.low,
            result.high,
            result.p_value,
            test,
        ]
        rows.append(dict(zip(COMPARE_COLUMNS, values)))
    table = pd.DataFrame(rows, columns=COMPARE_COLUMNS)
    table.attrs.update(a=a, b=b)
    return table
