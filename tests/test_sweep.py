"""dynsweep sweep: spec validation, the quickstart end to end (short), failing trials, two workers
on PostgreSQL, kill -9 of a worker and resume, and the study as plain Optuna reads it."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from sweep_command import dynsweep

from dynsweep import analysis
from dynsweep.sweep import (
    ReferencePointError,
    StudyRecord,
    SweepConfigError,
    SweepError,
    TrialRecord,
    load_config,
    load_study,
)
from dynsweep.sweep.pruning import should_stop
from dynsweep.sweep.record import retried_trial
from dynsweep.sweep.storage import make_storage

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
# A few steps per trial, one thread per trial process: the tests check plumbing, not accuracy.
SHORT = {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 2, "threads": 1}


def tiny_spec(name: str, **changes) -> dict:
    spec = {
        "name": name,
        "seed": 3,
        "architectures": [
            {
                "model": "resnet18",
                "base": {"width_mult": 0.125},
                "space": {"num_bases": [2, 4], "stages": [[], [3]]},
            },
        ],
        "budget": {"n_trials": 2},
        "training": dict(SHORT),
        "data": {"class": "EmbeddedDigitsDataModule", "init_args": {"batch_size": 32}},
        "storage": {"heartbeat_interval": 1, "grace_period": 3},
    }
    spec.update(changes)
    return spec


def write(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def fresh_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------------- specs
@pytest.mark.parametrize(
    "change, message",
    [
        ({"architectures": []}, "architectures: must be a non-empty list"),
        (
            {"architectures": [{"model": "resnet19"}]},
            "architectures[0].model: unknown architecture 'resnet19'; allowed: ",
        ),
        (
            {"architectures": [{"model": "resnet18", "space": {"num_base": [1, 2]}}]},
            "space.num_base: unknown field; allowed: ",
        ),
        (
            {"architectures": [{"model": "resnet18", "space": {"num_bases": {"low": 4, "high": 2}}}]},
            "low (4) must not exceed high (2)",
        ),
        (
            {"architectures": [{"model": "resnet18", "space": {"num_bases": {"choices": []}}}]},
            "num_bases.choices: must be a non-empty list",
        ),
        ({"architectures": [{"model": "resnet18", "base": {"mode": "foo"}}]}, "base: DynamicSpec.mode"),
        (
            {"objectives": ["val_acc1", "flops"]},
            "unknown objective 'flops'; allowed: val_acc1, macs, params, latency_ms, latency_ratio",
        ),
        ({"reference_point": {"val_acc1": 0.0}}, "reference_point: needs exactly one value per objective"),
        ({"reference_point": {"val_acc1": 0.0, "macs": "big"}}, "reference_point.macs: must be a number"),
        ({"sampler": "cmaes"}, "unknown sampler 'cmaes'; allowed: nsga2, tpe, gp, random"),
        ({"budget": {"n_trials": 0}}, "budget.n_trials: must be a positive integer"),
        ({"budget": {"reuse_duplicates": "yes"}}, "budget.reuse_duplicates: must be true or false, got 'yes'"),
        (
            {"constraints": {"max_flops": 3}},
            "constraints.max_flops: unknown field; allowed: max_latency_ms, max_macs, max_params",
        ),
        ({"training": {"epochs": 3}}, "training.epochs: unknown field; allowed: "),
        ({"data": {"class": "MNIST"}}, "data.class: unknown 'MNIST'; allowed: "),
        (
            {"warm_start": ["dy_mobilenet_v2"]},
            "'dy_mobilenet_v2' is a mobilenet_v2, which is not among the architectures",
        ),
        ({"trials": 3}, ".trials: unknown field; allowed: "),
        ({"pruning": {"enabled": True}}, "pruning.enabled: replaced by pruning.algorithm: moasha"),
        ({"pruning": {"algorithm": "asha"}}, "pruning.algorithm: unknown 'asha'; allowed: moasha, dominance"),
        (
            {"pruning": {"algorithm": "moasha", "reduction_factor": 1}},
            "pruning.reduction_factor: must be an integer >= 2",
        ),
        ({"repeats": {"seeds": 0}}, "repeats.seeds: must be a positive integer"),
        ({"training": {"compile": "yes"}}, "training.compile: must be true or false"),
        ({"objectives": ["val_acc1", "latency_ms"]}, "latency: latency_ms need a latency: block"),
        ({"latency": {"runtime": "tvm"}}, "latency.runtime: must be one of"),
    ],
)
def test_invalid_specs_name_the_field(tmp_path, change, message):
    with pytest.raises(SweepConfigError) as error:
        load_config(write(tmp_path, tiny_spec("bad", **change)))
    assert message in str(error.value)
    assert str(error.value).startswith(str(tmp_path / "bad.yaml"))


def test_spec_file_errors(tmp_path):
    with pytest.raises(SweepConfigError, match="no such sweep spec file"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(SweepConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    assert dynsweep("run", str(tmp_path / "missing.yaml"), cwd=tmp_path).returncode == 1


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs_load(path):
    config = load_config(path)
    assert config.objectives[0] == "val_acc1" and len(config.objectives) >= 2
    assert set(config.objectives[1:]) <= {"macs", "params", "latency_ms", "latency_ratio"}
    assert config.latency is not None or not any(o.startswith("latency") for o in config.objectives)


def test_sqlite_refuses_several_workers(tmp_path):
    done = dynsweep("run", str(write(tmp_path, tiny_spec("lite"))), "--workers", "2", cwd=tmp_path)
    assert done.returncode == 1
    assert "PostgreSQL" in done.stderr and "journal:" in done.stderr


def test_journal_storage_creates_its_folder(tmp_path):
    """``--storage journal:runs/NAME.log`` works before ``runs/`` exists, as the SQLite default does."""
    path = tmp_path / "runs" / "nested" / "study.log"
    storage = make_storage(f"journal:{path}")
    optuna.create_study(storage=storage, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1), 2)
    assert (
        path.is_file() and len(optuna.load_study(study_name="s", storage=make_storage(f"journal:{path}")).trials) == 2
    )


def test_dominance_rule():
    def trial(number, curve, macs):
        return optuna.trial.create_trial(
            state=TrialState.COMPLETE,
            values=[curve[-1], macs],
            user_attrs=TrialRecord.as_user_attrs(curve=curve, macs=macs),
        )

    others = [trial(i, [0.8, 0.9], 1e6) for i in range(3)]
    assert should_stop(others, 99, 0, 0.7, 2e6, min_dominating=3, warmup_epochs=0)
    assert not should_stop(others, 99, 0, 0.7, 2e6, min_dominating=4, warmup_epochs=0)
    assert not should_stop(others, 99, 0, 0.85, 2e6, min_dominating=1, warmup_epochs=0)  # more accurate
    assert not should_stop(others, 99, 0, 0.7, 0.5e6, min_dominating=1, warmup_epochs=0)  # cheaper
    assert not should_stop(others, 99, 0, 0.7, 2e6, min_dominating=1, warmup_epochs=1)  # warm-up


# ---------------------------------------------------------------------------------- end to end
@pytest.mark.slow
@pytest.mark.timeout(480)
def test_quickstart_end_to_end_short(tmp_path):
    raw = yaml.safe_load((ROOT / "sweeps" / "quickstart.yaml").read_text())
    raw["training"].update(SHORT)
    raw["data"]["init_args"]["batch_size"] = 32
    path = write(tmp_path, raw)
    done = dynsweep("run", str(path), "--n-trials", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[2/3 trials done]" in done.stdout and "epoch 1/1" in done.stdout
    assert "Pareto front (val_acc1 vs macs)" in done.stdout

    url = f"sqlite:///{tmp_path / 'runs' / 'quickstart.db'}"
    study = optuna.load_study(study_name="quickstart", storage=url)  # plain Optuna
    assert study.metric_names == ["val_acc1", "macs"]
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    trials = study.get_trials(states=[TrialState.COMPLETE])
    assert len(trials) == 3 and study.best_trials
    for t in trials:
        record = TrialRecord.of(t)
        assert t.values[1] == record.macs and record.params > 0 and len(record.curve) == 1
        assert None not in (record.seed, record.dir, record.wall_seconds, record.child_params)
        trial_dir = Path(record.dir)
        assert (trial_dir / "params.json").exists() and (trial_dir / "metrics.json").exists()
        assert list(trial_dir.glob("checkpoints/last.ckpt")) and list(trial_dir.glob("lightning_logs/*/metrics.csv"))
    assert len({TrialRecord.of(t).seed for t in trials}) == 3

    # The budget is study-wide: running the finished study again trains nothing.
    again = dynsweep("run", str(path), cwd=tmp_path)
    assert again.returncode == 0 and "trial 3" not in again.stdout
    states = [t.state for t in optuna.load_study(study_name="quickstart", storage=url).trials]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.WAITING]  # the 4th warm start: over budget

    status = dynsweep("status", str(path), cwd=tmp_path)
    assert status.returncode == 0 and "3/3 trials done" in status.stdout
    export = dynsweep("export", str(path), "-o", "trials.csv", cwd=tmp_path)
    assert export.returncode == 0 and (tmp_path / "trials.csv").read_text().count("\n") == 5  # header + 4

    # The analysis reads the real study: warm-start presets labelled, fronts as Optuna's.
    pareto = dynsweep("pareto", str(path), "--out", "figures", cwd=tmp_path)
    assert pareto.returncode == 0, pareto.stderr[-2000:]
    assert {"fronts.png", "fronts.svg", "front.csv", "front.md"} <= {p.name for p in (tmp_path / "figures").iterdir()}
    frame = analysis.load(url, "quickstart")
    assert set(frame.loc[frame["on_front"], "number"]) == {t.number for t in study.best_trials}
    assert {("resnet18", "baseline"), ("dy_resnet18", "dy")} <= set(zip(frame["label"], frame["kind"]))
    assert frame["curve"].map(len).tolist() == [1, 1, 1, 0] and frame["seed"].nunique() == 3
    assert frame.loc[3, "state"] == "WAITING" and frame.loc[3, "label"] == "fix_resnet18"

    # Replay retrains one trial from its recorded params and seed: the same accuracy on CPU.
    replay = dynsweep("replay", str(trials[0].number), "--storage", url, "--study", "quickstart", cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert f"val_acc1 {trials[0].values[0]:.4f}" in replay.stdout


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_duplicate_trial_reuses_the_finished_result(tmp_path):
    """A space of one point: the first trial trains; the sampler's repeats are told its values."""
    one_point = [{"model": "resnet18", "base": {"width_mult": 0.125}, "space": {"num_bases": [2], "stages": [[3]]}}]
    spec = tiny_spec("dup", architectures=one_point, budget={"n_trials": 3})
    done = dynsweep("run", str(write(tmp_path, spec)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("the same training as trial 0: its result reused, not retrained") == 2
    first, *repeats = optuna.load_study(study_name="dup", storage=f"sqlite:///{tmp_path / 'runs' / 'dup.db'}").trials
    original = TrialRecord.of(first)
    assert first.state == TrialState.COMPLETE and original.duplicate_of is None
    for trial in repeats:
        record = TrialRecord.of(trial)
        assert trial.state == TrialState.COMPLETE and trial.values == first.values
        assert record.duplicate_of == 0 and record.dir == original.dir
        assert record.child_params == original.child_params  # replay: the same run
    assert sorted(p.name for p in (tmp_path / "runs" / "dup").iterdir()) == ["trial_0000"]
    frame = analysis.load(f"sqlite:///{tmp_path / 'runs' / 'dup.db'}", "dup")
    assert frame["duplicate_of"].tolist()[1:] == [0, 0]
    assert frame["on_front"].tolist() == [True, False, False]  # one point, listed once
    assert "Pareto front (val_acc1 vs macs): 1 trials" in done.stdout

    # Opting out trains every repeat, each with its own seed.
    spec = tiny_spec("dup_off", architectures=one_point, budget={"n_trials": 2, "reuse_duplicates": False})
    done = dynsweep("run", str(write(tmp_path, spec)), cwd=tmp_path)
    assert done.returncode == 0 and "reused" not in done.stdout
    trials = optuna.load_study(study_name="dup_off", storage=f"sqlite:///{tmp_path / 'runs' / 'dup_off.db'}").trials
    records = [TrialRecord.of(t) for t in trials]
    assert len({r.seed for r in records}) == 2 and all(r.duplicate_of is None for r in records)


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_failing_trials_are_recorded_and_the_sweep_goes_on(tmp_path):
    spec = tiny_spec(
        "crash",
        architectures=[
            # lr 1e30: the loss is NaN by the second step, NonFiniteGuard stops the child.
            {
                "model": "resnet18",
                "base": {"width_mult": 0.125},
                "training": {"lr": 1e30, "limit_train_batches": 3},
            },
            {"model": "mobilenet_v2", "base": {"width_mult": 0.25}},
        ],
        warm_start=["resnet18", "mobilenet_v2"],
        budget={"n_trials": 2},
    )
    done = dynsweep("run", str(write(tmp_path, spec)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="crash", storage=f"sqlite:///{tmp_path / 'runs' / 'crash.db'}")
    by_model = {TrialRecord.of(t).model: t for t in study.trials}
    assert by_model["resnet18"].state == TrialState.FAIL
    assert "NonFiniteError" in TrialRecord.of(by_model["resnet18"]).fail_reason
    assert by_model["mobilenet_v2"].state == TrialState.COMPLETE
    assert "FAIL: NonFiniteError" in done.stdout

    # A run whose every trial fails exits 1 and says so.
    only_nan = tiny_spec(
        "nan", architectures=spec["architectures"][:1], warm_start=["resnet18"], budget={"n_trials": 1}
    )
    done = dynsweep("run", str(write(tmp_path, only_nan)), cwd=tmp_path)
    assert done.returncode == 1 and "every trial of this run failed (1)" in done.stderr


@pytest.mark.parametrize(
    "architecture, data, message",
    [
        (
            {"space": {"num_bases": [0]}},
            None,
            "space.num_bases: value 0: DynamicSpec.num_bases: must be an integer >= 1",
        ),
        ({"space": {"reduction": {"low": -2, "high": 4}}}, None, "space.reduction: value -2: DynamicSpec.reduction"),
        ({"base": {"stages": [9]}}, None, "(resnet18).base: DynamicSpec.stages: stage 9 does not exist"),
        (
            {"space": {"stages": [[3], [9]]}},
            None,
            "space.stages: value [9]: DynamicSpec.stages: stage 9 does not exist",
        ),
        (
            {},
            {"class": "ImageFolderDataModule", "init_args": {"root": "no/such/folder"}},
            "data: ImageFolderDataModule cannot be made",
        ),
    ],
)
def test_what_cannot_work_is_refused_before_the_first_trial(tmp_path, architecture, data, message):
    arch = {"model": "resnet18", "base": {"width_mult": 0.125}, **architecture}
    spec = tiny_spec("early", architectures=[arch], **({"data": data} if data else {}))
    done = dynsweep("run", str(write(tmp_path, spec)), cwd=tmp_path)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "runs" / "early.db").exists()  # no study: no budget spent


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_kill_9_of_a_worker_then_run_again_completes(tmp_path):
    pytest.importorskip("psycopg")
    name = fresh_name()
    spec = tiny_spec(name, budget={"n_trials": 2})
    spec["training"]["limit_train_batches"] = 40  # long enough to be killed in the middle
    path = write(tmp_path, spec)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "dynsweep", "sweep", "run", str(path), "--storage", POSTGRES],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    first = tmp_path / "runs" / name / "trial_0000" / "progress.jsonl"
    params = first.parent / "params.json"
    deadline = time.time() + 90
    while not params.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert params.exists()
    time.sleep(2)
    children = subprocess.run(["pgrep", "-P", str(worker.pid)], check=True, capture_output=True, text=True)
    child = int(children.stdout.split()[0])
    os.kill(worker.pid, signal.SIGKILL)  # the worker only: its training child notices and ends
    worker.wait()
    deadline = time.time() + 30  # the child checks for its parent every second; a loaded machine is slower
    while Path(f"/proc/{child}").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    study = optuna.load_study(study_name=name, storage=POSTGRES)
    assert study.trials[0].state == TrialState.RUNNING
    # The analysis reads the study mid-sweep, its trial still RUNNING in the database.
    during = dynsweep("pareto", "--storage", POSTGRES, "--study", name, "--out", "during", cwd=tmp_path)
    assert during.returncode == 0, during.stderr[-2000:]
    assert "1 trials: 1 RUNNING." in (tmp_path / "during" / "front.md").read_text()

    done = dynsweep("run", str(path), "--storage", POSTGRES, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name=name, storage=POSTGRES).trials
    assert trials[0].state == TrialState.FAIL  # failed by its stale heartbeat...
    retried = [t for t in trials if retried_trial(t) == 0]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE  # ...and re-queued
    assert retried[0].params == trials[0].params
    assert TrialRecord.of(retried[0]).seed == json.loads(params.read_text())["seed"]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    after = analysis.load(POSTGRES, name)
    assert after["state"].tolist() == ["FAIL", "COMPLETE", "COMPLETE"] and not after.loc[0, "on_front"]
    optuna.delete_study(study_name=name, storage=POSTGRES)


def test_reference_point_of_the_spec_is_stored_in_the_study(tmp_path):
    from dynsweep.sweep import open_study

    config = load_config(write(tmp_path, tiny_spec("ref", reference_point={"macs": 5e6, "val_acc1": 0.1})))
    study, _ = open_study(config, f"sqlite:///{tmp_path / 'ref.db'}")
    assert StudyRecord.of(study).reference_point == {"val_acc1": 0.1, "macs": 5e6}
    assert analysis.reference_point(study) == {"val_acc1": 0.1, "macs": 5e6}
    assert StudyRecord.of(open_study(config, f"sqlite:///{tmp_path / 'ref.db'}")[0]).reference_point["macs"] == 5e6
    moved = load_config(write(tmp_path, tiny_spec("ref", reference_point={"macs": 6e6, "val_acc1": 0.1})))
    with pytest.raises(
        ReferencePointError, match="reference_point: the study 'ref' already stores .* one point for its life"
    ):
        open_study(moved, f"sqlite:///{tmp_path / 'ref.db'}")


# ---------------------------------------------------------------------------------- old studies
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_study_written_by_dynsweep_0_1_still_loads(tmp_path):
    """tests/fixtures/legacy.log: a journal study written by dynsweep 0.1 from legacy.yaml (its
    spec stored flat, warm starts enqueued without their record): status, pareto, replay and a
    resumed run read it as they read a new one."""
    import shutil

    for name in ("legacy.yaml", "legacy.log"):
        shutil.copy(ROOT / "tests" / "fixtures" / name, tmp_path / name)
    where = ("--storage", f"journal:{tmp_path / 'legacy.log'}", "--study", "legacy")
    status = dynsweep("status", *where, cwd=tmp_path)
    assert status.returncode == 0, status.stderr[-2000:]
    assert "3/3 trials done (COMPLETE 1, PRUNED 2; 0 waiting)" in status.stdout
    assert "dy_resnet18" in status.stdout

    frame = analysis.load(f"journal:{tmp_path / 'legacy.log'}", "legacy")
    assert frame["arch"].tolist() == ["resnet18"] * 3 and frame.loc[0, "label"] == "dy_resnet18"
    assert frame.loc[1:, "infeasible"].str.contains("over the budget 3,000,000").all()
    pareto = dynsweep("pareto", *where, "--out", "report", cwd=tmp_path)
    assert pareto.returncode == 0, pareto.stderr[-2000:]
    assert "val_acc1 = 0, macs = 4e+06 (stored in the study)" in (tmp_path / "report" / "front.md").read_text()

    replay = dynsweep("replay", "0", *where, cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert "replaying trial 0 (seed" in replay.stdout

    resumed = dynsweep(
        "run", "legacy.yaml", "--storage", f"journal:{tmp_path / 'legacy.log'}", "--n-trials", "4", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    trials = optuna.load_study(study_name="legacy", storage=make_storage(f"journal:{tmp_path / 'legacy.log'}")).trials
    assert len(trials) == 4 and trials[3].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert TrialRecord.of(trials[3]).model == "resnet18"


# ------------------------------------------------------------------------- the spec of a study
def test_a_spec_is_bound_to_its_study(tmp_path):
    """Fixed fields that differ are refused before any trial, each named; changeable ones are stored."""
    from dynsweep.sweep import open_study

    url = f"sqlite:///{tmp_path / 'bound.db'}"
    first = load_config(write(tmp_path, tiny_spec("bound")))
    study, _ = open_study(first, url)
    edited = tiny_spec("bound")
    edited["architectures"][0]["space"]["num_bases"] = [2, 8]
    edited["training"]["lr"] = 0.5
    path = write(tmp_path, edited)
    with pytest.raises(SweepError) as error:
        open_study(load_config(path), url)
    message = str(error.value)
    assert "architectures[0].space.num_bases.choices: [2, 4] -> [2, 8]" in message
    assert "training.lr: None -> 0.5" in message and "--study NEW_NAME" in message
    done = dynsweep("run", str(path), "--storage", url, cwd=tmp_path)
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("dynsweep")]
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "fixed for a study's life" in line and not study.trials  # one line, and nothing ran

    grown = tiny_spec("bound", budget={"n_trials": 5, "timeout": 600})
    study, bound = open_study(load_config(write(tmp_path, grown)), url)
    stored = StudyRecord.of(study)
    assert stored.n_trials == 5 and stored.sweep_config["budget"]["timeout"] == 600
    assert bound.budget.n_trials == 5 and load_study(url, "bound")[1].budget.timeout == 600  # every worker reads it


# -------------------------------------------------------------------- no point searched twice
def continuous_spec(name: str, **changes) -> dict:
    """A continuous space whose every trial is infeasible (a MACs limit of 1): proposals without training."""
    arch = {
        "model": "resnet18",
        "base": {"width_mult": 0.125, "stages": [3]},
        "space": {"dynamic_width": {"low": 0.25, "high": 1.0}},
    }
    return tiny_spec(name, architectures=[arch], constraints={"max_macs": 1}, **changes)


def proposed(url: str, name: str) -> list[float]:
    trials = optuna.load_study(study_name=name, storage=make_storage(url)).trials
    return [t.params["resnet18.dynamic_width"] for t in trials if TrialRecord.of(t).resampled is None]


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_resumed_run_and_a_second_worker_propose_new_points(tmp_path):
    for sampler in ("random", "nsga2"):
        name = f"resume_{sampler}"
        path = write(
            tmp_path,
            continuous_spec(name, sampler={"name": sampler, "population_size": 2} if sampler == "nsga2" else sampler),
        )
        url = f"sqlite:///{tmp_path / (name + '.db')}"
        for n in ("3", "6"):
            done = dynsweep("run", str(path), "--storage", url, "--n-trials", n, cwd=tmp_path)
            assert done.returncode == 0, done.stderr[-2000:]
        points = proposed(url, name)
        assert len(points) == 6 and len(set(points)) == 6, points
        seeds = [TrialRecord.of(t).sampler_seed for t in optuna.load_study(study_name=name, storage=url).trials]
        assert seeds[0] == 3 and len(set(seeds)) == 2  # the spec's seed, then a new one for the resumed run

    # Two workers joining one study at the same moment: each samples with a seed of its own.
    url = f"journal:{tmp_path / 'two.log'}"
    done = dynsweep(
        "run", str(write(tmp_path, continuous_spec("two", budget={"n_trials": 2}))), "--storage", url, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    StudyRecord.write(optuna.load_study(study_name="two", storage=make_storage(url)), n_trials=12)
    workers = [start_worker(tmp_path, url, "two") for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=300) == 0
    points = proposed(url, "two")
    assert len(points) == 12 and len(set(points)) == 12, points
    trials = optuna.load_study(study_name="two", storage=make_storage(url)).trials
    by_worker = {TrialRecord.of(t).worker: TrialRecord.of(t).sampler_seed for t in trials[2:]}
    # On a loaded machine one worker may start after the other has run every (instant) trial.
    assert len(set(by_worker.values())) == len(by_worker)


def start_worker(tmp_path: Path, url: str, study: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "dynsweep", "sweep", "worker", "--storage", url, "--study", study]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_small_discrete_space_is_covered_before_any_point_repeats(tmp_path):
    """Six points, every trial infeasible (cheap): six trials take six distinct points; the
    seventh and eighth may repeat (nothing is left untried)."""
    arch = {
        "model": "resnet18",
        "base": {"width_mult": 0.125},
        "space": {"num_bases": [2, 4, 6], "stages": [[3], [2, 3]]},
    }
    spec = tiny_spec(
        "cover", architectures=[arch], constraints={"max_macs": 1}, budget={"n_trials": 8}, sampler="random"
    )
    done = dynsweep("run", str(write(tmp_path, spec)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    study = optuna.load_study(study_name="cover", storage=f"sqlite:///{tmp_path / 'runs' / 'cover.db'}")
    counted = [t for t in study.trials if TrialRecord.of(t).resampled is None]
    keys = [(t.params["resnet18.num_bases"], t.params["resnet18.stages"]) for t in counted]
    assert len(counted) == 8 and len(set(keys[:6])) == 6, keys
    assert analysis.load(f"sqlite:///{tmp_path / 'runs' / 'cover.db'}", "cover")["number"].tolist() == [
        t.number for t in counted
    ]


def test_of_two_trials_racing_for_one_point_one_claims_it():
    from dynsweep.sweep.points import holder

    for order in ("first writes and checks first", "second checks first", "both write, then check"):
        study = optuna.create_study()
        first, second = study.ask(), study.ask()
        if order == "first writes and checks first":
            results = [holder(study, first, "p"), holder(study, second, "p")]
        elif order == "second checks first":
            results = [None, holder(study, second, "p")]
            results[0] = holder(study, first, "p")
        else:
            TrialRecord.write(first, point="p")
            TrialRecord.write(second, point="p")
            results = [None, holder(study, second, "p")]
            results[0] = holder(study, first, "p")
        assert sum(result is None for result in results) == 1, order  # exactly one claims the point
        study.tell(first, 1.0)
        third = study.ask()
        assert holder(study, third, "p") is not None  # a finished trial holds its point


# ------------------------------------------------------------------------------- repeated seeds
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_repeated_seeds_and_front_repeats(tmp_path):
    """Two seeds per trial: the study is told their mean; each seed trains in its own folder. With
    ``front: 3`` every front point is then retrained to three seeds, keeping the two it has."""
    one_point = [{"model": "resnet18", "base": {"width_mult": 0.125}, "space": {"num_bases": [2], "stages": [[3]]}}]
    spec = tiny_spec("seeds", architectures=one_point, budget={"n_trials": 1}, repeats={"seeds": 2, "front": 3})
    done = dynsweep("run", str(write(tmp_path, spec)), cwd=tmp_path, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    url = f"sqlite:///{tmp_path / 'runs' / 'seeds.db'}"
    first, repeat = optuna.load_study(study_name="seeds", storage=url).trials
    record, again = TrialRecord.of(first), TrialRecord.of(repeat)
    assert len(set(record.seeds)) == 2 and record.seed == record.seeds[0]
    assert first.values[0] == pytest.approx(sum(record.seed_values) / 2)
    assert record.value_std == pytest.approx(statistics.stdev(record.seed_values))
    for directory, value in zip(record.seed_dirs, record.seed_values):
        assert json.loads((Path(directory) / "metrics.json").read_text())["val_acc1"] == value
    assert [Path(d).name for d in record.seed_dirs] == ["seed_0", "seed_1"]
    # The front repeat: the same point, three seeds of which the first two are kept, not retrained.
    assert again.repeat_of == 0 and repeat.params == first.params and again.seeds[:2] == record.seeds
    assert again.seed_values[:2] == record.seed_values and again.seed_dirs[:2] == record.seed_dirs
    assert len(again.seeds) == 3 and again.seed_values[2] is not None
    assert repeat.values[0] == pytest.approx(sum(again.seed_values) / 3)
    assert "seed_2" in again.seed_dirs[2] and f"trial_{repeat.number:04d}" in again.seed_dirs[2]
    assert "1/1 trials done" in dynsweep("status", "--storage", url, "--study", "seeds", cwd=tmp_path).stdout


def test_devices_that_do_not_divide_into_groups_are_a_usage_error(tmp_path):
    """Device pinning itself is tested with two workers on PostgreSQL (test_faults)."""
    spec = tiny_spec("pinned", budget={"n_trials": 4})
    url = f"journal:{tmp_path / 'pinned.log'}"
    refused = dynsweep(
        "run",
        str(write(tmp_path, spec)),
        "--storage",
        url,
        "--devices",
        "0,1,2",
        "--devices-per-trial",
        "2",
        cwd=tmp_path,
    )
    assert refused.returncode == 2 and "do not divide into groups" in refused.stderr


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_trial_on_two_devices_trains_under_ddp_and_reports_the_whole_validation_set(tmp_path):
    """``--devices 0,1 --devices-per-trial 2`` with the CPU accelerator: one worker, its trial on
    two gloo processes; the value told to the study equals one process's evaluation of the best
    checkpoint on all 500 validation digits (batches of 50: no rank's sampler pads)."""
    from dynsweep.checkpoints import load_task
    from dynsweep.tasks.recipe import evaluate, make_data

    spec = tiny_spec(
        "ddp", budget={"n_trials": 1}, data={"class": "EmbeddedDigitsDataModule", "init_args": {"batch_size": 50}}
    )
    del spec["training"]["limit_val_batches"]
    url = f"sqlite:///{tmp_path / 'ddp.db'}"
    done = dynsweep(
        "run",
        str(write(tmp_path, spec)),
        "--storage",
        url,
        "--devices",
        "0,1",
        "--devices-per-trial",
        "2",
        cwd=tmp_path,
        timeout=450,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (trial,) = optuna.load_study(study_name="ddp", storage=url).trials
    record = TrialRecord.of(trial)
    assert trial.state == TrialState.COMPLETE and record.devices == ["0", "1"]
    log = (Path(record.dir) / "child.log").read_text()
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log  # Lightning's own line: two processes trained
    (best,) = (Path(record.dir) / "checkpoints").glob("best-*.ckpt")
    whole = evaluate(load_task(best), make_data(record.child_params["data"]))
    assert trial.values[0] == pytest.approx(whole["val_acc1"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_latency_as_an_objective_is_measured_once_per_network(tmp_path):
    """``objectives: [val_acc1, latency_ratio]``: each trial's network is timed against its
    architecture's static reference before it trains; the ratio is the value told, the report
    (median, quartiles, host, runtime) is in the record, and a repeated network hits the cache."""
    one_point = [{"model": "resnet18", "base": {"width_mult": 0.125}, "space": {"num_bases": [2], "stages": [[3]]}}]
    latency = {"runtime": "eager", "threads": 1, "repeats": 5, "warmup": 1}
    spec = tiny_spec("timed", architectures=one_point, objectives=["val_acc1", "latency_ratio"], latency=latency)
    spec["budget"] = {"n_trials": 2, "reuse_duplicates": False}  # the second trial trains the same network again
    done = dynsweep("run", str(write(tmp_path, spec)), cwd=tmp_path, timeout=450)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name="timed", storage=f"sqlite:///{tmp_path / 'runs' / 'timed.db'}").trials
    first, second = (TrialRecord.of(t) for t in trials)
    assert trials[0].values[1] == first.latency["ratio"] > 0 and first.latency["runs"] == 5
    assert first.latency["runtime"] == "eager" and first.latency["threads"] == 1 and first.latency["host"]
    assert first.latency["q1_ms"] <= first.latency["median_ms"] <= first.latency["q3_ms"]
    assert (
        not first.latency["cached"]
        and second.latency["cached"]
        and second.latency["median_ms"] == first.latency["median_ms"]
    )
    assert "x its reference)" in done.stdout
