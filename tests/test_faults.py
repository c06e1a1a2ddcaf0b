"""Faults injected into sweeps, on SQLite, PostgreSQL and the journal file: each error is one line
with the exit status of the README's table, no trial is lost or left RUNNING by a clean failure,
and no (params, seed) is trained to COMPLETE twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sweep_command import dynsweep
from test_sweep import POSTGRES, ROOT, fresh_name, tiny_spec, write

from dynsweep.sweep import TrialRecord, moasha
from dynsweep.sweep.record import retried_trial
from dynsweep.sweep.storage import make_storage

STORAGES = ["sqlite", "postgresql", "journal"]


def storage_url(kind: str, tmp_path: Path, name: str) -> str:
    if kind == "postgresql":
        pytest.importorskip("psycopg")
        return POSTGRES
    return f"sqlite:///{tmp_path / (name + '.db')}" if kind == "sqlite" else f"journal:{tmp_path / (name + '.log')}"


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The single ``dynsweep ...`` line of a failed command's stderr (Optuna's own INFO lines aside)."""
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("dynsweep")]
    return line


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    """``dynsweep sweep ARGS`` in the background, in a process group of its own (as in a terminal)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "dynsweep", "sweep", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert path.exists(), f"{path} did not appear in {timeout} s"


def long_spec(name: str, **changes) -> dict:
    """Trials long enough to be interrupted or killed in the middle."""
    spec = tiny_spec(name, **changes)
    spec["training"]["limit_train_batches"] = 60
    return spec


def trained_twice(trials: list[optuna.trial.FrozenTrial]) -> list:
    seen = [
        (json.dumps(t.params, sort_keys=True), TrialRecord.of(t).seed) for t in trials if t.state == TrialState.COMPLETE
    ]
    return [key for key in seen if seen.count(key) > 1]


# ------------------------------------------------------------------------------- one line, no files
@pytest.mark.parametrize(
    "url, message",
    [
        ("postgresql://postgres@127.0.0.1:1/test", "storage: cannot open postgresql://postgres@127.0.0.1:1/test: "),
        ("garbage://nowhere", "storage: cannot open garbage://nowhere: "),
        ("postgresql://postgres@127.0.0.1:5432/no_such_database", 'database "no_such_database" does not exist'),
        ("journal:.", "is a folder; give a file"),
    ],
)
def test_a_storage_that_cannot_be_opened_is_one_line(tmp_path, url, message):
    done = dynsweep("run", str(write(tmp_path, tiny_spec("bad_storage"))), "--storage", url, cwd=tmp_path)
    assert done.returncode == 1 and message in one_error_line(done)


@pytest.mark.parametrize("command", ["status", "worker", "export", "replay 0", "pareto"])
def test_reading_commands_never_create_a_study(tmp_path, command):
    (*name,) = command.split()
    done = dynsweep(*name, "--storage", f"sqlite:///{tmp_path / 'typo.db'}", "--study", "x", cwd=tmp_path)
    assert done.returncode == 1 and f"no study database at {tmp_path / 'typo.db'}" in one_error_line(done)
    journal = dynsweep(*name, "--storage", f"journal:{tmp_path / 'typo.log'}", "--study", "x", cwd=tmp_path)
    assert journal.returncode == 1 and "no journal file at" in one_error_line(journal)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no file, no runs folder


def test_usage_errors_exit_with_2(tmp_path):
    path = str(write(tmp_path, tiny_spec("usage")))
    assert dynsweep("run", path, "--workers", "0", cwd=tmp_path).returncode == 2
    assert dynsweep("status", cwd=tmp_path).returncode == 2  # neither a spec nor --storage/--study
    assert dynsweep("run", path, "--no-such-option", cwd=tmp_path).returncode == 2  # argparse's own


def test_a_runs_folder_that_cannot_be_written_is_refused_before_any_trial(tmp_path):
    (tmp_path / "a_file").write_text("")
    done = dynsweep("run", str(write(tmp_path, tiny_spec("unwritable"))), "--runs-dir", "a_file/runs", cwd=tmp_path)
    assert done.returncode == 1 and "--runs-dir: cannot write trial directories into a_file/runs" in one_error_line(
        done
    )
    assert not (tmp_path / "a_file" / "runs").exists() and not list(tmp_path.glob("*.db"))


# ----------------------------------------------------------------------------- interrupts, kill -9
@pytest.mark.slow
@pytest.mark.timeout(360)
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_ctrl_c_fails_the_trial_at_once_and_exits_130(tmp_path, kind):
    name = fresh_name()
    url = storage_url(kind, tmp_path, name)
    sweep = start(tmp_path, "run", str(write(tmp_path, long_spec(name))), "--storage", url)
    wait_for(tmp_path / "runs" / name / "trial_0000" / "params.json")
    time.sleep(3)
    os.killpg(sweep.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    _, stderr = sweep.communicate(timeout=60)
    assert sweep.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].endswith("interrupted")
    (trial,) = optuna.load_study(study_name=name, storage=make_storage(url)).trials
    assert trial.state == TrialState.FAIL and "interrupted" in TrialRecord.of(trial).fail_reason


@pytest.mark.slow
@pytest.mark.timeout(480)
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_kill_9_fails_and_requeues_the_trial_with_its_reason(tmp_path, kind):
    """The databases' heartbeats, and the journal's leases: a killed worker's trial is failed with
    a reason and retried with the same params and seed; nothing is trained to COMPLETE twice."""
    name = fresh_name()
    url = storage_url(kind, tmp_path, name)
    path = write(tmp_path, long_spec(name, budget={"n_trials": 1}))
    worker = start(tmp_path, "run", str(path), "--storage", url)
    params = tmp_path / "runs" / name / "trial_0000" / "params.json"
    wait_for(params)
    time.sleep(2)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.communicate()
    seed = json.loads(params.read_text())["seed"]
    done = dynsweep("run", str(path), "--storage", url, cwd=tmp_path, timeout=200)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name=name, storage=make_storage(url)).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert "stopped sending heartbeats" in TrialRecord.of(trials[0]).fail_reason
    assert retried_trial(trials[1]) == 0 and trials[1].params == trials[0].params
    assert TrialRecord.of(trials[1]).seed == seed and TrialRecord.of(trials[1]).fail_reason is None
    assert not trained_twice(trials)


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_kill_9_of_sweep_run_stops_its_spawned_workers(tmp_path):
    name = fresh_name()
    url = f"journal:{tmp_path / (name + '.log')}"
    sweep = start(
        tmp_path,
        "run",
        str(write(tmp_path, long_spec(name, budget={"n_trials": 4}))),
        "--storage",
        url,
        "--workers",
        "2",
    )
    wait_for(tmp_path / "runs" / name / "trial_0001" / "params.json", timeout=300)  # a loaded machine starts slowly
    spawned = [
        int(p)
        for p in subprocess.run(["pgrep", "-f", f"sweep worker.*{name}"], capture_output=True, text=True).stdout.split()
    ]
    assert spawned
    os.kill(sweep.pid, signal.SIGKILL)  # the main process only: its spawned worker must follow
    sweep.communicate()
    deadline = time.time() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in spawned) and time.time() < deadline:
        time.sleep(0.3)
    alive = [
        pid
        for pid in spawned
        if Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    ]
    assert not alive
    os.killpg(sweep.pid, signal.SIGKILL) if Path(f"/proc/{sweep.pid}").exists() else None


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_mid_repeat_keeps_the_finished_seeds(tmp_path):
    name = fresh_name()
    url = f"journal:{tmp_path / (name + '.log')}"
    spec = long_spec(name, budget={"n_trials": 1}, repeats={"seeds": 2})
    spec["training"]["limit_train_batches"] = 20
    path = write(tmp_path, spec)
    worker = start(tmp_path, "run", str(path), "--storage", url)
    trial_dir = tmp_path / "runs" / name / "trial_0000"
    wait_for(trial_dir / "seed_1" / "params.json", timeout=200)
    finished = (trial_dir / "seed_0" / "metrics.json").stat().st_mtime
    os.killpg(worker.pid, signal.SIGKILL)
    worker.communicate()
    done = dynsweep("run", str(path), "--storage", url, cwd=tmp_path, timeout=250)
    assert done.returncode == 0, done.stderr[-3000:]
    killed, retry = optuna.load_study(study_name=name, storage=make_storage(url)).trials
    record, kept = TrialRecord.of(killed), TrialRecord.of(retry)
    assert retry.state == TrialState.COMPLETE and kept.seeds == record.seeds
    assert kept.seed_values[0] == record.seed_values[0] and kept.seed_dirs[0] == str((trial_dir / "seed_0").resolve())
    assert (trial_dir / "seed_0" / "metrics.json").stat().st_mtime == finished  # seed 0 was not retrained
    assert f"seed {record.seeds[0]} finished before, kept" in done.stdout
    assert Path(kept.seed_dirs[1]).parent.name == "trial_0001" and kept.seed_values[1] is not None


def moasha_spec(name: str, n_trials: int, batches: int) -> dict:
    """Two-epoch trials with one rung, at epoch 1 (factor 2: the better half goes on)."""
    spec = tiny_spec(
        name,
        budget={"n_trials": n_trials, "reuse_duplicates": False},
        pruning={"algorithm": "moasha", "min_epochs": 1, "reduction_factor": 2},
    )
    spec["architectures"][0]["space"] = {"num_bases": [2, 4], "stages": [[], [3], [2, 3]], "reduction": [4, 8]}
    spec["training"].update(max_epochs=2, limit_train_batches=batches)
    return spec


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_device_groups_on_postgresql_finish_one_study_and_share_the_rung_decisions(tmp_path):
    """Two workers (``--devices 0,1``) on one PostgreSQL study: each pinned to its device, every
    trial finishes once, on a point of its own, and every stored rung decision agrees with the
    rung values both workers stored (audit); a trial goes past the rung only when it ranked in
    the better half of the trials there."""
    pytest.importorskip("psycopg")
    name = fresh_name()
    path = write(tmp_path, moasha_spec(name, n_trials=6, batches=2))
    done = dynsweep("run", str(path), "--storage", POSTGRES, "--devices", "0,1", cwd=tmp_path, timeout=500)
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name=name, storage=POSTGRES)
    trials = [t for t in study.trials if TrialRecord.of(t).resampled is None]
    assert len(trials) == 6 and "[worker]" in done.stdout  # both workers ran trials; none over budget
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)  # none lost
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 6  # six points, none twice
    assert len({TrialRecord.of(t).dir for t in trials}) == 6
    assert moasha.audit(study, moasha.RungSchedule(1, 2)) == []
    # --devices 0,1 with the CPU accelerator: one worker per device, each trial's processes see its group
    devices = {TrialRecord.of(t).worker: TrialRecord.of(t).devices for t in trials}
    assert sorted(map(tuple, devices.values())) == [("0",), ("1",)]  # two workers, never one device shared
    for t in trials:
        seen = (Path(TrialRecord.of(t).dir) / "child.log").read_text()
        assert f"CUDA_VISIBLE_DEVICES={TrialRecord.of(t).devices[0]}" in seen
    decisions = {t.number: TrialRecord.of(t).rungs["1"] for t in trials}
    assert all(d["keep"] == (t.state == TrialState.COMPLETE) for t, d in zip(trials, decisions.values()))
    stopped = [t for t in trials if t.state == TrialState.PRUNED]
    assert stopped and all(TrialRecord.of(t).stopped_at_rung == 1 for t in stopped)
    optuna.delete_study(study_name=name, storage=POSTGRES)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_after_a_rung_keeps_its_decision(tmp_path):
    """A worker killed after its trial passed the rung: the retried trial takes up the stored
    decision instead of deciding again, and finishes."""
    pytest.importorskip("psycopg")
    name = fresh_name()
    path = write(tmp_path, moasha_spec(name, n_trials=1, batches=30))
    worker = start(tmp_path, "run", str(path), "--storage", POSTGRES)
    storage = make_storage(POSTGRES)
    deadline = time.time() + 300
    decided = None
    while decided is None and time.time() < deadline:
        time.sleep(0.5)
        try:
            trials = optuna.load_study(study_name=name, storage=storage).trials
        except KeyError:  # the study is not created yet
            continue
        decided = TrialRecord.of(trials[0]).rungs.get("1") if trials else None
    assert decided is not None and decided["keep"]  # the first trial at a rung goes on
    os.killpg(worker.pid, signal.SIGKILL)
    worker.communicate()
    done = dynsweep("run", str(path), "--storage", POSTGRES, cwd=tmp_path, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    killed, retry = optuna.load_study(study_name=name, storage=storage).trials
    assert killed.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retried_trial(retry) == killed.number
    assert TrialRecord.of(retry).rungs["1"] == decided  # taken up, not decided again
    assert len(TrialRecord.of(retry).curve) == 2
    optuna.delete_study(study_name=name, storage=POSTGRES)
