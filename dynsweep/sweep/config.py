"""Sweep specs: ``sweeps/*.yaml`` as dataclasses, validated when loaded.

A spec names the architectures and, per architecture, the search space over DynamicSpec fields
(``choices`` or a ``low``/``high`` range, optionally ``step``/``log``), fixed spec fields
(``base``) and training overrides; the objectives, constraints, sampler, a study-wide trial
budget and timeout, training settings, data, seed, storage, early stopping, warm-start presets
and the hypervolume reference point (one value per objective; stored in the study and read by
dynsweep.analysis, so studies given the same point compare). Every error is a
:class:`SweepConfigError` whose message starts with the file and the field, and lists the
allowed values where there is a list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dynsweep.errors import DynsweepError

OBJECTIVES: dict[str, Literal["minimize", "maximize"]] = {
    "val_acc1": "maximize",
    "macs": "minimize",
    "params": "minimize",
    "latency_ms": "minimize",
    "latency_ratio": "minimize",
}
"""Objective name -> direction. The first two are the default (accuracy versus MACs); the latency
objectives (the median in ms, and the ratio to the architecture's static reference measured
interleaved with it) need a ``latency:`` block."""

SAMPLERS = ("nsga2", "tpe", "gp", "random")

TRAINING_DEFAULTS: dict[str, Any] = {"max_epochs": 3, "accelerator": "cpu", "threads": None}


class SweepConfigError(DynsweepError, ValueError):
    """An invalid sweep spec; the message names the field and what is allowed."""


def _fail(where: str, message: str) -> SweepConfigError:
    return SweepConfigError(f"{where}: {message}")


@dataclass
class Dimension:
    """One searched DynamicSpec field: ``choices`` (categorical) or ``low``..``high`` (int/float)."""

    name: str
    choices: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The dimension as a spec file writes it."""
        if self.choices is not None:
            return {"choices": list(self.choices)}
        found = {"low": self.low, "high": self.high, "step": self.step, "log": self.log}
        return {k: v for k, v in found.items() if v is not None and v is not False}

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high)) and (
            self.step is None or isinstance(self.step, int)
        )


@dataclass
class Architecture:
    model: str
    space: list[Dimension] = field(default_factory=list)
    base: dict[str, Any] = field(default_factory=dict)
    small_input: bool = True
    training: dict[str, Any] = field(default_factory=dict)
    seeds: int | None = None
    """Trainings per searched trial of this architecture (``repeats: {seeds: N}``), else the spec's."""

    def to_dict(self) -> dict[str, Any]:
        """The architecture as a spec file writes it."""
        found = {
            "model": self.model,
            "space": {dim.name: dim.to_dict() for dim in self.space},
            "base": dict(self.base),
            "small_input": self.small_input,
            "training": dict(self.training),
        }
        return found if self.seeds is None else {**found, "repeats": {"seeds": self.seeds}}


@dataclass
class Repeats:
    """How many seeds train each point: the value told to the study is their mean.

    ``seeds`` for every searched trial (an architecture's ``repeats: {seeds: N}`` overrides it),
    ``warm_start`` for the warm starts (default: ``seeds``), and ``front``: after the search, each
    point of the final front is retrained until it has that many seeds (0: no such phase).
    """

    seeds: int = 1
    warm_start: int | None = None
    front: int = 0


PRUNING_ALGORITHMS = ("moasha", "dominance")


@dataclass
class Pruning:
    """Early stopping of trials by their accuracy so far and their costs: ``moasha`` (asynchronous
    successive halving by Pareto rank, :mod:`dynsweep.sweep.moasha`: rungs at ``min_epochs *
    reduction_factor**k`` epochs) or ``dominance`` (:mod:`dynsweep.sweep.pruning`: stop a trial
    that ``min_dominating`` others dominated at the same epoch, after ``warmup_epochs``); none
    when ``algorithm`` is left out."""

    algorithm: str | None = None
    min_epochs: int = 1
    reduction_factor: int = 3
    min_dominating: int = 3
    warmup_epochs: int = 1


