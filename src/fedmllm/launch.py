"""Start one run, the same way wherever it starts (the CLI, the bench, the benchmark scripts, a
deployment's ServerApp): fail fast on the data and the model, create the run folder, track every
round, execute it, and on failure leave nothing half-made behind."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedmllm.checkpoint import NAME as CHECKPOINT
from fedmllm.config import RunConfig
from fedmllm.run import preflight
from fedmllm.rundir import create_run_dir
from fedmllm.tracking import Tracker

Report = Callable[[dict[str, Any]], None]
# the engine that runs it: engine.simulation.simulate, or a ServerApp's own federate call
Execute = Callable[[RunConfig, Path, Report, bool], dict[str, Any]]


def launch(
    cfg: RunConfig,
    execute: Execute,
    report: Report | None = None,
    *,
    resume_dir: Path | None = None,
    name: str | None = None,
    mlflow_root: Path | None = None,
    keep_failed: bool = False,
    started: Callable[[Path], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Run `cfg` (or resume `resume_dir`) and return the run folder and the summary. A new run that
    fails before its first checkpoint has its folder removed, so a rerun starts clean, unless
    `keep_failed` (the bench records the failure there). `started` is told the folder first."""
    preflight(cfg)
    run_dir = resume_dir or create_run_dir(cfg)
    started and started(run_dir)
    tracker = Tracker(run_dir, cfg, name or run_dir.name, mlflow_root=mlflow_root)

    def on_round(row: dict[str, Any]) -> None:
        report and report(row)
        tracker.log(row)

    try:
        summary = execute(cfg, run_dir, on_round, resume_dir is not None)
    except BaseException:
        tracker.close(failed=True)
        if resume_dir is None and not keep_failed and not (run_dir / CHECKPOINT).exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    tracker.close()
    return run_dir, summary
