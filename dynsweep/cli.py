"""The ``dynsweep`` command (also ``python -m dynsweep``): one subcommand per workflow step.

Each subcommand adds its parser in an ``add_<command>(subparsers)`` function and runs in a
``run_<command>(args) -> int`` function; :func:`main` only dispatches.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import dynsweep


def add_models(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list every model and preset with its parameters and MACs",
        description="List registered models and presets with parameters and MACs (dynsweep.cost.count, "
        "inference form at batch 1); presets also show their MACs over their baseline's.",
    )
    parser.add_argument(
        "--input-size", type=int, nargs="+", default=[224], metavar="PIXELS", help="H, or H W (default: 224)"
    )
    parser.add_argument("--filter", default="*", metavar="GLOB", help="only names matching this glob")
    parser.add_argument(
        "--small-input", action="store_true", help="build with the small-input stem (28-64 px)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run_models)


def model_rows(
    pattern: str, input_size: tuple[int, int, int], small_input: bool = False
) -> list[dict[str, Any]]:
    """One row per registered model matching ``pattern``: each architecture, then its presets."""
    from dynsweep.cost import count
    from dynsweep.models import build_model, get_model_entry, list_models

    def measure(name: str) -> tuple[int, int]:
        report = count(build_model(name, small_input=small_input), input_size)
        return report.params, report.macs

    names = list_models(pattern)
    entries = [get_model_entry(name) for name in names]
    order = sorted(entries, key=lambda e: (e.baseline or e.name, e.is_preset, e.name))
    baselines: dict[str, int] = {}
    rows = []
    for entry in order:
        params, macs = measure(entry.name)
        if not entry.is_preset:
            baselines[entry.name] = macs
        ratio = None
        if entry.is_preset:
            if entry.baseline not in baselines:
                baselines[entry.baseline] = measure(entry.baseline)[1]
            ratio = macs / baselines[entry.baseline]
        rows.append(
            dict(
                name=entry.name,
                baseline=entry.baseline,
                params=params,
                macs=macs,
                macs_ratio=ratio,
                input_size=list(input_size),
                description=entry.doc,
            )
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    header = f"{'name':<24} {'baseline':<20} {'params':>8} {'MMACs':>9} {'ratio':>6}  description"
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = "" if row["macs_ratio"] is None else f"{row['macs_ratio']:.3f}"
        lines.append(
            f"{row['name']:<24} {row['baseline'] or '':<20} {row['params'] / 1e6:>7.2f}M "
            f"{row['macs'] / 1e6:>9.1f} {ratio:>6}  {row['description']}"
        )
    return "\n".join(lines)


def run_models(args: argparse.Namespace) -> int:
    if len(args.input_size) not in (1, 2) or min(args.input_size) < 1:
        print("dynsweep models: --input-size takes H or H W, positive", file=sys.stderr)
        return 2
    height, width = args.input_size if len(args.input_size) == 2 else args.input_size * 2
    rows = model_rows(args.filter, (3, height, width), args.small_input)
    if not rows:
        print(f"dynsweep models: no model matches {args.filter!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"MACs at {height} x {width}, batch 1, inference form (fused kernels)")
        print(format_table(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynsweep", description=dynsweep.__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {dynsweep.__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_models(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
