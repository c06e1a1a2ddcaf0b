"""The ``dynsweep`` command (also ``python -m dynsweep``).

Each command is one class that owns its arguments (``add_arguments``) and its action
(``take_action``), as in Optuna's ``cli.py``; :data:`COMMANDS` lists them, and :func:`main`
parses, runs the chosen one and catches dynsweep's errors in one place.

Exit status: 0 success, 1 an error (one line on stderr naming what is wrong), 2 a usage error,
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dynsweep
from dynsweep.errors import DynsweepError, UsageError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CommandError(DynsweepError):
    """A command that cannot do what it was asked; the message says why."""


class Command:
    """One command: its name and help, its arguments, and its action (returns the exit status)."""

    name: str = ""
    help: str = ""
    description: str | None = None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add this command's arguments to its parser."""

    def take_action(self, args: argparse.Namespace) -> int:
        raise NotImplementedError

    def prog(self, args: argparse.Namespace) -> str:
        return f"dynsweep {self.name}"


# ------------------------------------------------------------------------------------- models
class ModelsCommand(Command):
    name = "models"
    help = "list every model and preset with its parameters and MACs"
    description = (
        "List registered models and presets with parameters and MACs (dynsweep.cost.count, "
        "inference form at batch 1); presets also show their MACs over their baseline's."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--input-size", type=int, nargs="+", default=[224], metavar="PIXELS", help="H, or H W (default: 224)"
        )
        parser.add_argument("--filter", default="*", metavar="GLOB", help="only names matching this glob")
        parser.add_argument("--small-input", action="store_true", help="build with the small-input stem (28-64 px)")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        parser.add_argument(
            "--latency",
            action="store_true",
            help="measure each model's latency, presets interleaved with their baseline (dynsweep.latency)",
        )
        parser.add_argument(
            "--runtime", default="eager", help="with --latency: eager, compile, onnxruntime, cuda_graph"
        )
        parser.add_argument("--device", default="cpu", help="with --latency: cpu or cuda")
        parser.add_argument("--threads", type=int, help="with --latency: CPU threads (default: PyTorch's)")
        parser.add_argument("--repeats", type=int, default=30, help="with --latency: timed rounds (default: 30)")

    def take_action(self, args: argparse.Namespace) -> int:
        if len(args.input_size) not in (1, 2) or min(args.input_size) < 1:
            raise UsageError("--input-size takes H or H W, positive")
        height, width = args.input_size if len(args.input_size) == 2 else args.input_size * 2
        rows = model_rows(args.filter, (3, height, width), args.small_input)
        if not rows:
            raise CommandError(f"no model matches {args.filter!r}")
        if args.latency:
            from dynsweep.latency import LatencySettings, LatencySettingsError, add_latency

            try:
                settings = LatencySettings.from_dict(
                    {"device": args.device, "runtime": args.runtime, "threads": args.threads, "repeats": args.repeats},
                    where="--latency",
                )
            except LatencySettingsError as error:
                raise UsageError(str(error)) from None
            rows = add_latency(rows, settings, args.small_input)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"MACs at {height} x {width}, batch 1, inference form (fused kernels)")
            print(format_table(rows))
        return EXIT_OK


