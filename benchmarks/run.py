"""`make bench`: every benchmark in one run. Prints ratios measured side by side.

The operator benchmark (DynamicConv2d against nn.Conv2d), then the presets per runtime (eager
PyTorch and ONNX Runtime; ``--compile`` adds torch.compile): baseline, Dy, Fix, the bound
baseline / (Fix + one read of the bases) and the fraction of it reached.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import model_latency, operator_speed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller training batch")
    parser.add_argument("--inference-only", action="store_true", help="skip the operator training step")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    operator_speed.main(["--quick"] * args.quick + ["--only", "inference"] * args.inference_only)
    runtimes = ["eager", "onnxruntime", *(["compile"] if args.compile else [])]
    model_latency.main(["--repeats", "10" if args.quick else "30", "--runtimes", *runtimes])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
