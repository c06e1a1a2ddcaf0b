"""What measuring latency adds to a quickstart trial's wall time, per runtime.

For trials of ``sweeps/quickstart.yaml`` (each architecture's static network at its base widths,
and a dynamic one), this times one trial's training as the sweep runs it (``python -m
dynsweep.sweep.child``, the spec's training settings) and ``dynsweep.latency.measure_for_trial``
on the same network against its architecture's base network (the sweep's reference), with an
empty cache, in each runtime. Printed: seconds and the share of the trial's training time.
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

ROOT = Path(__file__).resolve().parents[1]


def trial_params(config, model: str, spec: dict) -> dict:
    arch = config.architecture(model)
    return {
        "model": model,
        "preset": None,
        "spec": {**arch.base, **spec},
        "small_input": arch.small_input,
        "training": config.training_for(model),
        "data": config.data,
        "seed": 0,
    }


def training_seconds(params: dict, work: Path) -> float:
    """Wall time of the trial's training process, as the sweep launches it."""
    trial_dir = work / f"trial_{len(list(work.iterdir()))}"
    trial_dir.mkdir()
    (trial_dir / "params.json").write_text(json.dumps(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dynsweep.sweep.child", str(trial_dir)], env=env, check=True, capture_output=True
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default=str(ROOT / "sweeps" / "quickstart.yaml"))
    parser.add_argument("--runtimes", nargs="+", default=["eager", "onnxruntime", "compile"])
    parser.add_argument("--repeats", type=int, default=30, help="the latency block's repeats (default: 30)")
    args = parser.parse_args(argv)

    import torch

    from dynsweep.latency import LatencySettings, measure_for_trial
    from dynsweep.sweep.child import make_data, make_task
    from dynsweep.sweep.config import load_config

    config = load_config(args.spec)
    data = make_data(config.data)
    trials = {
        "resnet18 (base widths)": trial_params(config, "resnet18", {}),
        "dy_resnet18 preset": trial_params(
            config, "resnet18", {"stages": "all", "num_bases": 6, "reduction": 4, "dynamic_width": 0.5}
        ),
        "mobilenet_v2 (base widths)": trial_params(config, "mobilenet_v2", {}),
        "mobilenet_v2 dynamic": trial_params(
            config, "mobilenet_v2", {"stages": "all", "num_bases": 4, "dynamic_width": 1.0}
        ),
    }
    threads = int(config.training_for("resnet18").get("threads") or torch.get_num_threads())
    print(
        f"quickstart trials, training as the sweep runs it; latency with {threads} thread(s), {args.repeats} repeats, empty cache"
    )
    print("  (each runtime's cache is shared by the trials in order, as in a sweep: the first trial of an")
    print("   architecture exports its reference graph, later ones reuse it)")
    with tempfile.TemporaryDirectory(prefix="dynsweep-overhead-") as work:
        caches = {runtime: Path(work, f"cache_{runtime}") for runtime in args.runtimes}
        for label, params in trials.items():
            train = training_seconds(params, Path(work))
            model = make_task(params, data).model
            reference = make_task({**params, "spec": dict(config.architecture(params["model"]).base)}, data).model
            size = (data.in_channels, data.image_size, data.image_size)
            cells = []
            for runtime, cache in caches.items():
                settings = LatencySettings(runtime=runtime, threads=threads, repeats=args.repeats)
                start = time.perf_counter()
                record = measure_for_trial(model, reference, settings, cache, size, lock_path=Path(work, "lock"))
                seconds = time.perf_counter() - start
                cells.append(f"{runtime} {seconds:6.1f} s ({seconds / train:5.1%}){' cached' if record.cached else ''}")
            print(f"  {label:28s} training {train:6.1f} s | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
