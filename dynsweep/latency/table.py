"""Measured latency beside the MACs and parameters of ``dynsweep models``.

Each architecture is timed interleaved with its presets, in one process, so a preset's ratio to
its baseline compares times taken under the same load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dynsweep.latency.measure import input_shape, report_of, time_models
from dynsweep.latency.settings import LatencySettings

LATENCY_COLUMNS = ("latency_ms", "latency_q1_ms", "latency_q3_ms", "latency_runs", "latency_ratio", "latency_settings")


def add_latency(
    rows: Sequence[Mapping[str, Any]], settings: LatencySettings, small_input: bool = False
) -> list[dict[str, Any]]:
    """``rows`` (each with ``name``, ``baseline`` and ``input_size`` ``[C, H, W]``, as ``dynsweep
    models`` lists them) with the LATENCY_COLUMNS added: median and quartiles in milliseconds,
    runs, the ratio to the row's baseline measured in the same rounds (None for an architecture),
    and the settings with the host."""
    from dynsweep.models import build_model

    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["baseline"] or row["name"], []).append(row)
    measured: dict[str, dict[str, Any]] = {}
    for architecture, members in groups.items():
        input_size = members[0]["input_size"]
        names = [architecture, *(row["name"] for row in members if row["name"] != architecture)]
        models = {name: build_model(name, small_input=small_input, in_channels=input_size[0]) for name in names}
        timed = {name: seconds for (name, _), seconds in time_models(models, input_size, settings).items()}
        shape = input_shape(input_size, settings)
        for name in names:
            samples = {"model": timed[name]}
            if name != architecture:
                samples["reference"] = timed[architecture]
            report = report_of(samples, settings, shape)
            measured[name] = {
                "latency_ms": report.median_ms,
                "latency_q1_ms": report.q1_ms,
                "latency_q3_ms": report.q3_ms,
                "latency_runs": report.runs,
                "latency_ratio": report.ratio,
                "latency_settings": {
                    **settings.to_dict(),
                    "threads": report.threads,
                    "host": report.host,
                    "device_name": report.device_name,
                },
            }
    return [{**row, **measured[row["name"]]} for row in rows]


def format_latency(row: Mapping[str, Any]) -> str:
    """``12.3 ms [11.9-12.8] 0.71x``: median, quartiles and the ratio to the baseline, if any."""
    text = f"{row['latency_ms']:.2f} ms [{row['latency_q1_ms']:.2f}-{row['latency_q3_ms']:.2f}]"
    return text if row["latency_ratio"] is None else f"{text} {row['latency_ratio']:.2f}x"
