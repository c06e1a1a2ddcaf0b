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


def add_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        add_help=False,  # --help is LightningCLI's, with every model, data and trainer option
        help="train a task with Lightning's LightningCLI (YAML configs, --print_config, --help)",
        description="Train through LightningCLI: dynsweep train [--task classification|segmentation] "
        "[--config FILE] [--model.* ...] [--data ...] [--trainer.* ...] [--seed N] [--ckpt_path FILE]",
    )
    parser.set_defaults(run=run_train, forward_rest=True)


def run_train(args: argparse.Namespace) -> int:
    from dynsweep.tasks import CheckpointMismatchError
    from dynsweep.train import TrainConfigError, train

    try:
        return train(args.rest)
    except (CheckpointMismatchError, FileNotFoundError, TrainConfigError) as error:
        print(f"dynsweep train: {error}", file=sys.stderr)
        return 1


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a dict, each value read as YAML (``3`` is an int, ``a`` a string)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--data takes KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="validation metrics of a checkpoint on its data",
        description="Run the validation loop of a dynsweep checkpoint on the data it was trained on "
        "(saved in the checkpoint by dynsweep train; the task's default data otherwise).",
    )
    parser.add_argument("checkpoint", metavar="CKPT")
    parser.add_argument(
        "--data", action="append", default=[], metavar="KEY=VALUE", help="override a data module argument"
    )
    parser.add_argument("--data-class", metavar="CLASS", help="another data module (e.g. CIFARDataModule)")
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator (default: cpu)")
    parser.add_argument(
        "--limit-batches", type=float, default=1.0, help="fraction (<= 1.0) or number of validation batches"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from dynsweep.checkpoints import evaluate, load_data, load_task
    from dynsweep.tasks import CheckpointMismatchError

    limit = int(args.limit_batches) if args.limit_batches > 1 else args.limit_batches
    try:
        task = load_task(args.checkpoint)
        data = load_data(args.checkpoint, args.data_class, parse_overrides(args.data))
        metrics = evaluate(task, data, args.accelerator, limit)
    except (CheckpointMismatchError, FileNotFoundError, ValueError) as error:
        print(f"dynsweep evaluate: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{args.checkpoint} on {type(data).__name__}")
        for key, value in metrics.items():
            print(f"{key:<16} {value:.4f}")
    return 0


def add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint's fused inference graph to ONNX",
        description="Fold BatchNorm into the convolutions of a checkpoint's model, export it with "
        "torch.onnx.export(dynamo=True) and check the file against PyTorch with onnxruntime.",
    )
    parser.add_argument("checkpoint", metavar="CKPT")
    parser.add_argument("--onnx", required=True, metavar="FILE", help="the ONNX file to write")
    parser.add_argument("--batch-size", type=int, default=1, help="the exported batch size (default: 1)")
    parser.add_argument(
        "--dynamic-batch",
        action="store_true",
        help="symbolic batch dimension (dynamic layers then run in the feature form)",
    )
    parser.add_argument(
        "--tolerance", type=float, default=1e-4, help="largest max abs difference, relative to max |y| when that exceeds 1, else absolute"
    )
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from dynsweep.checkpoints import export_onnx, load_task, onnx_difference
    from dynsweep.tasks import CheckpointMismatchError

    if args.batch_size < 1:
        print("dynsweep export: --batch-size must be >= 1", file=sys.stderr)
        return 2
    try:
        task = load_task(args.checkpoint)
    except (CheckpointMismatchError, FileNotFoundError) as error:
        print(f"dynsweep export: {error}", file=sys.stderr)
        return 1
    try:
        example = export_onnx(task, args.onnx, args.batch_size, args.dynamic_batch)
    except Exception as error:  # noqa: BLE001 - the exporter raises many types; one clear line
        print(f"dynsweep export: could not export {args.checkpoint} to ONNX: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.onnx} (input {list(example.shape)}{', dynamic batch' if args.dynamic_batch else ''})")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("dynsweep export: not verified, onnxruntime is not installed", file=sys.stderr)
        return 0
    inputs = [example]
    if args.dynamic_batch:
        inputs += [random_batch(example, 1), random_batch(example, example.shape[0] + 1)]
    worst = 0.0
    for x in inputs:
        difference, scale = onnx_difference(task, args.onnx, x)
        print(f"onnxruntime vs PyTorch at batch {x.shape[0]}: max abs difference {difference:.3g}")
        worst = max(worst, difference / max(scale, 1.0))
    if worst > args.tolerance:
        print(
            f"dynsweep export: the ONNX graph differs from PyTorch ({worst:.3g} > {args.tolerance})",
            file=sys.stderr,
        )
        return 1
    return 0


