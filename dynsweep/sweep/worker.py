"""Workers: the loop that asks for trials and runs them until the study-wide budget is spent, and
``run_sweep``, which opens the study and runs one worker here and the others as processes.

A worker asks for a trial only while the count (:func:`dynsweep.sweep.study.counted_trials`) is
under the budget, and waits for trials still running elsewhere when heartbeats can tell it if
they are dead.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

from dynsweep import compat
from dynsweep.sweep.checks import check_sweep
from dynsweep.sweep.config import SweepConfig
from dynsweep.sweep.points import enqueue_untried
from dynsweep.sweep.record import TrialRecord, mark_over_budget
from dynsweep.sweep.storage import check_storage, check_workers, default_url
from dynsweep.sweep.study import budget, counted_trials, make_sampler, open_study
from dynsweep.sweep.trial import Log, run_trial

MAX_RESAMPLES = 3
"""Proposals in a row that may repeat held points before an untried point of a finite space is
enqueued instead (samplers that converge keep proposing their favourite points)."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_seed(config: SweepConfig, study: optuna.Study, first: bool) -> int:
    """The seed of this worker's sampler: the spec's seed for the first worker of a new study (so
    one uninterrupted worker is deterministic); otherwise derived from it, the number of trials
    already in the study and this process, so that resumed and parallel workers propose anew."""
    started = sum(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))
    if first and started == 0:
        return config.seed
    token = f"{config.seed}:{started}:{worker_name()}:{time.time_ns()}"
    return int.from_bytes(hashlib.sha256(token.encode()).digest()[:4], "little") & 0x7FFFFFFF


def run_worker(
    study: optuna.Study,
    config: SweepConfig,
    runs_dir: Path,
    log: Log = print,
    poll: float = 2.0,
    first: bool = False,
    devices: list[str] | None = None,
) -> int:
    """Run trials until the study-wide budget is spent (or the spec's timeout); returns trials run.

    ``first``: this is the worker that created or resumed the study (``sweep run``), whose sampler
    takes the spec's seed when the study is new. ``devices``: this worker's device group.
    """
    deadline = time.time() + config.budget.timeout if config.budget.timeout else None
    storage = compat.storage_of(study)
    heartbeat = compat.heartbeat_enabled(storage)
    seed = worker_seed(config, study, first)
    study.sampler = make_sampler(config, seed)
    rng = random.Random(seed)
    identity = {"worker": worker_name(), "sampler_seed": seed}
    ran = resampled = 0
    announced: set[int] = set()
    while deadline is None or time.time() < deadline:
        fail_stale(study)
        counted, _ = counted_trials(study)
        n = budget(study, config)
        if len(counted) >= n:
            running = [t for t in counted if t.state == TrialState.RUNNING]
            if running and heartbeat:
                for t in running:
                    if t.number not in announced:
                        announced.add(t.number)
                        log(
                            f"waiting for trial {t.number}, running in another worker; if no heartbeat comes "
                            f"for {config.storage.grace_period} s it is failed and re-queued"
                        )
                time.sleep(poll)  # finished elsewhere, or failed and re-queued when its worker is dead
                continue
            break
        trial = study.ask()
        counted, _ = counted_trials(study)
        numbers = sorted(t.number for t in counted)
        if numbers.index(trial.number) >= n:  # another worker took the last trial at the same time
            mark_over_budget(study, trial)
            study.tell(trial, state=TrialState.FAIL)
            continue
        done = sum(t.state != TrialState.RUNNING for t in counted)
        log(f"[{done}/{n} trials done] trial {trial.number} starts")
        TrialRecord.write(trial, **identity)
        thread = compat.heartbeat_thread(trial, storage)
        thread.start()
        try:
            state = run_trial(study, trial, config, runs_dir, log, resampled < MAX_RESAMPLES, devices)
        except KeyboardInterrupt:
            fail_interrupted(study, trial)
            raise
        finally:
            thread.join()
        if state is None:  # the proposal repeated a held point: propose anew, uncounted
            resampled += 1
            if resampled >= MAX_RESAMPLES and enqueue_untried(study, config, rng):
                resampled = 0
            continue
        resampled = 0
        ran += 1
    return ran


