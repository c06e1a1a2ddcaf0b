"""dynsweep train / evaluate / export through the command's entry point (``dynsweep.cli.main``), on
the embedded data and a quarter-width Dy-ResNet18, a few CPU steps each: checkpoints and CSV
metrics, --print_config YAML that trains again, seeds, resuming, evaluation that reproduces the
logged metric, ONNX export checked with onnxruntime, DDP on two CPU processes, and the bad inputs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
import torch
import yaml

from dynsweep.checkpoints import evaluate, load_data, load_task
from dynsweep.cli import main

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning",
    "ignore::DeprecationWarning",
    "ignore::FutureWarning",  # Lightning's own
)

STEPS = 3
SPEC = '{"width_mult": 0.25, "stages": [3], "num_bases": 2}'


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread, as in test_tasks.py: tiny models on a small shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def options(root: Path, steps: int = STEPS, seed: int = 0, batch: int = 16) -> list[str]:
    return [
        "--model.model", "dy_resnet18",
        "--model.spec", SPEC,
        "--model.warmup_epochs", "0",
        "--data.batch_size", str(batch),
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.max_steps", str(steps),
        "--trainer.limit_train_batches", str(STEPS),
        "--trainer.limit_val_batches", "2",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root),
        "--seed", str(seed),
    ]  # fmt: skip


def run_dir(root: Path, version: int = 0) -> Path:
    return root / "lightning_logs" / f"version_{version}"


def read_metrics(root: Path, version: int = 0) -> list[dict[str, str]]:
    with open(run_dir(root, version) / "metrics.csv") as file:
        return list(csv.DictReader(file))


def values(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(row[key]) for row in rows if row.get(key)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of STEPS steps, shared by the evaluate and export tests (read-only)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trained")
    assert main(["train", *options(root)]) == 0
    return root


def test_train_writes_checkpoints_and_metrics(trained: Path) -> None:
    checkpoints = run_dir(trained) / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file()
    assert [p.name for p in checkpoints.glob("best-*.ckpt")] == [f"best-epoch=0-step={STEPS}.ckpt"]
    rows = read_metrics(trained)
    assert len(values(rows, "train_loss")) == STEPS
    (acc1,) = values(rows, "val_acc1")
    assert 0 <= acc1 <= 1
    checkpoint = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == STEPS
    data = checkpoint["datamodule_hyper_parameters"]
    assert data["_class_path"] == "dynsweep.data.EmbeddedDigitsDataModule"
    assert (run_dir(trained) / "config.yaml").is_file()


def test_print_config_trains_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *options(tmp_path / "first"), "--trainer.max_steps", "2", "--print_config"])
    assert exit_info.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["model"] == "dy_resnet18"
    assert config["trainer"]["max_steps"] == 2
    assert config["checkpoint"]["monitor"] == "val_acc1" and config["checkpoint"]["save_last"] is True
    assert config["data"]["class_path"] == "dynsweep.data.EmbeddedDigitsDataModule"
    config["trainer"]["default_root_dir"] = str(tmp_path / "second")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(path)]) == 0
    assert len(values(read_metrics(tmp_path / "second"), "train_loss")) == 2


def test_same_seed_same_metrics(tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        assert main(["train", *options(tmp_path / name, steps=2, seed=seed)]) == 0
        rows = read_metrics(tmp_path / name)
        runs[name] = values(rows, "train_loss") + values(rows, "val_loss")
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]  # the seed does reach the model and the data order


def test_resume_continues_the_step_count(tmp_path: Path) -> None:
    epochs = [*options(tmp_path), "--trainer.max_steps", "-1", "--trainer.limit_train_batches", "2"]
    assert main(["train", *epochs, "--trainer.max_epochs", "1"]) == 0
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    config = run_dir(tmp_path) / "config.yaml"  # the way the README resumes: the run's own config
    resume = ["--trainer.max_epochs", "2", "--ckpt_path", str(last)]
    assert main(["train", "--config", str(config), *resume]) == 0
    resumed = read_metrics(tmp_path, version=1)
    assert [int(row["step"]) for row in resumed if row.get("train_loss")] == [2, 3]
    final = torch.load(run_dir(tmp_path, 1) / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 4


def test_evaluate_reproduces_the_logged_metric(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    last = run_dir(trained) / "checkpoints" / "last.ckpt"
    assert main(["evaluate", str(last), "--limit-batches", "2", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    (logged_acc1,) = values(read_metrics(trained), "val_acc1")
    (logged_loss,) = values(read_metrics(trained), "val_loss")
    assert metrics["val_acc1"] == pytest.approx(logged_acc1, abs=1e-6)
    assert metrics["val_loss"] == pytest.approx(logged_loss, rel=1e-5)
    assert main(["evaluate", str(last), "--limit-batches", "2"]) == 0
    assert "val_acc1" in capsys.readouterr().out


def test_evaluate_data_overrides_reach_the_data_module(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    last = run_dir(trained) / "checkpoints" / "last.ckpt"
    assert main(["evaluate", str(last), "--data", "batch_size=0"]) == 1
    assert "batch_size must be >= 1" in capsys.readouterr().err


def run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return torch.from_numpy(session.run(None, {name: x.numpy()})[0])


@pytest.mark.parametrize("dynamic", [False, True], ids=["batch1", "dynamic-batch"])
def test_export_matches_pytorch(
    trained: Path, tmp_path: Path, dynamic: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    last = run_dir(trained) / "checkpoints" / "last.ckpt"
    path = tmp_path / "model.onnx"
    assert main(["export", str(last), "--onnx", str(path), *(["--dynamic-batch"] if dynamic else [])]) == 0
    assert "max abs difference" in capsys.readouterr().out
    model = load_task(last).model.eval()
    for batch in (1, 3) if dynamic else (1,):
        x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            torch.testing.assert_close(run_onnx(path, x), model(x), rtol=1e-4, atol=1e-4)


def test_bad_inputs_fail_clearly(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.ckpt"
    assert main(["evaluate", str(missing)]) == 1
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["export", str(missing), "--onnx", str(tmp_path / "m.onnx")]) == 1
    assert "no such checkpoint" in capsys.readouterr().err

    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    assert main(["evaluate", str(foreign)]) == 1
    assert "not a checkpoint of a dynsweep task" in capsys.readouterr().err

    last = run_dir(trained) / "checkpoints" / "last.ckpt"
    segmentation = [
        "train", "--task", "segmentation", "--model.model", "dy_resnet18", "--model.spec", SPEC,
        "--data.num_train", "8", "--data.num_val", "4", "--data.batch_size", "4",
        "--trainer.accelerator", "cpu", "--trainer.max_steps", "1", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "seg"),
        "--ckpt_path", str(last),
    ]  # fmt: skip
    assert main(segmentation) == 1
    error = capsys.readouterr().err
    assert "ClassificationTask" in error and "SegmentationTask" in error

    assert main(["train", "--data", "CIFARDataModule", "--data.root", str(missing)]) == 1
    error = capsys.readouterr().err
    assert str(missing) in error and "Traceback" not in error and "Union" not in error

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "detection"])
    assert exit_info.value.code not in (0, None)


def test_segmentation_trains(tmp_path: Path) -> None:
    arguments = [
        "train", "--task", "segmentation", "--model.model", "dy_resnet18", "--model.spec", SPEC,
        "--data.num_train", "8", "--data.num_val", "4", "--data.batch_size", "4",
        "--trainer.accelerator", "cpu", "--trainer.max_steps", "2", "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
    ]  # fmt: skip
    assert main(arguments) == 0
    assert values(read_metrics(tmp_path), "val_miou")
    assert (run_dir(tmp_path) / "checkpoints" / "last.ckpt").is_file()
    # The saved config names its task, so it trains again as given, without --task.
    config = yaml.safe_load((run_dir(tmp_path) / "config.yaml").read_text())
    assert config["task"] == "segmentation"
    config["trainer"]["default_root_dir"] = str(tmp_path / "again")
    path = tmp_path / "again.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(path)]) == 0
    assert values(read_metrics(tmp_path / "again"), "val_miou")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ddp_two_cpu_processes_sync_the_validation_metric(tmp_path: Path) -> None:
    """``python -m dynsweep train`` with DDP on two gloo processes (Lightning's subprocess
    launcher; SyncBatchNorm is left out: torch's DDP takes it on GPU modules only). The validation
    accuracy in metrics.csv (written by rank 0) must be that of the whole validation set, which
    each rank sees only half of, as one process measures it."""
    arguments = [
        sys.executable, "-m", "dynsweep", "train",
        "--model.model", "dy_resnet18", "--model.spec", SPEC, "--model.warmup_epochs", "0",
        "--data.batch_size", "16",
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.max_steps", "2", "--trainer.limit_train_batches", "2",
        "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(arguments, capture_output=True, text=True, timeout=170, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = read_metrics(tmp_path)
    (logged,), (logged_loss,) = values(rows, "val_acc1"), values(rows, "val_loss")
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 2
    whole = evaluate(load_task(last), load_data(last, overrides={"batch_size": 50}))
    assert logged == pytest.approx(whole["val_acc1"], abs=1e-6)  # rank 0's half alone: 0.108 vs 0.100
    assert logged_loss == pytest.approx(whole["val_loss"], rel=1e-4)  # the task's sync_dist=True


def test_default_loggers_csv_always_tensorboard_when_installed(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    from dynsweep.compat import tensorboard_available
    from dynsweep.tasks.recipe import default_loggers

    loggers = default_loggers(str(tmp_path))
    assert isinstance(loggers[0], CSVLogger)
    assert len(loggers) == (2 if tensorboard_available() else 1)
    assert len({logger.log_dir for logger in loggers}) == 1  # one version directory for both
