"""Pareto fronts, hypervolume and dominance of trial tables (one row per trial, see ``load``).

The non-dominated sort and the hypervolume are Optuna's own (the functions behind
``Study.best_trials`` and ``plot_hypervolume_history``); Optuna applies them to a whole study, and
here they apply to any subset of rows: one architecture, the dynamic trials, the first N trials.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from dynsweep import compat
from dynsweep.errors import DynsweepError

Objectives = Mapping[str, str]
"""Objective column -> "maximize" or "minimize", in the study's order."""

DIRECTIONS = ("maximize", "minimize")
DUPLICATE_OF = "duplicate_of"
"""The column naming the trial whose result a duplicate reused (TrialRecord.duplicate_of)."""
POINT = "point"
"""The column naming a trial's point: trials with the same value trained the same point."""
N_SEEDS = "n_seeds"
"""The column counting a trial's finished seeds."""


class AnalysisError(DynsweepError, ValueError):
    """A study or table that cannot be analysed as asked; the message names what is missing."""


def objectives_of(frame: pd.DataFrame, objectives: Objectives | None = None) -> dict[str, str]:
    """The objectives given, else those ``load`` stored in ``frame.attrs``; checked against the columns."""
    found = dict(objectives if objectives is not None else frame.attrs.get("objectives", {}))
    if not found:
        raise AnalysisError(
            "objectives: none given and none in frame.attrs['objectives']; pass e.g. "
            "{'val_acc1': 'maximize', 'macs': 'minimize'}"
        )
    for name, direction in found.items():
        if direction not in DIRECTIONS:
            raise AnalysisError(f"objectives[{name!r}]: {direction!r} is not one of {', '.join(DIRECTIONS)}")
        if name not in frame.columns:
            raise AnalysisError(f"objectives: no column {name!r}; columns: {', '.join(map(str, frame.columns))}")
    return found


def accuracy_objective(objectives: Objectives) -> str | None:
    """The accuracy: the first maximized objective (the one a trial's seeds are averaged on)."""
    return next((name for name, direction in objectives.items() if direction == "maximize"), None)


def required_accuracy(objectives: Objectives, what: str) -> str:
    """The accuracy objective (see :func:`accuracy_objective`); none is an AnalysisError naming ``what`` needs it."""
    accuracy = accuracy_objective(objectives)
    if accuracy is None:
        raise AnalysisError(f"objectives: {what} needs a maximized accuracy, got {dict(objectives)}")
    return accuracy


def losses(frame: pd.DataFrame, objectives: Objectives) -> np.ndarray:
    """Objective values as losses (maximized ones negated), one row per trial, as Optuna sorts them."""
    columns = [frame[name].to_numpy(dtype=float) for name in objectives]
    signs = [-1.0 if direction == "maximize" else 1.0 for direction in objectives.values()]
    return np.stack([sign * column for sign, column in zip(signs, columns)], axis=1).reshape(len(frame), len(signs))


def eligible(frame: pd.DataFrame, objectives: Objectives | None = None) -> pd.Series:
    """Rows that can be on a front: COMPLETE, feasible, every objective known (not NaN; an infinite
    value is a value, as in Optuna's ``best_trials``), and standing for their point.

    A point may have several such trials: the original, duplicates that reused its result, front
    repeats that retrained it with more seeds. The one with the most finished seeds stands for it
    (ties: the earliest, so a duplicate never does while its original is there). A table without
    a ``point`` column keeps every row but reused duplicates."""
    objectives = objectives_of(frame, objectives)
    mask = pd.Series(True, index=frame.index)
    if "state" in frame.columns:
        mask &= frame["state"] == "COMPLETE"
    if "feasible" in frame.columns:
        mask &= frame["feasible"].astype(bool)
    mask &= ~np.isnan(losses(frame, objectives)).any(axis=1)
    if POINT in frame.columns:
        return mask & _stands_for_point(frame, mask)
    if DUPLICATE_OF in frame.columns:
        mask &= frame[DUPLICATE_OF].isna()
    return mask


def _stands_for_point(frame: pd.DataFrame, candidates: pd.Series) -> pd.Series:
    """True for the candidate row of each point with the most finished seeds, ties the earliest."""
    rows = frame[candidates]
    seeds = rows[N_SEEDS].fillna(0) if N_SEEDS in rows.columns else pd.Series(0, index=rows.index)
    number = rows["number"] if "number" in rows.columns else pd.Series(range(len(rows)), index=rows.index)
    order = pd.DataFrame({"seeds": -seeds, "number": number, POINT: rows[POINT]}).sort_values(
        ["seeds", "number"], kind="stable"
    )
    first = ~order[POINT].duplicated() | order[POINT].isna()
    mask = pd.Series(False, index=frame.index)
    mask.loc[order.index[first.to_numpy()]] = True
    return mask


def front_mask(frame: pd.DataFrame, objectives: Objectives | None = None, by: str | None = None) -> pd.Series:
    """True for the rows on the Pareto front (of each ``by`` group when given).

    Ties are all on the front, as in ``Study.best_trials``; failed, pruned, running and infeasible
    rows never are, and a point trained by several trials is on it once (see :func:`eligible`).
    """
    objectives = objectives_of(frame, objectives)
    mask = pd.Series(False, index=frame.index)
    candidates = frame[eligible(frame, objectives)]
    groups = [candidates] if by is None else [group for _, group in candidates.groupby(by, sort=False)]
    for group in groups:
        if len(group):
            on_front = compat.pareto_front_mask(losses(group, objectives))
            mask.loc[group.index[on_front]] = True
    return mask


