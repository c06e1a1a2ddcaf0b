"""Sweeps on a GPU: trials per hour of a ResNet18 space and a Dy-ResNet18 space, pinned with
``--devices 0``, in bf16 mixed precision with ``compile`` off and on, each a real ``dynsweep sweep
run`` on a journal file. Runs where a GPU is lent (one card: device pinning across cards is tested
on the CPU); ``--accelerator cpu --quick`` runs the same plumbing on a CPU in seconds.

    python -m benchmarks.gpu_sweep_check --out OUT_DIR              # on a GPU machine
    python -m benchmarks.gpu_sweep_check --accelerator cpu --quick --no-compile --trials 1   # the tests' dry run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

SPACES: dict[str, dict[str, Any]] = {
    "resnet18": {"model": "resnet18", "base": {"width_mult": 0.25}, "space": {"width_mult": [0.25, 0.5]}},
    "dy_resnet18": {
        "model": "resnet18",
        "base": {"width_mult": 0.25, "num_bases": 4, "stages": "all"},
        "space": {"reduction": [4, 8], "dynamic_width": [0.5, 1.0]},
    },
}


def spec(name: str, space: str, accelerator: str, compile_model: bool, trials: int, quick: bool) -> dict[str, Any]:
    """A sweep spec of ``space`` on the embedded digits, in bf16 on a GPU (32-bit on a CPU)."""
    training: dict[str, Any] = {"max_epochs": 1 if quick else 3, "accelerator": accelerator, "compile": compile_model}
    if accelerator != "cpu":
        training["precision"] = "bf16-mixed"
    if quick:
        training.update(limit_train_batches=2, limit_val_batches=2, threads=1)
    return {
        "name": name,
        "seed": 0,
        "architectures": [SPACES[space]],
        "sampler": "random",
        "budget": {"n_trials": trials},
        "training": training,
        "data": {"class": "EmbeddedDigitsDataModule", "init_args": {"batch_size": 128}},
    }


def run(folder: Path, space: str, accelerator: str, compile_model: bool, trials: int, quick: bool) -> dict[str, Any]:
    """One sweep; its trials per hour from the wall time of ``dynsweep sweep run``."""
    name = f"{space}_{'compiled' if compile_model else 'eager'}"
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec(name, space, accelerator, compile_model, trials, quick)))
    command = [sys.executable, "-m", "dynsweep", "sweep", "run", str(path), "--no-table"]
    command += ["--storage", f"journal:{folder / (name + '.log')}", "--runs-dir", str(folder / "runs")]
    command += ["--devices", "0"]
    start = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=folder, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    seconds = time.perf_counter() - start
    complete = 0
    if done.returncode == 0:
        import optuna

        from dynsweep.sweep.storage import open_existing

        study = optuna.load_study(study_name=name, storage=open_existing(f"journal:{folder / (name + '.log')}"))
        complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    return {
        "space": space,
        "compile": compile_model,
        "status": done.returncode,
        "trials": trials,
        "complete": complete,
        "seconds": round(seconds, 1),
        "trials_per_hour": round(3600 * trials / seconds, 1),
        "error": done.stderr.strip().splitlines()[-1] if done.returncode else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="one short epoch a trial (a dry run)")
    parser.add_argument("--no-compile", action="store_true", help="eager only (compiling on a CPU takes minutes)")
    parser.add_argument("--out", type=Path, help="write gpu_sweep_check.json here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for space in SPACES:
            for compile_model in (False,) if args.no_compile else (False, True):
                row = run(Path(folder), space, args.accelerator, compile_model, args.trials, args.quick)
                rows.append(row)
                print(f"[sweep] {json.dumps(row)}", flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_sweep_check.json").write_text(json.dumps(rows, indent=2))
    failed = [row for row in rows if row["status"] != 0]
    print(f"done: {len(failed)} failed sweep(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
