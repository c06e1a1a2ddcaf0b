"""What ``dynsweep sweep status`` prints and ``dynsweep sweep pareto`` writes: the trial counts and
the Pareto table as text; the figures (PNG and SVG), the front as CSV and a Markdown table of a
study, written from whatever has finished. A running study is read, never changed."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dynsweep import stats
from dynsweep.analysis import figures
from dynsweep.analysis.compare import (
    any_repeated,
    compare,
    dynamic_against_static,
    neighbour_overlaps,
    seed_interval,
)
from dynsweep.analysis.latency import LATENCY, has_latency, macs_latency_tau, macs_not_faster
from dynsweep.analysis.pareto import (
    AnalysisError,
    compute_history,
    coverage,
    dominates,
    eligible,
    hypervolume,
    hypervolume_history,
    pareto_front,
    required_accuracy,
)
from dynsweep.analysis.study import (
    from_study,
    param_importances,
    reference_point,
    stored_reference_point,
)
from dynsweep.sweep.config import SweepConfig
from dynsweep.sweep.record import TrialRecord
from dynsweep.sweep.study import budget, counted_trials

TABLE_COLUMNS = [
    "number",
    "label",
    "arch",
    "kind",
    "num_bases",
    "reduction",
    "stages",
    "mode",
    "width_mult",
    "dynamic_width",
]


def write_report(
    study: optuna.Study, out: str | Path, compare_sides: Sequence[tuple[str, str]] = ()
) -> dict[str, Path]:
    """Write front.csv, trials.csv, hypervolume.csv (:func:`history_table`), front.md and the
    fronts, hypervolume, hypervolume_compute and effects figures into ``out``, and with measured
    latency the fronts_latency figure; for each pair of ``compare_sides`` (e.g. ``("dy", "fix")``, see ``analysis.compare``) a
    compare_A_B.csv and a section of front.md.

    The comparisons are computed first (a side that names nothing writes nothing), then the
    tables, so that they are there even if a figure fails; figures of an earlier run that this
    one cannot draw (nothing finished yet) are removed rather than left stale.
    """
    out = Path(out)
    frame = from_study(study)
    objectives = frame.attrs["objectives"]
    reference = reference_point(study, frame) if eligible(frame).any() else None
    stored = stored_reference_point(study) is not None
    comparisons = [compare(frame, a, b, reference) for a, b in compare_sides]
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    front = pareto_front(frame, by="arch")
    seed_columns = ["n_seeds", "value_std", "ci_low", "ci_high"]
    front[_columns(frame, objectives) + ["on_front", "seed", *seed_columns, "dir"]].to_csv(
        out / "front.csv", index=False
    )
    frame.drop(columns=["curve"]).to_csv(out / "trials.csv", index=False)
    history = history_table(frame, reference) if reference else pd.DataFrame(columns=HISTORY_COLUMNS)
    (out / "front.md").write_text(markdown(frame, reference, stored, comparisons, history))
    history.to_csv(out / "hypervolume.csv", index=False)
    written.update({name: out / name for name in ("front.csv", "trials.csv", "hypervolume.csv", "front.md")})
    for table in comparisons:
        name = f"compare_{table.attrs['a']}_{table.attrs['b']}.csv"
        table.to_csv(out / name, index=False)
        written[name] = out / name

    def save(figure: Figure | None, name: str) -> None:
        for suffix in ("png", "svg"):
            path = out / f"{name}.{suffix}"
            if figure is None:
                path.unlink(missing_ok=True)
                continue
            figure.savefig(path, dpi=150, bbox_inches="tight")
            written[path.name] = path
        if figure is not None:
            plt.close(figure)

    save(_figure(figures.plot_fronts(frame)), "fronts")
    save(_figure(figures.plot_hypervolume(frame, reference)) if reference else None, "hypervolume")
    save(
        _figure(figures.plot_hypervolume(frame, reference, over="epochs")) if reference else None, "hypervolume_compute"
    )
    save(figures.plot_latency_fronts(frame) if reference and has_latency(frame) else None, "fronts_latency")
    save(figures.plot_effects(frame, importances=_importances(study, frame)) if reference else None, "effects")
    return written


def _figure(ax: Axes) -> Figure | None:
    """The figure an Axes is drawn on."""
    return ax.get_figure(root=True)


HISTORY_COLUMNS = [
    "completion",
    "number",
    "state",
    "epochs_trained",
    "cumulative_epochs",
    "hypervolume",
    "hypervolume_by_number",
]


def history_table(frame: pd.DataFrame, reference: dict[str, float]) -> pd.DataFrame:
    """The hypervolume over compute (``analysis.compute_history``: finished trials in the order
    they finished, the epochs trained so far and the hypervolume then) with, per row, the
    hypervolume over trial numbers (``analysis.hypervolume_history``: every trial numbered up to it)."""
    history = compute_history(frame, reference)
    by_number = hypervolume_history(frame, reference).rename(columns={"hypervolume": "hypervolume_by_number"})
    return history.merge(by_number, on="number", how="left")[HISTORY_COLUMNS]


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


def markdown(
    frame: pd.DataFrame,
    reference: dict[str, float] | None,
    stored: bool = True,
    comparisons: Sequence[pd.DataFrame] = (),
    history: pd.DataFrame | None = None,
) -> str:
    """The study in Markdown: trial counts, the overall front, each architecture's front with its
    hypervolume, and dynamic against static trials where an architecture has both; with repeated
    seeds, each front point's interval and whether it overlaps its neighbours', and the
    dynamic-against-static hypervolume difference with its bootstrap interval; the hypervolume
    over compute (``history``: :func:`history_table`, computed when not given); then the
    ``comparisons`` (tables of ``analysis.compare``)."""
    objectives = frame.attrs["objectives"]
    columns = _columns(frame, objectives)
    repeated = any_repeated(frame)
    states = frame["state"].value_counts().sort_index()
    counts = ", ".join(f"{count} {state}" for state, count in states.items()) or "none yet"
    lines = [f"# {frame.attrs.get('study', 'study')}: Pareto front", "", f"{len(frame)} trials: {counts}."]
    stopped = stopped_summary(frame)
    lines += ["", *stopped, ""] if stopped else []
    if reference is None:
        return "\n".join(lines + ([] if stopped else [""]) + ["No finished feasible trial yet."]) + "\n"
    point = ", ".join(f"{k} = {v:g}" for k, v in reference.items())
    origin = (
        "stored in the study"
        if stored
        else "derived from the trials so far, not stored: set one (sweep pareto --reference-point) "
        "to compare hypervolumes over time and across studies"
    )
    units = " x ".join(objectives)
    lines += [f"Hypervolume reference point: {point} ({origin}); hypervolumes in {units}.", ""]
    lines += [
        "## Front over all architectures",
        "",
        _table(pareto_front(frame), columns, objectives if repeated else None),
        "",
    ]
    summary, sections = [], []
    for arch, group in frame.groupby("arch", sort=True):
        front = pareto_front(group, objectives)
        if not len(front):
            continue
        sections += [f"### {arch}", "", _table(front, columns, objectives if repeated else None), ""]
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
    ]
    if repeated:
        lines += [OVERLAP_NOTE, ""]
        lines += _dynamic_against_static(frame, reference)
    else:
        lines += [ONE_SEED_NOTE, ""]
    lines += sections
    if "completed" in frame.columns and "epochs_trained" in frame.columns:
        lines += _compute_section(history_table(frame, reference) if history is None else history)
    lines += _latency_section(frame)
    for table in comparisons:
        lines += _comparison(table)
    if any(not table.empty for table in comparisons):
        lines += _comparison_note(comparisons)
    return "\n".join(lines) + "\n"


def stopped_summary(frame: pd.DataFrame) -> list[str]:
    """Lines on the trials stopped early (PRUNED and feasible; an infeasible trial was never
    trained): how many at each rung or epoch, and the epochs they trained against the epochs their
    full budgets (max_epochs for each of their seeds) would have cost."""
    if "stopped" not in frame.columns or not frame["stopped"].fillna(False).astype(bool).any():
        return []
    stopped = frame[frame["stopped"].fillna(False).astype(bool)]
    parts = []
    moasha = stopped[stopped["stopped_at_rung"].notna()]
    for epoch, count in moasha["stopped_at_rung"].astype(int).value_counts().sort_index().items():
        parts.append(f"{count} at {_rung_text(int(epoch))}")
    dominance = stopped[stopped["stopped_at_rung"].isna() & stopped["stopped_at_epoch"].notna()]
    for epoch, count in dominance["stopped_at_epoch"].astype(int).value_counts().sort_index().items():
        parts.append(f"{count} at epoch {epoch} (dominated there)")
    unknown = int(stopped["stopped_at_epoch"].isna().sum())
    if unknown:
        parts.append(f"{unknown} before any epoch was recorded")
    lines = [f"{_count(len(stopped), 'trial')} stopped early: {', '.join(parts)}."]
    known = stopped[stopped["max_epochs"].notna()]
    trained = int(stopped["epochs_trained"].sum())
    total = int(frame["epochs_trained"].sum())
    text = (
        "Compute, in epochs (a trial's record keeps its accuracy per epoch, not the epoch's time, so no seconds): "
        f"the stopped trials trained {_count(trained, 'epoch')}"
    )
    if known.empty:
        return lines + ["", f"{text}; their max_epochs is not recorded, so what stopping saved is unknown."]
    seeds = known["seeds"].map(lambda s: max(len(s), 1) if isinstance(s, list) else 1)
    full = int((known["max_epochs"].astype(int) * seeds).sum())
    saved = full - int(known["epochs_trained"].sum())
    text += (
        f", where their full budgets (max_epochs for each of their seeds) are {full}: {saved} saved; all trials "
        f"trained {total}, {saved / (total + saved):.0%} less than had none been stopped"
    )
    if len(known) < len(stopped):
        text += f" ({len(stopped) - len(known)} stopped trials with no max_epochs recorded are left out of the saving)"
    return lines + ["", text + "."]


def _rung_text(epoch: int) -> str:
    """A rung named by its epoch, as the sweep's log and the record's ``rungs`` name it."""
    return f"the rung at epoch {epoch}"


def _compute_section(history: pd.DataFrame) -> list[str]:
    """The hypervolume over compute, at each trial that raised it and at the last (all rows in
    hypervolume.csv)."""
    if history.empty:
        return []
    rises = history["hypervolume"].diff().fillna(history["hypervolume"]) > 0
    rises.iloc[-1] = True
    shown = history[rises].rename(
        columns={
            "number": "trial",
            "epochs_trained": "its epochs",
            "cumulative_epochs": "epochs so far",
            "hypervolume_by_number": "hypervolume by trial number",
        }
    )
    shown = shown.drop(columns=["completion"])
    for column in ("hypervolume", "hypervolume by trial number"):
        shown[column] = shown[column].map(lambda v: f"{v:.4g}")
    return [
        "## Hypervolume over compute",
        "",
        shown.to_markdown(index=False, disable_numparse=True),
        "",
        "The finished trials in the order they finished, at each that raised the hypervolume and at the last: "
        "its epochs (a stopped trial's partial ones), the epochs all finished trials had trained by then and the "
        "hypervolume of those trials; by trial number: of every trial numbered up to it. Every row is in "
        "hypervolume.csv.",
        "",
    ]


def _latency_section(frame: pd.DataFrame) -> list[str]:
    """Accuracy against measured latency beside MACs: the latency front, Kendall's tau between MACs
    and latency, and the MACs front's points that are not on the latency front."""
    if not has_latency(frame):
        return []
    objectives = frame.attrs["objectives"]
    accuracy = required_accuracy(objectives, "a latency front")
    by_latency = {accuracy: "maximize", LATENCY: "minimize"}
    measured = frame[frame[LATENCY].notna()]
    front = pareto_front(measured, by_latency)
    columns = ["number", "label", "arch", accuracy, "macs", LATENCY]
    shown = front[columns].assign(macs=front["macs"] / 1e6).rename(columns={"macs": "MMACs"})
    lines = [
        "## Accuracy against measured latency",
        "",
        f"{_count(len(measured), 'trial')} with a measured latency ({LATENCY}: the median). "
        "Front over all architectures by accuracy and latency (fronts_latency.png: beside the one by MACs):",
        "",
        shown.to_markdown(index=False, floatfmt=".4f"),
        "",
    ]
    tau = macs_latency_tau(frame)
    tau_text = tau.assign(
        tau=tau["tau"].map(lambda v: "-" if math.isnan(v) else f"{v:.3f}"),
        p_value=tau["p_value"].map(_p_text),
    ).rename(columns={"tau": "Kendall's tau", "p_value": "p"})
    lines += [
        "Kendall's tau between MACs and measured latency over the trials with both (1: latency ranks them as MACs "
        "do; 0: unrelated; scipy.stats.kendalltau, tau-b; - with fewer than two trials):",
        "",
        tau_text.to_markdown(index=False, disable_numparse=True),
        "",
    ]
    slower = macs_not_faster(frame)
    lines += ["### Cheaper in MACs, not faster", ""]
    if slower.empty:
        return lines + ["Every point on an accuracy-vs-MACs front is on the accuracy-vs-latency front too.", ""]
    table = slower.assign(
        macs=slower["macs"] / 1e6, dominated_by=slower["dominated_by"].map(lambda ns: ", ".join(map(str, ns)))
    ).rename(
        columns={"front": "front of", "macs": "MMACs", "accuracy": accuracy, "dominated_by": "as accurate and faster"}
    )
    return lines + [
        table.to_markdown(index=False, floatfmt=".4f"),
        "",
        "Points on the accuracy-vs-MACs front (of their architecture, or over all) that trials as accurate and "
        "faster dominate once latency is measured.",
        "",
    ]