@dataclass
class StorageConfig:
    url: str | None = None
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 2


@dataclass
class Budget:
    """How many trials the study runs (counted study-wide, over all workers) and for how long."""

    n_trials: int = 12
    timeout: float | None = None
    reuse_duplicates: bool = True


@dataclass
class Constraints:
    """Upper limits on a trial's cost; a trial over one is told PRUNED, untrained."""

    max_macs: float | None = None
    max_params: float | None = None

    max_latency_ms: float | None = None

    def limits(self) -> dict[str, float]:
        """Objective name -> its limit, for the limits that are set."""
        pairs = (("macs", self.max_macs), ("params", self.max_params), ("latency_ms", self.max_latency_ms))
        return {name: limit for name, limit in pairs if limit is not None}


@dataclass
class SamplerConfig:
    """An Optuna sampler by name, with its keyword arguments (``seed`` comes from the spec)."""

    name: str = "nsga2"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepConfig:
    """A validated sweep spec, nested as the YAML file is; ``to_dict`` gives the file's shape back."""

    name: str
    architectures: list[Architecture]
    objectives: list[str] = field(default_factory=lambda: ["val_acc1", "macs"])
    constraints: Constraints = field(default_factory=Constraints)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    budget: Budget = field(default_factory=Budget)
    training: dict[str, Any] = field(default_factory=lambda: dict(TRAINING_DEFAULTS))
    data: dict[str, Any] = field(default_factory=lambda: {"class": "EmbeddedDigitsDataModule"})
    seed: int = 0
    storage: StorageConfig = field(default_factory=StorageConfig)
    pruning: Pruning = field(default_factory=Pruning)
    warm_start: list[str] = field(default_factory=list)
    reference_point: dict[str, float] | None = None
    repeats: Repeats = field(default_factory=Repeats)
    latency: dict[str, Any] | None = None
    """How each trial's latency is measured (``dynsweep.latency.LatencySettings`` as a dict), or None."""
    source: str = "<dict>"

    def architecture(self, model: str) -> Architecture:
        for arch in self.architectures:
            if arch.model == model:
                return arch
        raise KeyError(model)

    def training_for(self, model: str) -> dict[str, Any]:
        return {**self.training, **self.architecture(model).training}

    def seeds_for(self, model: str, preset: str | None) -> int:
        """How many seeds a trial of ``model`` trains (a warm start when ``preset`` is given)."""
        searched = self.architecture(model).seeds or self.repeats.seeds
        if preset is not None and self.repeats.warm_start is not None:
            return self.repeats.warm_start
        return searched if preset is None else self.repeats.seeds

    def to_dict(self) -> dict[str, Any]:
        """The spec as a spec file holds it: ``parse_config(config.to_dict())`` equals ``config``."""
        return {
            "name": self.name,
            "architectures": [arch.to_dict() for arch in self.architectures],
            "objectives": list(self.objectives),
            "constraints": dataclasses.asdict(self.constraints),
            "sampler": {"name": self.sampler.name, **self.sampler.options},
            "budget": dataclasses.asdict(self.budget),
            "training": dict(self.training),
            "data": dict(self.data),
            "seed": self.seed,
            "storage": dataclasses.asdict(self.storage),
            "pruning": dataclasses.asdict(self.pruning),
            "warm_start": list(self.warm_start),
            "reference_point": self.reference_point,
            "repeats": dataclasses.asdict(self.repeats),
            "latency": self.latency,
        }


FIXED_FIELDS = (
    "architectures",
    "objectives",
    "constraints",
    "sampler",
    "training",
    "data",
    "seed",
    "pruning",
    "warm_start",
    "reference_point",
    "repeats",
    "latency",
)
"""Spec fields fixed for a study's life: what is searched, how a trial is trained and judged. A
spec that differs from the stored one in any of them is refused before any trial runs."""

