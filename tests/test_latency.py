"""dynsweep.latency: what a report holds, the settings' checks, the per-host trial cache and its lock,
the onnx extra's message, and the ONNX graphs it runs (equal to PyTorch). No test asserts a time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from dynsweep.latency import (
    LatencyError,
    LatencySettings,
    LatencySettingsError,
    add_latency,
    block_dynamic_convolutions,
    host_lock,
    measure,
    measure_for_trial,
)
from dynsweep.models import build_model
from dynsweep.nn import DynamicConv2d
from dynsweep.nn.export import MissingExtraError, to_onnx

ROOT = Path(__file__).resolve().parents[1]
DIGITS = (1, 28, 28)  # the quickstart's inputs


def narrow(name: str, width: float = 0.125) -> nn.Module:
    """A quickstart-sized network: small-input stem, one input channel, ten classes."""
    torch.manual_seed(0)
    return build_model(name, {"width_mult": width}, num_classes=10, in_channels=1, small_input=True)


def quick(**changes) -> LatencySettings:
    return LatencySettings(threads=1, repeats=4, warmup=1).replace(**changes)


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, message",
    [
        ({"device": "tpu"}, "latency.device: must be one of ('cpu', 'cuda'), got 'tpu'"),
        (
            {"runtime": "tensorrt"},
            "latency.runtime: must be one of ('eager', 'compile', 'onnxruntime') on device 'cpu'",
        ),
        ({"runtime": "cuda_graph"}, "latency.runtime: must be one of ('eager', 'compile', 'onnxruntime') on device"),
        (
            {"device": "cuda", "runtime": "onnxruntime"},
            "latency.runtime: must be one of ('eager', 'compile', 'cuda_graph')",
        ),
        ({"batch_size": 0}, "latency.batch_size: must be an integer >= 1, got 0"),
        ({"threads": -1}, "latency.threads: must be an integer >= 1 or null, got -1"),
        ({"repeats": "many"}, "latency.repeats: must be an integer >= 1, got 'many'"),
        ({"warmup": -1}, "latency.warmup: must be an integer >= 0, got -1"),
        ({"input_size": [28]}, "latency.input_size: must be an image side or [height, width]"),
        ({"repeat": 3}, "latency: unknown key 'repeat'; allowed: device, runtime, batch_size, threads, input_size"),
    ],
)
def test_settings_name_the_field_and_the_allowed_values(values: dict, message: str) -> None:
    with pytest.raises(LatencySettingsError) as error:
        LatencySettings.from_dict(values)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_settings_errors_name_the_spec_location() -> None:
    with pytest.raises(LatencySettingsError, match=r"^sweep.latency.runtime: must be one of"):
        LatencySettings.from_dict({"runtime": "tvm"}, where="sweep.latency")


def test_settings_round_trip_and_square_input_size() -> None:
    settings = LatencySettings.from_dict({"runtime": "onnxruntime", "threads": 2, "input_size": 32})
    assert settings.input_size == (32, 32)
    assert LatencySettings.from_dict(settings.to_dict()) == settings
    assert LatencySettings.from_dict(None) == LatencySettings()


# --- measure -----------------------------------------------------------------------------------


def test_measure_reports_spread_runs_ratio_and_settings() -> None:
    threads = torch.get_num_threads()
    report = measure(
        narrow("dy_resnet18"), DIGITS, threads=1, repeats=5, warmup=1, batch_size=2, reference=narrow("resnet18")
    )
    assert report.runs == 5 and report.repeats == 5
    assert 0 < report.q1_ms <= report.median_ms <= report.q3_ms
    assert 0 < report.reference_q1_ms <= report.reference_median_ms <= report.reference_q3_ms
    assert 0 < report.ratio_q1 <= report.ratio <= report.ratio_q3
    assert (report.host, report.device, report.runtime) == (socket.gethostname(), "cpu", "eager")
    assert (report.threads, report.batch_size, report.input_size) == (1, 2, [1, 28, 28])
    assert report.versions["torch"] == torch.__version__
    assert torch.get_num_threads() == threads, "the measurement must restore PyTorch's threads"
    assert json.loads(json.dumps(report.to_dict()))["median_ms"] == report.median_ms


def test_measure_without_reference_has_no_ratio() -> None:
    report = measure(narrow("resnet18"), DIGITS, threads=1, repeats=3, warmup=0)
    assert report.ratio is None and report.reference_median_ms is None and report.runs == 3


def test_settings_input_size_replaces_the_model_size() -> None:
    from dynsweep.latency import measure_with

    report = measure_with(narrow("resnet18"), DIGITS, quick(input_size=[20, 24]))
    assert report.input_size == [1, 20, 24]


def test_onnxruntime_report_names_its_version() -> None:
    ort = pytest.importorskip("onnxruntime")
    report = measure(narrow("dy_resnet18"), DIGITS, runtime="onnxruntime", threads=1, repeats=3, warmup=1)
    assert report.runtime == "onnxruntime" and report.versions["onnxruntime"] == ort.__version__


@pytest.mark.parametrize("module", ["onnxruntime", "onnxscript"])
def test_missing_onnx_extra_is_one_line_naming_it(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    with pytest.raises(MissingExtraError) as error:
        measure(narrow("resnet18"), DIGITS, runtime="onnxruntime", threads=1, repeats=1)
    text = str(error.value)
    assert "\n" not in text
    assert text == f"{module} is not installed; it comes with the onnx extra: pip install 'dynsweep[onnx]'"


# --- the trial cache and the host lock ---------------------------------------------------------


def test_measure_for_trial_caches_per_network_and_setting(tmp_path: Path) -> None:
    model, reference = narrow("dy_resnet18"), narrow("resnet18")
    lock = tmp_path / "lock"
    first = measure_for_trial(model, reference, quick(), tmp_path, DIGITS, lock_path=lock)
    again = measure_for_trial(narrow("dy_resnet18"), reference, quick(), tmp_path, DIGITS, lock_path=lock)
    assert (first.cached, again.cached) == (False, True)
    assert again.report == first.report and again.key == first.key and again.measure_seconds == 0
    other_threads = measure_for_trial(model, reference, quick(threads=2), tmp_path, DIGITS, lock_path=lock)
    other_network = measure_for_trial(narrow("dy_resnet18", 0.25), reference, quick(), tmp_path, DIGITS, lock_path=lock)
    assert not other_threads.cached and not other_network.cached
    assert len({first.key, other_threads.key, other_network.key}) == 3
    (cache_file,) = tmp_path.glob("latency-*.json")
    assert cache_file.name == f"latency-{socket.gethostname()}.json"
    entries = json.loads(cache_file.read_text())
    assert len(entries) == 3
    assert entries[first.key]["key"]["threads"] == 1 and entries[other_threads.key]["key"]["threads"] == 2
    record = first.to_dict()
    assert record["cached"] is False and record["median_ms"] == first.report.median_ms


def refuse_export(x: torch.Tensor) -> torch.Tensor:
    if torch.compiler.is_exporting():
        raise RuntimeError("this network refuses\nto be exported")
    return x


torch.fx.wrap("refuse_export")  # a call in the folded (fx-traced) model, run again under export


class RefusedByTheExporter(nn.Module):
    """Runs in PyTorch, fails under torch.export: stands for a graph ONNX export cannot take."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return refuse_export(x).mean(dim=(1, 2, 3))


