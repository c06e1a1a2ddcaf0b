"""Optuna sweeps of the DynamicSpec: accuracy-versus-MACs Pareto search, resumable and distributed.

The data flow, one file per step: ``config`` (sweeps/*.yaml -> SweepConfig) -> ``space``
(trial.suggest_* -> DynamicSpec dict) -> ``record`` (what is written about a trial and a study)
-> ``trial`` (cost, constraints, training in a child process ``child``, told to the study) ->
``study`` (created from the spec, the budget) and ``storage`` (URLs, opening without creating)
-> ``worker`` (the trial loop, several workers). ``pruning`` holds the multi-objective early stop.
"""

from dynsweep.sweep.config import SweepConfig, SweepConfigError, load_config, parse_config
from dynsweep.sweep.record import ReferencePointError, StudyRecord, TrialRecord
from dynsweep.sweep.storage import StorageError
from dynsweep.sweep.study import SweepError, load_study, open_study
from dynsweep.sweep.worker import run_sweep, run_worker

__all__ = [
    "ReferencePointError",
    "StorageError",
    "StudyRecord",
    "SweepConfig",
    "SweepConfigError",
    "SweepError",
    "TrialRecord",
    "load_config",
    "load_study",
    "open_study",
    "parse_config",
    "run_sweep",
    "run_worker",
]