def model_rows(pattern: str, input_size: tuple[int, int, int], small_input: bool = False) -> list[dict[str, Any]]:
    """One row per registered model matching ``pattern``: each architecture, then its presets."""
    from dynsweep.cost import count
    from dynsweep.models import build_model, get_model_entry, list_models

    def measure(name: str) -> tuple[int, int]:
        report = count(build_model(name, small_input=small_input), input_size)
        return report.params, report.macs

    entries = [get_model_entry(name) for name in list_models(pattern)]
    order = sorted(entries, key=lambda e: (e.baseline or e.name, e.is_preset, e.name))
    baselines: dict[str, int] = {}
    rows = []
    for entry in order:
        params, macs = measure(entry.name)
        if not entry.is_preset:
            baselines[entry.name] = macs
        ratio = None
        if entry.is_preset:
            assert entry.baseline is not None  # a preset names its baseline
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
    timed = any("latency_ms" in row for row in rows)
    latency = f" {'latency [quartiles] / baseline':<32}" if timed else ""
    header = f"{'name':<24} {'baseline':<20} {'params':>8} {'MMACs':>9} {'ratio':>6}{latency}  description"
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = "" if row["macs_ratio"] is None else f"{row['macs_ratio']:.3f}"
        measured = ""
        if timed:
            from dynsweep.latency import format_latency

            measured = f" {format_latency(row):<32}"
        lines.append(
            f"{row['name']:<24} {row['baseline'] or '':<20} {row['params'] / 1e6:>7.2f}M "
            f"{row['macs'] / 1e6:>9.1f} {ratio:>6}{measured}  {row['description']}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------ train, evaluate, export
class TrainCommand(Command):
    name = "train"
    help = "train a task with Lightning's LightningCLI (YAML configs, --print_config, --help)"
    description = (
        "Train through LightningCLI: dynsweep train [--task classification|segmentation] "
        "[--config FILE] [--model.* ...] [--data ...] [--trainer.* ...] [--seed N] [--ckpt_path FILE]"
    )
    forwards_rest = True  # every argument is LightningCLI's, --help included

    def take_action(self, args: argparse.Namespace) -> int:
        from dynsweep.tasks import CheckpointMismatchError
        from dynsweep.train import TrainConfigError, train

        try:
            return train(args.rest)
        except (CheckpointMismatchError, FileNotFoundError, TrainConfigError) as error:
            raise CommandError(str(error)) from error


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a dict, each value read as YAML (``3`` is an int, ``a`` a string)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--data takes KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


class CheckpointCommand(Command):
    """A command on one checkpoint written by ``dynsweep train`` or a sweep trial."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("checkpoint", metavar="CKPT")
        self.add_options(parser)

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        """The command's options after the checkpoint."""

    @staticmethod
    def load(args: argparse.Namespace) -> Any:
        """The checkpoint's task; a missing file or another architecture is one CommandError line."""
        from dynsweep.checkpoints import load_task
        from dynsweep.tasks import CheckpointMismatchError

        try:
            return load_task(args.checkpoint)
        except (CheckpointMismatchError, FileNotFoundError) as error:
            raise CommandError(str(error)) from error


class EvaluateCommand(CheckpointCommand):
    name = "evaluate"
    help = "validation metrics of a checkpoint on its data"
    description = (
        "Run the validation loop of a dynsweep checkpoint on the data it was trained on "
        "(saved in the checkpoint by dynsweep train; the task's default data otherwise)."
    )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--data", action="append", default=[], metavar="KEY=VALUE", help="override a data module argument"
        )
        parser.add_argument("--data-class", metavar="CLASS", help="another data module (e.g. CIFARDataModule)")
        parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator (default: cpu)")
        parser.add_argument(
            "--limit-batches", type=float, default=1.0, help="fraction (<= 1.0) or number of validation batches"
        )
        parser.add_argument("--json", action="store_true", help="print JSON")

    def take_action(self, args: argparse.Namespace) -> int:
        from dynsweep.checkpoints import evaluate, load_data

        limit = int(args.limit_batches) if args.limit_batches > 1 else args.limit_batches
        task = self.load(args)
        try:
            data = load_data(args.checkpoint, args.data_class, parse_overrides(args.data))
            metrics = evaluate(task, data, args.accelerator, limit)
        except (FileNotFoundError, ValueError) as error:
            if isinstance(error, DynsweepError):
                raise
            raise CommandError(str(error)) from error
        if args.json:
            print(json.dumps(metrics, indent=2))
        else:
            print(f"{args.checkpoint} on {type(data).__name__}")
            for key, value in metrics.items():
                print(f"{key:<16} {value:.4f}")
        return EXIT_OK


