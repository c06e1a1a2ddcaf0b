"""Batch-1 CPU inference at 224 x 224: each Dy preset against its torchvision baseline.

The paper's second claim (i7-7700, Caffe, mean of 50 runs): Dy-mobile 1.87x, Dy-ResNet18 1.32x,
Dy-ResNet50 1.48x faster than the static baseline. Our targets on this 2-core CPU are higher:
Dy-mobile >= 2.0x, Dy-ResNet18 >= 2.0x, Dy-ResNet50 >= 2.2x, Dy-shuffle >= 1.3x.

Both models run the same inference form, so the ratio measures dynamic convolution and nothing
else: eval mode, ``torch.inference_mode``, BatchNorm folded into the preceding convolution
(``fold_batchnorm``; for the Dy model into the bases), and the same memory format for model and
input (``--memory-format``: contiguous NCHW, channels-last NHWC, or both, each its own row).

Each row also estimates what bounds the speed-up of an implementation that, like ours, fuses
each kernel and then runs a static convolution with it: the preset's static twin ``fix_*``
(the same convolutions with one kernel each, no predictor) plus one read of every base (each
dynamic layer reads its ``num_bases`` kernels to fuse them). ``bound = baseline / (Fix + read)``.
It is an estimate, not a proof: a convolution faster than the twin's, or fusion overlapped with
the convolution, could pass it (our 1x1 layers run as matrix products; the twins run that way
gain 4-11%, still below every target: 2026-11-27, docs/bench_cpu.txt); and the predictors cost
more than nothing. A target well above it needs a cheaper preset, fewer or lower-precision
bases, or such an overlapped kernel, not a faster fuse-then-convolve operator.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from benchmarks.timing import inference_step, interleaved_medians, without_autograd
from dynsweep.models import build_model
from dynsweep.nn import DynamicConv2d, fold_batchnorm

MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


@dataclass(frozen=True)
class LatencyPair:
    preset: str
    baseline: str
    paper_speedup: float | None
    target_speedup: float

    @property
    def static_twin(self) -> str:
        """The preset's ``fix_*`` twin: the same channels and groups, static kernels."""
        return self.preset.replace("dy_", "fix_", 1)


PAIRS = [
    LatencyPair("dy_mobilenet_v2", "mobilenet_v2", 1.87, 2.0),
    LatencyPair("dy_resnet18", "resnet18", 1.32, 2.0),
    LatencyPair("dy_resnet50", "resnet50", 1.48, 2.2),
    LatencyPair("dy_shufflenet_v2", "shufflenet_v2_x1_0", None, 1.3),
]


def inference_form(model: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    """The benchmarked form of either model: BatchNorm folded, in ``memory_format``."""
    return fold_batchnorm(model).to(memory_format=memory_format)


def measure(pair: LatencyPair, repeats: int, memory_format: str = "contiguous") -> dict:
    torch.manual_seed(0)
    layout = MEMORY_FORMATS[memory_format]
    baseline = inference_form(getattr(torchvision.models, pair.baseline)(weights=None), layout)
    dynamic = inference_form(build_model(pair.preset), layout)
    static_twin = inference_form(build_model(pair.static_twin), layout)
    x = torch.randn(1, 3, 224, 224).contiguous(memory_format=layout)
    bases = [m.weight for m in dynamic.modules() if isinstance(m, DynamicConv2d)]

    def read_bases() -> None:
        for weight in bases:
            weight.sum()

    times = interleaved_medians(
        {
            "baseline": inference_step(baseline, x),
            "dynamic": inference_step(dynamic, x),
            "static_twin": inference_step(static_twin, x),
            "read_bases": without_autograd(read_bases),
        },
        repeats,
        warmup=3,
    )
    ms = {name: seconds * 1e3 for name, seconds in times.items()}
    return dict(
        pair=pair,
        baseline_ms=ms["baseline"],
        dynamic_ms=ms["dynamic"],
        static_twin_ms=ms["static_twin"],
        read_bases_ms=ms["read_bases"],
        bases_mb=sum(w.numel() * w.element_size() for w in bases) / 1e6,
        bound=ms["baseline"] / (ms["static_twin"] + ms["read_bases"]),
    )


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--memory-format", choices=(*MEMORY_FORMATS, "both"), default="both")
    parser.add_argument("--only", nargs="+", choices=[p.preset for p in PAIRS], help="presets to measure")
    args = parser.parse_args(argv)
    formats = list(MEMORY_FORMATS) if args.memory_format == "both" else [args.memory_format]
    print(
        f"Batch-1 CPU inference at 224x224, eager, BatchNorm folded in both models, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print(
        f"{'model':18s} {'format':13s} {'baseline':>10s} {'Dy':>10s} {'speed-up':>9s} {'paper':>6s} "
        f"{'target':>7s}       {'Fix':>8s} {'read':>7s} {'bases':>7s} {'bound':>6s}"
    )
    ok = True
    for pair in PAIRS:
        if args.only and pair.preset not in args.only:
            continue
        for memory_format in formats:
            row = measure(pair, args.repeats, memory_format)
            speedup = row["baseline_ms"] / row["dynamic_ms"]
            passed = speedup >= pair.target_speedup
            ok &= passed
            paper = f"{pair.paper_speedup:.2f}x" if pair.paper_speedup else "  -  "
            print(
                f"{pair.preset:18s} {memory_format:13s} {row['baseline_ms']:8.1f}ms {row['dynamic_ms']:8.1f}ms "
                f"{speedup:8.2f}x {paper:>6s} {pair.target_speedup:6.1f}x {'PASS' if passed else 'MISS'}  "
                f"{row['static_twin_ms']:6.1f}ms {row['read_bases_ms']:5.1f}ms {row['bases_mb']:5.0f}MB "
                f"{row['bound']:5.2f}x",
                flush=True,
            )
    return ok


if __name__ == "__main__":
    main()
