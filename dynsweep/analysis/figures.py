"""Matplotlib figures of a trial table (see ``load``): fronts, hypervolume over trials, and the
effect of the spec's dimensions. Each function draws on a given Axes/Figure or makes one, and
returns it; nothing is shown or saved here.

Optuna's ``plot_pareto_front`` and ``plot_hypervolume_history`` draw one study's single front;
these draw a front per architecture (or any grouping), on a log-cost axis, with presets labelled,
from the same sort and hypervolume (dynsweep.analysis.pareto)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dynsweep.analysis.pareto import (
    AnalysisError,
    Objectives,
    accuracy_objective,
    compute_history,
    eligible,
    hypervolume_history,
    objectives_of,
    pareto_front,
    required_accuracy,
)
from dynsweep.analysis.study import SPEC_FIELDS

FIRST_EFFECTS = ("num_bases", "reduction", "stages", "blocks", "roles", "stem", "classifier")
"""plot_effects shows every spec field that varies; these first: bases, reduction, placement."""

KIND_MARKERS = {"dy": "*", "fix": "D", "baseline": "s"}
STOPPED_MARKER = "x"
STOPPED_LABEL = "stopped early (accuracy where stopped)"


def axes_objectives(frame: pd.DataFrame, objectives: Objectives | None = None) -> tuple[str, str]:
    """(x, y): the cost to put on a log axis (macs if it is an objective) and the accuracy."""
    objectives = objectives_of(frame, objectives)
    minimized = [n for n, d in objectives.items() if d == "minimize"]
    maximized = [n for n, d in objectives.items() if d == "maximize"]
    if not minimized or not maximized:
        raise AnalysisError(
            f"objectives: a front plot needs one maximized and one minimized objective, got {dict(objectives)}"
        )
    return ("macs" if "macs" in minimized else minimized[0]), maximized[0]


def group_colors(frame: pd.DataFrame, by: str = "arch") -> dict[str, tuple]:
    """One colour per value of ``by`` (an architecture by default), stable for a given set of values."""
    names = sorted(str(a) for a in frame[by].dropna().unique())
    cycle = plt.get_cmap("tab10")
    return {name: cycle(i % 10) for i, name in enumerate(names)}


def plot_fronts(
    frame: pd.DataFrame, objectives: Objectives | None = None, ax: Axes | None = None, by: str = "arch"
) -> Axes:
    """Accuracy against cost (log axis): every finished trial, each ``by`` group's front as a step
    line in its colour, warm-start presets and static baselines marked and labelled; the 95%
    interval of the mean accuracy as error bars on points trained with two or more seeds; trials
    stopped early as crosses at the accuracy they had where they stopped (never on a front).

    The line is the front of the two plotted objectives (with a third objective, e.g. params, some
    points of the full front lie below it)."""
    objectives = objectives_of(frame, objectives)
    x, y = axes_objectives(frame, objectives)
    ax = ax or plt.figure(figsize=(7, 4.5)).gca()
    colors = group_colors(frame, by)
    done = frame[eligible(frame, objectives)]
    for name, group in done.groupby(by, sort=True):
        color = colors[str(name)]
        ax.scatter(group[x], group[y], s=16, alpha=0.35, color=color, label=f"{name} trials")
        front = pareto_front(group, {y: objectives[y], x: objectives[x]}).sort_values(x)
        xs, ys = front[x].to_numpy(), front[y].to_numpy()
        ax.step(xs, ys, where="post", color=color, linewidth=1.8, label=f"{name} front")
        ax.scatter(xs, ys, s=26, color=color, edgecolor="black", linewidth=0.5, zorder=3)
        repeated = group[group["n_seeds"] >= 2] if "n_seeds" in group.columns else group.iloc[:0]
        if len(repeated):
            centre = repeated[y].to_numpy()
            below = np.maximum(centre - repeated["ci_low"].to_numpy(), 0.0)
            above = np.maximum(repeated["ci_high"].to_numpy() - centre, 0.0)
            ax.errorbar(
                repeated[x],
                centre,
                yerr=[below, above],
                fmt="none",
                ecolor=color,
                elinewidth=1.0,
                capsize=2.5,
                alpha=0.8,
                zorder=2,
                label=f"{name} 95% CI",
            )
    stopped = stopped_points(frame, x, y)
    if len(stopped):
        ax.scatter(
            stopped[x],
            stopped["stopped_value"],
            marker=STOPPED_MARKER,
            s=22,
            linewidth=1.0,
            color=[colors.get(str(name), "grey") for name in stopped[by]],
            zorder=2,
            label=STOPPED_LABEL,
        )
    marked = done[done["kind"].isin(list(KIND_MARKERS))] if "kind" in done.columns else done.iloc[:0]
    for kind, group in marked.groupby("kind"):
        ax.scatter(
            group[x],
            group[y],
            marker=KIND_MARKERS[kind],
            s=90,
            facecolor="none",
            edgecolor="black",
            linewidth=1.0,
            zorder=4,
            label={"dy": "Dy presets", "fix": "Fix presets", "baseline": "static baselines"}[kind],
        )
        for _, row in group.iterrows():
            ax.annotate(str(row["label"]), (row[x], row[y]), xytext=(4, 4), textcoords="offset points", fontsize=7)
    if len(done) or len(stopped):
        ax.set_xscale("log")
    if not len(done):
        ax.text(0.5, 0.5, "no finished trials yet", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel(f"{x} (log scale)")
    ax.set_ylabel(y)
    title = frame.attrs.get("study")
    ax.set_title(f"{title}: Pareto fronts" if title else "Pareto fronts")
    ax.grid(True, which="both", alpha=0.3)
    if len(done) or len(stopped):
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return ax


def stopped_points(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The trials stopped early with a known cost ``x`` and accuracy where they stopped (``y`` is
    the accuracy: a stopped trial has no other objective value)."""
    needed = {"stopped", "stopped_value", x}
    if not needed <= set(frame.columns) or y != accuracy_objective(frame.attrs.get("objectives", {y: "maximize"})):
        return frame.iloc[:0]
    known = frame["stopped"].fillna(False).astype(bool) & frame["stopped_value"].notna() & frame[x].notna()
    return frame[known]