class ExportCommand(CheckpointCommand):
    name = "export"
    help = "export a checkpoint's fused inference graph to ONNX"
    description = (
        "Fold BatchNorm into the convolutions of a checkpoint's model, export it with "
        "torch.onnx.export(dynamo=True) and check the file against PyTorch with onnxruntime."
    )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--onnx", required=True, metavar="FILE", help="the ONNX file to write")
        parser.add_argument("--batch-size", type=int, default=1, help="the exported batch size (default: 1)")
        parser.add_argument(
            "--dynamic-batch",
            action="store_true",
            help="symbolic batch dimension (dynamic layers then run in the feature form)",
        )
        parser.add_argument(
            "--tolerance",
            type=float,
            default=1e-4,
            help="largest max abs difference, relative to max |y| when that exceeds 1, else absolute",
        )

    def take_action(self, args: argparse.Namespace) -> int:
        from dynsweep.checkpoints import export_onnx, onnx_difference

        if args.batch_size < 1:
            raise UsageError("--batch-size must be >= 1")
        task = self.load(args)
        try:
            example = export_onnx(task, args.onnx, args.batch_size, args.dynamic_batch)
        except Exception as error:
            raise CommandError(f"could not export {args.checkpoint} to ONNX: {error}") from error
        batch = ", dynamic batch" if args.dynamic_batch else ""
        print(f"wrote {args.onnx} (input {list(example.shape)}{batch})")
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            print(
                f"{self.prog(args)}: not verified: onnxruntime comes with the onnx extra (pip install 'dynsweep[onnx]')",
                file=sys.stderr,
            )
            return EXIT_OK
        inputs = [example]
        if args.dynamic_batch:
            inputs += [random_batch(example, 1), random_batch(example, example.shape[0] + 1)]
        worst = 0.0
        for x in inputs:
            difference, scale = onnx_difference(task, args.onnx, x)
            print(f"onnxruntime vs PyTorch at batch {x.shape[0]}: max abs difference {difference:.3g}")
            worst = max(worst, difference / max(scale, 1.0))
        if worst > args.tolerance:
            raise CommandError(f"the ONNX graph differs from PyTorch ({worst:.3g} > {args.tolerance})")
        return EXIT_OK


def random_batch(example: Any, batch: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(1)
    return torch.randn(batch, *example.shape[1:], generator=generator)


# --------------------------------------------------------------------------------------- sweep
def add_study_location(parser: argparse.ArgumentParser, spec: bool) -> None:
    """``[SPEC] --storage URL --study NAME --runs-dir DIR``: where a sweep command finds its study."""
    if spec:
        parser.add_argument(
            "spec", nargs="?", metavar="SPEC", help="the sweep spec (gives the default storage and study)"
        )
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="sqlite:///..., postgresql://..., journal:FILE (default: sqlite:///RUNS_DIR/<name>.db)",
    )
    parser.add_argument("--study", metavar="NAME", help="study name (default: the spec's name)")
    parser.add_argument("--runs-dir", default="runs", metavar="DIR", help="trial directories (default: runs)")


def study_location(args: argparse.Namespace) -> tuple[str, str]:
    """Storage URL and study name from --storage/--study, or the defaults of a spec file."""
    from dynsweep.sweep import load_config
    from dynsweep.sweep.storage import default_url

    if getattr(args, "spec", None):
        config = load_config(args.spec)
        return args.storage or default_url(config.name, Path(args.runs_dir)), args.study or config.name
    if not args.storage or not args.study:
        raise UsageError("give a SPEC file, or both --storage URL and --study NAME")
    return args.storage, args.study


def add_devices(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--devices",
        metavar="IDS",
        help="device ids (e.g. 0,1,2,3) or all: one worker per group of --devices-per-trial, each trial "
        "training with CUDA_VISIBLE_DEVICES set to its group",
    )
    parser.add_argument(
        "--devices-per-trial", type=int, metavar="K", help="devices per trial (default: 1; K > 1 trains with DDP)"
    )


def device_groups_of(args: argparse.Namespace) -> list[list[str]] | None:
    from dynsweep.sweep.devices import device_groups, parse_devices

    return device_groups(parse_devices(args.devices), args.devices_per_trial, getattr(args, "workers", None))


class SweepCommand(Command):
    """A ``dynsweep sweep`` subcommand."""

    def prog(self, args: argparse.Namespace) -> str:
        return f"dynsweep sweep {self.name}"


