"""A benchmark matrix: axes in a TOML/YAML file, expanded into cells (one RunConfig each).

    models = ["tiny"]                       # hub ids, folders or "tiny"
    datasets = ["hateful_memes"]
    algorithms = ["fedavg", "fedprox", "local", "centralized"]
    strategies = ["none", "prompt_aug", "adaptive_reg", "both"]
    strategy_algorithms = ["fedavg"]        # optional: who gets the strategies other than none
    seeds = [0, 1]

    [settings]                              # RunConfig keys shared by every cell
    rounds = 10

    [scenarios.missing]                     # RunConfig keys; exactly one holds a list of values
    scenario = "missing"
    missing_rate = [0.3, 0.4, 0.5]

    [dataset_settings.crisismmd]            # RunConfig keys for one dataset
    rounds = 40

    [algorithm_settings.fedadagrad]         # RunConfig keys for one algorithm
    server_lr = 0.01

A scenario that sets `dataset` replaces the datasets axis for its cells (cross-task runs on the
medical data whatever the other scenarios use). Precedence, lowest first: RunConfig defaults,
settings, dataset_settings, the scenario, algorithm_settings, the axes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fedmllm.config import ALGORITHMS, DATASET_NAMES, TYPES, RunConfig, coerce, from_dict, read_file
from fedmllm.errors import FedmllmError

STRATEGIES: dict[str, dict[str, bool]] = {
    "none": {"prompt_augmentation": False, "adaptive_regularization": False},
    "prompt_aug": {"prompt_augmentation": True, "adaptive_regularization": False},
    "adaptive_reg": {"prompt_augmentation": False, "adaptive_regularization": True},
    "both": {"prompt_augmentation": True, "adaptive_regularization": True},
}
# adaptive regularization pulls towards a global model, which these baselines do not train against
NO_GLOBAL_MODEL = ("local", "centralized")
AXIS_KEYS = ("model", "algorithm", "seed", "out", "prompt_augmentation", "adaptive_regularization")
LIST_KEYS = ("models", "datasets", "algorithms", "strategies", "strategy_algorithms", "seeds", "metrics")
TABLE_KEYS = ("settings", "scenarios", "dataset_settings", "algorithm_settings")
PRESETS = ("quick", "paper")


@dataclass(frozen=True)
class Cell:
    model: str
    dataset: str
    scenario: str
    value: Any
    algorithm: str
    strategy: str
    seed: int
    config: RunConfig = field(compare=False)

    @property
    def path(self) -> Path:
        """The cell's run folder inside the bench folder."""
        return (
            Path("cells")
            / slug(self.model)
            / self.dataset
            / f"{self.scenario}-{self.value}"
            / f"{self.algorithm}-{self.strategy}-seed{self.seed}"
        )

    @property
    def label(self) -> str:
        return (
            f"{self.model} | {self.dataset} | {self.scenario}={self.value} | "
            f"{self.algorithm}+{self.strategy} | seed {self.seed}"
        )


@dataclass(frozen=True)
class Matrix:
    models: list[str]
    datasets: list[str]
    algorithms: list[str]
    strategies: list[str]
    strategy_algorithms: list[str]
    seeds: list[int]
    metrics: list[str]  # table metrics; empty = each dataset's main metrics
    settings: dict[str, Any]
    scenarios: dict[str, dict[str, Any]]
    dataset_settings: dict[str, dict[str, Any]]
    algorithm_settings: dict[str, dict[str, Any]]
    source: str = "matrix"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "source"}


def slug(name: str) -> str:
    """A folder name for a model: hub ids keep owner and name, local folders their last part."""
    path = Path(name)
    if path.is_absolute() or name.startswith("."):
        name = path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name).strip("-") or "model"


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise FedmllmError(f"unknown preset '{name}' (choose from {list(PRESETS)})")
    return Path(str(resources.files("fedmllm.bench") / "presets" / f"{name}.toml"))


def read(path: Path) -> Matrix:
    return parse(read_file(Path(path)), str(path))


