"""Devices per worker: parsing, grouping and the CUDA_VISIBLE_DEVICES a trial's process gets."""

from __future__ import annotations

import pytest

from dynsweep.errors import UsageError
from dynsweep.sweep.devices import device_groups, parse_devices, visible_devices


def test_devices_split_into_one_group_per_worker():
    assert parse_devices("0,1,2,3") == ["0", "1", "2", "3"] and parse_devices(None) is None
    assert device_groups(["0", "1", "2", "3"], None, None) == [["0"], ["1"], ["2"], ["3"]]
    assert device_groups(["0", "1", "2", "3"], 2, 2) == [["0", "1"], ["2", "3"]]
    assert device_groups(None, None, 3) is None


@pytest.mark.parametrize(
    "devices, per_trial, workers, message",
    [
        (["0", "1", "2"], 2, None, "3 devices (0,1,2) do not divide into groups of --devices-per-trial 2"),
        (["0", "1", "2", "3"], 2, 4, "--workers 4 disagrees with --devices: 4 devices in groups of 2 make 2 workers"),
        (None, 2, None, "--devices-per-trial needs --devices"),
    ],
)
def test_device_options_that_do_not_fit_are_usage_errors(devices, per_trial, workers, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        device_groups(devices, per_trial, workers)


@pytest.mark.parametrize("text", ["0,0", "gpu0", ""])
def test_bad_device_lists_name_the_option(text):
    with pytest.raises(UsageError, match="--devices"):
        parse_devices(text)


def test_groups_count_within_the_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_devices(["2", "3"]) == "2,3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")  # as SLURM sets it for an allocation
    assert visible_devices(["0", "1"]) == "4,5" and visible_devices(["3"]) == "7"
    with pytest.raises(UsageError, match="this process sees 4 devices"):
        visible_devices(["4"])