def run_front_repeats(
    study: optuna.Study, config: SweepConfig, front: list[int], runs_dir: Path, log: Log = print
) -> int:
    """Retrain each front trial that has fewer than ``repeats.front`` seeds, as a new trial that
    keeps its finished seeds and trains the missing ones (``repeat_of``; not counted against the
    trial budget). Returns the number of repeats run."""
    wanted = config.repeats.front
    ran = 0
    for number in front:
        original = study.get_trials(deepcopy=False)[number]
        record = TrialRecord.of(original)
        if len([v for v in record.seed_values if v is not None]) >= wanted:
            continue
        inherited = TrialRecord.as_user_attrs(
            repeat_of=number,
            model=record.model,
            preset=record.preset,
            seeds=record.seeds,
            seed_values=record.seed_values,
            seed_dirs=record.seed_dirs,
        )
        study.enqueue_trial(original.params, user_attrs=inherited)
        trial = study.ask()
        TrialRecord.write(trial, worker=worker_name())
        log(f"trial {trial.number}: the front point of trial {number}, to {wanted} seeds")
        thread = compat.heartbeat_thread(trial, compat.storage_of(study))
        thread.start()
        try:
            run_trial(study, trial, config, runs_dir, log, resample=False)
        except KeyboardInterrupt:
            fail_interrupted(study, trial)
            raise
        finally:
            thread.join()
        ran += 1
    return ran


STALE_REASON = "its worker stopped sending heartbeats (killed, or its host lost)"


def fail_stale(study: optuna.Study) -> None:
    """Fail (and re-queue) the running trials whose worker is gone, each with its reason."""
    for trial_id in compat.stale_trial_ids(study):
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            TrialRecord.write_stored(study, trial_id, fail_reason=STALE_REASON)
    fail_stale_trials(study)


def fail_interrupted(study: optuna.Study, trial: optuna.Trial) -> None:
    """Tell an interrupted trial FAIL at once, with the reason, rather than leave it RUNNING."""
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        TrialRecord.write(trial, fail_reason="interrupted (Ctrl-C or SIGINT)")
        study.tell(trial, state=TrialState.FAIL)


def run_sweep(
    config: SweepConfig,
    url: str | None = None,
    study_name: str | None = None,
    n_trials: int | None = None,
    workers: int = 1,
    runs_dir: Path = Path("runs"),
    log: Log = print,
    groups: list[list[str]] | None = None,
) -> optuna.Study:
    """Create or resume the study and run ``workers`` workers on it (this process is one), or one
    worker per device group of ``groups``."""
    url = url or default_url(config.name, runs_dir)
    check_workers(url, len(groups) if groups else workers)
    check_storage(url)
    check_sweep(config, runs_dir)
    study, config = open_study(config, url, study_name, n_trials)
    run_workers(study, config, url, runs_dir, log, first=True, workers=workers, groups=groups)
    return study


def run_workers(
    study: optuna.Study,
    config: SweepConfig,
    url: str,
    runs_dir: Path,
    log: Log = print,
    first: bool = False,
    workers: int = 1,
    groups: list[list[str]] | None = None,
) -> None:
    """Run one worker here and the others as processes that end with this one: ``workers`` in
    all, or one per device group (this process takes the first group)."""
    count = len(groups) if groups else workers
    check_workers(url, count)
    command = [sys.executable, "-m", "dynsweep", "sweep", "worker", "--storage", url]
    command += ["--study", study.study_name, "--runs-dir", str(runs_dir), "--with-parent"]
    extra = []
    for index in range(1, count):
        placement = (
            ["--devices", ",".join(groups[index]), "--devices-per-trial", str(len(groups[index]))] if groups else []
        )
        extra.append(subprocess.Popen(command + placement))
    try:
        run_worker(study, config, runs_dir, log, first=first, devices=groups[0] if groups else None)
    except KeyboardInterrupt:
        for process in extra:
            process.send_signal(signal.SIGINT)
        raise
    finally:
        for process in extra:
            process.wait()
