"""DynamicConv2d (num_bases=4) against nn.Conv2d of the same shape, on ResNet18 / MobileNetV2 layers.

Two settings: inference at batch 1 and a training step (forward + backward) at batch 64.
Targets on the project's 2-core CPU: inference median <= 1.3x, worst <= 2x; training median
<= 2x, worst <= 3x. Each dynamic layer has its own predictor (reduction 4), as the operator
would be used standalone. ``--channels-last`` runs both layers and the input in NHWC.

Next to each time ratio, the MACs ratio of the same two layers (dynsweep.cost.count: predictor,
kernel fusion per sample and the convolution, the least arithmetic of any exact strategy) says how
much more arithmetic the dynamic layer does; where it exceeds the target, meeting the target needs
the extra work (mostly the predictor's matrix products) to run faster per MAC than the convolution.

At inference, each row also times what a fuse-then-convolve layer does beyond the static
convolution: read its ``num_bases`` kernels once and pool its input once (the coefficients need
the pooled input before the fused kernel exists), each as one eager op.
``floor = (static + read + pool) / static`` is the ratio a dynamic layer would reach if the
predictor's products, the fusion arithmetic and every other op cost nothing: an estimate of the
best such a layer can do in eager PyTorch. (A 1x1 dynamic layer, run as a matrix product, can
beat it: its product is faster than ``nn.Conv2d``'s.)
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch
from torch import nn

from benchmarks.layer_shapes import ALL_SHAPES, ConvShape
from benchmarks.timing import inference_step, interleaved_medians, without_autograd
from dynsweep.cost import count
from dynsweep.nn import DynamicConv2d, choose_strategy

TARGETS = {"inference": (1.3, 2.0), "training": (2.0, 3.0)}


def _layers(shape: ConvShape, num_bases: int) -> tuple[nn.Conv2d, DynamicConv2d]:
    args = (shape.in_channels, shape.out_channels, shape.kernel_size, shape.stride, shape.padding)
    static = nn.Conv2d(*args, groups=shape.groups, bias=False)
    dynamic = DynamicConv2d(*args, groups=shape.groups, num_bases=num_bases)
    return static, dynamic


def _training_step(layer: nn.Module, x: torch.Tensor):
    layer.train()
    x = x.clone().requires_grad_(True)

    def run() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()

    return run


def measure(
    setting: str,
    batch: int,
    repeats: int,
    num_bases: int,
    shapes: list[ConvShape],
    memory_format: torch.memory_format = torch.contiguous_format,
) -> list[dict]:
    """One row per layer shape: static and dynamic medians, their ratio and the chosen strategy."""
    step = inference_step if setting == "inference" else _training_step
    rows = []
    for shape in shapes:
        torch.manual_seed(0)
        static, dynamic = (layer.to(memory_format=memory_format) for layer in _layers(shape, num_bases))
        x = torch.randn(batch, shape.in_channels, shape.input_size, shape.input_size)
        x = x.contiguous(memory_format=memory_format)
        dynamic.train(setting == "training")
        strategy = choose_strategy(dynamic, x)
        macs_ratio = count(dynamic, tuple(x.shape)).macs / count(static, tuple(x.shape)).macs
        steps = {"static": step(static, x), "dynamic": step(dynamic, x)}
        if setting == "inference":
            steps["read_bases"] = without_autograd(dynamic.weight.sum)
            steps["pool_input"] = without_autograd(lambda x=x: x.mean(dim=(2, 3)))
        times = interleaved_medians(steps, repeats)
        floor = None
        if setting == "inference":
            floor = (times["static"] + times["read_bases"] + times["pool_input"]) / times["static"]
        rows.append(
            dict(
                layer=shape.name,
                strategy=strategy,
                static_ms=times["static"] * 1e3,
                dynamic_ms=times["dynamic"] * 1e3,
                ratio=times["dynamic"] / times["static"],
                macs_ratio=macs_ratio,
                floor=floor,
            )
        )
        print(
            f"  {setting:9s} {shape.name:22s} {strategy:8s} static {rows[-1]['static_ms']:9.3f} ms"
            f"  dynamic {rows[-1]['dynamic_ms']:9.3f} ms  ratio {rows[-1]['ratio']:5.2f}x"
            f"  (MACs {macs_ratio:4.2f}x" + (f", floor {floor:4.2f}x)" if floor else ")"),
            flush=True,
        )
    return rows


def summarize(setting: str, rows: list[dict]) -> bool:
    ratios = [row["ratio"] for row in rows]
    median, worst = statistics.median(ratios), max(ratios)
    target_median, target_worst = TARGETS[setting]
    ok = median <= target_median and worst <= target_worst
    beyond = [row["layer"] for row in rows if row["macs_ratio"] > target_worst]
    if beyond:
        print(f"{setting}: more than {target_worst}x the static layer's MACs on {', '.join(beyond)}")
    print(
        f"{setting}: median {median:.2f}x (target <= {target_median}x), worst {worst:.2f}x "
        f"(target <= {target_worst}x) -> {'PASS' if ok else 'MISS'}"
    )
    floors = [row["floor"] for row in rows if row.get("floor")]
    if floors:
        above = [row["layer"] for row in rows if row.get("floor") and row["floor"] > target_median]
        print(
            f"{setting}: the static convolution plus one read of the bases and one pooling of the input "
            f"(floor) gives median {statistics.median(floors):.2f}x, "
            f"worst {max(floors):.2f}x; above the median target on {len(above)} of {len(rows)} layers"
        )
    return ok


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a smaller training batch")
    parser.add_argument("--num-bases", type=int, default=4)
    parser.add_argument("--only", choices=("inference", "training"))
    parser.add_argument("--channels-last", action="store_true", help="NHWC layers and inputs on both sides")
    args = parser.parse_args(argv)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    allocator = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print(f"allocator settings: {allocator or 'glibc defaults'}")
    plan = {"inference": (1, 10 if args.quick else 50), "training": (16 if args.quick else 64, 2 if args.quick else 5)}
    ok = True
    for setting, (batch, repeats) in plan.items():
        if args.only and setting != args.only:
            continue
        print(
            f"DynamicConv2d vs nn.Conv2d, {setting}, batch {batch}, num_bases {args.num_bases}, "
            f"{'channels-last' if args.channels_last else 'contiguous'}, {torch.get_num_threads()} threads"
        )
        rows = measure(setting, batch, repeats, args.num_bases, ALL_SHAPES, memory_format)
        ok &= summarize(setting, rows)
    return ok


if __name__ == "__main__":
    main()
