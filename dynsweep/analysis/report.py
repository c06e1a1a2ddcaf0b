"""What ``dynsweep sweep status`` prints and ``dynsweep sweep pareto`` writes: the trial counts and
the Pareto table as text; the figures (PNG and SVG), the front as CSV and a Markdown table of a
study, written from whatever has finished. A running study is read, never changed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import pandas as pd

from dynsweep.analysis.figures import plot_effects, plot_fronts, plot_hypervolume
from dynsweep.analysis.pareto import AnalysisError, coverage, dominates, eligible, hypervolume, pareto_front
from dynsweep.sweep.config import SweepConfig
from dynsweep.sweep.record import TrialRecord
from dynsweep.sweep.study import budget, counted_trials
from dynsweep.analysis.study import (
    from_study,
    param_importances,
    read_study,
    reference_point,
    set_reference_point,
    stored_reference_point,
)

TABLE_COLUMNS = ["number", "label", "arch", "kind", "num_bases", "reduction", "stages", "mode", "width_mult", "dynamic_width"]


def write_report(study: optuna.Study, out: str | Path) -> dict[str, Path]:
    """Write front.csv, trials.csv, front.md and the fronts/hypervolume/effects figures into ``out``.

    Tables first, so that they are there even if a figure fails; figures of an earlier run that
    this one cannot draw (nothing finished yet) are removed rather than left stale.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame = from_study(study)
    objectives = frame.attrs["objectives"]
    reference = reference_point(study, frame) if eligible(frame).any() else None
    stored = stored_reference_point(study) is not None
    written: dict[str, Path] = {}

    front = pareto_front(frame, by="arch")
    front[_columns(frame, objectives) + ["on_front", "seed", "dir"]].to_csv(out / "front.csv", index=False)
    frame.drop(columns=["curve"]).to_csv(out / "trials.csv", index=False)
    (out / "front.md").write_text(markdown(frame, reference, stored))
    written.update({name: out / name for name in ("front.csv", "trials.csv", "front.md")})

    def save(figure: plt.Figure | None, name: str) -> None:
        for suffix in ("png", "svg"):
            path = out / f"{name}.{suffix}"
            if figure is None:
                path.unlink(missing_ok=True)
                continue
            figure.savefig(path, dpi=150, bbox_inches="tight")
            written[path.name] = path
        if figure is not None:
            plt.close(figure)

    save(plot_fronts(frame).figure, "fronts")
    save(plot_hypervolume(frame, reference).figure if reference else None, "hypervolume")
    save(plot_effects(frame, importances=_importances(study, frame)) if reference else None, "effects")
    return written


def _importances(study: optuna.Study, frame: pd.DataFrame) -> pd.DataFrame | None:
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return param_importances(study, frame)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _columns(frame: pd.DataFrame, objectives: dict[str, str]) -> list[str]:
    names = list(objectives) + [c for c in ("macs", "params") if c not in objectives]
    return TABLE_COLUMNS[:4] + names + TABLE_COLUMNS[4:]


def markdown(frame: pd.DataFrame, reference: dict[str, float] | None, stored: bool = True) -> str:
    """The study in Markdown: trial counts, the overall front, each architecture's front with its
    hypervolume, and dynamic against static trials where an architecture has both."""
    objectives = frame.attrs["objectives"]
    columns = _columns(frame, objectives)
    states = frame["state"].value_counts().sort_index()
    counts = ", ".join(f"{count} {state}" for state, count in states.items()) or "none yet"
    lines = [f"# {frame.attrs.get('study', 'study')}: Pareto front", "", f"{len(frame)} trials: {counts}."]
    if reference is None:
        return "\n".join(lines + ["", "No finished feasible trial yet."]) + "\n"
    point = ", ".join(f"{k} = {v:g}" for k, v in reference.items())
    origin = (
        "stored in the study"
        if stored
        else "derived from the trials so far, not stored: set one (sweep pareto --reference-point) "
        "to compare hypervolumes over time and across studies"
    )
    units = " x ".join(objectives)
    lines += [f"Hypervolume reference point: {point} ({origin}); hypervolumes in {units}.", ""]
    lines += ["## Front over all architectures", "", _table(pareto_front(frame), columns), ""]
    summary, sections = [], []
    for arch, group in frame.groupby("arch", sort=True):
        front = pareto_front(group, objectives)
        if not len(front):
            continue
        sections += [f"### {arch}", "", _table(front, columns), ""]
        row = {"arch": arch, "finished": int(eligible(group).sum()), "on front": len(front)}
        row["hypervolume"] = f"{hypervolume(group, reference):.4g}"
        dynamic, static = group[group["dynamic"] == True], group[group["dynamic"] == False]  # noqa: E712
        if eligible(dynamic).any() and eligible(static).any():
            dynamic, static = pareto_front(dynamic, objectives), pareto_front(static, objectives)
            row["C(dynamic, static)"] = f"{coverage(dynamic, static):.2f}"
            row["C(static, dynamic)"] = f"{coverage(static, dynamic):.2f}"
            row["dynamic front dominates"] = "yes" if dominates(dynamic, static) else "no"
        summary.append(row)
    lines += [
        "## Front of each architecture",
        "",
        pd.DataFrame(summary).fillna("").to_markdown(index=False, disable_numparse=True),
        "",
        "C(A, B): the fraction of front B's trials that some trial of front A is at least as good as on every objective.",
        "",
        *sections,
    ]
    return "\n".join(lines) + "\n"


