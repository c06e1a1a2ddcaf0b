"""Measured inference latency: eager PyTorch, ``torch.compile``, ONNX Runtime (CPU), CUDA graphs.

- :func:`measure` times a model (optionally interleaved with a reference) and returns a
  :class:`LatencyReport`: median, quartiles, runs, the ratio to the reference, host and settings.
- :class:`LatencySettings` is one measurement setting (a sweep spec's ``latency:`` block).
- :func:`measure_for_trial` is what a sweep worker calls per trial: cached per host and network,
  measured under a host-wide lock.
- :func:`add_latency` adds measured columns to the rows of ``dynsweep models``.
- :func:`block_dynamic_convolutions` rewrites an exported graph so that ONNX Runtime runs its
  dynamic convolutions with blocked kernels (for the host it runs on).
"""

from dynsweep.latency.measure import LatencyReport, measure, measure_with, time_models
from dynsweep.latency.onnx_layout import BlockedLayout, LayoutError, block_dynamic_convolutions
from dynsweep.latency.runtimes import inference_form, onnxruntime_session, runner
from dynsweep.latency.settings import DEVICES, RUNTIMES, RUNTIMES_BY_DEVICE, LatencySettings, LatencySettingsError
from dynsweep.latency.table import LATENCY_COLUMNS, add_latency, format_latency
from dynsweep.latency.timing import Spread, interleaved
from dynsweep.latency.trial import LatencyError, LatencyRecord, host_lock, measure_for_trial

__all__ = [
    "DEVICES",
    "LATENCY_COLUMNS",
    "RUNTIMES",
    "RUNTIMES_BY_DEVICE",
    "BlockedLayout",
    "LatencyError",
    "LatencyRecord",
    "LatencyReport",
    "LatencySettings",
    "LatencySettingsError",
    "LayoutError",
    "Spread",
    "add_latency",
    "block_dynamic_convolutions",
    "format_latency",
    "host_lock",
    "inference_form",
    "interleaved",
    "measure",
    "measure_for_trial",
    "measure_with",
    "onnxruntime_session",
    "runner",
    "time_models",
]
