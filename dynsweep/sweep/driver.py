"""Studies and workers: storage from a URL, the study with named objectives, warm start, and the
worker loop that keeps the trial budget study-wide.

Storage: ``sqlite:///runs/<name>.db`` by default; any SQLAlchemy URL (``postgresql://...``,
``mysql://...``) with heartbeats, so the RUNNING trials of a dead worker are failed and
re-queued with the same params (``RetryHeartbeatStaleTrialCallback``); ``journal:PATH`` for
Optuna's journal file (no heartbeats). The sweep spec is stored in the study's user attributes,
so ``sweep worker`` needs only the storage and the study name.

Budget: every trial counts (COMPLETE, PRUNED, FAIL, RUNNING), except a failed trial that was
re-queued (its retry counts instead) and a trial a worker started over the budget in a race
(told FAIL with the system attribute ``dynsweep:over_budget``). A worker asks for a trial only
while the count is under the budget, and waits for trials still running elsewhere when
heartbeats can tell it if they are dead.
"""

from __future__ import annotations

import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import fail_stale_trials, get_heartbeat_thread, is_heartbeat_enabled
from optuna.trial import TrialState

from dynsweep.sweep.config import OBJECTIVES, SweepConfig, parse_config
from dynsweep.sweep.trial import Log, run_trial

OVER_BUDGET = "dynsweep:over_budget"
REFERENCE_POINT = "reference_point"
"""Study user attribute: the hypervolume reference point, objective -> value (dynsweep.analysis)."""

# Heartbeats, metric names and the journal are "experimental" in Optuna's terms; we rely on them
# deliberately, and run heartbeats with ask/tell (the heartbeat thread is started per trial here).
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


class SweepError(RuntimeError):
    """A sweep that cannot run as asked (storage, study); the message says what to do instead."""


def default_storage_url(config: SweepConfig, runs_dir: Path) -> str:
    return f"sqlite:///{runs_dir / (config.name + '.db')}"


def check_workers(url: str, workers: int) -> None:
    if workers > 1 and url.startswith("sqlite"):
        raise SweepError(
            f"{workers} workers on one SQLite file ({url}) would fight over its lock; use PostgreSQL or "
            "MySQL (--storage postgresql://USER@HOST/DB) or Optuna's journal file "
            "(--storage journal:runs/NAME.log)"
        )


def make_storage(url: str, config: SweepConfig | None = None) -> optuna.storages.BaseStorage:
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:") :])
        path.parent.mkdir(parents=True, exist_ok=True)  # as for SQLite: runs/ need not exist yet
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    storage = config.storage if config is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(
            url,
            heartbeat_interval=storage.heartbeat_interval if storage else 10,
            grace_period=storage.grace_period if storage else 30,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                max_retry=storage.max_retry if storage else 2
            ),
        )


def make_sampler(config: SweepConfig) -> optuna.samplers.BaseSampler:
    options = {"seed": config.seed, **config.sampler_options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if config.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(**options)
        if config.sampler == "tpe":
            return optuna.samplers.TPESampler(**options)
        if config.sampler == "gp":
            return optuna.samplers.GPSampler(**options)
        return optuna.samplers.RandomSampler(**options)


def open_study(
    config: SweepConfig, url: str, study_name: str | None = None, n_trials: int | None = None
) -> optuna.Study:
    """Create the study (or load it), store the spec and budget in it, enqueue the warm start."""
    storage = make_storage(url, config)
    name = study_name or config.name
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=[OBJECTIVES[o] for o in config.objectives],
        sampler=make_sampler(config),
        load_if_exists=True,
    )
    if study.metric_names != config.objectives:
        study.set_metric_names(list(config.objectives))
    stored = study.user_attrs.get("sweep_config")
    raw = config.to_dict()
    if stored is None:
        study.set_user_attr("sweep_config", raw)
    if config.reference_point is not None:
        stored_point = study.user_attrs.get(REFERENCE_POINT)
        if stored_point is None:
            study.set_user_attr(REFERENCE_POINT, config.reference_point)
        elif stored_point != config.reference_point:
            raise SweepError(
                f"reference_point: the study {name!r} stores {stored_point}, the spec says "
                f"{config.reference_point}; a study keeps one point for its life (start a new study)"
            )
    if n_trials is not None or "n_trials" not in study.user_attrs:
        study.set_user_attr("n_trials", n_trials if n_trials is not None else config.n_trials)
    for preset in config.warm_start:
        from dynsweep.models import get_model_entry

        entry = get_model_entry(preset)
        params: dict[str, Any] = {"preset": preset}
        if len(config.architectures) > 1:
            params = {"arch": entry.baseline or entry.name, **params}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.enqueue_trial(params, skip_if_exists=True)
    return study