def plot_hypervolume(
    frame: pd.DataFrame,
    reference_point: Mapping[str, float],
    objectives: Objectives | None = None,
    ax: Axes | None = None,
    over: str = "trials",
) -> Axes:
    """Hypervolume of the trials so far, with the reference point named: ``over="trials"`` against
    the trial number; ``over="epochs"`` against the epochs all trials had trained when each
    finished (:func:`compute_history`: stopped trials' partial epochs included; stopped trials
    marked)."""
    if over not in ("trials", "epochs"):
        raise ValueError(f"over: must be 'trials' or 'epochs', got {over!r}")
    if over == "trials":
        history = hypervolume_history(frame, reference_point, objectives)
        x, xlabel = history["number"], "trial number"
    else:
        history = compute_history(frame, reference_point, objectives)
        x, xlabel = history["cumulative_epochs"], "epochs trained by all trials, in the order they finished"
    ax = ax or plt.figure(figsize=(6, 3.5)).gca()
    ax.step(x, history["hypervolume"], where="post", label="hypervolume")
    if over == "epochs":
        _mark_stopped(ax, frame, history)
    reference = ", ".join(f"{k}={v:g}" for k, v in reference_point.items())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("hypervolume")
    ax.set_title(f"hypervolume over {'compute' if over == 'epochs' else 'trials'} (reference {reference})", fontsize=9)
    ax.grid(True, alpha=0.3)
    return ax


def _mark_stopped(ax: Axes, frame: pd.DataFrame, history: pd.DataFrame) -> None:
    """Cross the steps of the trials that stopped early."""
    stopped = frame.loc[frame["stopped"].fillna(False).astype(bool), "number"] if "stopped" in frame.columns else []
    pruned = history[history["number"].isin(stopped)]
    if len(pruned):
        ax.scatter(
            pruned["cumulative_epochs"],
            pruned["hypervolume"],
            marker=STOPPED_MARKER,
            color="black",
            zorder=3,
            label="a trial stopped early",
        )
        ax.legend(fontsize=7)