CHANGEABLE_FIELDS = ("budget", "storage")
"""Spec fields a resumed sweep may change: the new values are stored, and every worker reads them.
Per process and never stored: the storage URL, ``--runs-dir``, ``--workers`` (command-line options)."""


def spec_differences(stored: dict[str, Any], given: dict[str, Any], fields: tuple[str, ...]) -> list[str]:
    """``field.path: stored -> given`` for every leaf of ``fields`` that differs between two specs
    in the spec file's shape (``SweepConfig.to_dict``)."""
    found: list[str] = []

    def walk(path: str, a: Any, b: Any) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                walk(f"{path}.{key}", a.get(key), b.get(key))
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and a and isinstance(a[0], dict):
            for index, (x, y) in enumerate(zip(a, b)):
                walk(f"{path}[{index}]", x, y)
        elif a != b:
            found.append(f"{path}: {a!r} -> {b!r}")

    for name in fields:
        walk(name, stored.get(name), given.get(name))
    return found


def _check_keys(where: str, values: dict, allowed: Collection[str]) -> None:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise _fail(f"{where}.{unknown[0]}", f"unknown field; allowed: {', '.join(sorted(allowed))}")


def _check_training(where: str, training: dict[str, Any]) -> None:
    """The keys a sweep may set (the task's arguments, the Trainer's and the recipe's: see
    :func:`dynsweep.tasks.recipe.training_keys`) and the recipe's values."""
    from dynsweep.tasks.recipe import split_training, training_keys

    _check_keys(where, training, training_keys())
    try:
        split_training({k: v for k, v in training.items() if v is not None})
    except ValueError as error:
        field_name = str(error).split(":", 1)[0].rsplit(".", 1)[-1]
        raise _fail(f"{where}.{field_name}", str(error).split(": ", 1)[-1]) from None


def _pruning(where: str, value: Any) -> Pruning:
    raw = _mapping(where, value or {})
    if "enabled" in raw:
        raise _fail(
            f"{where}.enabled",
            "replaced by pruning.algorithm: moasha (successive halving by Pareto rank, with min_epochs and "
            "reduction_factor) or dominance (the rule that enabled: true ran, with min_dominating and "
            "warmup_epochs); leave pruning out for no early stopping",
        )
    _check_keys(where, raw, [f.name for f in dataclasses.fields(Pruning)])
    algorithm = raw.get("algorithm")
    if algorithm is not None and algorithm not in PRUNING_ALGORITHMS:
        raise _fail(f"{where}.algorithm", f"unknown {algorithm!r}; allowed: {', '.join(PRUNING_ALGORITHMS)}")
    numbers = {name: _positive(f"{where}.{name}", raw[name]) for name in raw if name != "algorithm"}
    if numbers.get("reduction_factor", 3) < 2:
        raise _fail(f"{where}.reduction_factor", f"must be an integer >= 2, got {numbers['reduction_factor']}")
    return Pruning(algorithm=algorithm, **numbers)


def _mapping(where: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise _fail(where, f"must be a mapping, got {type(value).__name__} {value!r}")
    return value


def _positive(where: str, value: Any, kind: type = int, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if kind is float and isinstance(value, str):  # PyYAML reads 4.2e9 (no dot, no sign) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if kind is int:
        ok = ok and float(value).is_integer()
    if not ok:
        raise _fail(where, f"must be a positive {'integer' if kind is int else 'number'}, got {value!r}")
    return int(value) if kind is int else float(value)


def _spec_fields() -> set[str]:
    from dynsweep.models import DynamicSpec

    return {f.name for f in dataclasses.fields(DynamicSpec)}


def _dimension(where: str, name: str, value: Any) -> Dimension:
    if isinstance(value, list):
        value = {"choices": value}
    value = _mapping(where, value)
    _check_keys(where, value, ("choices", "low", "high", "step", "log"))
    if "choices" in value:
        if set(value) - {"choices"}:
            raise _fail(where, "takes either choices or low/high, not both")
        choices = value["choices"]
        if not isinstance(choices, list) or not choices:
            raise _fail(f"{where}.choices", f"must be a non-empty list, got {choices!r}")
        return Dimension(name, choices=choices)
    if "low" not in value or "high" not in value:
        raise _fail(where, "needs choices: [...] or both low and high")
    low, high = value["low"], value["high"]
    for key, number in (("low", low), ("high", high), ("step", value.get("step"))):
        if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))):
            raise _fail(f"{where}.{key}", f"must be a number, got {number!r}")
    if low > high:
        raise _fail(where, f"low ({low}) must not exceed high ({high})")
    if value.get("log") and low <= 0:
        raise _fail(f"{where}.log", "a log range needs low > 0")
    return Dimension(name, low=low, high=high, step=value.get("step"), log=bool(value.get("log", False)))