def config_from_dict(raw: dict[str, Any]) -> SweepConfig:
    """The SweepConfig stored in a study (:func:`open_study`)."""
    values = dict(raw)
    source = values.pop("source", "<study>")
    archs = []
    for arch in values.pop("architectures"):
        space = {
            d["name"]: {k: v for k, v in d.items() if k != "name" and v is not None and v is not False}
            for d in arch["space"]
        }
        archs.append({**arch, "space": space})
    spec = {
        "name": values["name"],
        "architectures": archs,
        "objectives": values["objectives"],
        "constraints": {"max_macs": values["max_macs"], "max_params": values["max_params"]},
        "sampler": {"name": values["sampler"], **values["sampler_options"]},
        "budget": {
            "n_trials": values["n_trials"],
            "timeout": values["timeout"],
            "reuse_duplicates": values.get("reuse_duplicates", True),  # studies before it: reuse
        },
        "training": values["training"],
        "data": values["data"],
        "seed": values["seed"],
        "storage": values["storage"],
        "pruning": values["pruning"],
        "warm_start": values["warm_start"],
        "reference_point": values.get("reference_point"),
    }
    return parse_config(spec, source)


def load_study(url: str, study_name: str) -> tuple[optuna.Study, SweepConfig]:
    """A study written by :func:`open_study`, with its spec (for ``sweep worker/status/replay``)."""
    try:
        names = optuna.get_all_study_names(make_storage(url))
    except Exception as error:  # noqa: BLE001
        raise SweepError(f"cannot open the storage {url}: {error}") from None
    if study_name not in names:
        raise SweepError(f"no study {study_name!r} in {url}; studies there: {', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=study_name, storage=make_storage(url))
    raw = study.user_attrs.get("sweep_config")
    if raw is None:
        raise SweepError(f"study {study_name!r} in {url} was not made by dynsweep sweep (no sweep_config)")
    config = config_from_dict(raw)
    study = optuna.load_study(
        study_name=study_name, storage=make_storage(url, config), sampler=make_sampler(config)
    )
    return study, config


def counted_trials(study: optuna.Study) -> tuple[list[optuna.trial.FrozenTrial], int]:
    """(trials that count against the budget, WAITING trials)."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    counted = [
        t
        for t in trials
        if t.state != TrialState.WAITING and t.number not in retried and not t.system_attrs.get(OVER_BUDGET)
    ]
    return counted, sum(t.state == TrialState.WAITING for t in trials)


def budget(study: optuna.Study, config: SweepConfig) -> int:
    return int(study.user_attrs.get("n_trials", config.n_trials))


def run_worker(
    study: optuna.Study, config: SweepConfig, runs_dir: Path, log: Log = print, poll: float = 2.0
) -> int:
    """Run trials until the study-wide budget is spent (or the spec's timeout); returns trials run."""
    deadline = time.time() + config.timeout if config.timeout else None
    heartbeat = is_heartbeat_enabled(study._storage)
    ran = 0
    while deadline is None or time.time() < deadline:
        fail_stale_trials(study)
        counted, _ = counted_trials(study)
        n = budget(study, config)
        if len(counted) >= n:
            running = [t for t in counted if t.state == TrialState.RUNNING]
            if running and heartbeat:
                time.sleep(poll)  # finished elsewhere, or failed and re-queued when its worker is dead
                continue
            break
        trial = study.ask()
        counted, _ = counted_trials(study)
        numbers = sorted(t.number for t in counted)
        if numbers.index(trial.number) >= n:  # another worker took the last trial at the same time
            study._storage.set_trial_system_attr(trial._trial_id, OVER_BUDGET, True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        done = sum(t.state != TrialState.RUNNING for t in counted)
        log(f"[{done}/{n} trials done] trial {trial.number} starts")
        thread = get_heartbeat_thread(trial._trial_id, study._storage)
        thread.start()
        try:
            run_trial(study, trial, config, runs_dir, log)
        finally:
            thread.join()
        ran += 1
    return ran


def run_sweep(
    config: SweepConfig,
    url: str | None = None,
    study_name: str | None = None,
    n_trials: int | None = None,
    workers: int = 1,
    runs_dir: Path = Path("runs"),
    log: Log = print,
) -> optuna.Study:
    """Create or resume the study and run ``workers`` workers on it (this process is one)."""
    url = url or default_storage_url(config, runs_dir)
    check_workers(url, workers)
    study = open_study(config, url, study_name, n_trials)
    extra = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dynsweep",
                "sweep",
                "worker",
                "--storage",
                url,
                "--study",
                study.study_name,
                "--runs-dir",
                str(runs_dir),
            ]
        )
        for _ in range(workers - 1)
    ]
    try:
        run_worker(study, config, runs_dir, log)
    finally:
        for process in extra:
            process.wait()
    return study
