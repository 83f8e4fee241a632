"""`fedmllm bench`: run a matrix's cells through the same recipe as `fedmllm run`, resumably.

A cell is finished when its folder holds `cell.json` (written last, atomically); a cell that
raised holds `error.json` instead. A rerun skips both (failed cells again with --retry-failed)
and starts any other cell folder over, so a kill at any moment loses at most the cell in flight.
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedmllm.bench.matrix import Cell, Matrix, expand
from fedmllm.bench.tracking import Tracker
from fedmllm.errors import FedmllmError
from fedmllm.progress import format_metrics
from fedmllm.run import write_json

DONE, FAILED = "cell.json", "error.json"


@dataclass
class BenchOutcome:
    total: int
    skipped: int
    ran: int
    failed: list[str]


def cell_record(cell: Cell) -> dict[str, Any]:
    keys = ("model", "dataset", "scenario", "value", "algorithm", "strategy", "seed")
    return {k: getattr(cell, k) for k in keys} | {"config": comparable(cell.config.to_dict())}


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
    """Run every unfinished cell; failures are recorded and the matrix goes on."""
    cells = expand(matrix)
    out.mkdir(parents=True, exist_ok=True)
    states = {cell: status(out, cell) for cell in cells}  # before any work: a changed matrix stops here
    write_json(out / "matrix.json", matrix.to_dict())
    todo = [c for c in cells if states[c] == "todo" or (retry_failed and states[c] == "failed")]
    print(
        f"fedmllm bench: {len(cells)} cells, {len(cells) - len(todo)} already finished or failed, "
        f"{len(todo)} to run -> {out}",
        flush=True,
    )
    spent: list[float] = []
    failed: list[str] = []
    for i, cell in enumerate(todo, 1):
        eta = f", ETA {(sum(spent) / len(spent)) * (len(todo) - i + 1) / 60:.0f} min" if spent else ""
        print(f"[cell {len(cells) - len(todo) + i}/{len(cells)}{eta}] {cell.label}", flush=True)
        started = time.perf_counter()
        error = run_cell(cell, out, verbose)
        spent.append(time.perf_counter() - started)
        if error:
            failed.append(f"{cell.label}: {error}")
            print(f"    FAILED after {spent[-1]:.0f} s: {error}", flush=True)
        else:
            final = json.loads((out / cell.path / "summary.json").read_text(encoding="utf-8"))["final"]
            print(f"    done in {spent[-1]:.0f} s | {format_metrics(final)}", flush=True)
    return BenchOutcome(len(cells), len(cells) - len(todo), len(todo), failed)


def run_cell(cell: Cell, out: Path, verbose: bool) -> str | None:
    """Run one cell into a fresh folder; returns the error message if it failed."""
    from fedmllm.engine.simulation import simulate
    from fedmllm.run import create_run_dir, preflight

    folder = out / cell.path
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted attempt starts over
    cfg = cell.config.replace(out=str(folder))
    tracker = None
    try:
        preflight(cfg)
        run_dir = create_run_dir(cfg)
        tracker = Tracker(run_dir, cfg, str(cell.path), mlflow_root=out)

        def report(row: dict[str, Any]) -> None:
            tracker.log(row)
            if verbose and row["round"]:
                print(f"    round {row['round']}/{cfg.rounds} | {format_metrics(row)}", flush=True)

        simulate(cfg, run_dir, report=report)
    except Exception as e:  # recorded in the cell's folder and reported; the matrix goes on
        folder.mkdir(parents=True, exist_ok=True)
        message = f"{type(e).__name__}: {e}" if not isinstance(e, FedmllmError) else str(e)
        write_json(folder / FAILED, cell_record(cell) | {"error": message, "traceback": traceback.format_exc()})
        tracker and tracker.close(failed=True)
        return message
    tracker.close()
    write_json(folder / DONE, cell_record(cell))
    return None
