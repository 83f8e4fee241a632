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

    [tuning]                                # optional: grid-search on the dev split first
    seeds = [0]                             # default: the first seed
    metric = ""                             # default: the dataset's main metric
    scenario = "missing"                    # default: the first scenario; its first value
    [tuning.grid.fedadam]                   # RunConfig keys, each a list; the grid is their product
    server_lr = [1e-3, 1e-2, 1e-1]

A scenario that sets `dataset` replaces the datasets axis for its cells (cross-task runs on the
medical data whatever the other scenarios use). Precedence, lowest first: RunConfig defaults,
settings, dataset_settings, the scenario, algorithm_settings, the tuned values, the axes.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from fedmllm.config import ALGORITHMS, DATASET_NAMES, TYPES, RunConfig, coerce, from_dict
from fedmllm.config_files import read_file
from fedmllm.errors import FedmllmError

STRATEGIES: dict[str, dict[str, bool]] = {
    "none": {"prompt_augmentation": False, "adaptive_regularization": False},
    "prompt_aug": {"prompt_augmentation": True, "adaptive_regularization": False},
    "adaptive_reg": {"prompt_augmentation": False, "adaptive_regularization": True},
    "both": {"prompt_augmentation": True, "adaptive_regularization": True},
}
# the prompt variants that are a prompt augmentation (RunConfig refuses them without it, and the
# others with it; tests/test_bench.py keeps this equal to RunConfig's rule)
AUGMENTED_VARIANTS = ("augmented", "augmented_answer_line")
# adaptive regularization pulls towards a global model, which these baselines do not train against
NO_GLOBAL_MODEL = tuple(a.name for a in ALGORITHMS.values() if not a.federated)  # baselines: Local, Centralized
# eval_split too: the bench scores test, and dev only in its [tuning] cells
AXIS_KEYS = ("model", "algorithm", "seed", "out", "prompt_augmentation", "adaptive_regularization", "eval_split")
LIST_KEYS = ("models", "datasets", "algorithms", "strategies", "strategy_algorithms", "seeds", "metrics")
TABLE_KEYS = ("settings", "scenarios", "dataset_settings", "algorithm_settings")
TUNING_KEYS = ("seeds", "metric", "scenario", "grid")
DONE, FAILED = "cell.json", "error.json"  # in a cell's folder: finished (written last), or raised
PRESETS = ("quick", "standard", "paper")
# the paper's metric per task first (the tuning metric by default); the others follow
DATASET_METRICS = {
    "hateful_memes": ("auc", "accuracy", "gen_auc"),
    "crisismmd": ("macro_f1", "accuracy"),
    "vqa_rad": ("overall", "closed_accuracy", "open_recall"),
    "slake": ("overall", "closed_accuracy", "open_recall"),
    "medalpaca": ("recall",),
}
Point = tuple[tuple[str, Any], ...]  # one grid point: (key, value) pairs in grid order


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
    point: Point = ()  # a [tuning] grid point: the cell scores the dev split under tuning/

    @property
    def path(self) -> Path:
        """The cell's run folder inside the bench folder."""
        if self.point:
            name = f"{self.algorithm}-{point_name(self.point)}-seed{self.seed}"
            return Path("tuning") / slug(self.model) / self.dataset / f"{self.scenario}-{self.value}" / name
        return (
            Path("cells")
            / slug(self.model)
            / self.dataset
            / f"{self.scenario}-{self.value}"
            / f"{self.algorithm}-{self.strategy}-seed{self.seed}"
        )

    @property
    def label(self) -> str:
        tuning = f" | tuning {point_name(self.point)}" if self.point else ""
        return (
            f"{self.model} | {self.dataset} | {self.scenario}={self.value} | "
            f"{self.algorithm}+{self.strategy} | seed {self.seed}{tuning}"
        )


@dataclass(frozen=True)
class Tuning:
    """A grid search on the dev split, run before the cells; one choice per model, dataset and
    algorithm, shared by every scenario column and strategy."""

    seeds: list[int]
    metric: str  # "" = each dataset's main metric
    scenario: str  # the [scenarios.X] table whose first value the grid runs on
    grid: dict[str, dict[str, list[Any]]]  # algorithm -> config key -> values to try

    def points(self, algorithm: str) -> list[Point]:
        """The grid of one algorithm in grid order: the product of its lists, last key fastest."""
        keys = list(self.grid[algorithm])
        return [tuple(zip(keys, combo, strict=True)) for combo in itertools.product(*self.grid[algorithm].values())]

    def metric_for(self, dataset: str) -> str:
        return self.metric or DATASET_METRICS[dataset][0]

    def keys(self) -> list[str]:
        """Every grid key of every algorithm, in first-seen order (results.csv's extra columns)."""
        return list(dict.fromkeys(k for per in self.grid.values() for k in per))


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
    tuning: Tuning | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("source", "tuning")}
        return out | ({"tuning": asdict(self.tuning)} if self.tuning else {})