OVERLAP_NOTE = (
    "Seeds: finished trainings of a point, each with its own seed; 95% CI: the Student-t interval of their mean "
    "accuracy. CI overlaps: the neighbouring front points (the rows above and below) whose interval overlaps this "
    "one's, so that the seeds cannot rank the two; N? when one of them has a single seed; none: distinguishable "
    "from both."
)
ONE_SEED_NOTE = (
    "Every point has one seed: these fronts carry no interval, and the comparisons above take each accuracy as "
    "exact (`repeats: {seeds: N}` in the spec trains N seeds per point)."
)


def _dynamic_against_static(frame: pd.DataFrame, reference: dict[str, float]) -> list[str]:
    """The section on each architecture's dynamic front against its static one, with seed noise."""
    table = dynamic_against_static(frame, reference)
    if table.empty:
        return []
    rows = []
    for row in table.itertuples(index=False):
        difference = stats.Difference(
            stats.Interval(row.hv_dynamic, math.nan, math.nan, math.nan, row.dynamic_points),
            stats.Interval(row.hv_static, math.nan, math.nan, math.nan, row.static_points),
            row.difference,
            row.low,
            row.high,
            row.p_value,
            "bootstrap",
        )
        rows.append(
            {
                "arch": row.arch,
                "points (dynamic, static)": f"{row.dynamic_points}, {row.static_points}",
                "hypervolume dynamic": f"{row.hv_dynamic:.4g}",
                "hypervolume static": f"{row.hv_static:.4g}",
                "difference (95% CI)": _difference_text(difference, ".4g"),
                "p": _p_text(row.p_value),
                "verdict": _verdict(difference, "dynamic", "static"),
                "what the data cannot tell": _untold(row.one_seed_points, row.dynamic_points + row.static_points),
            }
        )
    return [
        "## Dynamic against static, with seed noise",
        "",
        pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True),
        "",
        f"Hypervolume of each architecture's dynamic trials minus its static ones'. {BOOTSTRAP_NOTE}",
        "",
    ]