class SweepRun(SweepCommand):
    name = "run"
    help = "create or resume a study and run it to its trial budget"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("spec", metavar="SPEC")
        add_study_location(parser, spec=False)
        parser.add_argument("--n-trials", type=int, metavar="N", help="study-wide trial budget (default: the spec's)")
        parser.add_argument("--no-table", dest="table", action="store_false", help="do not print the Pareto table")
        parser.add_argument(
            "--workers", type=int, metavar="N", help="worker processes (default: 1, or one per device group)"
        )
        add_devices(parser)

    def take_action(self, args: argparse.Namespace) -> int:
        from dynsweep.analysis.report import status_text
        from dynsweep.sweep import load_config, run_sweep

        if (args.workers is not None and args.workers < 1) or (args.n_trials is not None and args.n_trials < 1):
            raise UsageError("--workers and --n-trials must be >= 1")
        groups = device_groups_of(args)
        config = load_config(args.spec)
        start = time.time()
        study = run_sweep(
            config, args.storage, args.study, args.n_trials, args.workers or 1, Path(args.runs_dir), groups=groups
        )
        if config.repeats.front:
            from dynsweep import analysis
            from dynsweep.sweep.worker import run_front_repeats

            front = analysis.pareto_front(analysis.from_study(study))["number"].tolist()
            run_front_repeats(study, config, front, Path(args.runs_dir))
        print(f"sweep {study.study_name}: {time.time() - start:.0f} s")
        print(status_text(study, config, table=args.table))
        ran = [
            t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_start.timestamp() >= start
        ]
        if ran and all(t.state.name == "FAIL" for t in ran):
            raise CommandError(f"every trial of this run failed ({len(ran)}); their reasons are listed above")
        return EXIT_OK


class SweepWorker(SweepCommand):
    name = "worker"
    help = "join a running study from another process or machine"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_study_location(parser, spec=False)
        parser.add_argument(
            "--with-parent",
            action="store_true",
            help="end when the process that started this one ends (how sweep run --workers starts its workers)",
        )
        add_devices(parser)

    def take_action(self, args: argparse.Namespace) -> int:
        from dynsweep.sweep import load_study
        from dynsweep.sweep.parent import exit_with_parent
        from dynsweep.sweep.worker import run_workers

        if args.with_parent:
            exit_with_parent()
        groups = device_groups_of(args)
        url, name = study_location(args)
        study, config = load_study(url, name)
        run_workers(study, config, url, Path(args.runs_dir), worker_log, groups=groups)
        return EXIT_OK


def worker_log(line: str) -> None:
    print(f"[worker] {line}", flush=True)


class SweepStatus(SweepCommand):
    name = "status"
    help = "trials done / budget, failures and the Pareto table"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_study_location(parser, spec=True)

    def take_action(self, args: argparse.Namespace) -> int:
        from dynsweep.sweep import load_study

        study, config = load_study(*study_location(args))
        from dynsweep.analysis.report import status_text  # after the study opened: torch is slow to import

        print(status_text(study, config))
        return EXIT_OK


class SweepExport(SweepCommand):
    name = "export"
    help = "every trial as CSV (study.trials_dataframe)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_study_location(parser, spec=True)
        parser.add_argument("--output", "-o", default="-", metavar="FILE", help="CSV file (default: stdout)")

    def take_action(self, args: argparse.Namespace) -> int:
        from dynsweep.sweep import load_study

        study, _ = load_study(*study_location(args))
        frame = study.trials_dataframe(multi_index=False)
        frame.to_csv(sys.stdout if args.output == "-" else args.output, index=False)
        if args.output != "-":
            print(f"wrote {len(frame)} trials to {args.output}")
        return EXIT_OK


