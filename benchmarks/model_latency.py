"""Batch-1 CPU inference at 224 x 224: each Dy preset against its torchvision baseline and its static
twin, in each runtime (eager PyTorch, ONNX Runtime, optionally torch.compile).

All models in all runtimes are timed interleaved in one process (``dynsweep.latency.time_models``:
BatchNorm folded in every model, contiguous layout, the settings' threads for PyTorch and ONNX
Runtime), so each ratio compares times taken under the same load; medians of ``--repeats`` rounds.

Per preset and runtime the row shows the baseline, Dy, its static twin Fix (``fix_*``: the same
convolutions with one kernel each, no predictor) and one read of Dy's bases (each dynamic layer
reads its ``num_bases`` kernels to fuse them; timed in PyTorch, the same for every runtime). Then:

- speed-up = baseline / Dy;
- bound = baseline / (Fix + read): what an implementation that fuses each kernel and then runs the
  twin's convolution reaches if the predictors and everything else cost nothing. An estimate, not
  a proof: a convolution faster than the twin's, or fusion overlapped with it, could pass it;
- reached = (Fix + read) / Dy = speed-up / bound, the fraction of the bound.

Times are medians over the rounds; each ratio is the median of its round-by-round ratios (the
calls of one round share the machine's load), so it is not exactly the ratio of the medians.

Targets (checked per row): Dy-ResNet18 and Dy-ResNet50 at least 1.5x their baseline in ONNX
Runtime; Dy-mobile and Dy-shuffle within 1.10 x (Fix + read), i.e. reached >= 1 / 1.1, in ONNX
Runtime and eager. The paper (i7-7700, Caffe, mean of 50 runs): Dy-mobile 1.87x, Dy-ResNet18 1.32x,
Dy-ResNet50 1.48x.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass

import torch
import torchvision

from dynsweep.latency import LatencySettings, time_models
from dynsweep.latency.measure import example_input
from dynsweep.models import build_model
from dynsweep.nn import DynamicConv2d, fold_batchnorm

RUNTIMES = ("eager", "onnxruntime", "compile")
WITHIN_BOUND = 1.10  # Dy <= 1.10 x (Fix + read)


@dataclass(frozen=True)
class LatencyPair:
    preset: str
    baseline: str
    paper_speedup: float | None
    onnxruntime_speedup: float | None  # the target speed-up in ONNX Runtime, where there is one

    @property
    def static_twin(self) -> str:
        """The preset's ``fix_*`` twin: the same channels and groups, static kernels."""
        return self.preset.replace("dy_", "fix_", 1)

    def target(self, runtime: str) -> tuple[str, float] | None:
        """``("speed-up", x)``: at least x; ``("reached", f)``: at least f of the bound."""
        if self.onnxruntime_speedup is not None:
            return ("speed-up", self.onnxruntime_speedup) if runtime == "onnxruntime" else None
        return ("reached", 1 / WITHIN_BOUND) if runtime in ("onnxruntime", "eager") else None


PAIRS = [
    LatencyPair("dy_mobilenet_v2", "mobilenet_v2", 1.87, None),
    LatencyPair("dy_resnet18", "resnet18", 1.32, 1.5),
    LatencyPair("dy_resnet50", "resnet50", 1.48, 1.5),
    LatencyPair("dy_shufflenet_v2", "shufflenet_v2_x1_0", None, None),
]


def bases_reader(model: torch.nn.Module):
    """One read of every dynamic layer's bases, as one PyTorch sum each, without autograd."""
    bases = [m.weight for m in model.modules() if isinstance(m, DynamicConv2d)]

    def read() -> None:
        with torch.inference_mode():
            for weight in bases:
                weight.sum()

    return read, sum(w.numel() * w.element_size() for w in bases)


def eager_call(model: torch.nn.Module, x: torch.Tensor):
    def run() -> None:
        with torch.inference_mode():
            model(x)

    return run