BOOTSTRAP_NOTE = (
    f"Bootstrap over seeds ({stats.RESAMPLES} resamples): each resample redraws every point's seeds with "
    "replacement, takes their mean as its accuracy and recomputes both hypervolumes, so a point on a front by seed "
    "luck leaves it in some resamples; 95% CI: the percentiles of the difference; p: twice the share of resamples "
    "on the far side of 0. It counts seed noise only, not which points the search happened to train; with 2 or 3 "
    "seeds per point the interval is too narrow; a point with one seed counts as exact."
)


def _untold(one_seed: int, points: int) -> str:
    if one_seed == points:
        return "every point has one seed: no interval"
    if one_seed:
        return f"{one_seed} of {points} points have one seed: their noise is not in the interval"
    return "which points the search trained"


def _verdict(difference: stats.Difference, a: str, b: str) -> str:
    if not difference.known:
        return "cannot tell"
    if difference.low > 0:
        return f"{a} better"
    if difference.high < 0:
        return f"{b} better"
    return "cannot tell at 95%"


def _interval_text(interval: stats.Interval, form: str) -> str:
    if not interval.known:
        return f"{interval.mean:{form}} (no interval)"
    return f"{interval.mean:{form}} [{interval.low:{form}}, {interval.high:{form}}]"