def plot_latency_fronts(
    frame: pd.DataFrame, accuracy: str | None = None, latency: str = "latency_ms", by: str = "arch"
) -> Figure:
    """Accuracy against MACs beside accuracy against measured latency, each with its own fronts
    (:func:`plot_fronts`), for the trials whose latency was measured."""
    accuracy = accuracy or required_accuracy(objectives_of(frame), "a latency front")
    measured = frame[frame[latency].notna()] if latency in frame.columns else frame.iloc[:0]
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for ax, cost in zip(axes, ("macs", latency)):
        plot_fronts(measured, {accuracy: "maximize", cost: "minimize"}, ax=ax, by=by)
        ax.set_title(f"{accuracy} against {cost}", fontsize=9)
        if ax is axes[0] and ax.get_legend() is not None:
            ax.get_legend().remove()
    title = frame.attrs.get("study")
    figure.suptitle(f"{title}: fronts by MACs and by measured latency" if title else "fronts by MACs and by latency")
    figure.tight_layout()
    return figure


def effect_fields(frame: pd.DataFrame, objectives: Objectives | None = None) -> list[str]:
    """DynamicSpec fields that take more than one value among the finished trials."""
    done = frame[eligible(frame, objectives)]
    ordered = list(FIRST_EFFECTS) + [f for f in SPEC_FIELDS if f not in FIRST_EFFECTS]
    return [f for f in ordered if f in done.columns and done[f].dropna().astype(str).nunique() > 1]


def plot_effects(
    frame: pd.DataFrame,
    fields: Sequence[str] | None = None,
    importances: pd.DataFrame | None = None,
    objectives: Objectives | None = None,
) -> Figure:
    """Accuracy and cost of the finished trials per value of each spec field, a colour per
    architecture; with ``importances`` (see ``param_importances``) a last column of bar charts."""
    objectives = objectives_of(frame, objectives)
    x, y = axes_objectives(frame, objectives)
    fields = list(fields) if fields is not None else effect_fields(frame, objectives)
    done = frame[eligible(frame, objectives)]
    extra = importances is not None and len(importances) > 0
    columns = max(len(fields) + extra, 1)
    figure, axes = plt.subplots(2, columns, figsize=(3.2 * columns, 6), squeeze=False)
    colors = group_colors(frame)
    jitter = np.random.default_rng(0)
    for column, field in enumerate(fields):
        values = sorted(done[field].astype(str).unique(), key=_natural)
        for row, objective in enumerate((y, x)):
            ax = axes[row][column]
            for arch, group in done.groupby("arch", sort=True):
                positions = [values.index(v) for v in group[field].astype(str)]
                offsets = jitter.uniform(-0.15, 0.15, len(positions))
                ax.scatter(
                    np.add(positions, offsets),
                    group[objective],
                    s=14,
                    alpha=0.7,
                    color=colors[str(arch)],
                    label=str(arch),
                )
            ax.set_xticks(range(len(values)), values, rotation=30, fontsize=7)
            ax.set_xlabel(field)
            ax.set_ylabel(objective)
            if objective == x:
                ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
    if importances is not None and extra:
        for row, objective in enumerate((y, x)):
            ax = axes[row][columns - 1]
            table = importances[importances["objective"] == objective]
            ax.set_xlabel(f"importance for {objective}")
            if table.empty:
                ax.text(0.5, 0.5, f"{objective} does not vary\namong searched trials", ha="center", va="center")
                continue
            table = table.pivot_table(index="param", columns="arch", values="importance", fill_value=0.0)
            table.plot.barh(ax=ax, color=[colors.get(str(a)) for a in table.columns], legend=False)
            ax.set_xlabel(f"importance for {objective}")
            ax.set_ylabel("")
    if not fields:
        axes[0][0].text(0.5, 0.5, "no spec field varies among finished trials", ha="center", va="center")
    handles, labels = axes[0][0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        figure.legend(unique.values(), unique.keys(), loc="upper right", fontsize=8)
    title = frame.attrs.get("study")
    figure.suptitle(f"{title}: effect of the spec" if title else "effect of the spec")
    figure.tight_layout()
    return figure


def _natural(value: str) -> tuple:
    """Numbers by value, then JSON lists by length (placements: [] < [3] < [2, 3]), then text."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return (2, 0, value)
    if isinstance(parsed, (int, float)):
        return (0, parsed, value)
    return (1, len(parsed) if isinstance(parsed, list) else 0, value)