def _architecture(where: str, value: Any, spec_fields: set[str]) -> Architecture:
    from dynsweep.models import DynamicSpec, list_models

    if isinstance(value, str):
        value = {"model": value}
    value = _mapping(where, value)
    _check_keys(where, value, ("model", "space", "base", "small_input", "training", "repeats"))
    models = list_models(presets=False)
    model = value.get("model")
    if model not in models:
        raise _fail(f"{where}.model", f"unknown architecture {model!r}; allowed: {', '.join(models)}")
    where = f"{where}({model})"
    base = _mapping(f"{where}.base", value.get("base") or {})
    _check_keys(f"{where}.base", base, spec_fields)
    try:
        DynamicSpec.from_dict(base)
    except ValueError as error:
        raise _fail(f"{where}.base", str(error)) from None
    space = _mapping(f"{where}.space", value.get("space") or {})
    _check_keys(f"{where}.space", space, spec_fields)
    dims = [_dimension(f"{where}.space.{name}", name, dim) for name, dim in space.items()]
    training = _mapping(f"{where}.training", value.get("training") or {})
    _check_training(f"{where}.training", training)
    repeats = _mapping(f"{where}.repeats", value.get("repeats") or {})
    _check_keys(f"{where}.repeats", repeats, ("seeds",))
    seeds = _positive(f"{where}.repeats.seeds", repeats["seeds"]) if "seeds" in repeats else None
    return Architecture(model, dims, base, bool(value.get("small_input", True)), training, seeds)


