"""``dynsweep sweep run|worker|status|export|replay``: the logic behind the thin parser in
:mod:`dynsweep.cli`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from dynsweep.sweep.config import SweepConfigError, load_config
from dynsweep.sweep.driver import SweepError, default_storage_url, load_study, run_sweep, run_worker


def locate(args: argparse.Namespace) -> tuple[str, str]:
    """Storage URL and study name from --storage/--study, or the defaults of a spec file."""
    if getattr(args, "spec", None):
        config = load_config(args.spec)
        return args.storage or default_storage_url(config, Path(args.runs_dir)), args.study or config.name
    if not args.storage or not args.study:
        raise SweepError("give a SPEC file, or both --storage URL and --study NAME")
    return args.storage, args.study


def main(args: argparse.Namespace) -> int:
    prog = f"dynsweep sweep {args.sweep_command}"
    try:
        return COMMANDS[args.sweep_command](args)
    except (SweepConfigError, SweepError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 1


def cmd_run(args: argparse.Namespace) -> int:
    from dynsweep.sweep.report import status_text

    if args.workers < 1 or (args.n_trials is not None and args.n_trials < 1):
        raise SweepError("--workers and --n-trials must be >= 1")
    config = load_config(args.spec)
    start = time.time()
    study = run_sweep(config, args.storage, args.study, args.n_trials, args.workers, Path(args.runs_dir))
    print(f"sweep {study.study_name}: {time.time() - start:.0f} s")
    print(status_text(study, config, table=args.table))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    study, config = load_study(*locate(args))
    run_worker(study, config, Path(args.runs_dir), lambda line: print(f"[worker] {line}", flush=True))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from dynsweep.sweep.report import status_text

    study, config = load_study(*locate(args))
    print(status_text(study, config))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from dynsweep.sweep.report import export_csv

    study, _ = load_study(*locate(args))
    rows = export_csv(study, sys.stdout if args.output == "-" else args.output)
    if args.output != "-":
        print(f"wrote {rows} trials to {args.output}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    study, _ = load_study(*locate(args))
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == args.trial]
    if not trials or "child_params" not in trials[0].user_attrs:
        raise SweepError(f"trial {args.trial} of {study.study_name} has no recorded training params")
    trial = trials[0]
    out = Path(args.runs_dir) / study.study_name / f"replay_{trial.number:04d}_{int(time.time())}"
    out.mkdir(parents=True)
    (out / "params.json").write_text(json.dumps(trial.user_attrs["child_params"], indent=2))
    print(f"replaying trial {trial.number} (seed {trial.user_attrs['seed']}) in {out}")
    code = subprocess.call([sys.executable, "-m", "dynsweep.sweep.child", str(out)])
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
    if code != 0:
        print(f"replay failed: {metrics.get('error', f'exit status {code}')}", file=sys.stderr)
        return 1
    recorded = trial.values[0] if trial.values else None
    print(f"val_acc1 {metrics['val_acc1']:.4f} (recorded: {recorded})")
    return 0


COMMANDS = {
    "run": cmd_run,
    "worker": cmd_worker,
    "status": cmd_status,
    "export": cmd_export,
    "replay": cmd_replay,
}
