"""One trial: params -> spec -> model -> MACs and parameters -> constraints -> training in a child
process -> results told to Optuna.

Cost is counted before any training; a trial over a constraint is told ``PRUNED`` with the user
attribute ``infeasible`` (the reason) and is not trained. Training runs in
``python -m dynsweep.sweep.child TRIAL_DIR`` (its own process and directory: ``params.json``,
``child.log``, ``progress.jsonl``, ``metrics.json``, ``lightning_logs/``, ``checkpoints/``), so an
exception, a NaN loss or a killed child fails that trial only: it is told ``FAIL`` with the user
attribute ``fail_reason`` and the sweep goes on. A trial whose training a COMPLETE trial already
did (same model, spec, training and data; ``budget.reuse_duplicates``, on by default) is told that
trial's values with the user attribute ``duplicate_of`` and is not trained again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

from dynsweep import compat
from dynsweep.stats import mean_interval
from dynsweep.sweep import moasha, pruning
from dynsweep.sweep.child import launch
from dynsweep.sweep.config import SweepConfig
from dynsweep.sweep.devices import visible_devices
from dynsweep.sweep.points import holder, untried_points
from dynsweep.sweep.record import TrialRecord, enqueued_params, point_digest, point_key
from dynsweep.sweep.space import preset_spec, suggest_architecture, suggest_spec, trial_params
from dynsweep.sweep.study import SweepError
from dynsweep.sweep.study import trial_dir as study_trial_dir

Log = Callable[[str], None]


def derive_seed(config_seed: int, study_name: str, number: int | str) -> int:
    """The trial's seed from the spec's seed, the study name and the trial number (31 bits)."""
    digest = hashlib.sha256(f"{config_seed}:{study_name}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def original_number(trial: optuna.Trial) -> int:
    """A re-queued trial keeps the number (and so the seeds) of the trial it retries, a front
    repeat those of the trial it repeats."""
    from dynsweep.sweep.record import retried_trial

    stored = trial.storage.get_trial(compat.trial_id(trial))
    repeat_of = TrialRecord.of(stored).repeat_of
    retried = retried_trial(stored)
    return repeat_of if repeat_of is not None else trial.number if retried is None else retried


def child_params(trial: optuna.Trial, config: SweepConfig, study_name: str) -> dict[str, Any]:
    """Ask the trial's params; return what the child trains (everything needed to replay it)."""
    preset = enqueued_params(trial).get("preset")
    model = suggest_architecture(trial, config)
    arch = config.architecture(model)
    spec = preset_spec(preset, arch) if preset else suggest_spec(trial, arch)
    return trial_params(config, model, preset, spec, derive_seed(config.seed, study_name, original_number(trial)))


def measure_cost(params: dict[str, Any]) -> tuple[int, int]:
    """MACs and parameters (dynsweep.cost.count, inference form, batch 1) at the data's size."""
    from dynsweep.tasks.recipe import make_data, make_task

    cost = make_task(params, make_data(params["data"])).cost
    return cost.macs, cost.params


def measure_latency(config: SweepConfig, params: dict[str, Any], runs_dir: Path) -> dict[str, Any]:
    """The trial's network timed as the spec's ``latency:`` block says, interleaved with its
    architecture's reference (the static network at the architecture's ``base`` widths: the same
    for every trial, so ratios compare), from this host's cache or measured under the host-wide
    lock. Raises ``dynsweep.latency.LatencyError`` with the reason when the measurement fails."""
    from dynsweep.latency import LatencySettings, measure_for_trial
    from dynsweep.tasks.recipe import make_data, make_task

    data: Any = make_data(params["data"])  # a dynsweep data module: it has image_size and in_channels
    arch = config.architecture(params["model"])
    model = make_task(params, data).model
    reference = make_task({**params, "preset": None, "spec": {**arch.base, "stages": []}}, data).model
    height, width = (data.image_size,) * 2 if isinstance(data.image_size, int) else data.image_size
    settings = LatencySettings.from_dict(config.latency)
    return measure_for_trial(
        model, reference, settings, runs_dir / "latency", (data.in_channels, height, width)
    ).to_dict()


def read_progress(trial_dir: Path) -> list[dict[str, Any]]:
    path = trial_dir / "progress.jsonl"
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            break
    return lines


def finished_twin(study: optuna.Study, params: dict[str, Any]) -> optuna.trial.FrozenTrial | None:
    """The first COMPLETE trial at the same point (:func:`~dynsweep.sweep.record.point_key`)."""
    key = point_key(params)
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        trained = TrialRecord.of(other).child_params
        if trained is not None and point_key(trained) == key:
            return other
    return None