def _difference_text(difference: stats.Difference, form: str) -> str:
    if not difference.known:
        return f"{difference.estimate:+{form}} (no interval: one seed)"
    return f"{difference.estimate:+{form}} [{difference.low:+{form}}, {difference.high:+{form}}]"


def _p_text(p_value: float) -> str:
    return "-" if math.isnan(p_value) else f"{p_value:.3g}"


def _comparison(table: pd.DataFrame) -> list[str]:
    """The section of one ``analysis.compare`` table."""
    a, b = table.attrs["a"], table.attrs["b"]
    lines = [f"## {a} against {b}", ""]
    if table.empty:
        return lines + [f"No architecture has finished trials of both {a} and {b}.", ""]
    rows = []
    for row in table.itertuples(index=False):
        form = ".4f" if row.measure != "hypervolume" else ".4g"
        sides = [
            stats.Interval(row.a_mean, math.nan, row.a_low, row.a_high, row.a_n),
            stats.Interval(row.b_mean, math.nan, row.b_low, row.b_high, row.b_n),
        ]
        difference = stats.Difference(sides[0], sides[1], row.difference, row.low, row.high, row.p_value, row.test)
        described = []
        for name, interval, macs in ((row.a, sides[0], row.a_macs), (row.b, sides[1], row.b_macs)):
            if row.measure == "hypervolume":
                described.append(name)
            else:
                described.append(f"{name} ({_count(interval.n, 'seed')}, {macs / 1e6:.4g} MMACs)")
        rows.append(
            {
                "arch": row.arch,
                f"A: {a}": described[0],
                f"B: {b}": described[1],
                "measure": row.measure,
                "A (95% CI)": _interval_text(sides[0], form),
                "B (95% CI)": _interval_text(sides[1], form),
                "A - B (95% CI)": _difference_text(difference, form),
                "p": _p_text(row.p_value),
                "test": row.test,
                "verdict": _verdict(difference, a, b),
            }
        )
    return lines + [pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]


