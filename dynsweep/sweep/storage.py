"""Storage URLs to Optuna storages, and the one way to open a study that must already exist.

``sqlite:///PATH`` (the default, ``runs/<name>.db``), any SQLAlchemy URL (``postgresql://...``,
``mysql://...``) with heartbeats, so the RUNNING trials of a dead worker are failed and re-queued
with the same params (``RetryHeartbeatStaleTrialCallback``), or ``journal:PATH`` for Optuna's
journal file, to which dynsweep adds the same recovery: a lease file per running trial that its
worker renews (:class:`LeasedJournalStorage`). Creating a study creates its storage; reading one (``sweep status``, ``worker``,
``export``, ``replay``, ``pareto``) never does: a mistyped path is an error naming it.
"""

from __future__ import annotations

import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from dynsweep import compat
from dynsweep.errors import DynsweepError
from dynsweep.sweep.config import StorageConfig

if TYPE_CHECKING:  # mypy needs a static base class; the private name stays in compat
    from dynsweep.compat import BaseHeartbeat as _HeartbeatBase
else:
    _HeartbeatBase = compat.heartbeat_base()


class StorageError(DynsweepError):
    """A storage URL that cannot be opened as asked; the message names the URL or file."""


def default_url(name: str, runs_dir: Path) -> str:
    """``sqlite:///RUNS_DIR/NAME.db``: a study per spec, beside its trials' directories."""
    return f"sqlite:///{runs_dir / (name + '.db')}"


def check_workers(url: str, workers: int) -> None:
    """Several processes on one SQLite file fight over its lock: refuse before starting any."""
    if workers > 1 and url.startswith("sqlite"):
        raise StorageError(
            f"{workers} workers on one SQLite file ({url}) would fight over its lock; use PostgreSQL or "
            "MySQL (--storage postgresql://USER@HOST/DB) or Optuna's journal file "
            "(--storage journal:runs/NAME.log)"
        )


def check_storage(url: str) -> None:
    """Fail now, naming the URL, if the storage cannot be reached; creates nothing."""
    journal, sqlite = journal_path(url), sqlite_path(url)
    if journal is not None:
        if journal.is_dir():
            raise StorageError(f"storage: journal:{journal} is a folder; give a file, e.g. journal:runs/NAME.log")
        return
    if sqlite is not None:
        if sqlite.is_dir():
            raise StorageError(f"storage: {sqlite} is a folder; give a file, e.g. sqlite:///runs/NAME.db")
        return
    try:
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except Exception as error:
        raise StorageError(f"storage: cannot open {url}: {_first_line(error)}") from None


def journal_path(url: str) -> Path | None:
    return Path(url[len("journal:") :]) if url.startswith("journal:") else None


def sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///") :].split("?", 1)[0]) if url.startswith("sqlite:///") else None


def make_storage(url: str, settings: StorageConfig | None = None) -> optuna.storages.BaseStorage:
    """The storage behind ``url``, created if missing (its folder too)."""
    settings = settings or StorageConfig()
    journal = journal_path(url)
    if journal is not None:
        if journal.is_dir():
            raise StorageError(f"storage: journal:{journal} is a folder; give a file, e.g. journal:runs/NAME.log")
        journal.parent.mkdir(parents=True, exist_ok=True)
        return LeasedJournalStorage(journal, settings)
    database = sqlite_path(url)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return RDBStorage(
                url,
                heartbeat_interval=settings.heartbeat_interval,
                grace_period=settings.grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=settings.max_retry),
            )
        except Exception as error:
            raise StorageError(f"storage: cannot open {url}: {_first_line(error)}") from None


class LeasedJournalStorage(JournalStorage, _HeartbeatBase):
    """Optuna's journal file with heartbeats: a running trial's worker touches the lease file
    ``<journal>.leases/<trial id>`` every ``heartbeat_interval`` seconds, and a running trial
    whose lease is older than ``grace_period`` is stale: ``optuna.storages.fail_stale_trials``
    fails it and re-queues it, as it does on the databases."""

    def __init__(self, path: Path, settings: StorageConfig) -> None:
        super().__init__(JournalFileBackend(str(path)))
        self.leases = path.with_name(path.name + ".leases")
        self.settings = settings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.retry = RetryHeartbeatStaleTrialCallback(max_retry=settings.max_retry)

    def record_heartbeat(self, trial_id: int) -> None:
        self.leases.mkdir(exist_ok=True)
        (self.leases / str(trial_id)).touch()

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            lease = self.leases / str(compat.trial_id(trial))
            # A running trial has started.
            renewed = lease.stat().st_mtime if lease.exists() else cast(datetime, trial.datetime_start).timestamp()
            if now - renewed > self.settings.grace_period:
                stale.append(compat.trial_id(trial))
        return stale

    def get_heartbeat_interval(self) -> int:
        return self.settings.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> RetryHeartbeatStaleTrialCallback:
        return self.retry


def open_existing(url: str, settings: StorageConfig | None = None) -> optuna.storages.BaseStorage:
    """The storage behind ``url`` if it already holds Optuna studies; creates nothing (no file, no
    folder, no schema), so a mistyped path or URL is a :class:`StorageError` naming it."""
    journal = journal_path(url)
    if journal is not None:
        if not journal.is_file():
            raise StorageError(f"storage: no journal file at {journal}")
        return make_storage(url, settings)
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise StorageError(f"storage: no study database at {path}")
    try:
        engine = sqlalchemy.create_engine(url)
        try:
            has_studies = sqlalchemy.inspect(engine).has_table("studies")
        finally:
            engine.dispose()
    except Exception as error:
        raise StorageError(f"storage: cannot open {url}: {_first_line(error)}") from None
    if not has_studies:
        raise StorageError(f"storage: {url} holds no Optuna studies (no 'studies' table)")
    return make_storage(url, settings)


def existing_study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return optuna.get_all_study_names(storage)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