def reuse_result(
    study: optuna.Study,
    trial: optuna.Trial,
    twin: optuna.trial.FrozenTrial,
    params: dict[str, Any],
    trial_dir: Path,
    start: float,
    log: Log,
) -> TrialState:
    """Tell ``trial`` its finished twin's values instead of training the same thing again.

    Samplers over small discrete spaces propose points already trained (NSGA-II's first
    generations, TPE late in a study); Optuna evaluates them again. The trial keeps the twin's
    seed, curve and directory, so ``replay`` of either retrains the same run.
    """
    record = TrialRecord.of(twin)
    original = twin.number if record.duplicate_of is None else record.duplicate_of
    TrialRecord.write(
        trial,
        duplicate_of=original,
        seed=record.seed,
        child_params={**params, "seed": record.seed},
        curve=record.curve,
        dir=record.dir,
        wall_seconds=time.time() - start,
    )
    with contextlib.suppress(OSError):  # a re-queued trial's directory may hold files
        trial_dir.rmdir()  # made for a training that does not happen
    study.tell(trial, twin.values)
    label = params["preset"] or params["model"]
    log(f"trial {trial.number} ({label}): the same training as trial {original}: its result reused, not retrained")
    return TrialState.COMPLETE


def propose_anew(
    study: optuna.Study,
    trial: optuna.Trial,
    config: SweepConfig,
    params: dict[str, Any],
    resample: bool,
    wait: bool = True,
) -> optuna.trial.FrozenTrial | None:
    """Claim ``trial``'s point. When another trial holds it and an untried point is left (and
    ``resample`` allows), tell ``trial`` FAIL, marked ``resampled``, and return the holder: the
    worker proposes anew. Otherwise return None: the point is this trial's, or every point is held
    and this trial goes on (after a running holder finishes: it may reuse its result; with
    ``wait=False`` a running holder makes it propose anew too)."""
    other = holder(study, trial, point_digest(params))
    if other is None:
        return None
    if resample and untried_points(study, config) != []:
        TrialRecord.write(trial, resampled=other.number)
        study.tell(trial, state=TrialState.FAIL)
        return other
    if other.state == TrialState.RUNNING:
        if not wait:  # a caller that cannot wait (one thread running every worker) proposes anew
            TrialRecord.write(trial, resampled=other.number)
            study.tell(trial, state=TrialState.FAIL)
            return other
        wait_until_finished(study, other.number)
    return None


def wait_until_finished(study: optuna.Study, number: int, poll: float = 2.0) -> None:
    """Wait while trial ``number`` runs (in another worker; a dead worker's trial is failed by its
    stale heartbeat, so this ends)."""
    while study.get_trials(deepcopy=False)[number].state == TrialState.RUNNING:
        time.sleep(poll)
        fail_stale_trials(study)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"the training process was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"the training process was killed by signal {-code}"
    return f"the training process exited with status {code}"


