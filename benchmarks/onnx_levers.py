"""What each lever gives a Dy preset in ONNX Runtime (CPU, batch 1): variants of the exported graph
and of the session, timed interleaved in one process with the baseline and the static twin.

Variants of the Dy model (each a graph file and a session):

- ``einsum``: the kernel fusion exported as ``einsum("bok,okc->boc")`` (the form before the
  export used a MatMul); ONNX Runtime's Einsum transposes the bases on every call;
- ``matmul``: the portable graph ``dynsweep export`` writes (fusion as one MatMul per layer);
- ``blocked_matmul``: :func:`dynsweep.latency.block_dynamic_convolutions` with ``fusion="matmul"``
  (the dynamic Convs on ONNX Runtime's blocked path, fused by MatMul + Transpose);
- ``blocked_depthwise``: the fusion as one blocked depthwise Conv per layer, the coefficients
  reordered per layer (Pad, Reshape, Transpose);
- ``blocked_reordered``: the predictors' last Gemm emits the coefficients in that order;
- ``blocked``: also the predictors' pooling as GlobalAveragePool on the blocked tensor (the
  rewrite's default: what the ``onnxruntime`` runtime of ``dynsweep.latency`` runs);
- ``blocked_pointwise``: also the Gemms after a global pooling (predictors, classifier) as 1 x 1
  Convs on the pooled tensor;
- ``blocked_spinning``: ``blocked`` with ONNX Runtime's pool threads spinning between calls
  (its default; ``dynsweep.latency`` turns it off so that interleaved runtimes do not compete);
- ``blocked_extended``: ``blocked`` loaded at optimisation level ``extended`` instead of ``all``.

The baseline and Fix run at level ``all`` (and ``*_extended``: without ONNX Runtime's blocked layout).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import torchvision

from benchmarks.model_latency import PAIRS
from dynsweep.latency import block_dynamic_convolutions, interleaved, onnxruntime_session
from dynsweep.latency.measure import example_input
from dynsweep.models import build_model
from dynsweep.nn import dynamic_conv
from dynsweep.nn.export import to_onnx


@contextlib.contextmanager
def einsum_fusion() -> Iterator[None]:
    """Export the fusion as the einsum it was before (replaces a private function of our own)."""
    original = dynamic_conv._fuse_by_matmul

    def by_einsum(coefficients: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bok,okc->boc", coefficients, bases)

    dynamic_conv._fuse_by_matmul = by_einsum
    try:
        yield
    finally:
        dynamic_conv._fuse_by_matmul = original


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="dy_resnet18", choices=[p.preset for p in PAIRS])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    pair = next(p for p in PAIRS if p.preset == args.preset)
    torch.manual_seed(0)
    x = example_input((1, 3, args.size, args.size), "cpu")
    models = {
        "baseline": getattr(torchvision.models, pair.baseline)(weights=None),
        "static_twin": build_model(pair.static_twin),
        "dynamic": build_model(pair.preset),
    }
    with tempfile.TemporaryDirectory(prefix="dynsweep-levers-") as work:
        files = {name: Path(work, f"{name}.onnx") for name in (*models, "einsum")}
        for name, model in models.items():
            to_onnx(model, x, files[name])
        with einsum_fusion():
            to_onnx(models["dynamic"], x, files["einsum"])
        variants = {
            "blocked_matmul": dict(fusion="matmul"),
            "blocked_depthwise": dict(reorder_predictors=False, global_pooling=False),
            "blocked_reordered": dict(global_pooling=False),
            "blocked": {},
            "blocked_pointwise": dict(pointwise_predictors=True),
        }
        for name, options in variants.items():
            files[name] = Path(work, f"{name}.onnx")
            block_dynamic_convolutions(files["dynamic"], files[name], **options)
        sessions = {
            "baseline": onnxruntime_session(files["baseline"], args.threads),
            "baseline_extended": onnxruntime_session(files["baseline"], args.threads, level="extended"),
            "static_twin": onnxruntime_session(files["static_twin"], args.threads),
            "static_twin_extended": onnxruntime_session(files["static_twin"], args.threads, level="extended"),
            "einsum": onnxruntime_session(files["einsum"], args.threads),
            "matmul": onnxruntime_session(files["dynamic"], args.threads),
            **{name: onnxruntime_session(files[name], args.threads) for name in variants},
            "blocked_spinning": onnxruntime_session(files["blocked"], args.threads, spinning=True),
            "blocked_extended": onnxruntime_session(files["blocked"], args.threads, level="extended"),
        }
        feed = {"input": x.numpy()}
        calls = {name: (lambda s=session: s.run(None, feed)) for name, session in sessions.items()}
        samples = interleaved(calls, args.repeats, warmup=3)
    ms = {name: statistics.median(values) * 1e3 for name, values in samples.items()}
    twin = samples["static_twin"]
    print(
        f"{pair.preset} in ONNX Runtime, {args.threads} threads, batch 1, "
        f"{args.size}x{args.size}, all sessions interleaved, median of {args.repeats} (ms [quartiles]; speed-up = "
        f"baseline / it; / Fix: median of the round-by-round ratio to the static twin)"
    )
    for name, value in ms.items():
        q1, _, q3 = statistics.quantiles([v * 1e3 for v in samples[name]], n=4, method="inclusive")
        to_twin = statistics.median(a / b for a, b in zip(samples[name], twin))
        print(
            f"  {name:22s} {value:8.2f} ms [{q1:7.2f}-{q3:7.2f}]  {ms['baseline'] / value:5.2f}x  / Fix {to_twin:5.2f}"
        )


if __name__ == "__main__":
    main()
