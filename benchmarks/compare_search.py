"""``make bench-search``: multi-objective searches compared on recorded learning curves, no training.

Every method searches the quickstart's space (:mod:`benchmarks.simulate_search`) ``--repeats``
times with ``--workers`` workers: random search, NSGA-II at its full trial budget, TPE (all
three train every trial to the end), NSGA-II with the dominance rule of
:mod:`dynsweep.sweep.pruning`, Syne Tune's MOASHA (:mod:`benchmarks.syne_tune_peer`; as shipped
and with its ranks fixed) and our MOASHA (:mod:`dynsweep.sweep.moasha`) with random, NSGA-II and
TPE proposals. Every method but NSGA-II at full budget gets the compute NSGA-II at full budget
spent (median). Prints, per method, the hypervolume regret at fractions of that compute (median
and interquartile range), the compute each needs to come within 5% of the true front's
hypervolume, and the targets; ``--plot`` writes regret against compute.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import optuna

from benchmarks.simulate_search import DEFAULT_SPEC, DEFAULT_TABLE, CurveTable, Method, Run, simulate
from dynsweep.sweep.config import load_config
from dynsweep.sweep.moasha import RungSchedule

FRACTIONS = (1 / 9, 1 / 3, 1.0)
WITHIN = 0.05  # "within 5% of the true front's hypervolume": regret <= 0.05


def _nsga2(population: int):
    return lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=population)


def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed)


def _random(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def methods(full_trials: int, population: int, schedule: RungSchedule) -> list[Method]:
    """The Optuna-side methods (Syne Tune's are run by :mod:`benchmarks.syne_tune_peer`)."""
    return [
        Method("random", _random),
        Method(f"nsga2 ({full_trials} trials)", _nsga2(population), n_trials=full_trials),
        Method("tpe", _tpe),
        Method("nsga2 + dominance rule", _nsga2(population), stopping="dominance"),
        Method("moasha + random", _random, stopping="moasha", schedule=schedule),
        Method("moasha + nsga2", _nsga2(population), stopping="moasha", schedule=schedule),
        Method("moasha + tpe", _tpe, stopping="moasha", schedule=schedule),
    ]


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    # "nearest": a compute some runs never reach is inf, which interpolation would turn into nan
    q1, median, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75], method="nearest")
    return float(median), float(q1), float(q3)


def fmt(values: Sequence[float], scale: float = 1.0, digits: int = 3) -> str:
    """``median [q1, q3]``; a compute that some runs never reached shows as inf."""
    median, q1, q3 = quartiles(values)
    show = lambda v: "inf" if math.isinf(v) else f"{v / scale:.{digits}f}"  # noqa: E731
    return f"{show(median)} [{show(q1)}, {show(q3)}]"


def table_rows(runs: dict[str, list[Run]], budget: float, unit: float) -> list[list[str]]:
    rows = []
    for name, group in runs.items():
        row = [name]
        row += [fmt([r.regret_at(f * budget) for r in group]) for f in FRACTIONS]
        reached = [r.compute_to(WITHIN) for r in group]
        row.append(fmt(reached, unit, 1) + ("" if all(map(math.isfinite, reached)) else f" ({sum(map(math.isfinite, reached))}/{len(group)} reach it)"))
        row.append(f"{np.median([r.trials for r in group]):.0f}")
        row.append(f"{np.median([r.pruned for r in group]):.0f}")
        rows.append(row)
    return rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def plot(runs: dict[str, list[Run]], budget: float, unit: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, budget, 200)
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, group in runs.items():
        curves = np.array([[r.regret_at(c) for c in grid] for r in group])
        q1, median, q3 = np.percentile(curves, [25, 50, 75], axis=0)
        (line,) = ax.plot(grid / unit, median, label=name, linestyle="--" if "moasha" not in name else "-")
        ax.fill_between(grid / unit, q1, q3, color=line.get_color(), alpha=0.12)
    ax.axhline(WITHIN, color="grey", linewidth=0.8, linestyle=":")
    ax.set_yscale("log")
    ax.set_ylim(5e-3, 1.05)
    ax.set_xlabel("compute (full trainings of a mean point; summed epoch-seconds)")
    ax.set_ylabel("hypervolume regret (fraction of the true front's)")
    ax.set_title("Regret against compute: median and interquartile range")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--full-trials", type=int, default=36, help="NSGA-II's trial budget at full budget")
    parser.add_argument("--population", type=int, default=6, help="NSGA-II's population (the quickstart's)")
    parser.add_argument("--min-epochs", type=int, default=1)
    parser.add_argument("--reduction-factor", type=int, default=3)
    parser.add_argument("--max-trials", type=int, default=300, help="trials asked at most by a compute-budgeted run")
    parser.add_argument("--only", nargs="*", help="run only these methods (names as printed)")
    parser.add_argument("--no-syne-tune", action="store_true", help="skip the peer (syne-tune not installed)")
    parser.add_argument("--plot", type=Path, help="write regret against compute here (PNG)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    table = CurveTable.load(args.table)
    config = load_config(args.spec)
    unit = table.full_training_seconds()
    schedule = RungSchedule(args.min_epochs, args.reduction_factor)
    seeds = range(args.repeats)
    start = time.time()
    all_methods = methods(args.full_trials, args.population, schedule)
    full, others = all_methods[1], [m for i, m in enumerate(all_methods) if i != 1]
    runs: dict[str, list[Run]] = {full.name: [simulate(table, config, full, s, args.workers) for s in seeds]}
    budget = float(np.median([r.total_compute for r in runs[full.name]]))
    for method in others:
        if args.only and method.name not in args.only:
            continue
        runs[method.name] = [simulate(table, config, method, s, args.workers, budget, args.max_trials) for s in seeds]
    if not args.no_syne_tune:
        from benchmarks.syne_tune_peer import simulate_syne_tune

        for ranked in (False, True):
            name = "syne_tune_moasha_ranked" if ranked else "syne_tune_moasha"
            if args.only and name not in args.only:
                continue
            runs[name] = [
                simulate_syne_tune(table, config, s, args.workers, budget, ranked, args.min_epochs, args.reduction_factor)
                for s in seeds
            ]
    seconds = time.time() - start

    points = len(table.points)
    print(
        f"{points} points, {table.epochs} epochs, {table.points[0].curves.shape[0]} seeds; {args.repeats} repeats, "
        f"{args.workers} workers; compute unit: one full training of a mean point = {unit:.0f} epoch-seconds; "
        f"budget = the median compute of NSGA-II at {args.full_trials} trials = {budget / unit:.1f} units; "
        f"rungs at {schedule.rungs(table.epochs)} epochs; {seconds:.0f} s"
    )
    header = ["method"] + [f"regret at {f:.2g} budget" for f in FRACTIONS] + [
        f"compute to regret <= {WITHIN:g} (units)",
        "trials",
        "stopped",
    ]
    print(markdown(header, table_rows(runs, budget, unit)))

    nsga_final = float(np.median([r.regret[-1] if r.regret else 1.0 for r in runs[full.name]]))
    print(f"\nNSGA-II at {args.full_trials} trials: median final regret {nsga_final:.3f} at {budget / unit:.1f} units")
    for name, group in runs.items():
        if "moasha" not in name:
            continue
        reach = np.median([r.compute_to(nsga_final) for r in group])
        print(
            f"{name}: reaches that regret at {reach / unit:.1f} units (median), "
            f"{reach / budget:.2f} of NSGA-II's compute (target <= 0.33)"
        )
    if args.plot:
        plot(runs, budget, unit, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
