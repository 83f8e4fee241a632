"""What several perf sections share: the run configuration they start from and a timed fedmllm run."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fedmllm.config import RunConfig
from fedmllm.engine.simulation import simulate
from fedmllm.launch import launch

CORES = os.cpu_count() or 1


def base_config(args: argparse.Namespace, out: Path, **changes: Any) -> RunConfig:
    cfg = RunConfig(
        model=args.model,
        device=args.device,
        rounds=args.rounds,
        local_steps=args.steps,
        eval_every=args.rounds,  # only the last round scores the model: rounds 2..R-1 are pure training
        generate_eval=False,
        eval_views=False,
        out=str(out),
    )
    return cfg.replace(**changes)


def timed_simulation(cfg: RunConfig, between: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run fedmllm; the wall-clock instant each round (metrics line and checkpoint) was done.
    `between(rnd)`, if given, runs in the server process after round `rnd` and before the next
    one; its time is left out of fedmllm's rounds. Started as `fedmllm run` starts (fedmllm.launch:
    preflight, run folder, TensorBoard tracking), so the tracker's time is fedmllm's too."""
    marks: dict[int, float] = {}
    paused = [0.0]  # time spent in `between` so far

    def report(row: dict[str, Any]) -> None:
        marks[row["round"]] = time.perf_counter() - paused[0]
        if between is not None:
            t = time.perf_counter()
            between(row["round"])
            paused[0] += time.perf_counter() - t

    start = time.perf_counter()
    _, summary = launch(cfg, simulate, report)
    end = time.perf_counter() - paused[0]
    rows = [json.loads(line) for line in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    return {"summary": summary, "rows": rows, "out": cfg.out, **round_times(start, marks, end, cfg.rounds)}


def round_times(start: float, marks: dict[int, float], end: float, rounds: int) -> dict[str, Any]:
    ends = [marks[r] for r in range(1, rounds + 1)]
    per_round = [b - a for a, b in zip([marks.get(0, start), *ends[:-1]], ends, strict=True)]
    steady = statistics.median(per_round[1:-1])
    return {"per_round": per_round, "steady": steady, "startup": ends[0] - start - steady, "total": end - start}


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[n] - b[n]).abs().max().item() for n in a)