def parse_config(raw: Any, source: str = "<dict>") -> SweepConfig:
    """A validated :class:`SweepConfig` from the YAML's mapping."""
    from dynsweep.models import list_models

    raw = _mapping(source, raw)
    top = {
        "name",
        "architectures",
        "objectives",
        "constraints",
        "sampler",
        "budget",
        "training",
        "data",
        "seed",
        "storage",
        "pruning",
        "warm_start",
        "reference_point",
        "repeats",
        "latency",
    }
    _check_keys(source, raw, top)
    name = raw.get("name") or Path(source).stem
    if not isinstance(name, str):
        raise _fail(f"{source}: name", f"must be a string, got {name!r}")
    archs = raw.get("architectures")
    if not isinstance(archs, list) or not archs:
        raise _fail(f"{source}: architectures", "must be a non-empty list of {model: NAME, space: {...}}")
    spec_fields = _spec_fields()
    architectures = [_architecture(f"{source}: architectures[{i}]", a, spec_fields) for i, a in enumerate(archs)]
    models = [a.model for a in architectures]
    if len(set(models)) != len(models):
        raise _fail(f"{source}: architectures", f"an architecture is listed twice: {models}")

    objectives = raw.get("objectives", ["val_acc1", "macs"])
    if not isinstance(objectives, list) or len(objectives) < 2 or len(set(objectives)) != len(objectives):
        raise _fail(f"{source}: objectives", f"must be a list of two or more distinct names, got {objectives!r}")
    for o in objectives:
        if o not in OBJECTIVES:
            raise _fail(f"{source}: objectives", f"unknown objective {o!r}; allowed: {', '.join(OBJECTIVES)}")
    if objectives[0] != "val_acc1":
        raise _fail(f"{source}: objectives", "the first objective must be val_acc1 (maximised)")

    reference_point = raw.get("reference_point")
    if reference_point is not None:
        reference_point = _mapping(f"{source}: reference_point", reference_point)
        if set(reference_point) != set(objectives):
            raise _fail(
                f"{source}: reference_point",
                f"needs exactly one value per objective ({', '.join(objectives)}), got {sorted(reference_point)}",
            )
        for key, value in reference_point.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise _fail(f"{source}: reference_point.{key}", f"must be a number, got {value!r}")
        reference_point = {k: float(reference_point[k]) for k in objectives}

    constraints = _mapping(f"{source}: constraints", raw.get("constraints") or {})
    _check_keys(f"{source}: constraints", constraints, ("max_macs", "max_params", "max_latency_ms"))
    max_macs = _positive(f"{source}: constraints.max_macs", constraints.get("max_macs"), float, True)
    max_params = _positive(f"{source}: constraints.max_params", constraints.get("max_params"), float, True)
    max_latency = _positive(f"{source}: constraints.max_latency_ms", constraints.get("max_latency_ms"), float, True)
    latency = None
    if raw.get("latency") is not None:
        from dynsweep.latency import LatencySettings, LatencySettingsError

        try:
            latency = LatencySettings.from_dict(raw["latency"], where=f"{source}: latency").to_dict()
        except LatencySettingsError as error:
            raise SweepConfigError(str(error)) from None
    needs_latency = [o for o in objectives if o.startswith("latency")] + (["max_latency_ms"] if max_latency else [])
    if needs_latency and latency is None:
        raise _fail(
            f"{source}: latency", f"{', '.join(needs_latency)} need a latency: block (e.g. latency: {{runtime: eager}})"
        )

    sampler = raw.get("sampler", "nsga2")
    sampler_options: dict[str, Any] = {}
    if isinstance(sampler, dict):
        sampler_options = dict(sampler)
        sampler = sampler_options.pop("name", "nsga2")
    if sampler not in SAMPLERS:
        raise _fail(f"{source}: sampler", f"unknown sampler {sampler!r}; allowed: {', '.join(SAMPLERS)}")

    budget = _mapping(f"{source}: budget", raw.get("budget") or {})
    _check_keys(f"{source}: budget", budget, ("n_trials", "timeout", "reuse_duplicates"))
    n_trials = _positive(f"{source}: budget.n_trials", budget.get("n_trials", 12))
    timeout = _positive(f"{source}: budget.timeout", budget.get("timeout"), float, True)
    reuse_duplicates = budget.get("reuse_duplicates", True)
    if not isinstance(reuse_duplicates, bool):
        raise _fail(f"{source}: budget.reuse_duplicates", f"must be true or false, got {reuse_duplicates!r}")

    training = {**TRAINING_DEFAULTS, **_mapping(f"{source}: training", raw.get("training") or {})}
    _check_training(f"{source}: training", training)

    data = _mapping(f"{source}: data", raw.get("data") or {"class": "EmbeddedDigitsDataModule"})
    _check_keys(f"{source}: data", data, ("class", "init_args"))
    import dynsweep.data

    data_classes = [n for n in dynsweep.data.__all__ if n.endswith("DataModule")]
    if data.get("class") not in data_classes:
        raise _fail(f"{source}: data.class", f"unknown {data.get('class')!r}; allowed: {', '.join(data_classes)}")
    _mapping(f"{source}: data.init_args", data.setdefault("init_args", {}) or {})

    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise _fail(f"{source}: seed", f"must be an integer, got {seed!r}")

    storage_raw = _mapping(f"{source}: storage", raw.get("storage") or {})
    _check_keys(f"{source}: storage", storage_raw, [f.name for f in dataclasses.fields(StorageConfig)])
    storage = StorageConfig(**storage_raw)
    for key in ("heartbeat_interval", "grace_period"):
        _positive(f"{source}: storage.{key}", getattr(storage, key))

    pruning = _pruning(f"{source}: pruning", raw.get("pruning"))

    repeats_raw = _mapping(f"{source}: repeats", raw.get("repeats") or {})
    _check_keys(f"{source}: repeats", repeats_raw, ("seeds", "warm_start", "front"))
    repeats = Repeats(
        seeds=_positive(f"{source}: repeats.seeds", repeats_raw.get("seeds", 1)),
        warm_start=_positive(f"{source}: repeats.warm_start", repeats_raw.get("warm_start"), allow_none=True),
        front=0 if not repeats_raw.get("front") else _positive(f"{source}: repeats.front", repeats_raw["front"]),
    )

    warm_start = raw.get("warm_start") or []
    if not isinstance(warm_start, list):
        raise _fail(f"{source}: warm_start", f"must be a list of model or preset names, got {warm_start!r}")
    from dynsweep.models import get_model_entry

    for preset in warm_start:
        if preset not in list_models():
            raise _fail(
                f"{source}: warm_start",
                f"unknown model or preset {preset!r}; allowed: {', '.join(list_models())}",
            )
        entry = get_model_entry(preset)
        if (entry.baseline or entry.name) not in models:
            raise _fail(
                f"{source}: warm_start",
                f"{preset!r} is a {entry.baseline or entry.name}, which is not among the architectures {models}",
            )

    return SweepConfig(
        name=name,
        architectures=architectures,
        objectives=objectives,
        constraints=Constraints(max_macs, max_params, max_latency),
        sampler=SamplerConfig(sampler, sampler_options),
        budget=Budget(n_trials, timeout, reuse_duplicates),
        training=training,
        data=data,
        seed=seed,
        storage=storage,
        pruning=pruning,
        warm_start=list(warm_start),
        reference_point=reference_point,
        repeats=repeats,
        latency=latency,
        source=source,
    )


