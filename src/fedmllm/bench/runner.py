"""`fedmllm bench`: run a matrix's cells through the same recipe as `fedmllm run`, resumably.

A cell is finished when its folder holds `cell.json` (written last, atomically); a cell that
raised holds `error.json` instead. A rerun skips both (failed cells again with --retry-failed)
and starts any other cell folder over, so a kill at any moment loses at most the cell in flight.

With a [tuning] table the grid's cells run first (scoring the dev split); the cells of a tuned
(model, dataset, algorithm) then run with the chosen values, recomputed from the finished grid
cells on every run, and wait while any of their grid cells has not finished.
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedmllm.bench import tuning
from fedmllm.bench.matrix import DONE, FAILED, Cell, Matrix, expand, expand_tuning, point_name
from fedmllm.errors import FedmllmError
from fedmllm.launch import launch
from fedmllm.progress import format_metrics
from fedmllm.rundir import write_json


@dataclass
class BenchOutcome:
    total: int
    skipped: int
    ran: int
    failed: list[str]


def cell_record(cell: Cell) -> dict[str, Any]:
    keys = ("model", "dataset", "scenario", "value", "algorithm", "strategy", "seed")
    point = {"point": dict(cell.point)} if cell.point else {}
    return {k: getattr(cell, k) for k in keys} | point | {"config": comparable(cell.config.to_dict())}


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "out"}  # the bench folder may move


def status(out: Path, cell: Cell) -> str:
    folder = out / cell.path
    for name, state in ((DONE, "done"), (FAILED, "failed")):
        path = folder / name
        if path.is_file():
            recorded, wanted = json.loads(path.read_text(encoding="utf-8"))["config"], cell_record(cell)["config"]
            changed = sorted(k for k in recorded.keys() | wanted.keys() if recorded.get(k) != wanted.get(k))
            if changed:
                raise FedmllmError(
                    f"{path}: this cell ran with a different config ({', '.join(changed)} changed in the matrix); "
                    "use a new --out, or delete the cell folder to run it again"
                )
            return state
    return "todo"


def run_bench(matrix: Matrix, out: Path, retry_failed: bool = False, verbose: bool = False) -> BenchOutcome:
    """Run every unfinished cell, the [tuning] grid's first; failures are recorded and the
    matrix goes on."""
    out.mkdir(parents=True, exist_ok=True)
    grid = expand_tuning(matrix)
    grid_states = {cell: status(out, cell) for cell in grid}  # before any work: a changed matrix stops here
    for cell in runnable(matrix, tuning.choices(matrix, out))[0]:  # as do cells the finished grid fixes
        status(out, cell)
    write_json(out / "matrix.json", matrix.to_dict())
    failed: list[str] = []
    if grid:
        grid_todo = [c for c in grid if grid_states[c] == "todo" or (retry_failed and grid_states[c] == "failed")]
        print(
            f"fedmllm bench: tuning: {len(grid)} grid cells, {len(grid) - len(grid_todo)} already finished or failed, "
            f"{len(grid_todo)} to run -> {out / 'tuning'}",
            flush=True,
        )
        failed += run_cells(grid, grid_todo, out, "tuning", verbose)
    found = tuning.choices(matrix, out)
    if matrix.tuning:
        write_json(out / "tuning.json", tuning.payload(matrix, found))
        for choice in found:
            print(f"tuning: {describe(choice)}", flush=True)
    cells, waiting = runnable(matrix, found)
    states = {cell: status(out, cell) for cell in cells}
    todo = [c for c in cells if states[c] == "todo" or (retry_failed and states[c] == "failed")]
    total = len(cells) + len(waiting)
    print(
        f"fedmllm bench: {total} cells, {len(cells) - len(todo)} already finished or failed, "
        f"{len(todo)} to run" + (f", {len(waiting)} waiting for their tuning grid" if waiting else "") + f" -> {out}",
        flush=True,
    )
    failed += run_cells(cells, todo, out, "cell", verbose)
    if waiting:
        failed.append(
            f"{len(waiting)} cell(s) did not run: their [tuning] grid has unfinished cells (see tuning.json; "
            "rerun with --retry-failed)"
        )
    return BenchOutcome(total, len(cells) - len(todo), len(todo), failed)


def runnable(matrix: Matrix, found: list[tuning.Choice]) -> tuple[list[Cell], list[Cell]]:
    """The matrix's cells with the [tuning] choices, split into those that can run and those
    waiting for their grid to finish."""
    blocked = tuning.waiting(found)
    cells = expand(matrix, tuning.tuned(found))
    return [c for c in cells if key(c) not in blocked], [c for c in cells if key(c) in blocked]


def describe(choice: tuning.Choice) -> str:
    head = f"{choice.model} | {choice.dataset} | {choice.algorithm}"
    if choice.chosen is None:
        missing = sum(len(g.missing) for g in choice.grid)
        return f"{head}: {missing} grid cell(s) unfinished, its cells wait"
    best = choice.grid[choice.chosen]
    return f"{head}: {point_name(best.point)} (dev {choice.metric} {best.mean:.3f}, best of {len(choice.grid)})"


def key(cell: Cell) -> tuple[str, str, str]:
    return cell.model, cell.dataset, cell.algorithm


def run_cells(cells: list[Cell], todo: list[Cell], out: Path, kind: str, verbose: bool) -> list[str]:
    """Run `todo` (a tail of `cells`, for the counter), printing one line per cell; returns
    the failures."""
    spent: list[float] = []
    failed: list[str] = []
    for i, cell in enumerate(todo, 1):
        eta = f", ETA {(sum(spent) / len(spent)) * (len(todo) - i + 1) / 60:.0f} min" if spent else ""
        print(f"[{kind} {len(cells) - len(todo) + i}/{len(cells)}{eta}] {cell.label}", flush=True)
        started = time.perf_counter()
        error = run_cell(cell, out, verbose)
        spent.append(time.perf_counter() - started)
        if error:
            failed.append(f"{cell.label}: {error}")
            print(f"    FAILED after {spent[-1]:.0f} s: {error}", flush=True)
        else:
            summary = json.loads((out / cell.path / "summary.json").read_text(encoding="utf-8"))
            split = "" if summary["eval_split"] == "test" else f" ({summary['eval_split']})"
            print(f"    done in {spent[-1]:.0f} s | {format_metrics(summary['final'])}{split}", flush=True)
    return failed


def run_cell(cell: Cell, out: Path, verbose: bool) -> str | None:
    """Run one cell into a fresh folder; returns the error message if it failed."""
    from fedmllm.engine.simulation import simulate

    folder = out / cell.path
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted attempt starts over
    cfg = cell.config.replace(out=str(folder))

    def report(row: dict[str, Any]) -> None:
        if verbose and row["round"]:
            print(f"    round {row['round']}/{cfg.rounds} | {format_metrics(row)}", flush=True)

    try:
        launch(cfg, simulate, report, name=str(cell.path), mlflow_root=out, keep_failed=True)
    except Exception as e:  # recorded in the cell's folder and reported; the matrix goes on
        folder.mkdir(parents=True, exist_ok=True)
        message = f"{type(e).__name__}: {e}" if not isinstance(e, FedmllmError) else str(e)
        write_json(folder / FAILED, cell_record(cell) | {"error": message, "traceback": traceback.format_exc()})
        return message
    write_json(folder / DONE, cell_record(cell))
    return None