def measure(
    pair: LatencyPair, runtimes: list[str], settings: LatencySettings, size: int, folded_eager: bool = False
) -> list[dict]:
    """One row per runtime: milliseconds of baseline, Dy, Fix and the read, and the ratios.

    ``folded_eager`` also times baseline and Dy in the folded eager form without the lean batch-1
    path (``fold_batchnorm`` alone, the parent commit's eager form), in the same rounds."""
    torch.manual_seed(0)
    models = {
        "baseline": getattr(torchvision.models, pair.baseline)(weights=None),
        "dynamic": build_model(pair.preset),
        "static_twin": build_model(pair.static_twin),
    }
    read, bases_bytes = bases_reader(models["dynamic"])
    extra = {"read_bases": read}
    if folded_eager:  # the eager form without the lean batch-1 path, as the parent commit ran it
        x = example_input((1, 3, size, size), "cpu")
        for name in ("baseline", "dynamic"):
            extra[f"{name}_folded"] = eager_call(fold_batchnorm(models[name]), x)
    timed = time_models(models, (3, size, size), settings, extra=extra, runtimes=runtimes)
    ms = {key: statistics.median(seconds) * 1e3 for key, seconds in timed.items()}
    iqr = {key: statistics.quantiles(seconds, n=4, method="inclusive") for key, seconds in timed.items()}
    read_ms = ms["read_bases", ""]
    rows = []
    for runtime in runtimes:
        base, dyn, fix = (ms[name, runtime] for name in ("baseline", "dynamic", "static_twin"))
        # Ratios are medians of round-by-round ratios: a round's calls share the machine's load.
        keys = [("baseline", runtime), ("dynamic", runtime), ("static_twin", runtime), ("read_bases", "")]
        rounds = list(zip(*(timed[key] for key in keys)))
        speedup = statistics.median(b / d for b, d, _, _ in rounds)
        bound = statistics.median(b / (f + r) for b, _, f, r in rounds)
        reached = statistics.median((f + r) / d for _, d, f, r in rounds)
        if runtime == "eager" and folded_eager:
            pairs = zip(timed["baseline_folded", ""], timed["dynamic_folded", ""])
            folded_speedup = statistics.median(b / d for b, d in pairs)
        else:
            folded_speedup = None
        rows.append(
            dict(
                preset=pair.preset,
                runtime=runtime,
                folded_speedup=folded_speedup,
                baseline_ms=base,
                dynamic_ms=dyn,
                dynamic_q1_ms=iqr["dynamic", runtime][0] * 1e3,
                dynamic_q3_ms=iqr["dynamic", runtime][2] * 1e3,
                static_twin_ms=fix,
                read_bases_ms=read_ms,
                bases_mb=bases_bytes / 1e6,
                speedup=speedup,
                bound=bound,
                reached=reached,
                twin_speedup=statistics.median(b / f for b, _, f, _ in rounds),
            )
        )
    return rows


def verdict(pair: LatencyPair, row: dict) -> tuple[str, bool]:
    target = pair.target(row["runtime"])
    if target is None:
        return "", True
    kind, value = target
    passed = row["speedup"] >= value if kind == "speed-up" else row["reached"] >= value
    label = f">={value:.1f}x" if kind == "speed-up" else f"reach>={value:.2f}"
    return f"{label} {'PASS' if passed else 'MISS'}", passed


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--threads", type=int, default=None, help="PyTorch and ONNX Runtime threads (default: PyTorch's)"
    )
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=["eager", "onnxruntime"])
    parser.add_argument("--size", type=int, default=224, help="image side (default: 224)")
    parser.add_argument("--only", nargs="+", choices=[p.preset for p in PAIRS], help="presets to measure")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument(
        "--folded-eager", action="store_true", help="also time eager without the lean batch-1 path (the parent's form)"
    )
    args = parser.parse_args(argv)
    settings = LatencySettings(threads=args.threads or torch.get_num_threads(), repeats=args.repeats)
    print(
        f"Batch-1 CPU inference at {args.size}x{args.size}, BatchNorm folded in every model, contiguous, "
        f"{settings.threads} threads, all models and runtimes interleaved per preset, median of {args.repeats}"
    )
    print(
        f"{'model':17s} {'runtime':11s} {'baseline':>9s} {'Dy':>16s} {'Fix':>8s} {'read':>6s} {'bases':>6s} "
        f"{'speed-up':>8s} {'Fix x':>6s} {'bound':>6s} {'reached':>7s}  target"
    )
    ok, rows = True, []
    for pair in PAIRS:
        if args.only and pair.preset not in args.only:
            continue
        for row in measure(pair, args.runtimes, settings, args.size, args.folded_eager):
            text, passed = verdict(pair, row)
            ok &= passed
            rows.append(row)
            spread = f"[{row['dynamic_q1_ms']:.1f}-{row['dynamic_q3_ms']:.1f}]"
            print(
                f"{pair.preset:17s} {row['runtime']:11s} {row['baseline_ms']:7.1f}ms {row['dynamic_ms']:6.1f}ms"
                f"{spread:>10s} {row['static_twin_ms']:6.1f}ms {row['read_bases_ms']:4.1f}ms {row['bases_mb']:4.0f}MB "
                f"{row['speedup']:7.2f}x {row['twin_speedup']:5.2f}x {row['bound']:5.2f}x {row['reached']:7.2f}  {text}",
                flush=True,
            )
            if row["folded_speedup"] is not None:
                print(
                    f"{'':17s} eager without the lean batch-1 path (the parent's form): speed-up {row['folded_speedup']:.2f}x"
                )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(dict(threads=settings.threads, repeats=args.repeats, size=args.size, rows=rows), out, indent=1)
    return ok


if __name__ == "__main__":
    main()