class SweepReplay(SweepCommand):
    name = "replay"
    help = "retrain one trial exactly, from its recorded params and seed"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("trial", type=int, metavar="TRIAL")
        add_study_location(parser, spec=True)

    def take_action(self, args: argparse.Namespace) -> int:
        from dynsweep.sweep import load_study
        from dynsweep.sweep.child import launch
        from dynsweep.sweep.record import TrialRecord

        study, _ = load_study(*study_location(args))
        trials = [t for t in study.get_trials(deepcopy=False) if t.number == args.trial]
        record = TrialRecord.of(trials[0]) if trials else None
        if record is None or record.child_params is None:
            raise CommandError(f"trial {args.trial} of {study.study_name} has no recorded training params")
        trial = trials[0]
        out = Path(args.runs_dir) / study.study_name / f"replay_{trial.number:04d}_{int(time.time())}"
        out.mkdir(parents=True)
        (out / "params.json").write_text(json.dumps(record.child_params, indent=2))
        print(f"replaying trial {trial.number} (seed {record.seed}) in {out} (its log: child.log)")
        code = launch(out).wait()
        metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
        if code != 0:
            raise CommandError(f"replay failed: {metrics.get('error', f'exit status {code}')}")
        recorded = trial.values[0] if trial.values else None
        print(f"val_acc1 {metrics['val_acc1']:.4f} (recorded: {recorded})")
        return EXIT_OK


class SweepPareto(SweepCommand):
    name = "pareto"
    help = "figures (PNG, SVG), the front as CSV and a Markdown table; works while the study runs"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_study_location(parser, spec=True)
        parser.add_argument("--out", metavar="DIR", help="where to write (default: RUNS_DIR/<study>/pareto)")
        parser.add_argument(
            "--reference-point",
            nargs="+",
            metavar="NAME=VALUE",
            help="store the hypervolume reference point in the study, one value per objective "
            "(e.g. val_acc1=0 macs=5e6); a study keeps one point for its life",
        )
        parser.add_argument(
            "--compare",
            nargs=2,
            action="append",
            default=[],
            metavar=("A", "B"),
            help="per architecture, A against B with each side's mean, 95%% interval, the difference "
            "and its p-value, into front.md and compare_A_B.csv; A and B: a kind (dy, fix, baseline, "
            "searched), a preset or an architecture (e.g. --compare dy fix --compare dy baseline)",
        )

    def take_action(self, args: argparse.Namespace) -> int:
        import matplotlib.pyplot as plt

        from dynsweep.analysis import read_study, set_reference_point, write_report
        from dynsweep.analysis.report import parse_point

        plt.switch_backend("Agg")  # files only: never open a window
        url, name = study_location(args)
        study = read_study(url, name)
        if args.reference_point:
            set_reference_point(study, parse_point(args.reference_point))
        out = Path(args.out) if args.out else Path(args.runs_dir) / name / "pareto"
        written = write_report(study, out, [tuple(pair) for pair in args.compare])
        print((out / "front.md").read_text())
        print(f"wrote {', '.join(sorted(written))} to {out}")
        return EXIT_OK


SWEEP_COMMANDS: list[Command] = [
    SweepRun(),
    SweepWorker(),
    SweepStatus(),
    SweepExport(),
    SweepReplay(),
    SweepPareto(),
]

COMMANDS: list[Command] = [ModelsCommand(), TrainCommand(), EvaluateCommand(), ExportCommand()]


# ---------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynsweep", description=dynsweep.__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {dynsweep.__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            add_help=not getattr(command, "forwards_rest", False),
        )
        command.add_arguments(sub)
        sub.set_defaults(command_object=command)
    sweep = subparsers.add_parser(
        "sweep",
        help="Optuna accuracy-versus-MACs sweeps: run, worker, status, export, replay, pareto",
        description="Pareto sweeps of the DynamicSpec from a sweeps/*.yaml spec (dynsweep.sweep).",
    )
    sweep_commands = sweep.add_subparsers(dest="sweep_command", required=True, metavar="SWEEP_COMMAND")
    for command in SWEEP_COMMANDS:
        sub = sweep_commands.add_parser(command.name, help=command.help, description=command.description)
        command.add_arguments(sub)
        sub.set_defaults(command_object=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every dynsweep error becomes one line on stderr and an exit status."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    command: Command = args.command_object
    if rest and not getattr(command, "forwards_rest", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    try:
        return command.take_action(args)
    except DynsweepError as error:
        print(f"{command.prog(args)}: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print(f"{command.prog(args)}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