Tuned = dict[tuple[str, str, str], dict[str, Any]]  # (model, dataset, algorithm) -> chosen grid values


def swept_key(values: dict[str, Any]) -> str:
    """The one key of a [scenarios.X] table that holds a list: the table's columns."""
    return next(k for k, v in values.items() if isinstance(v, list))


def point_name(point: Point) -> str:
    """A grid point as a folder-safe name: `server_lr=0.001,lr=0.0002`."""
    return re.sub(r"[^A-Za-z0-9._=,+-]+", "--", ",".join(f"{k}={v}" for k, v in point))


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
    known = (*LIST_KEYS, *TABLE_KEYS, "tuning")
    for key in data:
        if key not in known:
            raise FedmllmError(f"{source}: unknown matrix key '{key}' (known: {', '.join(known)})")
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
    if "tuning" in data:
        matrix = replace(matrix, tuning=_tuning(_table(data, "tuning", source), matrix))
    columns = {(c.scenario, c.value) for c in expand(matrix)}  # every cell's RunConfig validates here
    for name, values in matrix.scenarios.items():
        swept = swept_key(values)
        for value in values[swept]:
            if (name, value) not in columns:  # e.g. an augmented prompt_variant without prompt_aug
                raise FedmllmError(
                    f"{source} [scenarios.{name}]: {swept} = {value!r} gives no cell with these strategies "
                    f"{matrix.strategies} (an augmented prompt_variant needs prompt_aug or both)"
                )
    expand_tuning(matrix)  # and every grid point's
    return matrix


def _tuning(data: dict[str, Any], matrix: Matrix) -> Tuning:
    """The [tuning] table, checked: grid keys are config keys, each a non-empty list, for
    algorithms of the matrix; the scenario names a [scenarios.X] table."""
    source = f"{matrix.source} [tuning]"
    for key in data:
        if key not in TUNING_KEYS:
            raise FedmllmError(f"{source}: unknown key '{key}' (known: {', '.join(TUNING_KEYS)})")
    seeds = _list(data, "seeds", source) or matrix.seeds[:1]
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise FedmllmError(f"{source}: 'seeds' must be a list of integers, got {seeds}")
    metric, scenario = data.get("metric", ""), data.get("scenario", next(iter(matrix.scenarios)))
    if not isinstance(metric, str):
        raise FedmllmError(f"{source}: 'metric' must be a metric name (a string), got {metric!r}")
    if scenario not in matrix.scenarios:
        raise FedmllmError(f"{source}: 'scenario' {scenario!r} is not one of the [scenarios] {list(matrix.scenarios)}")
    grid = _table(data, "grid", source)
    if not grid:
        raise FedmllmError(f"{source}: needs at least one [tuning.grid.<algorithm>] table of lists")
    swept = {k for values in matrix.scenarios.values() for k, v in values.items() if isinstance(v, list)}
    clean = {}
    for algorithm in grid:
        where = f"{matrix.source} [tuning.grid.{algorithm}]"
        if algorithm not in matrix.algorithms:
            raise FedmllmError(f"{where}: algorithm '{algorithm}' is not in the matrix ({matrix.algorithms})")
        keys = _table(grid, algorithm, f"{source} [grid]")
        if not keys:
            raise FedmllmError(f"{where}: empty grid (give at least one config key and a list of values)")
        clean[algorithm] = {}
        for key, values in keys.items():
            name = key.replace("-", "_")
            if not isinstance(values, list) or not values:
                raise FedmllmError(
                    f"{where}: '{key}' must be a non-empty list of values to try, "
                    f"got {type(values).__name__} {values!r}"
                )
            if name in swept:
                raise FedmllmError(f"{where}: '{key}' is a scenario's swept key (the tables' columns), not tunable")
            # each value as a one-key table: unknown keys, axis keys and wrong types name the key
            clean[algorithm][name] = [coerce(name, _config_keys({key: v}, where)[name], where) for v in values]
    return Tuning(seeds=seeds, metric=metric, scenario=scenario, grid=clean)


