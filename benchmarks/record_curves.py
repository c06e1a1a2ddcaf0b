"""Recorded learning curves: train every point of the quickstart's search space, keep the curves.

``python -m benchmarks.record_curves`` trains each point of the finite space of
``sweeps/quickstart.yaml`` (every ResNet18 and MobileNetV2 spec it can propose, and its warm-start
presets and baselines) for ``--epochs`` epochs with each of ``--seeds`` seeds, on a data-poor
version of the embedded digits (``--train-per-class`` training digits per class, the same 500
validation digits), through the sweep's own trial child (``python -m dynsweep.sweep.child``). It
writes one JSON table (``benchmarks/curves_quickstart.json``): per point its MACs, parameters
and, per seed, the validation accuracy and the seconds of every epoch; a point the model cannot
build (the sweep fails such a trial) has ``error`` instead. :mod:`benchmarks.simulate`
replays searches against it with no training, as Syne Tune's blackbox repository and the
NAS-Bench tables do. Each run trains with the trial child's code, in this process by default
(``--child-process``: a child per run, as the sweep; same training, plus its imports each time).

Resumable: finished (point, seed) runs are kept in the table (written after each run) and in
``--work-dir``, and skipped. Run it alone, in the background, under ``nice``: its epoch times are
measured, so other work on the machine shows in them.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dynsweep.sweep.config import SweepConfig, load_config
from dynsweep.sweep.space import preset_spec
from dynsweep.sweep.trial import measure_cost, read_progress

DEFAULT_TABLE = Path(__file__).with_name("curves_quickstart.json")
DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "sweeps" / "quickstart.yaml"


def enumerate_points(config: SweepConfig) -> list[dict[str, Any]]:
    """Every point a sweep of ``config`` can train: each architecture's grid, then its warm starts.

    A point is ``{"key", "model", "preset", "spec"}``; ``key`` is a stable readable name, e.g.
    ``resnet18|stages=[3]|num_bases=2|reduction=4|dynamic_width=0.5`` or ``preset:dy_resnet18``.
    """
    from dynsweep.models import get_model_entry

    points = []
    for arch in config.architectures:
        if any(dim.choices is None for dim in arch.space):
            raise ValueError(f"{config.source}: {arch.model}: only spaces of choices are finite")
        for values in itertools.product(*(dim.choices for dim in arch.space)):
            chosen = {dim.name: value for dim, value in zip(arch.space, values)}
            key = "|".join([arch.model] + [f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in chosen.items()])
            points.append({"key": key, "model": arch.model, "preset": None, "spec": {**arch.base, **chosen}})
    for preset in config.warm_start:
        entry = get_model_entry(preset)
        arch = config.architecture(entry.baseline or entry.name)
        points.append(
            {"key": f"preset:{preset}", "model": arch.model, "preset": preset, "spec": preset_spec(preset, arch)}
        )
    return points


def child_params(
    config: SweepConfig, point: dict[str, Any], training: dict[str, Any], data: dict[str, Any], seed: int
) -> dict[str, Any]:
    """The trial child's params.json for one (point, seed): the contract of ``sweep.trial.child_params``."""
    return {
        "model": point["model"],
        "preset": point["preset"],
        "spec": point["spec"],
        "small_input": config.architecture(point["model"]).small_input,
        "training": training,
        "data": data,
        "seed": seed,
    }