def random_batch(example: Any, batch: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(1)
    return torch.randn(batch, *example.shape[1:], generator=generator)


def add_sweep(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="Optuna accuracy-versus-MACs sweeps: run, worker, status, export, replay, pareto",
        description="Pareto sweeps of the DynamicSpec from a sweeps/*.yaml spec (dynsweep.sweep).",
    )
    commands = parser.add_subparsers(dest="sweep_command", required=True, metavar="SWEEP_COMMAND")

    def where(p: argparse.ArgumentParser, spec: bool) -> None:
        if spec:
            p.add_argument(
                "spec", nargs="?", metavar="SPEC", help="the sweep spec (gives the default storage and study)"
            )
        p.add_argument(
            "--storage",
            metavar="URL",
            help="sqlite:///..., postgresql://..., journal:FILE (default: sqlite:///RUNS_DIR/<name>.db)",
        )
        p.add_argument("--study", metavar="NAME", help="study name (default: the spec's name)")
        p.add_argument("--runs-dir", default="runs", metavar="DIR", help="trial directories (default: runs)")

    run = commands.add_parser("run", help="create or resume a study and run it to its trial budget")
    run.add_argument("spec", metavar="SPEC")
    where(run, spec=False)
    run.add_argument(
        "--n-trials", type=int, metavar="N", help="study-wide trial budget (default: the spec's)"
    )
    run.add_argument("--no-table", dest="table", action="store_false", help="do not print the Pareto table")
    run.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default: 1)")
    worker = commands.add_parser("worker", help="join a running study from another process or machine")
    where(worker, spec=False)
    status = commands.add_parser("status", help="trials done / budget, failures and the Pareto table")
    where(status, spec=True)
    export = commands.add_parser("export", help="every trial as CSV (study.trials_dataframe)")
    where(export, spec=True)
    export.add_argument("--output", "-o", default="-", metavar="FILE", help="CSV file (default: stdout)")
    replay = commands.add_parser(
        "replay", help="retrain one trial exactly, from its recorded params and seed"
    )
    replay.add_argument("trial", type=int, metavar="TRIAL")
    where(replay, spec=True)
    pareto = commands.add_parser(
        "pareto",
        help="figures (PNG, SVG), the front as CSV and a Markdown table; works while the study runs",
    )
    where(pareto, spec=True)
    pareto.add_argument(
        "--out", metavar="DIR", help="where to write (default: RUNS_DIR/<study>/pareto)"
    )
    pareto.add_argument(
        "--reference-point",
        nargs="+",
        metavar="NAME=VALUE",
        help="store the hypervolume reference point in the study, one value per objective "
        "(e.g. val_acc1=0 macs=5e6); a study keeps one point for its life",
    )
    parser.set_defaults(run=run_sweep)


def run_sweep(args: argparse.Namespace) -> int:
    if args.sweep_command == "pareto":  # the analysis reads studies: it sits above dynsweep.sweep
        from dynsweep.analysis import report

        return report.main(args)
    from dynsweep.sweep import cli as sweep_cli

    return sweep_cli.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynsweep", description=dynsweep.__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {dynsweep.__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_models(subparsers)
    add_train(subparsers)
    add_evaluate(subparsers)
    add_export(subparsers)
    add_sweep(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "forward_rest", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    return args.run(args)
