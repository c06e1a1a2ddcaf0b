"""The sweep's trial child (dynsweep.sweep.child) started by ``launch``: its own environment (no
inherited SLURM or torchrun variables, a free MASTER_PORT), a trial on two DDP processes (gloo)
whose synchronised validation accuracy is that of one process on the whole validation set, and
no training process left behind when the worker that started it is killed."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dynsweep.checkpoints import load_task
from dynsweep.sweep.child import PARENT_PID, child_environment, launch
from dynsweep.tasks.recipe import evaluate, make_data

ROOT = Path(__file__).resolve().parents[1]

# What `sbatch` and `torchrun` leave in the environment of the processes they start.
CLUSTER = {
    "SLURM_JOB_ID": "7",
    "SLURM_JOB_NAME": "sweep",
    "SLURM_NTASKS": "4",
    "SLURM_NTASKS_PER_NODE": "4",
    "SLURM_NNODES": "1",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "TORCHELASTIC_RUN_ID": "run",
    "LOCAL_RANK": "3",
    "RANK": "3",
    "WORLD_SIZE": "8",
    "LOCAL_WORLD_SIZE": "4",
    "MASTER_ADDR": "10.1.2.3",
    "MASTER_PORT": "1",
}
# 500 validation digits: 5 batches of 50 on each of two ranks, so no rank's sampler pads.
DATA = {"class": "EmbeddedDigitsDataModule", "init_args": {"batch_size": 50}}


def write_params(trial_dir: Path, **training) -> dict:
    params = {
        "model": "dy_resnet18",
        "preset": None,
        "spec": {"width_mult": 0.25, "stages": [3], "num_bases": 2},
        "small_input": True,
        "training": {"accelerator": "cpu", "max_epochs": 1, "threads": 1, "warmup_epochs": 0, **training},
        "data": DATA,
        "seed": 1,
    }
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "params.json").write_text(json.dumps(params))
    return params


@pytest.fixture
def cluster_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process looks like one task of an sbatch allocation run through torchrun."""
    for key, value in CLUSTER.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")


def test_child_environment_drops_cluster_and_launcher_variables():
    inherited = {**CLUSTER, "PATH": "/bin", "OMP_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    env = child_environment(inherited, visible_devices=[2, 3])
    port = env.pop("MASTER_PORT")
    assert env.pop(PARENT_PID) == str(os.getpid())  # the trial ends with the process that launched it
    kept = {"PATH": "/bin", "OMP_NUM_THREADS": "2"}
    assert env == {**kept, "CUDA_VISIBLE_DEVICES": "2,3", "MASTER_ADDR": "127.0.0.1"}
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", int(port)))  # free: the trial's rank 0 can listen on it
    assert child_environment(inherited)["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"  # not given: inherited
    assert child_environment(inherited, visible_devices="1,3")["CUDA_VISIBLE_DEVICES"] == "1,3"
    with pytest.raises(ValueError, match="devices_per_trial must be >= 1"):
        launch(Path("unused"), devices_per_trial=0)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")
def test_a_ddp_trial_reports_the_whole_validation_set(tmp_path: Path, cluster_environment: None) -> None:
    """Two gloo processes, started inside a fake sbatch/torchrun environment: the val_acc1 the
    child reports is the synchronised one, equal to one process's on all 500 digits (each rank
    sees 250), and only rank 0 writes into the trial's folder."""
    trial_dir = tmp_path / "trial"
    params = write_params(trial_dir, limit_train_batches=2)
    child = launch(trial_dir, devices_per_trial=2)
    code = child.wait(timeout=280)
    log = (trial_dir / "child.log").read_text()
    assert code == 0, log[-4000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log  # Lightning's own line: two processes trained
    metrics = json.loads((trial_dir / "metrics.json").read_text())
    progress = (trial_dir / "progress.jsonl").read_text().splitlines()
    assert len(progress) == 1  # rank 0's line alone
    assert json.loads(progress[0])["val_acc1"] == metrics["val_acc1"]
    (best,) = (trial_dir / "checkpoints").glob("best-*.ckpt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        whole = evaluate(load_task(best), make_data(params["data"]))
    finally:
        torch.set_num_threads(threads)
    assert metrics["val_acc1"] == pytest.approx(whole["val_acc1"], abs=1e-6)
    rows = read_csv(trial_dir / "lightning_logs" / "version_0" / "metrics.csv")
    (logged_loss,) = [float(row["val_loss"]) for row in rows if row.get("val_loss")]
    assert logged_loss == pytest.approx(whole["val_loss"], rel=1e-4)  # sync_dist: half the set would differ


def descendants(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    children = [int(p) for p in found]
    return children + [d for c in children for d in descendants(c)]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_9_of_the_worker_ends_every_ddp_rank(tmp_path: Path, cluster_environment: None) -> None:
    trial_dir = tmp_path / "trial"
    write_params(trial_dir, limit_train_batches=1000)  # still training when the worker is killed
    worker_code = (
        "import sys, time; from pathlib import Path; from dynsweep.sweep.child import launch; "
        "print(launch(Path(sys.argv[1]), devices_per_trial=2).pid, flush=True); time.sleep(600)"
    )
    worker = subprocess.Popen([sys.executable, "-c", worker_code, str(trial_dir)], stdout=subprocess.PIPE, text=True)
    ranks: list[int] = []
    try:
        child = int(worker.stdout.readline())
        ranks.append(child)
        deadline = time.time() + 180
        while not descendants(child) and time.time() < deadline:  # rank 1, started by Lightning
            time.sleep(0.5)
        ranks += descendants(child)
        assert len(ranks) >= 2, (trial_dir / "child.log").read_text()[-3000:]
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        deadline = time.time() + 20
        while any(alive(pid) for pid in ranks) and time.time() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in ranks if alive(pid)]
    finally:
        worker.kill()
        for pid in ranks:  # whatever the watchdog missed, so a failed run leaves nothing behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
