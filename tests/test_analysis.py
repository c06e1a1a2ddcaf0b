"""dynsweep.analysis: fronts against Optuna's best_trials on hand-made studies (ties, infeasible,
failed, pruned, running trials), hypervolume on values known by hand, the reference point kept in
the study, dominance, the figures' series, ``dynsweep sweep pareto`` and the notebooks; trials
with repeated seeds: their intervals against SciPy, one trial per point, overlapping front
neighbours, the dynamic-against-static bootstrap and ``sweep pareto --compare``."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import nbformat
import numpy as np
import optuna
import pandas as pd
import pytest
from analysis_studies import (
    MOASHA_SPEC,
    REFERENCE,
    add_trials,
    make_study,
    measured_latency,
    repeated_seeds,
    stopped_early,
    trial,
    two_architectures,
)
from nbclient import NotebookClient
from optuna.trial import TrialState
from scipy import stats as scipy_stats
from sweep_command import dynsweep

from dynsweep import analysis
from dynsweep.errors import UsageError
from dynsweep.sweep import ReferencePointError, StudyRecord, TrialRecord, parse_config

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = {"val_acc1": "maximize", "macs": "minimize"}

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def study(tmp_path):
    url = f"sqlite:///{tmp_path / 'hand.db'}"
    return url, make_study(url, "hand", two_architectures())


def table(rows: list[tuple]) -> pd.DataFrame:
    """A frame by hand: (number, arch, state, feasible, val_acc1, macs)."""
    return pd.DataFrame(rows, columns=["number", "arch", "state", "feasible", "val_acc1", "macs"])


# ------------------------------------------------------------------------------------ the table
def test_load_has_a_row_per_trial_with_spec_state_and_attrs(study):
    url, _ = study
    frame = analysis.load(url, "hand")
    assert list(frame["number"]) == list(range(12))
    assert frame.attrs["objectives"] == OBJECTIVES and frame.attrs["study"] == "hand"
    assert frame["state"].tolist().count("COMPLETE") == 9
    first = frame.iloc[0]
    assert (first["arch"], first["label"], first["kind"], first["dynamic"]) == (
        "resnet18",
        "resnet18",
        "baseline",
        False,
    )
    assert frame.loc[10, "kind"] == "dy" and frame.loc[10, "label"] == "dy_mobilenet_v2"
    assert frame.loc[1, "dynamic"] and frame.loc[1, "num_bases"] == 4 and frame.loc[1, "stages"] == "[3]"
    assert frame.loc[1, "width_mult"] == 0.125 and frame.loc[1, "mode"] == "dynet"  # resolved spec defaults
    assert frame.loc[1, "curve"] == pytest.approx([0.93 * 0.9, 0.93]) and frame.loc[1, "epochs"] == 2
    assert frame.loc[1, "seed"] == 1001 and frame.loc[1, "dir"].endswith("trial_0001")
    assert not frame.loc[5, "feasible"] and "over the budget" in frame.loc[5, "infeasible"]
    assert frame.loc[5, "macs"] == 9e6 and np.isnan(frame.loc[5, "val_acc1"])  # cost known, no accuracy
    assert frame.loc[11, "state"] == "RUNNING"


def test_missing_storage_or_study_is_named_and_nothing_is_created(tmp_path, study):
    url, _ = study
    with pytest.raises(analysis.AnalysisError, match="storage: no study database"):
        analysis.load(f"sqlite:///{tmp_path / 'nope.db'}", "hand")
    assert not (tmp_path / "nope.db").exists()
    with pytest.raises(analysis.AnalysisError, match="study: no study 'other'.*studies there: hand"):
        analysis.load(url, "other")


# ----------------------------------------------------------------------------------------- fronts
def test_front_is_optunas_best_trials_overall_and_per_architecture(study):
    url, optuna_study = study
    frame = analysis.load(url, "hand")
    assert set(frame.loc[frame["on_front"], "number"]) == {t.number for t in optuna_study.best_trials}
    for arch in ("resnet18", "mobilenet_v2"):
        numbers = set(frame.loc[frame["arch"] == arch, "number"])
        alone = optuna.create_study(directions=optuna_study.directions)
        alone.add_trials([t for t in optuna_study.trials if t.number in numbers])
        expected = {TrialRecord.of(t).seed - 1000 for t in alone.best_trials}  # seed = 1000 + number
        assert set(frame.loc[frame["on_arch_front"] & (frame["arch"] == arch), "number"]) == expected
    assert set(frame.loc[frame["on_arch_front"], "number"]) == {1, 2, 3, 7, 8, 10}


def test_ties_are_all_on_the_front_and_the_order_is_by_cost():
    frame = table(
        [
            (0, "a", "COMPLETE", True, 0.9, 30.0),
            (1, "a", "COMPLETE", True, 0.9, 30.0),  # tie with 0
            (2, "a", "COMPLETE", True, 0.8, 10.0),
            (3, "a", "COMPLETE", True, 0.8, 20.0),  # dominated by 2 (same accuracy, more MACs)
        ]
    )
    front = analysis.pareto_front(frame, OBJECTIVES)
    assert list(front["number"]) == [2, 0, 1]


def test_infeasible_failed_pruned_running_never_on_a_front():
    frame = table(
        [
            (0, "a", "COMPLETE", True, 0.5, 50.0),
            (1, "a", "COMPLETE", False, 0.99, 1.0),  # infeasible would dominate everything
            (2, "a", "FAIL", True, 0.99, 1.0),
            (3, "a", "PRUNED", True, 0.99, 1.0),
            (4, "a", "RUNNING", True, np.nan, 1.0),
            (5, "a", "COMPLETE", True, np.nan, 1.0),  # no accuracy
        ]
    )
    assert analysis.pareto_front(frame, OBJECTIVES)["number"].tolist() == [0]
    assert analysis.front_mask(frame.iloc[1:], OBJECTIVES).sum() == 0


def test_objectives_are_checked_by_name():
    frame = table([(0, "a", "COMPLETE", True, 0.5, 50.0)])
    with pytest.raises(analysis.AnalysisError, match="objectives: none given"):
        analysis.pareto_front(frame)
    with pytest.raises(analysis.AnalysisError, match=r"objectives\['macs'\]: 'min' is not one of maximize, minimize"):
        analysis.pareto_front(frame, {"val_acc1": "maximize", "macs": "min"})
    with pytest.raises(analysis.AnalysisError, match="no column 'latency'"):
        analysis.pareto_front(frame, {"val_acc1": "maximize", "latency": "minimize"})


# ------------------------------------------------------------------------------------ hypervolume
def test_hypervolume_by_hand():
    frame = table(
        [
            (0, "a", "COMPLETE", True, 0.9, 100.0),
            (1, "a", "COMPLETE", True, 0.8, 50.0),
            (2, "a", "COMPLETE", True, 0.7, 150.0),  # dominated: adds nothing
            (3, "a", "COMPLETE", True, 0.95, 300.0),  # beyond the reference cost: adds nothing
            (4, "a", "COMPLETE", False, 1.0, 1.0),  # infeasible: adds nothing
        ]
    )
    reference = {"val_acc1": 0.0, "macs": 200.0}
    # 0.8 x (200 - 50) + (0.9 - 0.8) x (200 - 100)
    assert analysis.hypervolume(frame, reference, OBJECTIVES) == pytest.approx(130.0)
    history = analysis.hypervolume_history(frame, reference, OBJECTIVES)
    assert history["hypervolume"].tolist() == pytest.approx([90.0, 130.0, 130.0, 130.0, 130.0])
    assert analysis.hypervolume(frame.iloc[:0], reference, OBJECTIVES) == 0.0
    with pytest.raises(analysis.AnalysisError, match="reference_point: no value for macs"):
        analysis.hypervolume(frame, {"val_acc1": 0.0}, OBJECTIVES)


def test_hypervolume_three_objectives_by_hand():
    frame = pd.DataFrame(
        {"val_acc1": [0.5, 0.25], "macs": [2.0, 1.0], "params": [1.0, 3.0], "state": "COMPLETE", "feasible": True}
    )
    objectives = {"val_acc1": "maximize", "macs": "minimize", "params": "minimize"}
    reference = {"val_acc1": 0.0, "macs": 4.0, "params": 4.0}
    # boxes 0.5 x 2 x 3 = 3 and 0.25 x 3 x 1 = 0.75, overlapping in 0.25 x 2 x 1 = 0.5
    assert analysis.hypervolume(frame, reference, objectives) == pytest.approx(3.25)


def test_reference_point_is_derived_without_storing_until_one_is_set(study):
    url, optuna_study = study
    derived = analysis.reference_point(optuna_study)
    assert derived == {"val_acc1": 0.0, "macs": 9.9e6}  # 1.1 x the costliest trial (9e6), 2 digits
    assert StudyRecord.of(optuna.load_study(study_name="hand", storage=url)).reference_point is None  # read only
    add_trials(optuna_study, [trial("resnet18", 0.95, 3e7)])
    assert analysis.reference_point(optuna_study)["macs"] == 3.3e7  # derived: moves with the study

    point = analysis.set_reference_point(optuna_study, {"macs": 1e7, "val_acc1": 0.0})
    assert StudyRecord.of(optuna.load_study(study_name="hand", storage=url)).reference_point == point
    add_trials(optuna_study, [trial("resnet18", 0.96, 5e7)])
    assert analysis.reference_point(optuna_study) == point == analysis.stored_reference_point(optuna_study)
    assert analysis.load(url, "hand").attrs["reference_point"] == point
    assert analysis.set_reference_point(optuna_study, dict(point)) == point  # the same point again: fine
    with pytest.raises(ReferencePointError, match="already stores .* one point for its life"):
        analysis.set_reference_point(optuna_study, {"val_acc1": 0.0, "macs": 2e7})
    with pytest.raises(analysis.AnalysisError, match=r"one value per objective \(val_acc1, macs\), got \['macs'\]"):
        analysis.set_reference_point(optuna_study, {"macs": 2e7})


def test_reference_point_from_the_constraint_or_the_spec():
    spec = parse_config({"name": "c", "architectures": ["resnet18"], "constraints": {"max_macs": 3e6}})
    constrained = make_study(None, "c", [trial("resnet18", 0.9, 1e6)], sweep_config=spec.to_dict())
    assert analysis.reference_point(constrained) == {"val_acc1": 0.0, "macs": 3e6}
    given = make_study(None, "g", [trial("resnet18", 0.9, 1e6)], reference_point={"val_acc1": 0.5, "macs": 2e6})
    assert analysis.reference_point(given) == {"val_acc1": 0.5, "macs": 2e6}
    assert analysis.reference_point(make_study(None, "r", [trial("resnet18", 0.9, 7e6)]))["macs"] == 7.7e6
    with pytest.raises(analysis.AnalysisError, match="no finished trial yet"):
        analysis.reference_point(make_study(None, "e", []))


def test_unnamed_objectives_are_objective_0_and_1():
    plain = optuna.create_study(directions=["maximize", "minimize"])
    plain.add_trial(optuna.trial.create_trial(values=[0.5, 10.0]))
    frame = analysis.from_study(plain)
    assert frame.attrs["objectives"] == {"objective_0": "maximize", "objective_1": "minimize"}
    assert analysis.reference_point(plain, frame) == {"objective_0": 0.0, "objective_1": 11.0}
    assert frame["on_front"].tolist() == [True] and frame.loc[0, "arch"] is None


# -------------------------------------------------------------------------------------- dominance
def test_coverage_and_dominance_between_fronts():
    better = table([(0, "d", "COMPLETE", True, 0.9, 10.0), (1, "d", "COMPLETE", True, 0.95, 20.0)])
    worse = table([(2, "s", "COMPLETE", True, 0.85, 10.0), (3, "s", "COMPLETE", True, 0.95, 20.0)])
    crossing = table([(4, "s", "COMPLETE", True, 0.99, 40.0), (5, "s", "COMPLETE", True, 0.5, 5.0)])
    assert analysis.coverage(better, worse, OBJECTIVES) == 1.0  # the tie at (0.95, 20) counts as covered
    assert analysis.coverage(worse, better, OBJECTIVES) == 0.5
    assert analysis.dominates(better, worse, OBJECTIVES) and not analysis.dominates(worse, better, OBJECTIVES)
    assert not analysis.dominates(better, better, OBJECTIVES)  # a front does not dominate itself
    assert analysis.coverage(better, crossing, OBJECTIVES) == 0.0 and not analysis.dominates(
        better, crossing, OBJECTIVES
    )
    assert np.isnan(analysis.coverage(better, crossing.iloc[:0], OBJECTIVES))


# ---------------------------------------------------------------------------------------- figures
def test_front_figure_holds_each_architectures_front_and_labels_presets(study):
    url, _ = study
    frame = analysis.load(url, "hand")
    ax = analysis.plot_fronts(frame)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"resnet18 front", "mobilenet_v2 front"}
    assert list(lines["resnet18 front"].get_xdata()) == [2e6, 3e6, 3e6]
    assert list(lines["resnet18 front"].get_ydata()) == [0.88, 0.93, 0.93]
    assert list(lines["mobilenet_v2 front"].get_xdata()) == [0.5e6, 1e6, 3.5e6]
    assert ax.get_xscale() == "log"
    assert {t.get_text() for t in ax.texts} == {"resnet18", "dy_mobilenet_v2"}
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {"static baselines", "Dy presets"} <= legend


def test_hypervolume_and_effects_figures(study):
    url, optuna_study = study
    frame = analysis.load(url, "hand")
    reference = {"val_acc1": 0.0, "macs": 1e7}
    ax = analysis.plot_hypervolume(frame, reference)
    (line,) = ax.get_lines()
    history = analysis.hypervolume_history(frame, reference)
    assert list(line.get_ydata()) == pytest.approx(history["hypervolume"].tolist())
    assert line.get_ydata()[-1] == pytest.approx(analysis.hypervolume(frame, reference))
    importances = analysis.param_importances(optuna_study, frame)
    assert set(importances["arch"]) == {"resnet18"}  # mobilenet_v2 has 3 searched trials: too few
    assert set(importances["param"]) == {"num_bases", "stages"}
    sums = importances.groupby("objective")["importance"].sum()
    assert sums.tolist() == pytest.approx([1.0, 1.0])
    figure = analysis.plot_effects(frame, importances=importances)
    labels = [ax.get_xlabel() for ax in figure.axes]
    assert labels.count("num_bases") == 2 and labels.count("stages") == 2
    assert {"importance for val_acc1", "importance for macs"} <= set(labels)
    stages_ax = next(ax for ax in figure.axes if ax.get_xlabel() == "stages")
    assert [t.get_text() for t in stages_ax.get_xticklabels()] == ["[]", "[3]", "[2, 3]"]


def test_three_objectives_front_is_best_trials_and_the_plot_line_is_the_2d_front():
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_acc1", "macs", "params"])
    rng = np.random.default_rng(0)
    for _ in range(40):
        acc, macs, params = rng.choice([0.5, 0.6, 0.7, 0.8]), rng.choice([1e6, 2e6, 3e6]), rng.uniform(1, 5)
        study.add_trial(
            optuna.trial.create_trial(
                values=[acc, macs, params], user_attrs=TrialRecord.as_user_attrs(model="resnet18", macs=macs)
            )
        )
    frame = analysis.from_study(study)
    assert set(frame.loc[frame["on_front"], "number"]) == {t.number for t in study.best_trials}
    ax = analysis.plot_fronts(frame)
    (line,) = [line for line in ax.get_lines() if line.get_label() == "resnet18 front"]
    assert list(np.diff(line.get_xdata())) >= [0] * (len(line.get_xdata()) - 1)
    assert (np.diff(line.get_ydata()) >= 0).all()  # a 2-D front of accuracy against MACs: a staircase up
    two_d = analysis.pareto_front(frame, {"val_acc1": "maximize", "macs": "minimize"})
    assert sorted(line.get_xdata()) == sorted(two_d["macs"])


def test_groups_other_than_architectures_keep_one_colour_for_points_and_line(study):
    url, _ = study
    frame = analysis.load(url, "hand")
    family = frame.assign(family=frame["arch"] + frame["dynamic"].map({True: " dynamic", False: " static"}))
    ax = analysis.plot_fronts(family.dropna(subset=["family"]), by="family")
    lines = {line.get_label()[: -len(" front")]: line.get_color() for line in ax.get_lines()}
    points = {
        c.get_label()[: -len(" trials")]: tuple(c.get_facecolor()[0][:3])
        for c in ax.collections
        if c.get_label().endswith(" trials")
    }
    assert set(lines) == {"resnet18 dynamic", "resnet18 static", "mobilenet_v2 dynamic", "mobilenet_v2 static"}
    for name, color in lines.items():
        assert matplotlib.colors.to_rgb(color) == pytest.approx(points[name])
    assert len(set(lines.values())) == 4


def test_waiting_trials_single_architecture_and_journal_storage(tmp_path):
    from dynsweep.sweep.storage import make_storage

    url = f"journal:{tmp_path / 'study.log'}"
    study = optuna.create_study(storage=make_storage(url), study_name="one", directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_acc1", "macs"])
    add_trials(study, [trial("resnet18", 0.9, 2e6), trial("resnet18", 0.8, 1e6)], multi_arch=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.enqueue_trial({"preset": "dy_resnet18"})  # a warm start not yet run: its arch comes from the preset
    frame = analysis.load(url, "one")
    assert frame["state"].tolist() == ["COMPLETE", "COMPLETE", "WAITING"]
    assert frame["arch"].tolist() == ["resnet18"] * 3 and frame.loc[2, "label"] == "dy_resnet18"
    assert frame["on_front"].tolist() == [True, True, False]


def test_importance_skips_an_objective_that_does_not_vary(tmp_path):
    flat = [
        trial("resnet18", 0.1135, 2e6 + i * 1e5, num_bases=[1, 2, 4][i % 3], stages=[[3], [2, 3]][i % 2])
        for i in range(6)
    ]
    study = make_study(None, "flat", flat)
    importances = analysis.param_importances(study)
    assert set(importances["objective"]) == {"macs"}  # val_acc1 is the same everywhere: nothing to attribute
    paths = analysis.write_report(study, tmp_path / "out")
    assert {"front.md", "effects.png", "effects.svg"} <= set(paths)


def test_reading_never_writes_to_a_database_that_is_not_a_study(tmp_path):
    import sqlite3

    path = tmp_path / "mine.db"
    with sqlite3.connect(path) as connection:
        connection.execute("create table mine (x int)")
    with pytest.raises(analysis.AnalysisError, match="holds no Optuna studies"):
        analysis.load(f"sqlite:///{path}", "s")
    with sqlite3.connect(path) as connection:
        tables = [row[0] for row in connection.execute("select name from sqlite_master where type='table'")]
    assert tables == ["mine"]


# --------------------------------------------------------------------------- dynsweep sweep pareto
def run_pareto(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return dynsweep("pareto", *args, cwd=cwd, timeout=120)


def test_pareto_command_writes_figures_csv_and_markdown(tmp_path, study):
    url, _ = study
    done = run_pareto("--storage", url, "--study", "hand", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    for name in ("fronts", "hypervolume", "hypervolume_compute", "effects"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert "<svg" in (out / f"{name}.svg").read_text()[:1000]
    assert not (out / "fronts_latency.png").exists()  # no latency measured
    assert len(pd.read_csv(out / "hypervolume.csv")) == 11  # every finished trial, the running one aside
    front = pd.read_csv(out / "front.csv")
    assert sorted(front["number"]) == [1, 2, 3, 7, 8, 10]  # each architecture's front, the running trial aside
    assert {"val_acc1", "macs", "params", "num_bases", "stages", "seed", "dir"} <= set(front.columns)
    assert len(pd.read_csv(out / "trials.csv")) == 12
    markdown = (out / "front.md").read_text()
    assert "| resnet18 " in markdown
    assert "Hypervolume reference point: val_acc1 = 0, macs = 9.9e+06 (derived from the trials so far" in markdown
    assert "12 trials: 9 COMPLETE, 1 FAIL, 1 PRUNED, 1 RUNNING." in markdown
    assert "stopped early" not in markdown and "## Hypervolume over compute" in markdown  # PRUNED: infeasible
    static_row = next(line for line in markdown.splitlines() if line.startswith("|        3 | resnet18"))
    assert static_row.count("| -  ") == 4  # num_bases, reduction, mode, dynamic_width: nothing to do there
    assert markdown in done.stdout


def test_pareto_command_on_a_study_with_nothing_finished(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    make_study(url, "new", [trial("resnet18", None, 1e6, state=TrialState.RUNNING)])
    done = run_pareto("--storage", url, "--study", "new", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "runs" / "new" / "pareto"  # the default --out
    assert (out / "fronts.png").exists() and "No finished feasible trial yet." in (out / "front.md").read_text()
    assert pd.read_csv(out / "front.csv").empty


def test_pareto_command_stores_a_reference_point_once(tmp_path, study):
    url, _ = study
    done = run_pareto("--storage", url, "--study", "hand", "--reference-point", "val_acc1=0", "macs=1e7", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert StudyRecord.of(optuna.load_study(study_name="hand", storage=url)).reference_point == {
        "val_acc1": 0.0,
        "macs": 1e7,
    }
    markdown = (tmp_path / "runs" / "hand" / "pareto" / "front.md").read_text()
    assert "val_acc1 = 0, macs = 1e+07 (stored in the study)" in markdown
    assert "hypervolumes in val_acc1 x macs" in markdown
    # resnet18: hypervolume 0.88 x (1e7 - 2e6) + 0.05 x (1e7 - 3e6); its dynamic front (0.93 at 3e6)
    # covers half of its static front (0.90 at 4e6, not 0.88 at 2e6), which covers none of it.
    row = "| resnet18     | 5          | 3          | 7.39e+06      | 0.50                 | 0.00                 | no "
    assert row in markdown
    again = run_pareto("--storage", url, "--study", "hand", "--reference-point", "val_acc1=0", "macs=2e7", cwd=tmp_path)
    assert again.returncode == 1 and "reference_point: the study 'hand' already stores" in again.stderr
    bad = run_pareto("--storage", url, "--study", "hand", "--reference-point", "macs", cwd=tmp_path)
    assert bad.returncode == 1 and "--reference-point: 'macs' is not NAME=NUMBER" in bad.stderr


def test_pareto_command_names_a_missing_study(tmp_path, study):
    url, _ = study
    done = run_pareto("--storage", url, "--study", "nope", cwd=tmp_path)
    assert done.returncode == 1 and "study: no study 'nope'" in done.stderr


# --------------------------------------------------------------------------------- repeated seeds
@pytest.fixture
def repeated(tmp_path):
    url = f"sqlite:///{tmp_path / 'seeds.db'}"
    make_study(url, "seeds", repeated_seeds(), reference_point=REFERENCE)
    return url, analysis.load(url, "seeds")


def t_interval(values: list[float]) -> tuple[float, float]:
    return scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=scipy_stats.sem(values))


def test_per_seed_columns_are_recomputed_from_the_seed_values(repeated):
    _, frame = repeated
    dy = frame.loc[2]  # its record stores value_std 0.5 and value_ci [0, 1]: not trusted
    assert dy["seeds"] == [0, 1, 2] and dy["seed_values"] == [0.90, 0.905, 0.91] and dy["n_seeds"] == 3
    assert dy["val_acc1"] == pytest.approx(0.905) and dy["value_std"] == pytest.approx(0.005)
    assert (dy["ci_low"], dy["ci_high"]) == pytest.approx(t_interval([0.90, 0.905, 0.91]))
    repeat = frame.loc[5]
    assert repeat["n_seeds"] == 4 and repeat["repeat_of"] == 3
    assert (repeat["ci_low"], repeat["ci_high"]) == pytest.approx(t_interval([0.905, 0.915, 0.93, 0.92]))
    running = frame.loc[7]  # two seeds still training
    assert running["n_seeds"] == 3 and running["seed_values"][3:] == [None, None] and np.isnan(running["val_acc1"])
    single = frame.loc[10]  # no repeats: its one seed and value
    assert single["seeds"] == [1010] and single["seed_values"] == [0.86] and single["n_seeds"] == 1
    assert np.isnan(single["value_std"]) and np.isnan(single["ci_low"]) and np.isnan(single["ci_high"])
    assert frame.loc[6, "duplicate_of"] == 2 and frame.loc[6, "point"] == "r-dy"


def test_a_study_without_repeats_has_one_seed_per_finished_trial(study):
    url, _ = study
    frame = analysis.load(url, "hand")
    done = frame[frame["state"] == "COMPLETE"]
    assert (done["n_seeds"] == 1).all() and done["value_std"].isna().all()
    assert (done["seeds"].map(len) == 1).all() and (done["seeds"].str[0] == done["seed"]).all()
    assert done["seed_values"].str[0].tolist() == done["val_acc1"].tolist()
    assert (frame.loc[frame["state"] != "COMPLETE", "n_seeds"] == 0).all()
    assert frame["point"].tolist() == [f"trial {n}" for n in range(12)]  # no digests recorded: each its own
    markdown = analysis.report.markdown(frame, analysis.reference_point(analysis.read_study(url, "hand"), frame))
    assert "95% CI" not in markdown and "seed noise" not in markdown
    assert "Every point has one seed: these fronts carry no interval" in markdown


def test_one_trial_stands_for_each_point(repeated):
    _, frame = repeated
    # 3 retrained by its front repeat 5 (4 seeds against 2); 6 a duplicate of 2 (a tie: the earliest);
    # 7 a repeat of 2 still running.
    assert frame.loc[analysis.eligible(frame), "number"].tolist() == [0, 1, 2, 4, 5, 8, 9, 10]
    before_the_repeat = frame[frame["number"] < 5]
    assert 3 in before_the_repeat.loc[analysis.eligible(before_the_repeat), "number"].tolist()
    history = analysis.hypervolume_history(frame, REFERENCE)
    assert history["hypervolume"].iloc[-1] == pytest.approx(analysis.hypervolume(frame, REFERENCE))
    assert set(frame.loc[frame["on_arch_front"], "number"]) == {1, 2, 4, 5, 8, 9}


def test_without_point_digests_duplicates_and_repeats_follow_their_original():
    trials = [
        trial("resnet18", 0.9, 2e6),
        trial("resnet18", 0.9, 2e6, duplicate_of=0),
        trial("resnet18", 0.8, 1e6, seeds=[5], seed_values=[0.8]),
        trial("resnet18", None, 1e6, seeds=[5, 6], seed_values=[0.8, 0.82], repeat_of=2),
        trial("resnet18", None, 1e6, seeds=[5, 6], seed_values=[0.8, 0.82], duplicate_of=3),
    ]
    frame = analysis.from_study(make_study(None, "old", trials))
    assert frame["point"].tolist() == ["trial 0", "trial 0", "trial 2", "trial 2", "trial 2"]
    assert frame.loc[analysis.eligible(frame), "number"].tolist() == [0, 3]
    assert frame["on_front"].tolist() == [True, False, False, True, False]


def test_front_points_whose_intervals_overlap_their_neighbours_are_marked(repeated):
    _, frame = repeated
    front = analysis.pareto_front(frame[frame["arch"] == "resnet18"])
    assert front["number"].tolist() == [4, 1, 2, 5]
    # intervals: 4 one seed; 1 [0.825, 0.875]; 2 [0.893, 0.917]; 5 [0.901, 0.934]
    assert analysis.neighbour_overlaps(front) == [{1: None}, {4: None, 2: False}, {1: False, 5: True}, {2: True}]
    markdown = analysis.report.markdown(frame, REFERENCE)
    section = markdown.split("### resnet18")[1].split("##")[0]
    rows = {
        int(line.split("|")[1]): [cell.strip() for cell in line.split("|")[1:-1]]
        for line in section.splitlines()
        if line.split("|")[1:2] and line.split("|")[1].strip().isdigit()
    }
    header = [cell.strip() for cell in section.splitlines()[2].split("|")[1:-1]]
    overlaps, interval, seeds = header.index("CI overlaps"), header.index("95% CI"), header.index("seeds")
    assert {n: row[overlaps] for n, row in rows.items()} == {4: "1?", 1: "4?", 2: "5", 5: "2"}
    low, high = t_interval([0.90, 0.905, 0.91])
    assert rows[2][interval] == f"[{low:.4f}, {high:.4f}]" and rows[2][seeds] == "3" and rows[4][interval] == "-"
    distinct = pd.DataFrame(
        {
            "number": [0, 1],
            "val_acc1": [0.5, 0.9],
            "macs": [1.0, 2.0],
            "seed_values": [[0.49, 0.5, 0.51], [0.89, 0.9, 0.91]],
        }
    )
    assert analysis.neighbour_overlaps(distinct, OBJECTIVES) == [{1: False}, {0: False}]


def test_dynamic_against_static_is_the_bootstrap_of_the_hypervolume_difference(repeated):
    _, frame = repeated
    table = analysis.dynamic_against_static(frame, REFERENCE).set_index("arch")
    resnet = table.loc["resnet18"]
    dynamic, static = (
        frame[(frame["arch"] == "resnet18") & frame["dynamic"]],
        frame[(frame["arch"] == "resnet18") & ~frame["dynamic"].astype(bool)],
    )
    # dynamic: 0.80 x 4e6 + 0.105 x 2.8e6 + 0.0125 x 2e6; static: 0.85 x 3e6 + 0.06 x 1e6
    assert resnet["hv_dynamic"] == pytest.approx(3.519e6) == analysis.hypervolume(dynamic, REFERENCE)
    assert resnet["hv_static"] == pytest.approx(2.61e6) == analysis.hypervolume(static, REFERENCE)
    assert (resnet["dynamic_points"], resnet["static_points"], resnet["one_seed_points"]) == (3, 2, 1)
    # Every resample lies between the extremes of the seed means: 0.85e6 .. 0.968e6, all above 0.
    assert 0.85e6 <= resnet["low"] < resnet["difference"] < resnet["high"] <= 0.968e6
    assert resnet["p_value"] == pytest.approx(2 / 2001)
    mobile = table.loc["mobilenet_v2"]  # 0.86 x 4e6 against 0.805 x 4.1e6 + 0.055 x 3e6: within the noise
    assert mobile["difference"] == pytest.approx(3.44e6 - 3.4655e6)
    assert mobile["low"] < 0 < mobile["high"] and mobile["p_value"] > 0.05
    again = analysis.dynamic_against_static(frame, REFERENCE).set_index("arch")
    assert again.equals(table)  # seeded
    markdown = analysis.report.markdown(frame, REFERENCE)
    section = markdown.split("## Dynamic against static, with seed noise")[1].split("\n## ")[0]
    assert "| resnet18     | 3, 2 " in section and "| dynamic better " in section
    assert "| cannot tell at 95% " in section and "1 of 5 points have one seed" in section


def test_one_seed_points_give_no_interval_for_the_fronts(study):
    url, _ = study
    frame = analysis.load(url, "hand")
    table = analysis.dynamic_against_static(frame, {"val_acc1": 0.0, "macs": 1e7})
    assert table["arch"].tolist() == ["mobilenet_v2", "resnet18"]
    assert table[["low", "high", "p_value"]].isna().all().all() and (table["difference"].notna()).all()


def test_compare_kinds_per_architecture(repeated):
    _, frame = repeated
    dy_fix = analysis.compare(frame, "dy", "fix").set_index("arch")
    resnet, mobile = dy_fix.loc["resnet18"], dy_fix.loc["mobilenet_v2"]
    paired = scipy_stats.ttest_rel([0.90, 0.905, 0.91], [0.84, 0.85, 0.86])  # the same seeds 0, 1, 2
    assert (resnet["a"], resnet["b"], resnet["test"], resnet["measure"]) == (
        "dy_resnet18",
        "fix_resnet18",
        "paired t",
        "val_acc1",
    )
    assert resnet["difference"] == pytest.approx(0.055) and resnet["p_value"] == pytest.approx(paired.pvalue)
    assert (resnet["low"], resnet["high"]) == pytest.approx(tuple(paired.confidence_interval(0.95)))
    assert (resnet["a_low"], resnet["a_high"]) == pytest.approx(t_interval([0.90, 0.905, 0.91]))
    assert (resnet["a_n"], resnet["a_macs"], resnet["b_macs"]) == (3, 2.2e6, 2e6)
    welch = scipy_stats.ttest_ind([0.85, 0.87], [0.80, 0.81], equal_var=False)  # seeds 0, 1 against 5, 6
    assert mobile["test"] == "welch t" and mobile["p_value"] == pytest.approx(welch.pvalue)
    assert (mobile["low"], mobile["high"]) == pytest.approx(tuple(welch.confidence_interval(0.95)))
    dy_base = analysis.compare(frame, "dy", "baseline").set_index("arch")
    assert dy_base.loc["resnet18", "test"] == "paired t"
    assert np.isnan(dy_base.loc["mobilenet_v2", "p_value"]) and dy_base.loc["mobilenet_v2", "b_n"] == 1  # one seed
    fronts = analysis.compare(frame, "searched", "resnet18")  # 4 and 5 against the baseline preset
    assert fronts["arch"].tolist() == ["resnet18"] and fronts.loc[0, "measure"] == "hypervolume"
    assert fronts.loc[0, "a"] == "searched: 2 points" and fronts.loc[0, "b"] == "resnet18"
    searched = frame[frame["number"].isin([4, 5])]
    assert fronts.loc[0, "a_mean"] == pytest.approx(analysis.hypervolume(searched, REFERENCE))
    assert fronts.loc[0, "b_mean"] == pytest.approx(0.91 * 1e6) and fronts.loc[0, "p_value"] == pytest.approx(2 / 2001)
    with pytest.raises(
        UsageError, match=r"compare: 'dyy' is not one of dy, fix, baseline, searched, dy_mobilenet_v2, "
    ):
        analysis.compare(frame, "dyy", "fix")
    with pytest.raises(UsageError, match="both sides are 'dy'"):
        analysis.compare(frame, "dy", "dy")


def test_front_figure_has_error_bars_where_points_have_seeds(repeated, study):
    _, frame = repeated
    ax = analysis.plot_fronts(frame)
    bars = {c.get_label(): c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)}
    assert set(bars) == {"resnet18 95% CI", "mobilenet_v2 95% CI"}
    (segments,) = [c.get_segments() for c in bars["resnet18 95% CI"].lines[2]]
    repeated_rows = frame[analysis.eligible(frame) & (frame["arch"] == "resnet18") & (frame["n_seeds"] >= 2)]
    assert repeated_rows["number"].tolist() == [0, 1, 2, 5]
    expected = [
        [(m, low), (m, high)] for m, low, high in repeated_rows[["macs", "ci_low", "ci_high"]].itertuples(index=False)
    ]
    assert np.allclose(np.asarray(segments), np.asarray(expected))
    url, _ = study
    plain = analysis.plot_fronts(analysis.load(url, "hand"))
    assert not [c for c in plain.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]


def test_pareto_command_compares_kinds(tmp_path, repeated):
    url, frame = repeated
    out = tmp_path / "out"
    done = run_pareto(
        "--storage",
        url,
        "--study",
        "seeds",
        "--out",
        str(out),
        "--compare",
        "dy",
        "fix",
        "--compare",
        "dy",
        "baseline",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    markdown = (out / "front.md").read_text()
    assert "## dy against fix" in markdown and "## dy against baseline" in markdown and markdown in done.stdout
    table = pd.read_csv(out / "compare_dy_fix.csv")
    expected = analysis.compare(frame, "dy", "fix")
    assert table[["arch", "test"]].values.tolist() == expected[["arch", "test"]].values.tolist()
    assert table["p_value"].tolist() == pytest.approx(expected["p_value"].tolist())
    paired = scipy_stats.ttest_rel([0.90, 0.905, 0.91], [0.84, 0.85, 0.86])
    low, high = paired.confidence_interval(0.95)
    row = next(line for line in markdown.split("## dy against fix")[1].splitlines() if line.startswith("| resnet18"))
    assert f"+0.0550 [{low:+.4f}, {high:+.4f}]" in row and f"| {paired.pvalue:.3g} " in row and "| paired t " in row
    assert "| dy better " in row and "dy_resnet18 (3 seeds, 2.2 MMACs)" in row
    baseline = markdown.split("## dy against baseline")[1]
    assert "mobilenet_v2 (1 seed, 2 MMACs)" in baseline and "(no interval: one seed)" in baseline
    assert pd.read_csv(out / "compare_dy_baseline.csv").shape[0] == 2

    bad = run_pareto(
        "--storage", url, "--study", "seeds", "--out", str(tmp_path / "bad"), "--compare", "dyy", "fix", cwd=tmp_path
    )
    assert bad.returncode == 2 and not (tmp_path / "bad").exists()
    assert bad.stderr.strip().splitlines() == [
        (
            "dynsweep sweep pareto: compare: 'dyy' is not one of dy, fix, baseline, searched, dy_mobilenet_v2, "
            "dy_resnet18, fix_mobilenet_v2, fix_resnet18, mobilenet_v2, resnet18 (a kind, or a preset or architecture "
            "in the study)"
        )
    ]


# ------------------------------------------------------------------- stopped trials and compute
@pytest.fixture
def stopped():
    spec = parse_config(MOASHA_SPEC).to_dict()
    study = make_study(None, "stopped", stopped_early(), sweep_config=spec, reference_point=REFERENCE)
    return study, analysis.from_study(study)


def test_stopped_trials_carry_their_rung_accuracy_and_epochs(stopped):
    _, frame = stopped
    assert frame["stopped"].tolist() == [False, True, True, False, False, True, False, False, False]  # 3: infeasible
    assert frame.loc[1, "stopped_at_rung"] == 1 and frame.loc[1, "stopped_value"] == 0.5
    # rung 3's stored value, not the best of the curve (which ran one epoch past the rung)
    assert frame.loc[2, "stopped_at_epoch"] == 3 and frame.loc[2, "stopped_value"] == 0.72
    assert np.isnan(frame.loc[5, "stopped_at_rung"]) and frame.loc[5, "stopped_at_epoch"] == 2
    assert frame.loc[5, "stopped_value"] == 0.45
    assert frame["max_epochs"].tolist() == [9] * 9
    # a further seed counts its max_epochs; a duplicate and an infeasible trial trained nothing
    assert frame["epochs_trained"].tolist() == [9, 1, 4, 0, 9, 2, 18, 0, 2]
    assert not frame.loc[frame["stopped"], "on_front"].any()


def test_epochs_trained_counts_only_what_a_front_repeat_adds():
    original = TrialRecord(curve=[0.5] * 4, seeds=[1, 2], seed_values=[0.8, 0.82])
    repeat = TrialRecord(seeds=[1, 2, 3, 4], seed_values=[0.8, 0.82, 0.81, None], repeat_of=0)
    assert analysis.epochs_trained(original, None, 4) == 8
    assert analysis.epochs_trained(repeat, original, 4) == 4  # seed 3 only: 1, 2 were the original's, 4 unfinished
    assert analysis.epochs_trained(TrialRecord(curve=[0.5] * 3, duplicate_of=0), None, 4) == 0


def test_the_report_says_how_many_trials_stopped_where_and_the_epochs_saved(tmp_path, stopped):
    study, _ = stopped
    analysis.write_report(study, tmp_path)
    markdown = (tmp_path / "front.md").read_text()
    assert (
        "3 trials stopped early: 1 at the rung at epoch 1, 1 at the rung at epoch 3, 1 at epoch 2 (dominated there)."
        in (markdown)
    )
    # stopped: 1 + 4 + 2 = 7 epochs of 3 x 9; all: 9+1+4+0+9+2+18+0+2 = 45; 20 / (45 + 20) = 31%
    assert "Compute, in epochs (a trial's record keeps its accuracy per epoch, not the epoch's time" in markdown
    assert (
        "the stopped trials trained 7 epochs, where their full budgets (max_epochs for each of their seeds) are 27"
        in (markdown)
    )
    assert "20 saved; all trials trained 45, 31% less than had none been stopped." in markdown
    # the infeasible trial of two_architectures is PRUNED but was never trained: not stopped
    hand = make_study(None, "hand", two_architectures())
    assert "stopped early" not in analysis.report.markdown(analysis.from_study(hand), REFERENCE)


def test_stopped_trials_are_crosses_off_the_front(stopped):
    _, frame = stopped
    ax = analysis.plot_fronts(frame)
    crosses = next(c for c in ax.collections if c.get_label() == analysis.figures.STOPPED_LABEL)
    assert sorted(map(tuple, crosses.get_offsets().tolist())) == [(0.8e6, 0.45), (2e6, 0.72), (3e6, 0.5)]
    lines = {line.get_label(): line for line in ax.get_lines()}
    front_points = {(x, y) for name in ("resnet18 front", "mobilenet_v2 front") for x, y in lines[name].get_xydata()}
    assert front_points == {(4e6, 0.9), (0.5e6, 0.81), (1e6, 0.85)}
    matplotlib.pyplot.close("all")


def test_hypervolume_over_epochs_trained_follows_completion_order(tmp_path, stopped):
    study, frame = stopped
    history = analysis.compute_history(frame, REFERENCE)
    assert history["number"].tolist() == [1, 3, 2, 0, 5, 4, 6, 7]  # by completion; 8 still runs
    assert history["cumulative_epochs"].tolist() == [1, 1, 5, 14, 16, 25, 43, 43]
    # by hand: 0.9 x 1e6; + mobilenet_v2 0.85 at 1e6; + 0.81 (mean of two seeds) at 0.5e6
    expected = [0, 0, 0, 0.9e6, 0.9e6, 0.85 * 4e6 + 0.05 * 1e6, 0.81 * 4.5e6 + 0.04 * 4e6 + 0.05 * 1e6]
    assert history["hypervolume"].tolist() == pytest.approx(expected + expected[-1:])
    analysis.write_report(study, tmp_path)
    table = pd.read_csv(tmp_path / "hypervolume.csv")
    assert table["cumulative_epochs"].tolist() == history["cumulative_epochs"].tolist()
    by_number = analysis.hypervolume_history(frame, REFERENCE).set_index("number")["hypervolume"]
    assert table["hypervolume_by_number"].tolist() == pytest.approx(by_number.loc[table["number"]].tolist())
    markdown = (tmp_path / "front.md").read_text()
    section = markdown.split("## Hypervolume over compute")[1]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "trial" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["0", "4", "6", "7"]  # the rises and the last
    assert "| 6       | COMPLETE | 18           | 43              | 3.855e+06" in section
    for suffix in ("png", "svg"):
        assert (tmp_path / f"hypervolume_compute.{suffix}").stat().st_size > 0
    assert not (tmp_path / "fronts_latency.png").exists()  # nothing measured
    ax = analysis.plot_hypervolume(frame, REFERENCE, over="epochs")
    assert ax.get_lines()[0].get_xdata().tolist() == [1, 1, 5, 14, 16, 25, 43, 43]
    matplotlib.pyplot.close("all")


# ------------------------------------------------------------------------------------- latency
@pytest.fixture
def timed():
    study = make_study(None, "timed", measured_latency(), reference_point=REFERENCE)
    return study, analysis.from_study(study)


def test_latency_columns_come_from_the_record(timed, study):
    _, frame = timed
    assert frame["latency_ms"].tolist() == [2.0, 3.0, 1.0, 2.5, 1.5, 1.2, 1.4, 4.0]
    assert frame["latency_ratio"].tolist() == [v / 2 for v in frame["latency_ms"]]
    assert analysis.from_study(study[1])["latency_ms"].isna().all()


def test_kendall_tau_between_macs_and_latency_per_architecture_and_overall(timed):
    _, frame = timed
    table = analysis.macs_latency_tau(frame).set_index("arch")
    assert list(table.index) == ["mobilenet_v2", "resnet18", "all"]
    for arch, rows in (("resnet18", [0, 1, 2, 3, 7]), ("mobilenet_v2", [4, 5, 6]), ("all", list(range(8)))):
        expected = scipy_stats.kendalltau(frame.loc[rows, "macs"], frame.loc[rows, "latency_ms"])
        assert table.loc[arch, "trials"] == len(rows)  # the stopped trial 7 counts: both known before training
        assert table.loc[arch, "tau"] == pytest.approx(expected.statistic)
        assert table.loc[arch, "p_value"] == pytest.approx(expected.pvalue)


def test_macs_front_points_that_are_not_faster(timed):
    _, frame = timed
    table = analysis.macs_not_faster(frame)
    rows = list(zip(table["front"], table["number"], table["dominated_by"]))
    assert rows == [("resnet18", 1, [0]), ("all", 1, [0]), ("all", 5, [2])]
    for front, number, _ in rows:  # each is on the MACs front and not on the latency one
        group = frame if front == "all" else frame[frame["arch"] == front]
        assert analysis.front_mask(group, OBJECTIVES)[number]
        assert not analysis.front_mask(group, {"val_acc1": "maximize", "latency_ms": "minimize"})[number]


def test_the_report_puts_the_latency_front_beside_the_macs_front(tmp_path, timed):
    study, frame = timed
    written = analysis.write_report(study, tmp_path)
    assert {"fronts_latency.png", "fronts_latency.svg"} <= set(written)
    markdown = (tmp_path / "front.md").read_text()
    section = markdown.split("## Accuracy against measured latency")[1]
    assert "8 trials with a measured latency" in section
    front = [line.split("|")[1].strip() for line in section.split("Kendall")[0].splitlines() if line.startswith("|  ")]
    assert front[1:] == ["2", "6", "4", "0"]  # by latency: 1.0, 1.4, 1.5, 2.0 ms
    overall = scipy_stats.kendalltau(frame["macs"], frame["latency_ms"])
    assert f"| all          | 8        | {overall.statistic:.3f}" in section
    not_faster = section.split("### Cheaper in MACs, not faster")[1]
    assert "| resnet18   |        1 |" in not_faster and "| all        |        5 |" in not_faster
    figure = analysis.plot_latency_fronts(frame)
    left, right = figure.axes[:2]
    assert left.get_xlabel().startswith("macs") and right.get_xlabel().startswith("latency_ms")
    fronts = {line.get_label(): line.get_xydata().tolist() for line in right.get_lines()}
    assert fronts["resnet18 front"] == [[1.0, 0.8], [2.0, 0.9]]  # 1 (3 ms) is off the latency front
    matplotlib.pyplot.close("all")


# -------------------------------------------------------------------------------------- notebooks
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["pareto_analysis", "compare_architectures"])
def test_notebooks_run_on_a_small_study(tmp_path, study, monkeypatch, name):
    url, optuna_study = study
    outputs, images = run_notebook(name, url, "hand", tmp_path, monkeypatch)
    frame = analysis.load(url, "hand")
    reference = analysis.reference_point(optuna_study, frame)
    assert f"9 finished trials; reference point {reference} (derived)" in outputs
    if name == "pareto_analysis":
        assert f"hypervolume: {analysis.hypervolume(frame, reference)}" in outputs
        assert len(images) == 5  # fronts, hypervolume, over compute, effects, learning curves
        assert "0 trials stopped early, 18 epochs trained in all" in outputs  # 9 finished trials of 2 epochs
        assert "no trial has a measured latency" in outputs
    else:
        assert "C(dynamic, static)" in outputs and len(images) == 2
    assert "resnet18" in outputs and "mobilenet_v2" in outputs


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["pareto_analysis", "compare_architectures"])
def test_notebooks_run_on_a_study_with_nothing_finished(tmp_path, monkeypatch, name):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    make_study(url, "new", [trial("resnet18", None, 1e6, state=TrialState.RUNNING)])
    outputs, _ = run_notebook(name, url, "new", tmp_path, monkeypatch)
    assert "0 finished trials; reference point None (derived)" in outputs


def run_notebook(name: str, url: str, study: str, tmp_path: Path, monkeypatch) -> tuple[str, list]:
    """Execute a committed notebook (checked to hold no outputs) on ``study``: its text and images."""
    notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.get("outputs") and not cell.get("execution_count") for cell in code)
    monkeypatch.setenv("DYNSWEEP_STORAGE", url)
    monkeypatch.setenv("DYNSWEEP_STUDY", study)
    NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [output for cell in code for output in cell.outputs]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    return text, [o for o in outputs if "image/png" in o.get("data", {})]