def parse(data: dict[str, Any], source: str) -> Matrix:
    """Check every key and value, naming it in the error; cell configs are built here too, so a
    bad value fails before the first cell runs."""
    for key in data:
        if key not in LIST_KEYS + TABLE_KEYS:
            raise FedmllmError(f"{source}: unknown matrix key '{key}' (known: {', '.join(LIST_KEYS + TABLE_KEYS)})")
    lists = {key: _list(data, key, source) for key in LIST_KEYS}
    if not lists["algorithms"]:
        raise FedmllmError(f"{source}: matrix key 'algorithms' is required (a list, e.g. [\"fedavg\"])")
    _choices(lists["algorithms"] + lists["strategy_algorithms"], ALGORITHMS, "algorithms", source)
    _choices(lists["strategies"], tuple(STRATEGIES), "strategies", source)
    _choices(lists["datasets"], DATASET_NAMES, "datasets", source)
    if any(isinstance(s, bool) or not isinstance(s, int) for s in lists["seeds"]):
        raise FedmllmError(f"{source}: matrix key 'seeds' must be a list of integers, got {lists['seeds']}")
    tables = {key: _table(data, key, source) for key in TABLE_KEYS}
    tables["settings"] = _config_keys(tables["settings"], f"{source} [settings]")
    for kind in ("dataset_settings", "algorithm_settings", "scenarios"):
        for name in tables[kind]:
            _table(tables[kind], name, f"{source} [{kind}]")
            where = f"{source} [{kind}.{name}]"
            tables[kind][name] = _config_keys(tables[kind][name], where, scenario=kind == "scenarios")
    _choices(list(tables["algorithm_settings"]), ALGORITHMS, "algorithm_settings", source)
    _choices(list(tables["dataset_settings"]), DATASET_NAMES, "dataset_settings", source)
    if not tables["scenarios"]:
        raise FedmllmError(f"{source}: matrix needs at least one [scenarios.<name>] table")
    for name, values in tables["scenarios"].items():
        swept = [k for k, v in values.items() if isinstance(v, list)]
        if len(swept) != 1:
            raise FedmllmError(
                f"{source} [scenarios.{name}]: exactly one key must hold a list of values "
                f"(the table's columns), found {swept or 'none'}"
            )
        if not values[swept[0]]:
            raise FedmllmError(f"{source} [scenarios.{name}]: '{swept[0]}' is an empty list")
    matrix = Matrix(
        models=lists["models"] or ["tiny"],
        datasets=lists["datasets"] or ["hateful_memes"],
        algorithms=lists["algorithms"],
        strategies=lists["strategies"] or ["none"],
        strategy_algorithms=lists["strategy_algorithms"] or lists["algorithms"],
        seeds=lists["seeds"] or [0],
        metrics=lists["metrics"],
        settings=tables["settings"],
        scenarios=tables["scenarios"],
        dataset_settings=tables["dataset_settings"],
        algorithm_settings=tables["algorithm_settings"],
        source=source,
    )
    expand(matrix)  # every cell's RunConfig validates here, errors naming the matrix
    return matrix


def expand(matrix: Matrix) -> list[Cell]:
    """Every cell, in run order: scenario, value, dataset, model, seed, algorithm, strategy."""
    cells: dict[Cell, None] = {}  # ordered set: a scenario fixing `dataset` repeats otherwise
    for scenario, values in matrix.scenarios.items():
        swept = next(k for k, v in values.items() if isinstance(v, list))
        fixed = {k: v for k, v in values.items() if k != swept}
        for value in values[swept]:
            for dataset in [fixed["dataset"]] if "dataset" in fixed else matrix.datasets:
                for model in matrix.models:
                    for seed in matrix.seeds:
                        for algorithm in matrix.algorithms:
                            for strategy in strategies_of(matrix, algorithm):
                                values = {
                                    **matrix.settings,
                                    **matrix.dataset_settings.get(dataset, {}),
                                    **fixed,
                                    swept: value,
                                    **matrix.algorithm_settings.get(algorithm, {}),
                                    **STRATEGIES[strategy],
                                    "dataset": dataset,
                                    "model": model,
                                    "algorithm": algorithm,
                                    "seed": seed,
                                }
                                where = f"{matrix.source} (cell {scenario}={value}, {dataset}, {algorithm})"
                                config = from_dict(values, where)
                                cell = Cell(model, dataset, scenario, value, algorithm, strategy, seed, config)
                                cells.setdefault(cell)
    return list(cells)


def strategies_of(matrix: Matrix, algorithm: str) -> list[str]:
    out = []
    for strategy in matrix.strategies:
        if strategy != "none" and algorithm not in matrix.strategy_algorithms:
            continue
        if STRATEGIES[strategy]["adaptive_regularization"] and algorithm in NO_GLOBAL_MODEL:
            continue
        out.append(strategy)
    return out


def _list(data: dict[str, Any], key: str, source: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise FedmllmError(f"{source}: matrix key '{key}' must be a list, got {type(value).__name__} {value!r}")
    return value


def _table(data: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise FedmllmError(f"{source}: '{key}' must be a table of keys, got {type(value).__name__} {value!r}")
    return value


def _choices(values: list[Any], allowed: tuple[str, ...], key: str, source: str) -> None:
    for v in values:
        if v not in allowed:
            raise FedmllmError(f"{source}: matrix key '{key}': '{v}' is not one of {list(allowed)}")


def _config_keys(values: dict[str, Any], source: str, scenario: bool = False) -> dict[str, Any]:
    """The table with keys in underscore form; a scenario may fix the dataset and sweep a list."""
    clean = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in TYPES:
            raise FedmllmError(f"{source}: unknown config key '{key}'")
        if name in AXIS_KEYS or (name == "dataset" and not scenario):
            raise FedmllmError(f"{source}: '{key}' is set by the matrix axes, not here")
        if isinstance(value, list) and not scenario:
            raise FedmllmError(f"{source}: config key '{key}' takes one value here, not a list")
        for item in value if isinstance(value, list) else [value]:
            coerce(name, item, source)
        clean[name] = value
    return clean