def _comparison_note(comparisons: Sequence[pd.DataFrame]) -> list[str]:
    """What the comparison tables' statistics are, once after them."""
    note = (
        "One point a side: its mean accuracy over seeds with the Student-t interval; welch t: Welch's test of the "
        "difference (unequal variances); paired t: both trained the same seeds, compared seed by seed."
    )
    if any((table["measure"] == "hypervolume").any() for table in comparisons):
        note += f" Several points on a side: the hypervolume of its front. {BOOTSTRAP_NOTE}"
    return [note + " A large p says the data cannot tell, not that the two are equal.", ""]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


DYNAMIC_ONLY = ["num_bases", "reduction", "mode", "dynamic_width"]
"""Spec fields that do nothing in a network without dynamic layers: shown as "-" there."""


def _table(frame: pd.DataFrame, columns: list[str], objectives: dict[str, str] | None = None) -> str:
    """Markdown of ``columns`` with costs in millions (MMACs, M params), accuracies to four places
    and "-" for the dynamic-only fields of static networks; with ``objectives`` (a study with
    repeated seeds), after the accuracy each row's seeds, interval and the neighbours it overlaps
    (see :data:`OVERLAP_NOTE`)."""
    shown = frame[columns].astype({c: object for c in DYNAMIC_ONLY if c in columns})
    static = (frame["dynamic"] == False).to_numpy()  # noqa: E712 - None (unknown) is not static
    shown.loc[static, [c for c in DYNAMIC_ONLY if c in columns]] = "-"
    if objectives is not None:
        accuracy = required_accuracy(objectives, "a seed interval")
        intervals = [seed_interval(row, accuracy) for _, row in frame.iterrows()]
        at = columns.index(accuracy) + 1
        for offset, (name, values) in enumerate(
            (
                ("seeds", [i.n for i in intervals]),
                ("95% CI", [f"[{i.low:.4f}, {i.high:.4f}]" if i.known else "-" for i in intervals]),
                ("CI overlaps", [_overlap_text(marks) for marks in neighbour_overlaps(frame, objectives)]),
            )
        ):
            shown.insert(at + offset, name, values)
    for column, unit in (("macs", "MMACs"), ("params", "M params")):
        if column in shown.columns:
            shown[column] = shown[column] / 1e6
            shown = shown.rename(columns={column: unit})
    return shown.to_markdown(index=False, floatfmt=".4f")


