"""The GPU check script's exactness sections (batch-1 path, BatchNorm folding) pass on the CPU, so a
lent GPU's minutes are not spent on their bugs; the timing sections run only in a dry run by hand."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_models_check


def test_gpu_models_check_dry_run_passes_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    status = gpu_models_check.main(["--device", "cpu", "--quick", "--sections", "single", "fold"])
    output = capsys.readouterr().out
    assert status == 0, output
    # 11 layer configurations x 3 modes of the batch-1 path, and two folded models at two batches.
    lines = output.splitlines()
    assert sum(line.startswith("[single]") for line in lines) == 33
    assert sum(line.startswith("[fold]") for line in lines) == 4
    assert "done: 0 failed check(s)" in output


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_gpu_sweep_check_dry_run_sweeps_on_cpu(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    """The GPU sweep check's plumbing (specs, --devices 0, the study read back) on the CPU."""
    from benchmarks import gpu_sweep_check

    status = gpu_sweep_check.main(
        ["--accelerator", "cpu", "--quick", "--no-compile", "--trials", "1", "--out", str(tmp_path)]
    )
    output = capsys.readouterr().out
    assert status == 0, output
    rows = json.loads((tmp_path / "gpu_sweep_check.json").read_text())
    assert [(row["space"], row["compile"], row["complete"]) for row in rows] == [
        ("resnet18", False, 1),
        ("dy_resnet18", False, 1),
    ]


def test_gpu_models_check_latency_section_runs_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    """The latency section's CPU part: every preset against its baseline through dynsweep.latency
    (eager), and measure_for_trial's report and cache; CUDA graphs only on a GPU."""
    status = gpu_models_check.main(["--device", "cpu", "--quick", "--sections", "latency"])
    output = capsys.readouterr().out
    assert status == 0, output
    rows = [line.split() for line in output.splitlines() if line.startswith("[latency] dy_")]
    assert sorted((row[1], row[2]) for row in rows) == sorted(
        (preset, "eager") for preset in ("dy_mobilenet_v2", "dy_resnet18", "dy_resnet50", "dy_shufflenet_v2")
    )
    assert "[latency] CUDA graphs skipped: not a CUDA device" in output
    assert "[latency] measure_for_trial dy_resnet18/resnet18" in output and "cached again=True" in output
