"""[tuning]: the grid's dev scores, read from the finished tuning cells, and the choice per
model, dataset and algorithm: the point with the best mean over the tuning seeds (ties: the
first in grid order).

The choice is never stored as an input: every `fedmllm bench` (a resumed one included) and
every `fedmllm report` recomputes it from the tuning cells' summaries, so the same folders give
the same choice and the same cell configs. It exists only once every grid cell of its key has
finished: a choice among the points that happened to finish would change when a failed point is
retried, and with it the configs of cells that already ran.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedmllm.bench.matrix import DONE, Cell, Matrix, Point, Tuned, expand_tuning, point_name, swept_key, tuned_keys
from fedmllm.bench.stats import mean_ci
from fedmllm.errors import FedmllmError

Key = tuple[str, str, str]  # (model, dataset, algorithm)


@dataclass
class GridScore:
    point: Point
    scores: dict[int, float]  # tuning seed -> dev metric, for the seeds whose cell finished
    missing: list[int]  # tuning seeds whose cell failed or has not run

    @property
    def mean(self) -> float | None:
        return mean_ci(list(self.scores.values())).mean if self.scores else None


@dataclass
class Choice:
    model: str
    dataset: str
    algorithm: str
    metric: str
    grid: list[GridScore]
    chosen: int | None  # index into grid; None until every grid cell has finished

    @property
    def key(self) -> Key:
        return self.model, self.dataset, self.algorithm

    @property
    def values(self) -> dict[str, Any] | None:
        return dict(self.grid[self.chosen].point) if self.chosen is not None else None


def choose(grid: list[GridScore]) -> int | None:
    """The index of the point with the highest mean dev score, the first one on ties; None
    while any point misses a seed."""
    if not grid or any(g.missing or not g.scores for g in grid):
        return None
    means = [g.mean for g in grid]
    return max(range(len(grid)), key=lambda i: (means[i], -i))


def dev_score(out: Path, cell: Cell, metric: str) -> float | None:
    """The finished tuning cell's final dev metric; None if it has not finished."""
    folder = out / cell.path
    if not (folder / DONE).is_file():
        return None
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    if summary.get("eval_split") != "dev":
        raise FedmllmError(f"{folder}: a tuning cell must score the dev split, it scored {summary.get('eval_split')!r}")
    if metric not in summary["final"]:
        raise FedmllmError(
            f"{folder}: [tuning] metric '{metric}' is not among the cell's scores ({', '.join(summary['final'])})"
        )
    return float(summary["final"][metric])


def choices(matrix: Matrix, out: Path) -> list[Choice]:
    """Every (model, dataset, algorithm) the grid covers, with its points' dev scores and choice."""
    if matrix.tuning is None:
        return []
    found: dict[Key, dict[Point, GridScore]] = defaultdict(dict)
    for cell in expand_tuning(matrix):
        grid = found[cell.model, cell.dataset, cell.algorithm]
        entry = grid.setdefault(cell.point, GridScore(cell.point, {}, []))
        score = dev_score(out, cell, matrix.tuning.metric_for(cell.dataset))
        if score is None:
            entry.missing.append(cell.seed)
        else:
            entry.scores[cell.seed] = score
    result = []
    for model, dataset, algorithm in tuned_keys(matrix):
        grid = list(found[model, dataset, algorithm].values())
        metric = matrix.tuning.metric_for(dataset)
        result.append(Choice(model, dataset, algorithm, metric, grid, choose(grid)))
    return result


def tuned(found: list[Choice]) -> Tuned:
    """The chosen values per key, for `matrix.expand`."""
    return {c.key: c.values for c in found if c.values is not None}


def waiting(found: list[Choice]) -> set[Key]:
    """Keys whose grid has not finished: their cells cannot run yet."""
    return {c.key for c in found if c.chosen is None}


def payload(matrix: Matrix, found: list[Choice]) -> dict[str, Any]:
    """tuning.json: the grid, every point's dev scores and the choice."""
    assert matrix.tuning is not None
    tuning = matrix.tuning
    values = matrix.scenarios[tuning.scenario]
    swept = swept_key(values)
    return {
        "scenario": tuning.scenario,
        "scenario_value": values[swept][0],
        "seeds": tuning.seeds,
        "strategy": "none",
        "eval_split": "dev",
        "grid": tuning.grid,
        "choices": [
            {
                "model": c.model,
                "dataset": c.dataset,
                "algorithm": c.algorithm,
                "metric": c.metric,
                "chosen": c.values,
                "points": [
                    {
                        "point": dict(g.point),
                        "name": point_name(g.point),
                        "scores": [{"seed": s, "value": v} for s, v in sorted(g.scores.items())],
                        "mean": g.mean,
                        "missing_seeds": g.missing,
                    }
                    for g in c.grid
                ],
            }
            for c in found
        ],
    }