def _overlap_text(marks: dict[int, bool | None]) -> str:
    """ "7, 9?": overlaps trial 7's interval, 9's unknown (one seed); "none": distinct from both."""
    parts = [str(n) for n, overlaps in marks.items() if overlaps] + [
        f"{n}?" for n, overlaps in marks.items() if overlaps is None
    ]
    return ", ".join(parts) or "none"


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
        record = TrialRecord.of(t)
        if t.state.name == "FAIL":
            lines.append(f"  trial {t.number} FAIL: {record.fail_reason or 'no reason recorded'}")
        elif t.state.name == "RUNNING":
            devices = f", devices {','.join(record.devices)}" if record.devices else ""
            lines.append(f"  trial {t.number} RUNNING on {record.worker or 'an unknown worker'}{devices}")
    if not table:
        return "\n".join(lines)
    frame = from_study(study)
    objectives = list(frame.attrs["objectives"])
    front = pareto_front(frame).sort_values(objectives[1], kind="stable")
    records = {t.number: TrialRecord.of(t) for t in study.get_trials(deepcopy=False)}
    lines += ["", f"Pareto front ({' vs '.join(objectives)}): {len(front)} trials"]
    header = f"{'trial':>5} {'model':<22} {'val_acc1':>8} {'MMACs':>9} {'params':>8}  spec"
    lines += [header, "-" * len(header)]
    for number, label, accuracy, macs, params in front[["number", "label", objectives[0], "macs", "params"]].itertuples(
        index=False
    ):
        spec = (records[number].child_params or {}).get("spec", {})
        described = " ".join(f"{k}={spec[k]}" for k in STATUS_SPEC_FIELDS if k in spec)
        lines.append(
            f"{number:>5} {label or '?':<22} {accuracy:>8.4f} {macs / 1e6:>9.3f} {params / 1e6:>7.3f}M  {described}"
        )
    return "\n".join(lines)