def run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    config: SweepConfig,
    runs_dir: Path,
    log: Log = print,
    resample: bool = True,
    devices: list[str] | None = None,
) -> TrialState | None:
    """Run one asked trial to its end and tell the study; returns the told state, or None when the
    proposal repeated a point another trial holds and ``resample`` allows proposing anew (the
    trial is told FAIL, marked ``resampled`` and not counted). ``devices``: the worker's device
    group, which the trial's training processes see as ``CUDA_VISIBLE_DEVICES``."""
    start = time.time()
    trial_dir = study_trial_dir(runs_dir, study, trial.number)

    def fail(reason: str) -> TrialState:
        TrialRecord.write(trial, fail_reason=reason, wall_seconds=time.time() - start)
        study.tell(trial, state=TrialState.FAIL)
        log(f"trial {trial.number}: FAIL: {reason}")
        return TrialState.FAIL

    try:
        trial_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"cannot create its directory: {error}")
        raise SweepError(f"--runs-dir: cannot create {trial_dir}: {error.strerror}") from None
    TrialRecord.write(trial, dir=str(trial_dir.resolve()))
    if devices is not None:
        TrialRecord.write(trial, devices=visible_devices(devices).split(","))
    if original_number(trial) != trial.number:  # a retry inherits its original's record: start afresh
        TrialRecord.write(trial, fail_reason=None, curve=[], stopped_at_epoch=None, wall_seconds=None)
    repeat = TrialRecord.of(study_trial(study, trial)).repeat_of is not None
    try:
        params = child_params(trial, config, study.study_name)
        TrialRecord.write(trial, model=params["model"], seed=params["seed"])
        if params["preset"]:
            TrialRecord.write(trial, preset=params["preset"])
        other = None if repeat else propose_anew(study, trial, config, params, resample)
        if other is not None:  # told FAIL by propose_anew, its record complete
            with contextlib.suppress(OSError):
                trial_dir.rmdir()
            log(f"trial {trial.number}: the point of trial {other.number} ({other.state.name}): proposed anew")
            return None
    except Exception as error:
        return fail(f"{type(error).__name__}: {error}")
    try:
        macs, n_params = measure_cost(params)
    except ValueError as error:  # a combination of spec values this architecture cannot build
        reason = f"cannot be built: {error}"
        TrialRecord.write(trial, infeasible=reason, wall_seconds=time.time() - start)
        study.tell(trial, state=TrialState.PRUNED)
        log(f"trial {trial.number} ({params['preset'] or params['model']}): infeasible, not trained: {reason}")
        return TrialState.PRUNED
    except Exception as error:
        return fail(f"{type(error).__name__}: {error}")
    TrialRecord.write(trial, macs=macs, params=n_params)
    twin = finished_twin(study, params) if config.budget.reuse_duplicates and not repeat else None
    if twin is not None:
        return reuse_result(study, trial, twin, params, trial_dir, start, log)
    TrialRecord.write(trial, child_params=params)
    (trial_dir / "params.json").write_text(json.dumps(params, indent=2))
    label = params["preset"] or params["model"]
    limits = config.constraints
    for limit, value, name in ((limits.max_macs, macs, "MACs"), (limits.max_params, n_params, "parameters")):
        if limit is not None and value > limit:
            reason = f"{name} {value:,} over the budget {limit:,.0f}"
            TrialRecord.write(trial, infeasible=reason, wall_seconds=time.time() - start)
            study.tell(trial, state=TrialState.PRUNED)
            log(f"trial {trial.number} ({label}): infeasible, not trained: {reason}")
            return TrialState.PRUNED
    latency: dict[str, Any] = {}
    if config.latency is not None:
        from dynsweep.latency import LatencyError

        try:
            latency = measure_latency(config, params, runs_dir)
        except LatencyError as error:
            return fail(str(error))
        TrialRecord.write(trial, latency=latency)
        if limits.max_latency_ms is not None and latency["median_ms"] > limits.max_latency_ms:
            reason = f"latency {latency['median_ms']:.3g} ms over the budget {limits.max_latency_ms:g} ms"
            TrialRecord.write(trial, infeasible=reason, wall_seconds=time.time() - start)
            study.tell(trial, state=TrialState.PRUNED)
            log(f"trial {trial.number} ({label}): infeasible, not trained: {reason}")
            return TrialState.PRUNED

    measured = f", {latency['median_ms']:.3g} ms ({latency['ratio']:.3g} x its reference)" if latency else ""
    log(
        f"trial {trial.number} ({label}): {macs / 1e6:.2f} MMACs, {n_params / 1e6:.3f} M params{measured}, "
        f"training in {trial_dir}"
    )
    count = config.repeats.front if repeat else config.seeds_for(params["model"], params["preset"])
    seeds = trial_seeds(config, params, study.study_name, original_number(trial), count)
    inherited = TrialRecord.of(study_trial(study, trial))  # a retry's or a front repeat's finished seeds
    kept = [
        k < len(inherited.seeds) and inherited.seeds[k] == seed and inherited.seed_values[k] is not None
        for k, seed in enumerate(seeds)
    ]
    values = [inherited.seed_values[k] if kept[k] else None for k in range(len(seeds))]
    dirs = [
        inherited.seed_dirs[k] if kept[k] else str(seed_dir(trial_dir, k, len(seeds)).resolve())
        for k in range(len(seeds))
    ]
    TrialRecord.write(trial, seeds=seeds, seed_dirs=dirs, seed_values=values)
    for k, seed in enumerate(seeds):
        if values[k] is not None:
            log(f"trial {trial.number} ({label}): seed {seed} finished before, kept")
            continue
        name = f"{label}, seed {seed}" if len(seeds) > 1 else label
        folder = Path(cast(str, dirs[k]))  # not kept: the folder made above
        outcome = train_seed(study, trial, config, {**params, "seed": seed}, folder, macs, name, log, k == 0, devices)
        if outcome.stopped:
            TrialRecord.write(trial, wall_seconds=time.time() - start)
            study.tell(trial, state=TrialState.PRUNED)
            log(f"trial {trial.number} ({label}): {outcome.stopped}")
            return TrialState.PRUNED
        if outcome.error is not None:
            return fail(outcome.error)
        values[k] = outcome.val_acc1
        TrialRecord.write(trial, seed_values=values)
    interval = mean_interval(values)
    accuracy = interval.mean
    TrialRecord.write(trial, wall_seconds=time.time() - start)
    if interval.n > 1:
        TrialRecord.write(trial, value_std=interval.std, value_ci=[interval.low, interval.high])
    objective_values = {"val_acc1": accuracy, "macs": float(macs), "params": float(n_params)}
    if latency:
        objective_values.update(latency_ms=latency["median_ms"], latency_ratio=latency["ratio"])
    study.tell(trial, [objective_values[name] for name in config.objectives])
    spread = f" (mean of {len(values)} seeds)" if len(values) > 1 else ""
    log(f"trial {trial.number} ({label}): val_acc1 {accuracy:.4f}{spread} in {time.time() - start:.0f} s")
    return TrialState.COMPLETE


