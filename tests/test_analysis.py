"""dynsweep.analysis: fronts against Optuna's best_trials on hand-made studies (ties, infeasible,
failed, pruned, running trials), hypervolume on values known by hand, the reference point kept in
the study, dominance, the figures' series, ``dynsweep sweep pareto`` and the notebooks."""

from __future__ import annotations

import os
import subprocess
import sys
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
from analysis_studies import make_study, trial, two_architectures  # noqa: E402

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
        expected = {t.user_attrs["seed"] - 1000 for t in alone.best_trials}  # seed = 1000 + number
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


def test_reference_point_is_fixed_once_and_stored(study):
    url, optuna_study = study
    point = analysis.reference_point(optuna_study)
    assert point == {"val_acc1": 0.0, "macs": 9.9e6}  # 1.1 x the costliest trial (9e6), 2 digits
    assert optuna.load_study(study_name="hand", storage=url).user_attrs["reference_point"] == point
    from analysis_studies import add_trials

    add_trials(optuna_study, [trial("resnet18", 0.95, 5e7)])
    assert analysis.reference_point(optuna_study) == point  # unchanged as the study grows
    frame = analysis.load(url, "hand")
    assert frame.attrs["reference_point"] == point


def test_reference_point_from_the_constraint_or_the_spec(tmp_path):
    constrained = make_study(None, "c", [trial("resnet18", 0.9, 1e6)], sweep_config={"max_macs": 3e6, "max_params": None})
    assert analysis.reference_point(constrained) == {"val_acc1": 0.0, "macs": 3e6}
    given = make_study(None, "g", [trial("resnet18", 0.9, 1e6)], reference_point={"val_acc1": 0.5, "macs": 2e6})
    assert analysis.reference_point(given) == {"val_acc1": 0.5, "macs": 2e6}
    empty = make_study(None, "e", [])
    with pytest.raises(analysis.AnalysisError, match="no finished trial yet"):
        analysis.reference_point(empty)


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


# --------------------------------------------------------------------------- dynsweep sweep pareto
def run_pareto(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "dynsweep", "sweep", "pareto", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


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
    assert "| resnet18 " in markdown and "Hypervolume reference point: val_acc1 = 0, macs = 9.9e+06" in markdown
    assert "12 trials: 9 COMPLETE, 1 FAIL, 1 PRUNED, 1 RUNNING." in markdown
    assert markdown in done.stdout


def test_pareto_command_on_a_study_with_nothing_finished(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    make_study(url, "new", [trial("resnet18", None, 1e6, state=TrialState.RUNNING)])
    done = run_pareto("--storage", url, "--study", "new", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "runs" / "new" / "pareto"  # the default --out
    assert (out / "fronts.png").exists() and "No finished feasible trial yet." in (out / "front.md").read_text()
    assert pd.read_csv(out / "front.csv").empty


def test_pareto_command_names_a_missing_study(tmp_path, study):
    url, _ = study
    done = run_pareto("--storage", url, "--study", "nope", cwd=tmp_path)
    assert done.returncode == 1 and "study: no study 'nope'" in done.stderr


# -------------------------------------------------------------------------------------- notebooks
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["pareto_analysis", "compare_architectures"])
def test_notebooks_run_on_a_small_study(tmp_path, study, monkeypatch, name):
    url, _ = study
    path = ROOT / "notebooks" / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") and not cell.get("execution_count") for cell in notebook.cells if cell.cell_type == "code")
    monkeypatch.setenv("DYNSWEEP_STORAGE", url)
    monkeypatch.setenv("DYNSWEEP_STUDY", "hand")
    NotebookClient(notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "\n".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "resnet18" in outputs and "mobilenet_v2" in outputs
    images = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2