def expand(matrix: Matrix, tuned: Tuned | None = None) -> list[Cell]:
    """Every cell, in run order: scenario, value, dataset, model, seed, algorithm, strategy.
    `tuned` holds the [tuning] choices; they override algorithm_settings."""
    tuned = tuned or {}
    cells: dict[Cell, None] = {}  # ordered set: a scenario fixing `dataset` repeats otherwise
    for scenario, values in matrix.scenarios.items():
        swept = swept_key(values)
        datasets = [values["dataset"]] if "dataset" in values and swept != "dataset" else matrix.datasets
        for value in values[swept]:
            for dataset in datasets:
                for model in matrix.models:
                    for seed in matrix.seeds:
                        for algorithm in matrix.algorithms:
                            # the tuned keys are config keys, never a strategy's or an axis's (parse checks)
                            chosen = tuned.get((model, dataset, algorithm), {})
                            for strategy in strategies_of(matrix, algorithm):
                                keys = cell_values(matrix, scenario, value, dataset, model, algorithm, seed, strategy)
                                keys |= chosen
                                if not prompt_fits(keys):
                                    continue
                                where = f"{matrix.source} (cell {scenario}={value}, {dataset}, {algorithm})"
                                config = from_dict(keys, where)
                                cell = Cell(model, dataset, scenario, value, algorithm, strategy, seed, config)
                                cells.setdefault(cell)
    return list(cells)


def cell_values(
    matrix: Matrix, scenario: str, value: Any, dataset: str, model: str, algorithm: str, seed: int, strategy: str
) -> dict[str, Any]:
    """One cell's config keys, lowest precedence first: settings, dataset_settings, the scenario
    (its fixed keys and this column's value), algorithm_settings, the strategy and the axes.
    The [tuning] values go on top (they are config keys no strategy or axis sets)."""
    values = matrix.scenarios[scenario]
    swept = swept_key(values)
    return {
        **matrix.settings,
        **matrix.dataset_settings.get(dataset, {}),
        **{k: v for k, v in values.items() if k != swept},
        swept: value,
        **matrix.algorithm_settings.get(algorithm, {}),
        **STRATEGIES[strategy],
        "dataset": dataset,
        "model": model,
        "algorithm": algorithm,
        "seed": seed,
    }


def tuning_datasets(matrix: Matrix) -> list[str]:
    """The datasets the grid runs on: the tuning scenario's own, else the datasets axis."""
    assert matrix.tuning is not None
    fixed = matrix.scenarios[matrix.tuning.scenario]
    return [fixed["dataset"]] if isinstance(fixed.get("dataset"), str) else matrix.datasets


def tuned_keys(matrix: Matrix) -> list[tuple[str, str, str]]:
    """(model, dataset, algorithm) of every choice the grid makes, in report order."""
    if matrix.tuning is None:
        return []
    algorithms = [a for a in matrix.algorithms if a in matrix.tuning.grid]
    return [(m, d, a) for d in tuning_datasets(matrix) for m in matrix.models for a in algorithms]


def expand_tuning(matrix: Matrix) -> list[Cell]:
    """The [tuning] cells: every grid point x tuning seed, on the tuning scenario's first value,
    strategy none, scoring the dev split. Order: dataset, model, algorithm, point, seed."""
    if matrix.tuning is None:
        return []
    tuning = matrix.tuning
    values = matrix.scenarios[tuning.scenario]
    value = values[swept_key(values)][0]
    cells = []
    for model, dataset, algorithm in tuned_keys(matrix):
        for point in tuning.points(algorithm):
            for seed in tuning.seeds:
                keys = cell_values(matrix, tuning.scenario, value, dataset, model, algorithm, seed, "none")
                where = f"{matrix.source} (tuning cell {tuning.scenario}={value}, {dataset}, {algorithm}, "
                config = from_dict(keys | dict(point) | {"eval_split": "dev"}, where + f"{point_name(point)})")
                cells.append(Cell(model, dataset, tuning.scenario, value, algorithm, "none", seed, config, point))
    return cells


def prompt_fits(values: dict[str, Any]) -> bool:
    """Whether a cell's strategy agrees with an explicit prompt_variant: a variant sweep gives the
    augmented variants to prompt_aug cells and the others to none cells; the contradicting
    pairs, which RunConfig refuses, are not cells (as adaptive_reg without a global model)."""
    variant = values.get("prompt_variant", "auto")
    return variant == "auto" or (variant in AUGMENTED_VARIANTS) == values["prompt_augmentation"]


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
        if name == "eval_split":
            raise FedmllmError(f"{source}: '{key}' is set by the bench (dev in [tuning] cells, test in the others)")
        if name in AXIS_KEYS or (name == "dataset" and not scenario):
            raise FedmllmError(f"{source}: '{key}' is set by the matrix axes, not here")
        if isinstance(value, list) and not scenario:
            raise FedmllmError(f"{source}: config key '{key}' takes one value here, not a list")
        for item in value if isinstance(value, list) else [value]:
            coerce(name, item, source)
        clean[name] = value
    return clean
