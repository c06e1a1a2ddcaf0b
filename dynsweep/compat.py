"""The private names of our dependencies that dynsweep uses, in one place.

Each has no public equivalent in the versions we support, and each has a test of its own, so an
upgrade that moves or changes one fails in one place. Imports are local so that
importing this module costs nothing and pulls in no dependency that a caller does not use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import numpy as np
    import optuna
    from optuna.storages._heartbeat import BaseHeartbeat


def pareto_front_mask(losses: np.ndarray) -> np.ndarray:
    """Optuna's non-dominated sort (behind ``Study.best_trials``): True for the rows of ``losses``
    (all minimised) that no other row dominates; ties are all on the front."""
    from optuna.study._multi_objective import _is_pareto_front

    return _is_pareto_front(losses, assume_unique_lexsorted=False)


def non_domination_rank(losses: np.ndarray) -> np.ndarray:
    """Optuna's fast non-dominated sort: each row's front (0 is the Pareto front) of minimised ``losses``."""
    from optuna.study._multi_objective import _fast_non_domination_rank

    return _fast_non_domination_rank(losses)


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Optuna's exact hypervolume (behind ``plot_hypervolume_history``) of minimised ``points``."""
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(points, reference))


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage object a study reads and writes (``Study._storage``)."""
    return study._storage


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial (``Trial._trial_id``), which storage methods take."""
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    """The storage's id of a study (``Study._study_id``)."""
    return study._study_id


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """The running trials of ``study`` whose heartbeat is older than the grace period, before
    ``fail_stale_trials`` fails them (``BaseHeartbeat._get_stale_trial_ids``); empty without
    heartbeats."""
    storage = storage_of(study)
    if not heartbeat_enabled(storage):
        return []
    return cast("BaseHeartbeat", storage)._get_stale_trial_ids(study_id(study))


def heartbeat_enabled(storage: optuna.storages.BaseStorage) -> bool:
    """True when the storage records heartbeats of running trials and fails stale ones."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


def heartbeat_thread(trial: optuna.Trial, storage: optuna.storages.BaseStorage) -> Any:
    """The thread that records ``trial``'s heartbeat while it runs (a no-op without heartbeats);
    Optuna starts one only inside ``Study.optimize``, dynsweep runs trials with ask and tell."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    return get_heartbeat_thread(trial_id(trial), storage)


def heartbeat_base() -> type[BaseHeartbeat]:
    """Optuna's heartbeat interface (``BaseHeartbeat``): a storage that implements it gets stale
    running trials failed (and retried) by ``optuna.storages.fail_stale_trials``."""
    from optuna.storages._heartbeat import BaseHeartbeat

    return BaseHeartbeat


def conv_base() -> type:
    """torch's common base of Conv1d/2d/3d and their transposes (``_ConvNd``)."""
    from torch.nn.modules.conv import _ConvNd

    return _ConvNd


def global_module_hooks() -> tuple[dict[int, Any], dict[int, Any]]:
    """torch's registries of forward and forward-pre hooks on every module
    (``register_module_forward_hook``); mutated in place, so the dicts returned stay current."""
    from torch.nn.modules import module

    return module._global_forward_hooks, module._global_forward_pre_hooks


def tensorboard_available() -> bool:
    """True when Lightning can write TensorBoard logs (tensorboard or tensorboardX installed)."""
    from lightning.fabric.loggers.tensorboard import _TENSORBOARD_AVAILABLE, _TENSORBOARDX_AVAILABLE

    return bool(_TENSORBOARD_AVAILABLE or _TENSORBOARDX_AVAILABLE)
