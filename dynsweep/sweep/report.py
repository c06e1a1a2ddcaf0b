"""What ``sweep status`` and ``sweep export`` show: budget and states, the Pareto table, a CSV."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import optuna

from dynsweep.sweep.config import SweepConfig
from dynsweep.sweep.driver import budget, counted_trials


def describe_spec(spec: dict) -> str:
    keys = ("stages", "num_bases", "reduction", "mode", "width_mult", "dynamic_width", "static_kernels")
    return " ".join(f"{k}={spec[k]}" for k in keys if k in spec)


def status_text(study: optuna.Study, config: SweepConfig, table: bool = True) -> str:
    counted, waiting = counted_trials(study)
    states = Counter(t.state.name for t in counted)
    done = sum(t.state.name != "RUNNING" for t in counted)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(states.items())) or "none yet"
    lines = [
        f"study {study.study_name}: {done}/{budget(study, config)} trials done ({counts}; {waiting} waiting)"
    ]
    for t in counted:
        if t.state.name == "FAIL":
            lines.append(f"  trial {t.number} FAIL: {t.user_attrs.get('fail_reason', 'no reason recorded')}")
    if not table:
        return "\n".join(lines)
    front = (
        sorted((t for t in study.best_trials if "duplicate_of" not in t.user_attrs), key=lambda t: t.values[1])
        if any(t.state.name == "COMPLETE" for t in counted)
        else []
    )
    lines.append("")
    lines.append(
        f"Pareto front ({' vs '.join(study.metric_names or config.objectives)}): {len(front)} trials"
    )
    header = f"{'trial':>5} {'model':<22} {'val_acc1':>8} {'MMACs':>9} {'params':>8}  spec"
    lines += [header, "-" * len(header)]
    for t in front:
        spec = (t.user_attrs.get("child_params") or {}).get("spec", {})
        name = t.user_attrs.get("preset") or t.user_attrs.get("model", "?")
        lines.append(
            f"{t.number:>5} {name:<22} {t.values[0]:>8.4f} {t.user_attrs['macs'] / 1e6:>9.3f} "
            f"{t.user_attrs['params'] / 1e6:>7.3f}M  {describe_spec(spec)}"
        )
    return "\n".join(lines)


def export_csv(study: optuna.Study, path: str | Path) -> int:
    frame = study.trials_dataframe(multi_index=False)
    frame.to_csv(path, index=False)
    return len(frame)
