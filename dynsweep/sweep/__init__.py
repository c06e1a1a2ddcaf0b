"""Optuna sweeps of the DynamicSpec: accuracy-versus-MACs Pareto search, resumable and distributed.

The data flow, one file per step: ``config`` (sweeps/*.yaml -> SweepConfig) -> ``space``
(trial.suggest_* -> DynamicSpec dict) -> ``trial`` (cost, constraints, training in a child
process ``child``, told to the study) -> ``driver`` (storage, study, workers, budget) ->
``report`` (status, Pareto table, CSV). ``pruning`` holds the multi-objective early stop.
"""

from dynsweep.sweep.config import SweepConfig, SweepConfigError, load_config, parse_config
from dynsweep.sweep.driver import SweepError, load_study, open_study, run_sweep, run_worker

__all__ = [
    "SweepConfig",
    "SweepConfigError",
    "SweepError",
    "load_config",
    "load_study",
    "open_study",
    "parse_config",
    "run_sweep",
    "run_worker",
]
