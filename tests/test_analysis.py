"""dynsweep.analysis: fronts against Optuna's best_trials on hand-made studies (ties, infeasible,
failed, pruned, running trials), hypervolume on values known by hand, the reference point kept in
the study, dominance, the figures' series, ``dynsweep sweep pareto`` and the notebooks."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from dynsweep import analysis  # noqa: E402
from dynsweep.sweep import ReferencePointError, StudyRecord, TrialRecord, parse_config  # noqa: E402
from analysis_studies import add_trials, make_study, trial, two_architectures  # noqa: E402
from sweep_command import dynsweep  # noqa: E402

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
    url, optuna_study = study
    frame = analysis.load(url, "hand")
    assert list(frame["number"]) == list(range(12))
    assert frame.attrs["objectives"] == OBJECTIVES and frame.attrs["study"] == "hand"
    assert frame["state"].tolist().count("COMPLETE") == 9
    first = frame.iloc[0]
    assert (first["arch"], first["label"], first["kind"], first["dynamic"]) == ("resnet18", "resnet18", "baseline", False)
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
    assert analysis.coverage(better, crossing, OBJECTIVES) == 0.0 and not analysis.dominates(better, crossing, OBJECTIVES)
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
    for number in range(40):
        acc, macs, params = rng.choice([0.5, 0.6, 0.7, 0.8]), rng.choice([1e6, 2e6, 3e6]), rng.uniform(1, 5)
        study.add_trial(
            optuna.trial.create_trial(values=[acc, macs, params], user_attrs=TrialRecord.as_user_attrs(model="resnet18", macs=macs))
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
    points = {c.get_label()[: -len(" trials")]: tuple(c.get_facecolor()[0][:3]) for c in ax.collections if c.get_label().endswith(" trials")}
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
    flat = [trial("resnet18", 0.1135, 2e6 + i * 1e5, num_bases=[1, 2, 4][i % 3], stages=[[3], [2, 3]][i % 2]) for i in range(6)]
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
    for name in ("fronts", "hypervolume", "effects"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert "<svg" in (out / f"{name}.svg").read_text()[:1000]
    front = pd.read_csv(out / "front.csv")
    assert sorted(front["number"]) == [1, 2, 3, 7, 8, 10]  # each architecture's front, the running trial aside
    assert {"val_acc1", "macs", "params", "num_bases", "stages", "seed", "dir"} <= set(front.columns)
    assert len(pd.read_csv(out / "trials.csv")) == 12
    markdown = (out / "front.md").read_text()
    assert "| resnet18 " in markdown
    assert "Hypervolume reference point: val_acc1 = 0, macs = 9.9e+06 (derived from the trials so far" in markdown
    assert "12 trials: 9 COMPLETE, 1 FAIL, 1 PRUNED, 1 RUNNING." in markdown
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
    assert StudyRecord.of(optuna.load_study(study_name="hand", storage=url)).reference_point == {"val_acc1": 0.0, "macs": 1e7}
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
        assert len(images) == 4  # fronts, hypervolume, effects, learning curves
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
    NotebookClient(notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in code for output in cell.outputs]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    return text, [o for o in outputs if "image/png" in o.get("data", {})]