def from_stored(raw: dict[str, Any], source: str = "<study>") -> SweepConfig:
    """The SweepConfig a study stores (:class:`dynsweep.sweep.record.StudyRecord`).

    Studies store the spec file's shape; studies written by dynsweep 0.1 stored the flat fields of
    an earlier SweepConfig (``max_macs``, ``n_trials``, ``sampler_options`` at the top), which are
    read here too.
    """
    if "n_trials" in raw or "sampler_options" in raw:  # the flat shape of dynsweep 0.1
        raw = _from_flat(raw)
    if "enabled" in (raw.get("pruning") or {}):  # dynsweep 0.1's switch of the dominance rule
        old = raw["pruning"]
        rule = {
            "algorithm": "dominance",
            "min_dominating": old["min_dominating"],
            "warmup_epochs": old["warmup_epochs"],
        }
        raw = {**raw, "pruning": rule if old["enabled"] else {}}
    return parse_config({k: v for k, v in raw.items() if k != "source"}, source)


def _from_flat(flat: dict[str, Any]) -> dict[str, Any]:
    archs = [
        {
            **arch,
            "space": {
                d["name"]: {k: v for k, v in d.items() if k != "name" and v is not None and v is not False}
                for d in arch["space"]
            },
        }
        for arch in flat["architectures"]
    ]
    nested = {
        "constraints": {"max_macs": flat["max_macs"], "max_params": flat["max_params"]},
        "sampler": {"name": flat["sampler"], **flat["sampler_options"]},
        "budget": {
            "n_trials": flat["n_trials"],
            "timeout": flat["timeout"],
            "reuse_duplicates": flat.get("reuse_duplicates", True),
        },
    }
    moved = {"max_macs", "max_params", "sampler_options", "n_trials", "timeout", "reuse_duplicates", "source"}
    return {**{k: v for k, v in flat.items() if k not in moved}, **nested, "architectures": archs}


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep spec file."""
    path = Path(path)
    if not path.is_file():
        raise SweepConfigError(f"{path}: no such sweep spec file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SweepConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_config(raw, str(path))