def pareto_front(frame: pd.DataFrame, objectives: Objectives | None = None, by: str | None = None) -> pd.DataFrame:
    """The rows on the front (per ``by`` group), sorted by group and then by the objectives."""
    objectives = objectives_of(frame, objectives)
    front = frame[front_mask(frame, objectives, by)]
    keys = ([by] if by else []) + list(objectives)[::-1]
    ascending = ([True] if by else []) + [d == "minimize" for d in list(objectives.values())[::-1]]
    return front.sort_values(keys, ascending=ascending, kind="stable")


def hypervolume(
    frame: pd.DataFrame, reference_point: Mapping[str, float], objectives: Objectives | None = None
) -> float:
    """Volume of objective space that the eligible rows dominate, bounded by ``reference_point``.

    In the objectives' own units (e.g. accuracy x MACs). Rows that do not dominate the reference
    point add nothing. Give every study you compare the same reference point.
    """
    objectives = objectives_of(frame, objectives)
    reference = reference_losses(reference_point, objectives)
    return hypervolume_of_losses(losses(frame[eligible(frame, objectives)], objectives), reference)


def reference_losses(reference_point: Mapping[str, float], objectives: Objectives) -> np.ndarray:
    """The reference point as losses (see :func:`losses`); a missing objective is an AnalysisError."""
    missing = [name for name in objectives if name not in reference_point]
    if missing:
        raise AnalysisError(
            f"reference_point: no value for {', '.join(missing)}; it needs one per objective ({', '.join(objectives)})"
        )
    return losses(pd.DataFrame([{k: reference_point[k] for k in objectives}]), objectives)[0]


def hypervolume_of_losses(points: np.ndarray, reference: np.ndarray) -> float:
    """Optuna's hypervolume of ``points`` (losses) against ``reference``; points that do not
    dominate the reference add nothing."""
    points = points[(points < reference).all(axis=1)]
    return compat.hypervolume(points, reference) if len(points) else 0.0


def hypervolume_history(
    frame: pd.DataFrame, reference_point: Mapping[str, float], objectives: Objectives | None = None
) -> pd.DataFrame:
    """Hypervolume of the trials up to each trial number (as Optuna's plot_hypervolume_history)."""
    objectives = objectives_of(frame, objectives)
    ordered = frame.sort_values("number")
    rows = []
    for position, number in enumerate(ordered["number"]):
        rows.append(
            {
                "number": int(number),
                "hypervolume": hypervolume(ordered.iloc[: position + 1], reference_point, objectives),
            }
        )
    return pd.DataFrame(rows, columns=["number", "hypervolume"])


COMPUTE_HISTORY_COLUMNS = ["completion", "number", "state", "epochs_trained", "cumulative_epochs", "hypervolume"]


def compute_history(
    frame: pd.DataFrame, reference_point: Mapping[str, float], objectives: Objectives | None = None
) -> pd.DataFrame:
    """Hypervolume against the compute spent: the finished trials (complete, stopped, infeasible,
    failed) in the order they finished, each with the epochs it trained (``epochs_trained``, a
    stopped trial's partial epochs included), the epochs all trials had trained by then and the
    hypervolume of the trials finished by then. Running trials are not in it yet."""
    objectives = objectives_of(frame, objectives)
    for column in ("completed", "epochs_trained"):
        if column not in frame.columns:
            raise AnalysisError(f"compute_history: no column {column!r} (a table of analysis.load has it)")
    done = frame[frame["completed"].notna()]
    done = done.assign(_at=pd.to_datetime(done["completed"])).sort_values(["_at", "number"], kind="stable")
    epochs = done["epochs_trained"].fillna(0).astype(int)
    rows = []
    for position, (number, state) in enumerate(zip(done["number"], done["state"])):
        rows.append(
            {
                "completion": position + 1,
                "number": int(number),
                "state": state,
                "epochs_trained": int(epochs.iloc[position]),
                "cumulative_epochs": int(epochs.iloc[: position + 1].sum()),
                "hypervolume": hypervolume(done.iloc[: position + 1], reference_point, objectives),
            }
        )
    return pd.DataFrame(rows, columns=COMPUTE_HISTORY_COLUMNS)


def coverage(front_a: pd.DataFrame, front_b: pd.DataFrame, objectives: Objectives | None = None) -> float:
    """Fraction of B's eligible rows that some row of A weakly dominates (Zitzler's C(A, B)).

    1.0: nothing in B is better than A anywhere; NaN when B has no eligible rows.
    """
    objectives = objectives_of(front_a, objectives)
    a = losses(front_a[eligible(front_a, objectives)], objectives)
    b = losses(front_b[eligible(front_b, objectives)], objectives)
    if not len(b):
        return float("nan")
    if not len(a):
        return 0.0
    covered = (a[:, None, :] <= b[None, :, :]).all(axis=2).any(axis=0)
    return float(covered.mean())


def dominates(front_a: pd.DataFrame, front_b: pd.DataFrame, objectives: Objectives | None = None) -> bool:
    """True when A covers all of B and B does not cover all of A: A is the better front.

    E.g. the dynamic trials of an architecture against its static (width-scaled) ones.
    """
    return coverage(front_a, front_b, objectives) == 1.0 and coverage(front_b, front_a, objectives) < 1.0
