"""One-shot CUDA check of DynamicConv2d: exactness of every strategy, autocast, and timings.

Run on a GPU machine: ``python -m benchmarks.gpu_operator_check``. Prints a table of strategy
times (CUDA events, medians) for the benchmark layer shapes, at training batch 64 and inference
batch 1, relative to ``nn.Conv2d``. The results are recorded in docs/gpu.md.
"""

from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.layer_shapes import ALL_SHAPES
from dynsweep.nn import DynamicConv2d

STRATEGIES = ("feature", "grouped", "matmul")


def check_exactness(device: torch.device) -> None:
    torch.manual_seed(0)
    for groups, kernel, stride, dilation in [(1, 3, 1, 1), (2, (3, 5), (2, 1), (1, 2)), (8, 3, 2, 1), (1, 1, 1, 1)]:
        layer = DynamicConv2d(8, 16, kernel, stride, padding=1, dilation=dilation, groups=groups, bias=True)
        layer = layer.to(device, torch.float64)
        x = torch.randn(4, 8, 15, 13, device=device, dtype=torch.float64)
        eta = layer.coefficients(x)
        kernels, biases = layer.fused_weight(eta), layer.fused_bias(eta)
        expected = torch.cat(
            [
                F.conv2d(x[i : i + 1], kernels[i], biases[i], layer.stride, layer.padding, layer.dilation, groups)
                for i in range(4)
            ]
        )
        for strategy in STRATEGIES:
            layer.strategy = strategy
            error = (layer(x) - expected).abs().max().item()
            print(f"exact float64 groups={groups} kernel={kernel} {strategy:8s} max|diff|={error:.2e}")
            assert error < 1e-10
        with torch.autocast("cuda", dtype=torch.bfloat16):
            layer32 = layer.float()
            for strategy in STRATEGIES:
                layer32.strategy = strategy
                y = layer32(x.float())
                error = (y.double() - expected).abs().max().item()
                print(f"bf16 autocast {strategy:8s} out dtype {y.dtype} max|diff|={error:.3f}")
        layer.double()


def cuda_median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_strategies(device: torch.device, batch: int, training: bool, dtype: torch.dtype) -> None:
    setting = "training" if training else "inference"
    print(f"\n{setting}, batch {batch}, {dtype}: ms of nn.Conv2d, then ratio of each strategy")
    ratios: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    for shape in ALL_SHAPES:
        args = (shape.in_channels, shape.out_channels, shape.kernel_size, shape.stride, shape.padding)
        static = nn.Conv2d(*args, groups=shape.groups, bias=False).to(device)
        dynamic = DynamicConv2d(*args, groups=shape.groups, num_bases=4).to(device)
        x = torch.randn(batch, shape.in_channels, shape.input_size, shape.input_size, device=device)
        x.requires_grad_(training)

        def step(layer, x=x):
            def run():
                with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                    if training:
                        layer(x).float().sum().backward()
                    else:
                        with torch.no_grad():
                            layer(x)

            return run

        static.train(training)
        dynamic.train(training)
        base = cuda_median_ms(step(static), 20)
        row = f"{shape.name:22s} {base:7.3f} ms"
        for strategy in STRATEGIES:
            dynamic.strategy = strategy
            ratio = cuda_median_ms(step(dynamic), 20) / base
            ratios[strategy].append(ratio)
            row += f"  {strategy}={ratio:5.2f}"
        print(row, flush=True)
    print("medians: " + "  ".join(f"{s}={statistics.median(r):.2f}" for s, r in ratios.items()))
    best = [min(r) for r in zip(*ratios.values())]
    print(f"best-per-layer median {statistics.median(best):.2f}, worst {max(best):.2f}")


def main() -> None:
    device = torch.device("cuda")
    print(torch.__version__, torch.cuda.get_device_name())
    torch.backends.cudnn.benchmark = True
    check_exactness(device)
    for training, batch in ((False, 1), (True, 64)):
        for dtype in (torch.float32, torch.bfloat16):
            time_strategies(device, batch, training, dtype)


if __name__ == "__main__":
    main()
