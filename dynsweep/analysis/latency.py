"""MACs against measured latency: how well one ranks the trials as the other does (Kendall's tau,
per architecture and overall), and the points of the accuracy-vs-MACs front that the
accuracy-vs-latency front dominates: cheaper in MACs, not faster."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from dynsweep.analysis.pareto import eligible, front_mask, losses, objectives_of, required_accuracy

LATENCY = "latency_ms"
"""The measured latency column the latency fronts use (median ms; ``latency_ratio`` is relative to
each architecture's own reference, so it does not rank across architectures)."""


def measured(frame: pd.DataFrame, latency: str = LATENCY) -> pd.DataFrame:
    """The rows with both MACs and a measured latency, one per point (a duplicate's latency is its
    original's)."""
    if latency not in frame.columns:
        return frame.iloc[:0]
    rows = frame[frame["macs"].notna() & frame[latency].notna()]
    if "duplicate_of" in rows.columns:
        rows = rows[rows["duplicate_of"].isna()]
    return rows


def has_latency(frame: pd.DataFrame, latency: str = LATENCY) -> bool:
    """True when some trial has a measured latency."""
    return len(measured(frame, latency)) > 0


def macs_latency_tau(frame: pd.DataFrame, latency: str = LATENCY, by: str = "arch") -> pd.DataFrame:
    """Kendall's tau (``scipy.stats.kendalltau``, tau-b) between MACs and measured latency over the
    trials that have both (any state: both are known before training), per ``by`` group and over
    all ("all"); NaN with fewer than two trials or a constant column."""
    rows = measured(frame, latency)
    groups = [(str(name), group) for name, group in rows.groupby(by, sort=True)] + [("all", rows)]
    table = []
    for name, group in groups:
        if len(group) >= 2 and group["macs"].nunique() > 1 and group[latency].nunique() > 1:
            result = scipy_stats.kendalltau(group["macs"], group[latency])
            tau, p_value = float(result.statistic), float(result.pvalue)
        else:
            tau, p_value = float("nan"), float("nan")
        table.append({by: name, "trials": len(group), "tau": tau, "p_value": p_value})
    return pd.DataFrame(table, columns=[by, "trials", "tau", "p_value"])


def macs_not_faster(frame: pd.DataFrame, latency: str = LATENCY, by: str | None = "arch") -> pd.DataFrame:
    """The points on an accuracy-vs-MACs front (each ``by`` group's, and the front over all) that
    are not on the accuracy-vs-latency front of the same trials: some trial is at least as accurate
    and at least as fast, better in one. ``dominated_by`` lists those trials, most accurate first.
    Only trials with a measured latency count on either front."""
    accuracy = required_accuracy(objectives_of(frame), "a latency front")
    by_macs = {accuracy: "maximize", "macs": "minimize"}
    by_latency = {accuracy: "maximize", latency: "minimize"}
    rows = measured(frame, latency)
    rows = rows[eligible(rows, by_latency)]
    groups = [("all", rows)]
    if by is not None:
        groups = [(str(name), group) for name, group in rows.groupby(by, sort=True)] + groups
    table = []
    for name, group in groups:
        on_macs = front_mask(group, by_macs)
        on_latency = front_mask(group, by_latency)
        points = losses(group, by_latency)
        for position in np.flatnonzero((on_macs & ~on_latency).to_numpy()):
            better = (points <= points[position]).all(axis=1) & (points < points[position]).any(axis=1)
            dominating = group[better].sort_values([accuracy, latency], ascending=[False, True])
            row = group.iloc[position]
            table.append(
                {
                    "front": name,
                    "number": int(row["number"]),
                    "label": row.get("label"),
                    "accuracy": float(row[accuracy]),
                    "macs": float(row["macs"]),
                    latency: float(row[latency]),
                    "dominated_by": [int(n) for n in dominating["number"]],
                }
            )
    return pd.DataFrame(table, columns=["front", "number", "label", "accuracy", "macs", latency, "dominated_by"])
