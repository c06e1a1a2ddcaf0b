"""dynsweep.compat: each private name of a dependency that dynsweep uses still behaves as we rely on."""

from __future__ import annotations

import time
import warnings

import numpy as np
import optuna
import pytest
import torch
from optuna.storages import RDBStorage

from dynsweep import compat


def test_pareto_front_mask_is_best_trials():
    rng = np.random.default_rng(0)
    study = optuna.create_study(directions=["maximize", "minimize"])
    for _ in range(60):
        study.add_trial(optuna.trial.create_trial(values=[rng.choice([0.5, 0.6, 0.7]), rng.choice([1.0, 2.0, 3.0])]))
    losses = np.array([[-t.values[0], t.values[1]] for t in study.trials])
    mask = compat.pareto_front_mask(losses)
    assert {i for i in range(60) if mask[i]} == {t.number for t in study.best_trials}


def test_non_domination_rank_numbers_the_fronts():
    losses = np.array([[1.0, 1.0], [2.0, 2.0], [0.5, 3.0], [3.0, 3.0]])
    assert compat.non_domination_rank(losses).tolist() == [0, 1, 0, 2]


def test_hypervolume_of_two_boxes():
    points = np.array([[-0.8, 50.0], [-0.9, 100.0]])  # accuracy negated, cost
    # 0.8 x (200 - 50) + (0.9 - 0.8) x (200 - 100) = 120 + 10
    assert compat.hypervolume(points, np.array([0.0, 200.0])) == pytest.approx(130.0)


def test_storage_and_trial_id_reach_the_stored_trial(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    trial = study.ask()
    storage = compat.storage_of(study)
    assert isinstance(storage, optuna.storages.BaseStorage)
    assert storage.get_trial(compat.trial_id(trial)).number == trial.number


def test_heartbeats_of_a_running_trial(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = RDBStorage(f"sqlite:///{tmp_path / 'h.db'}", heartbeat_interval=1, grace_period=2)
    assert issubclass(RDBStorage, compat.heartbeat_base())
    assert compat.heartbeat_enabled(storage) and not compat.heartbeat_enabled(optuna.storages.InMemoryStorage())
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    thread = compat.heartbeat_thread(trial, storage)
    thread.start()
    time.sleep(0.5)
    thread.join()
    # With a heartbeat recorded and within the grace period, the trial is not stale.
    optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state == optuna.trial.TrialState.RUNNING


def test_global_module_hooks_see_a_registered_hook():
    forward, pre = compat.global_module_hooks()
    handles = [
        torch.nn.modules.module.register_module_forward_hook(lambda *args: None),
        torch.nn.modules.module.register_module_forward_pre_hook(lambda *args: None),
    ]
    try:
        assert len(forward) == 1 and len(pre) == 1
    finally:
        for handle in handles:
            handle.remove()
    assert not forward and not pre


def test_conv_base_and_tensorboard_flag():
    assert issubclass(torch.nn.Conv2d, compat.conv_base()) and not issubclass(torch.nn.Linear, compat.conv_base())
    assert isinstance(compat.tensorboard_available(), bool)
