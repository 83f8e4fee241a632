"""Per-round metrics to TensorBoard (always) and MLflow (when it is installed)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from fedmllm.config import RunConfig


def tag(key: str) -> str | None:
    """TensorBoard groups scalars by the prefix before '/'."""
    if key in ("round", "client_model_loads"):
        return None
    if key in ("train_loss", "lr", "reg_grad_ratio"):
        return f"train/{key.removeprefix('train_')}"
    if key.startswith("bytes_"):
        return f"comm/{key}"
    if key == "seconds":
        return "time/seconds_per_round"
    if key == "client_seconds":
        return "time/client_seconds"
    if key in ("epsilon", "sampling_rate"):  # DP's budget spent so far, and the accountant's q
        return f"privacy/{key}"
    return f"test/{key}"


class Tracker:
    """Writes `run_dir/tensorboard/`; with MLflow installed, also one MLflow run named `name`
    (tracking URI from MLFLOW_TRACKING_URI, else `mlflow.db` in `mlflow_root`, by default the
    folder holding the run folder)."""

    def __init__(self, run_dir: Path, cfg: RunConfig, name: str, mlflow_root: Path | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("config", "\n".join(f"    {k} = {v!r}" for k, v in cfg.to_dict().items()))
        self.mlflow: Any = None
        if importlib.util.find_spec("mlflow") is not None:
            import mlflow

            if "MLFLOW_TRACKING_URI" not in os.environ:  # MLflow 3 retired the ./mlruns file store
                mlflow.set_tracking_uri(f"sqlite:///{(mlflow_root or run_dir.parent).resolve() / 'mlflow.db'}")
            mlflow.start_run(run_name=name)
            mlflow.log_params(cfg.to_dict())
            self.mlflow = mlflow

    def log(self, row: dict[str, Any]) -> None:
        step = row["round"]
        scalars = {
            t: float(v)
            for k, v in row.items()
            if (t := tag(k)) and isinstance(v, int | float) and not isinstance(v, bool)
        }
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()
        if self.mlflow is not None:
            self.mlflow.log_metrics(scalars, step=step)

    def close(self, failed: bool = False) -> None:
        self.writer.close()
        if self.mlflow is not None:
            self.mlflow.end_run(status="FAILED" if failed else "FINISHED")
