"""`make bench`: every benchmark in one run. Prints ratios measured side by side."""

from __future__ import annotations

import argparse
import sys

from benchmarks import model_latency, operator_speed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller training batch")
    parser.add_argument("--inference-only", action="store_true", help="skip the operator training step")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    operator_speed.main(["--quick"] * args.quick + ["--only", "inference"] * args.inference_only)
    repeats = ["--repeats", "10" if args.quick else "30"]
    model_latency.main(repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
