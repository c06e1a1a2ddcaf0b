"""``make bench-search``: multi-objective searches compared on recorded learning curves, no training.

Every method searches the quickstart's space (:mod:`benchmarks.simulate_search`) ``--repeats``
times with ``--workers`` workers: random search, NSGA-II at a fixed trial budget ("full budget"),
TPE (the three train every trial to the end), NSGA-II with the dominance rule of
:mod:`dynsweep.sweep.pruning`, Syne Tune's MOASHA (:mod:`benchmarks.syne_tune_peer`; as shipped
and with its ranks fixed) and our MOASHA (:mod:`dynsweep.sweep.moasha`) with random, NSGA-II and
TPE proposals, for each ``--schedules`` entry. Every method but NSGA-II at full budget gets the
compute that NSGA-II at full budget spent (median). Prints, per method, the hypervolume regret at
fractions of that compute (median and interquartile range over repeats), the compute each needs
to come within 5% of the true front's hypervolume, the compute our MOASHA needs to reach
NSGA-II's final regret, and the same for 1 to 8 workers; ``--plot`` draws regret against compute.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna

from benchmarks.simulate_search import DEFAULT_SPEC, DEFAULT_TABLE, CurveTable, Method, Run, simulate
from dynsweep.sweep.config import load_config
from dynsweep.sweep.moasha import RungSchedule

FRACTIONS = (1 / 9, 1 / 3, 1.0)
WITHIN = 0.05  # "within 5% of the true front's hypervolume": regret <= 0.05
PEERS = ("syne_tune_moasha", "syne_tune_moasha_ranked")


def _random(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed)


@dataclass(frozen=True)
class _NSGA2:
    population: int

    def __call__(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=self.population)


def schedule_name(schedule: RungSchedule) -> str:
    return f"moasha {schedule.min_epochs}/{schedule.reduction_factor}"


def methods(full_trials: int, population: int, schedules: Sequence[RungSchedule]) -> list[Method]:
    """The Optuna-side methods; the first is NSGA-II at full budget, whose compute is the budget.
    NSGA-II pairs with the first schedule only (in this space it proposes as random search does)."""
    nsga2 = _NSGA2(population)
    found = [
        Method(f"nsga2, {full_trials} trials", nsga2, n_trials=full_trials),
        Method("random", _random),
        Method("tpe", _tpe),
        Method("nsga2 + dominance rule", nsga2, stopping="dominance"),
    ]
    for i, schedule in enumerate(schedules):
        name = schedule_name(schedule)
        found.append(Method(f"{name} + random", _random, stopping="moasha", schedule=schedule))
        if i == 0:
            found.append(Method(f"{name} + nsga2", nsga2, stopping="moasha", schedule=schedule))
        found.append(Method(f"{name} + tpe", _tpe, stopping="moasha", schedule=schedule))
    return found


@dataclass(frozen=True)
class Task:
    """One simulated search, in a form a worker process can take."""

    method: str
    seed: int
    workers: int
    budget: float


@dataclass(frozen=True)
class Setup:
    table: Path
    spec: Path
    reference: str
    full_trials: int
    population: int
    schedules: tuple[RungSchedule, ...]
    max_trials: int
    infeasible: str


def run_task(setup: Setup, task: Task) -> Run:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    table, config = CurveTable.load(setup.table, setup.reference), load_config(setup.spec)
    if task.method in PEERS:
        from benchmarks.syne_tune_peer import simulate_syne_tune

        first = setup.schedules[0]
        return simulate_syne_tune(
            table,
            config,
            task.seed,
            task.workers,
            task.budget,
            task.method.endswith("ranked"),
            first.min_epochs,
            first.reduction_factor,
        )
    method = next(m for m in methods(setup.full_trials, setup.population, setup.schedules) if m.name == task.method)
    run = simulate(table, config, method, task.seed, task.workers, task.budget, setup.max_trials, setup.infeasible)
    run.study = None  # not sent back between processes
    return run


def run_all(setup: Setup, tasks: list[Task], jobs: int) -> list[Run]:
    if jobs <= 1:
        return [run_task(setup, task) for task in tasks]
    # forkserver: a fork of this process, which holds PyTorch's and SQLAlchemy's threads, can deadlock
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("forkserver")) as pool:
        return list(pool.map(run_task, [setup] * len(tasks), tasks))


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    # "nearest": a compute some runs never reach is inf, which interpolation would turn into nan
    q1, median, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75], method="nearest")
    return float(median), float(q1), float(q3)


def median(values: Sequence[float]) -> float:
    return quartiles(values)[0]


def fmt(values: Sequence[float], scale: float = 1.0, digits: int = 3) -> str:
    """``median [q1, q3]``; a compute some runs never reached shows as never."""
    median, q1, q3 = quartiles(values)
    show = lambda v: "never" if math.isinf(v) else f"{v / scale:.{digits}f}"  # noqa: E731
    return f"{show(median)} [{show(q1)}, {show(q3)}]"


def reached(values: Sequence[float]) -> str:
    finite = sum(map(math.isfinite, values))
    return "" if finite == len(values) else f" ({finite}/{len(values)} runs)"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main_table(runs: dict[str, list[Run]], budget: float, unit: float, target: float) -> str:
    header = (
        ["method"]
        + [f"regret at {f:.2g} x budget" for f in FRACTIONS]
        + [f"compute to regret {WITHIN:g}", f"compute to regret {target:.3f}", "trials", "stopped", "cannot be built"]
    )
    rows = []
    for name, group in runs.items():
        to_within = [r.compute_to(WITHIN) for r in group]
        to_target = [r.compute_to(target) for r in group]
        rows.append(
            [name]
            + [fmt([r.regret_at(f * budget) for r in group]) for f in FRACTIONS]
            + [fmt(to_within, unit, 1) + reached(to_within), fmt(to_target, unit, 1) + reached(to_target)]
            + [f"{np.median([r.trials for r in group]):.0f}", f"{np.median([r.pruned for r in group]):.0f}"]
            + [f"{np.median([r.infeasible for r in group]):.0f}"]
        )
    return markdown(header, rows)


def workers_table(runs: dict[int, list[Run]], unit: float, target: float) -> str:
    header = [
        "workers",
        f"compute to regret {target:.3f}",
        f"wall-clock to regret {target:.3f} (s)",
        "regret at the end",
    ]
    rows = []
    for workers, group in runs.items():
        compute = [r.compute_to(target) for r in group]
        wall = [next((w for w, g in zip(r.wall, r.regret) if g <= target), float("inf")) for r in group]
        rows.append(
            [
                str(workers),
                fmt(compute, unit, 1) + reached(compute),
                fmt(wall, 1.0, 0) + reached(wall),
                fmt([r.regret[-1] if r.regret else 1.0 for r in group]),
            ]
        )
    return markdown(header, rows)


def plot(runs: dict[str, list[Run]], budget: float, unit: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, budget, 300)
    fig, ax = plt.subplots(figsize=(9, 5.5))
    styles = {"moasha": "-", "syne": "-."}
    hues = [*range(0, 20, 2), *range(1, 20, 2)]  # tab20's ten hues dark, then light
    colors = [plt.cm.tab20(i / 20 + 0.01) for i in hues][: len(runs)]
    for (name, group), color in zip(runs.items(), colors):
        curves = np.array([[r.regret_at(c) for c in grid] for r in group])
        q1, median, q3 = np.percentile(curves, [25, 50, 75], axis=0)
        style = next((v for k, v in styles.items() if name.startswith(k)), "--")
        ax.plot(grid / unit, median, label=name, linestyle=style, color=color, linewidth=1.6)
        ax.fill_between(grid / unit, q1, q3, color=color, alpha=0.06)
    ax.axhline(WITHIN, color="grey", linewidth=0.8, linestyle=":")
    ax.set_yscale("log")
    ax.set_ylim(1e-2, 1.05)
    ax.set_xlabel("compute: summed epoch-seconds, in full trainings of a mean point")
    ax.set_ylabel("hypervolume regret (fraction of the true front's)")
    ax.set_title("Regret against compute on the recorded quickstart curves (median, interquartile band)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def parse_schedule(text: str) -> RungSchedule:
    min_epochs, _, factor = text.partition("/")
    return RungSchedule(int(min_epochs), int(factor or 3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2, help="processes running simulations side by side")
    parser.add_argument("--full-trials", type=int, default=36, help="NSGA-II's trial budget (36: the space's size)")
    parser.add_argument("--population", type=int, default=6, help="NSGA-II's population (the quickstart's)")
    parser.add_argument(
        "--schedules",
        nargs="+",
        type=parse_schedule,
        default=[RungSchedule(1, 3), RungSchedule(3, 3), RungSchedule(9, 3)],
        help="our MOASHA's schedules as MIN_EPOCHS/REDUCTION_FACTOR; Syne Tune's runs with the first",
    )
    parser.add_argument("--max-trials", type=int, default=200, help="trials asked at most by a compute-budgeted run")
    parser.add_argument(
        "--methods", nargs="+", help="only these methods (as printed; NSGA-II at full budget always runs)"
    )
    parser.add_argument("--no-syne-tune", action="store_true", help="skip the peer (syne-tune not installed)")
    parser.add_argument("--no-workers-table", action="store_true", help="skip our best MOASHA at 1, 2, 4, 8 workers")
    parser.add_argument("--reference", choices=("front", "lowest"), default="front", help="see simulate_search")
    parser.add_argument(
        "--infeasible",
        choices=("fail", "prune"),
        default="prune",
        help="a point the model cannot build: told PRUNED and infeasible (as the sweep) or FAIL (as dynsweep 0.1)",
    )
    parser.add_argument("--plot", type=Path, help="write regret against compute here (PNG)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    table = CurveTable.load(args.table, args.reference)
    unit = table.full_training_seconds()
    setup = Setup(
        args.table,
        args.spec,
        args.reference,
        args.full_trials,
        args.population,
        tuple(args.schedules),
        args.max_trials,
        args.infeasible,
    )
    seeds = range(args.repeats)
    start = time.time()
    names = [m.name for m in methods(args.full_trials, args.population, args.schedules)]
    full = names[0]
    first = run_all(setup, [Task(full, s, args.workers, math.inf) for s in seeds], args.jobs)
    budget = median([r.total_compute for r in first])
    others = names[1:] + ([] if args.no_syne_tune else list(PEERS))
    others = [n for n in others if not args.methods or n in args.methods]
    done = run_all(setup, [Task(n, s, args.workers, budget) for n in others for s in seeds], args.jobs)
    runs = {full: first}
    for i, name in enumerate(others):
        runs[name] = done[i * args.repeats : (i + 1) * args.repeats]
    target = median([r.regret[-1] if r.regret else 1.0 for r in first])
    lines = [
        f"{len(table.points)} points ({len(table.infeasible)} more cannot be built), {table.epochs} epochs, "
        f"{table.points[0].curves.shape[0]} seeds; {args.repeats} repeats, {args.workers} workers. "
        f"Compute unit: one full training of a mean point = {unit:.0f} epoch-seconds. "
        f"Budget: NSGA-II's median compute at {args.full_trials} trials = {budget / unit:.1f} units; "
        f"its median final regret = {target:.3f}. Reference point: {args.reference}. "
        f"A point the model cannot build is told {args.infeasible.upper()}.",
        "",
        main_table(runs, budget, unit, target),
    ]
    ours = [n for n in runs if n.startswith("moasha")]
    best = min(ours, key=lambda n: median([r.compute_to(target) for r in runs[n]])) if ours else None
    if best:
        reach = median([r.compute_to(target) for r in runs[best]])
        lines += [
            "",
            f"Target 1: {best} reaches NSGA-II's final regret {target:.3f} at {reach / unit:.1f} units (median), "
            f"{reach / budget:.2f} of NSGA-II's compute (target: at most 0.33).",
        ]
        for fraction in (1 / 3, 1.0):
            line = f"Target 2 at {fraction:.2g} x budget, median regret: " + ", ".join(
                f"{name} {median([r.regret_at(fraction * budget) for r in runs[name]]):.3f}"
                for name in [*ours, *(p for p in PEERS if p in runs)]
            )
            lines.append(line + f"; NSGA-II at full budget (final) {target:.3f}.")
        if not args.no_workers_table:
            by_workers = {w: run_all(setup, [Task(best, s, w, budget) for s in seeds], args.jobs) for w in (1, 2, 4, 8)}
            lines += ["", f"{best}, 1 to 8 workers (compute does not depend on them; wall-clock does):", ""]
            lines.append(workers_table(by_workers, unit, target))
    lines += ["", f"{time.time() - start:.0f} s"]
    print("\n".join(lines))
    if args.plot:
        plot(runs, budget, unit, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