DYNAMIC_ONLY = ["num_bases", "reduction", "mode", "dynamic_width"]
"""Spec fields that do nothing in a network without dynamic layers: shown as "-" there."""


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    """Markdown of ``columns`` with costs in millions (MMACs, M params), accuracies to four places
    and "-" for the dynamic-only fields of static networks."""
    shown = frame[columns].astype({c: object for c in DYNAMIC_ONLY if c in columns})
    static = (frame["dynamic"] == False).to_numpy()  # noqa: E712 - None (unknown) is not static
    shown.loc[static, [c for c in DYNAMIC_ONLY if c in columns]] = "-"
    for column, unit in (("macs", "MMACs"), ("params", "M params")):
        if column in shown.columns:
            shown[column] = shown[column] / 1e6
            shown = shown.rename(columns={column: unit})
    return shown.to_markdown(index=False, floatfmt=".4f")


def parse_point(items: list[str]) -> dict[str, float]:
    """``["val_acc1=0", "macs=5e6"]`` -> ``{"val_acc1": 0.0, "macs": 5e6}``."""
    point = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            point[name] = float(value)
        except ValueError:
            raise AnalysisError(f"--reference-point: {item!r} is not NAME=NUMBER") from None
    return point


STATUS_SPEC_FIELDS = ("stages", "num_bases", "reduction", "mode", "width_mult", "dynamic_width", "static_kernels")


def status_text(study: optuna.Study, config: SweepConfig, table: bool = True) -> str:
    """Trials done over the budget, the reason of each failure, and the front over all trials."""
    counted, waiting = counted_trials(study)
    states = Counter(t.state.name for t in counted)
    done = sum(t.state.name != "RUNNING" for t in counted)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(states.items())) or "none yet"
    lines = [f"study {study.study_name}: {done}/{budget(study, config)} trials done ({counts}; {waiting} waiting)"]
    for t in counted:
        if t.state.name == "FAIL":
            lines.append(f"  trial {t.number} FAIL: {TrialRecord.of(t).fail_reason or 'no reason recorded'}")
    if not table:
        return "\n".join(lines)
    frame = from_study(study)
    objectives = list(frame.attrs["objectives"])
    front = pareto_front(frame).sort_values(objectives[1], kind="stable")
    records = {t.number: TrialRecord.of(t) for t in study.get_trials(deepcopy=False)}
    lines += ["", f"Pareto front ({' vs '.join(objectives)}): {len(front)} trials"]
    header = f"{'trial':>5} {'model':<22} {'val_acc1':>8} {'MMACs':>9} {'params':>8}  spec"
    lines += [header, "-" * len(header)]
    for number, label, accuracy, macs, params in front[["number", "label", objectives[0], "macs", "params"]].itertuples(index=False):
        spec = (records[number].child_params or {}).get("spec", {})
        described = " ".join(f"{k}={spec[k]}" for k in STATUS_SPEC_FIELDS if k in spec)
        lines.append(f"{number:>5} {label or '?':<22} {accuracy:>8.4f} {macs / 1e6:>9.3f} {params / 1e6:>7.3f}M  {described}")
    return "\n".join(lines)