def test_failed_measurement_is_one_line_and_not_cached(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    settings = quick(runtime="onnxruntime")
    with pytest.raises(LatencyError) as error:
        measure_for_trial(
            RefusedByTheExporter(), narrow("resnet18"), settings, tmp_path, DIGITS, lock_path=tmp_path / "lock"
        )
    text = str(error.value)
    assert text.startswith("latency measurement failed (onnxruntime on cpu): ") and "refuses to be exported" in text
    assert "\n" not in text
    assert not list(tmp_path.glob("latency-*.json"))


def _run_python(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def test_host_lock_serialises_two_processes(tmp_path: Path) -> None:
    log, lock = tmp_path / "log", tmp_path / "lock"
    code = f"""
        import os, time
        from dynsweep.latency import host_lock
        with host_lock({str(lock)!r}):
            with open({str(log)!r}, "a") as f:
                f.write(f"enter {{os.getpid()}}\\n")
            time.sleep(1.0)
            with open({str(log)!r}, "a") as f:
                f.write(f"exit {{os.getpid()}}\\n")
    """
    processes = [_run_python(code) for _ in range(2)]
    for process in processes:
        assert process.wait(timeout=120) == 0, process.stdout.read()
    events = log.read_text().split()
    kinds, pids = events[0::2], events[1::2]
    assert kinds == ["enter", "exit", "enter", "exit"]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[0] != pids[2]


def test_measure_for_trial_waits_for_the_host_lock(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    code = f"""
        import torch
        from dynsweep.latency import LatencySettings, measure_for_trial
        from dynsweep.models import build_model
        kwargs = dict(num_classes=10, in_channels=1, small_input=True)
        model = build_model("dy_resnet18", {{"width_mult": 0.125}}, **kwargs)
        reference = build_model("resnet18", {{"width_mult": 0.125}}, **kwargs)
        print("measuring", flush=True)
        record = measure_for_trial(model, reference, LatencySettings(threads=1, repeats=2, warmup=0),
                                   {str(tmp_path)!r}, (1, 28, 28), lock_path={str(lock)!r})
        print("waited", record.lock_wait_seconds > 0, flush=True)
    """
    with host_lock(lock):
        process = _run_python(code)
        assert process.stdout.readline().strip() == "measuring"
        time.sleep(2.0)
        assert process.poll() is None, "the measurement ran while another process held the host lock"
        assert not list(tmp_path.glob("latency-*.json"))
    assert process.wait(timeout=120) == 0
    assert process.stdout.read().strip() == "waited True"
    assert len(json.loads(next(tmp_path.glob("latency-*.json")).read_text())) == 1


# --- dynsweep models --latency -----------------------------------------------------------------


def test_add_latency_measures_presets_against_their_baseline() -> None:
    rows = [
        {"name": "resnet18", "baseline": None, "input_size": [3, 32, 32], "macs": 1},
        {"name": "dy_resnet18", "baseline": "resnet18", "input_size": [3, 32, 32], "macs": 2},
    ]
    measured = add_latency(rows, quick(repeats=3), small_input=True)
    assert [row["name"] for row in measured] == ["resnet18", "dy_resnet18"]
    assert [row["macs"] for row in measured] == [1, 2], "the rows keep their columns"
    assert all(
        row["latency_runs"] == 3 and row["latency_q1_ms"] <= row["latency_ms"] <= row["latency_q3_ms"]
        for row in measured
    )
    assert measured[0]["latency_ratio"] is None and measured[1]["latency_ratio"] > 0
    assert measured[1]["latency_settings"]["runtime"] == "eager" and measured[1]["latency_settings"]["threads"] == 1


# --- the graphs ONNX Runtime runs --------------------------------------------------------------


def _onnx_output(path: Path, x: torch.Tensor) -> torch.Tensor:
    from dynsweep.latency import onnxruntime_session

    session = onnxruntime_session(path, threads=1)
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def _ops(path: Path) -> list[tuple[str, str]]:
    import onnx

    return [(node.domain, node.op_type) for node in onnx.load(str(path)).graph.node]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """``get(name) -> (model, x, portable graph)``: small-input presets, exported once."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    directory = tmp_path_factory.mktemp("latency_onnx")
    cache: dict[str, tuple] = {}

    def get(name: str) -> tuple[nn.Module, torch.Tensor, Path]:
        if name not in cache:
            torch.manual_seed(0)
            model = build_model(name, small_input=True, num_classes=10).eval()
            with torch.no_grad():  # non-trivial BatchNorm statistics, so folding is not the identity
                for bn in model.modules():
                    if isinstance(bn, nn.BatchNorm2d):
                        bn.running_mean.uniform_(-0.2, 0.2)
                        bn.running_var.uniform_(0.5, 1.5)
            x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
            path = directory / f"{name}.onnx"
            to_onnx(model, x, path)
            cache[name] = (model, x, path)
        return cache[name]

    return get


def test_portable_graph_fuses_each_kernel_with_one_matmul(exported) -> None:
    model, _, path = exported("dy_resnet18")
    dynamic = sum(isinstance(m, DynamicConv2d) for m in model.modules())
    ops = _ops(path)
    assert ("", "Einsum") not in ops
    assert ops.count(("", "MatMul")) == dynamic


@pytest.mark.parametrize("fusion", ["depthwise", "matmul"])
def test_blocked_graph_equals_pytorch(exported, fusion: str, tmp_path: Path) -> None:
    """Dy-ResNet18's channels (multiples of 32) all take the blocked path where this CPU has one."""
    model, x, path = exported("dy_resnet18")
    target = tmp_path / "blocked.onnx"
    layout = block_dynamic_convolutions(path, target, fusion)
    if layout.blocked_layers == 0:
        pytest.skip("ONNX Runtime has no blocked convolution on this CPU")
    assert layout.dynamic_layers == layout.blocked_layers == sum(isinstance(m, DynamicConv2d) for m in model.modules())
    ops = _ops(target)
    blocked_convs = ops.count(("com.microsoft.nchwc", "Conv"))
    fusion_convs = layout.dynamic_layers if fusion == "depthwise" else 0
    assert blocked_convs >= layout.dynamic_layers + fusion_convs
    assert ("", "MatMul") in ops if fusion == "matmul" else ("", "MatMul") not in ops
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(_onnx_output(target, x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


@pytest.mark.slow
def test_blocked_graph_with_unblocked_layers_equals_pytorch(exported, tmp_path: Path) -> None:
    """Dy-mobile's 6-channel groups stay off the blocked path: their kernels are fused blocked and
    reordered back (depthwise fusion), and the graph still computes the model."""
    model, x, path = exported("dy_mobilenet_v2")
    target = tmp_path / "blocked.onnx"
    layout = block_dynamic_convolutions(path, target)
    if layout.blocked_layers == 0:
        pytest.skip("ONNX Runtime has no blocked convolution on this CPU")
    assert 0 < layout.blocked_layers < layout.dynamic_layers
    assert _ops(target).count(("com.microsoft.nchwc", "ReorderOutput")) >= layout.dynamic_layers - layout.blocked_layers
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(_onnx_output(target, x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