def train_once(params: dict[str, Any], run_dir: Path, in_process: bool) -> dict[str, Any]:
    """Train one (point, seed) with the trial child's code; its per-epoch accuracy and seconds.

    ``in_process`` calls :func:`dynsweep.sweep.child.train` here (the same training, without a
    new interpreter's imports per run); otherwise ``python -m dynsweep.sweep.child`` runs it.
    """
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an unfinished run starts over
    run_dir.mkdir(parents=True)
    (run_dir / "params.json").write_text(json.dumps(params, indent=2))
    start = time.time()
    if in_process:
        from dynsweep.sweep.child import train

        train(run_dir, params)
    else:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        with (run_dir / "child.log").open("w") as log:
            code = subprocess.call(
                [sys.executable, "-m", "dynsweep.sweep.child", str(run_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        if code != 0:
            raise RuntimeError(f"{run_dir}: the child exited with status {code}; see {run_dir / 'child.log'}")
    progress = read_progress(run_dir)
    stamps = [start] + [p["time"] for p in progress]
    run = {
        "val_acc1": [round(p["val_acc1"], 4) for p in progress],
        "epoch_seconds": [round(b - a, 3) for a, b in itertools.pairwise(stamps)],
    }
    # The first interval also holds the start (data, model; a child's imports too); counted apart,
    # as the median of the other epochs stands for the first one's training.
    steady = sorted(run["epoch_seconds"][1:])
    if steady:
        first = steady[len(steady) // 2]
        run["startup_seconds"] = round(max(0.0, run["epoch_seconds"][0] - first), 3)
        run["epoch_seconds"][0] = first
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # what the table keeps is enough
    return run


def load_table(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="the sweep spec whose space is recorded")
    parser.add_argument("--out", type=Path, default=DEFAULT_TABLE, help="the table (JSON)")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/record_curves"), help="the children's directories")
    parser.add_argument("--epochs", type=int, default=27, help="epochs a run (27 = 3**3: rungs 1, 3, 9, 27)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds a point")
    parser.add_argument("--train-per-class", type=int, default=30, help="training digits per class")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--only", nargs="*", default=None, help="record only these point keys (a probe)")
    parser.add_argument("--child-process", action="store_true", help="a new trial child process per run, as the sweep")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported (by the first cost count)
    config = load_config(args.spec)
    training = {**config.training, "max_epochs": args.epochs, "threads": 1}
    training.pop("limit_train_batches", None)  # the whole (small) training set each epoch
    training.pop("max_steps", None)
    data = {
        "class": "EmbeddedDigitsDataModule",
        "init_args": {"batch_size": args.batch_size, "train_per_class": args.train_per_class},
    }
    setup = {"spec": str(args.spec.name), "training": training, "data": data}
    table = load_table(args.out)
    if table is not None and table["setup"] != setup:
        raise SystemExit(f"{args.out} was recorded with {table['setup']}, not {setup}: pass another --out")
    table = table or {"setup": setup, "recording_seconds": 0.0, "points": {}}
    points = enumerate_points(config)
    if args.only:
        points = [p for p in points if p["key"] in args.only]
    print(
        f"{len(points)} points x {args.seeds} seeds, {args.epochs} epochs, {args.train_per_class} digits a class",
        flush=True,
    )
    for seed, point in itertools.product(range(args.seeds), points):  # every point once before any twice
        entry = table["points"].setdefault(
            point["key"], {"model": point["model"], "preset": point["preset"], "spec": point["spec"], "runs": {}}
        )
        if str(seed) in entry["runs"] or "error" in entry:
            continue
        params = child_params(config, point, training, data, seed)
        if "macs" not in entry:
            try:
                entry["macs"], entry["params"] = measure_cost(params)
            except ValueError as error:  # a spec the model cannot build: the sweep fails such a trial
                entry["error"] = f"{type(error).__name__}: {error}"
                print(f"{point['key']}: cannot be built ({error})", flush=True)
                continue
        start = time.time()
        run_dir = args.work_dir / f"{hashlib.sha1(point['key'].encode()).hexdigest()[:10]}_seed{seed}"
        entry["runs"][str(seed)] = train_once(params, run_dir, not args.child_process)
        table["recording_seconds"] = round(table["recording_seconds"] + time.time() - start, 1)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(table, separators=(",", ":")))
        tmp.replace(args.out)
        curve = entry["runs"][str(seed)]["val_acc1"]
        print(
            f"{point['key']} seed {seed}: {entry['macs'] / 1e6:.2f} MMACs, acc "
            + " ".join(f"{a:.3f}" for a in curve[:: max(1, len(curve) // 9)])
            + f", {time.time() - start:.0f} s ({table['recording_seconds'] / 60:.1f} min so far)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