def trial_seeds(config: SweepConfig, params: dict[str, Any], study_name: str, number: int, count: int) -> list[int]:
    """The ``count`` seeds a trial trains: the first is the trial's seed (``params["seed"]``);
    each further repeat's is derived from the trial's number and the repeat's index."""
    return [params["seed"]] + [derive_seed(config.seed, study_name, f"{number}:{k}") for k in range(1, count)]


def seed_dir(trial_dir: Path, index: int, count: int) -> Path:
    """Where one seed trains: the trial's directory itself, or ``seed_<k>`` in it with repeats."""
    return trial_dir if count == 1 else trial_dir / f"seed_{index}"


def study_trial(study: optuna.Study, trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    return compat.storage_of(study).get_trial(compat.trial_id(trial))


@dataclass
class SeedOutcome:
    """How one seed's training ended: its best accuracy, stopped early (why), or failed (why)."""

    val_acc1: float | None = None
    epochs: int = 0
    stopped: str | None = None
    error: str | None = None


def stops_early(
    study: optuna.Study,
    trial: optuna.Trial,
    config: SweepConfig,
    epochs: int,
    accuracy: float,
    macs: int,
    max_epochs: int,
) -> str | None:
    """After an epoch of the trial's first seed: why the spec's early stopping ends it now, if it does.

    ``moasha`` decides at each rung and stores the decision (:func:`dynsweep.sweep.moasha.should_continue`),
    and records the rung in ``stopped_at_rung``; ``dominance`` records the epoch in ``stopped_at_epoch``.
    """
    rule = config.pruning
    if rule.algorithm == "moasha":
        schedule = moasha.RungSchedule(rule.min_epochs, rule.reduction_factor)
        decision = moasha.should_continue(study, trial.number, epochs, max_epochs, schedule)
        if decision.keep:
            return None
        TrialRecord.write(trial, stopped_at_rung=decision.epoch)
        return f"stopped at rung {decision.epoch}: {decision.position + 1} of {decision.considered} there"
    others = study.get_trials(deepcopy=False)
    if rule.algorithm == "dominance" and pruning.should_stop(
        others, trial.number, epochs - 1, accuracy, macs, rule.min_dominating, rule.warmup_epochs
    ):
        TrialRecord.write(trial, stopped_at_epoch=epochs)
        return f"stopped early, dominated at epoch {epochs}"
    return None


def train_seed(
    study: optuna.Study,
    trial: optuna.Trial,
    config: SweepConfig,
    params: dict[str, Any],
    directory: Path,
    macs: int,
    label: str,
    log: Log,
    watch: bool,
    devices: list[str] | None = None,
) -> SeedOutcome:
    """Train one seed in its own process and directory; while the first seed (``watch``) trains,
    its curve is the trial's, and early stopping may end it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "params.json").write_text(json.dumps(params, indent=2))
    max_epochs = params["training"].get("max_epochs")
    child = launch(directory, len(devices) if devices else 1, visible_devices(devices) if devices else None)
    seen = 0
    stopped: str | None = None
    try:
        while child.poll() is None:
            time.sleep(0.5)
            progress = read_progress(directory)
            if len(progress) <= seen:
                continue
            seen = len(progress)
            last = progress[-1]
            log(
                f"trial {trial.number} ({label}): epoch {last['epoch'] + 1}/{max_epochs} "
                f"val_acc1 {last['val_acc1']:.4f}"
            )
            if not watch:
                continue
            TrialRecord.write(trial, curve=[p["val_acc1"] for p in progress])
            stopped = stops_early(study, trial, config, len(progress), last["val_acc1"], macs, max_epochs)
            if stopped:
                child.kill()
                child.wait()
                break
    except BaseException:
        child.kill()
        child.wait()
        raise
    curve = [p["val_acc1"] for p in read_progress(directory)]
    if watch:
        TrialRecord.write(trial, curve=curve)
    if stopped:
        return SeedOutcome(epochs=len(curve), stopped=stopped)
    metrics_path = directory / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if child.returncode != 0 or "error" in metrics:
        return SeedOutcome(epochs=len(curve), error=metrics.get("error") or describe_exit(child.returncode))
    return SeedOutcome(val_acc1=metrics["val_acc1"], epochs=len(curve))
