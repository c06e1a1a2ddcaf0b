"""Repeatability of ``dynsweep.latency.measure``: the same pair measured in separate processes.

Each of ``--processes`` fresh Python processes (one after the other) builds Dy-ResNet18 and its
reference ResNet18 and measures them interleaved (``measure(..., reference=...)``) in each
runtime. Printed per runtime: each process's absolute median and ratio, and across processes
the spread ``(max - min) / median`` of the ratio and of the absolute median. Target: the ratio's
spread within 10% of its median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ONE_PROCESS = """
import json, sys, torch, torchvision
from dynsweep.latency import measure
from dynsweep.models import build_model
torch.manual_seed(0)
model, reference = build_model({model!r}), getattr(torchvision.models, {reference!r})(weights=None)
for runtime in {runtimes!r}:
    report = measure(model, (3, {size}, {size}), runtime=runtime, threads={threads}, repeats={repeats}, reference=reference)
    print(json.dumps(report.to_dict()), flush=True)
"""


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--model", default="dy_resnet18")
    parser.add_argument("--reference", default="resnet18")
    parser.add_argument("--runtimes", nargs="+", default=["eager", "onnxruntime"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    code = textwrap.dedent(ONE_PROCESS).format(**vars(args))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    reports: dict[str, list[dict]] = {runtime: [] for runtime in args.runtimes}
    print(
        f"{args.model} / {args.reference}, batch 1, {args.size}x{args.size}, {args.threads} threads, "
        f"{args.repeats} interleaved rounds per process, {args.processes} processes"
    )
    for number in range(args.processes):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("{"):
                report = json.loads(line)
                reports[report["runtime"]].append(report)
                print(
                    f"  process {number + 1} {report['runtime']:11s} {report['median_ms']:8.2f} ms "
                    f"[{report['q1_ms']:.2f}-{report['q3_ms']:.2f}]  reference {report['reference_median_ms']:8.2f} ms  "
                    f"ratio {report['ratio']:.3f} [{report['ratio_q1']:.3f}-{report['ratio_q3']:.3f}]",
                    flush=True,
                )
    summary = {}
    for runtime, rows in reports.items():
        ratios, times = [r["ratio"] for r in rows], [r["median_ms"] for r in rows]
        summary[runtime] = dict(
            ratio_median=statistics.median(ratios),
            ratio_spread=spread(ratios),
            ms_median=statistics.median(times),
            ms_spread=spread(times),
        )
        verdict = "PASS" if summary[runtime]["ratio_spread"] <= 0.10 else "MISS"
        print(
            f"{runtime:11s} ratio median {summary[runtime]['ratio_median']:.3f}, spread "
            f"{summary[runtime]['ratio_spread']:.1%} (target <= 10%: {verdict}); absolute median "
            f"{summary[runtime]['ms_median']:.2f} ms, spread {summary[runtime]['ms_spread']:.1%}"
        )
    return summary


if __name__ == "__main__":
    main()
