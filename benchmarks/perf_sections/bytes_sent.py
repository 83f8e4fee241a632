"""Section bytes: bytes per round down and up, against the full model, and with a narrower `update_dtype`."""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from fedmllm.checkpoint import load as load_checkpoint
from fedmllm.config import RunConfig
from fedmllm.model.load import model_spec, session

from .common import CORES, base_config, max_diff, timed_simulation


def run(args: argparse.Namespace, tmp: Path, out: dict[str, Any]) -> None:
    # the overhead section's fedmllm run, if it ran, is a float32 run of the same configuration
    fed = out.get("fedmllm_seq") or timed_simulation(base_config(args, tmp / "bytes-fp32", client_cpus=float(CORES)))
    sess = session(model_spec(base_config(args, tmp)))
    model_bytes = sum(p.numel() * p.element_size() for p in sess.model.parameters())
    rows = fed["rows"][1:]
    result = {
        "down_per_round": statistics.mean(r["bytes_sent"] for r in rows),
        "up_per_round": statistics.mean(r["bytes_received"] for r in rows),
        "model_bytes": model_bytes,
        "clients_per_round": base_config(args, tmp).sampled_per_round,
        "final_auc": {"float32": fed["summary"]["final"]["auc"]},
        "up_per_round_by_dtype": {},
    }
    if "update_dtype" in RunConfig.__dataclass_fields__:
        narrower_dtypes(args, tmp, fed, result)
    out["bytes"] = result


def narrower_dtypes(args: argparse.Namespace, tmp: Path, fed: dict[str, Any], result: dict[str, Any]) -> None:
    """The same run with updates sent in bfloat16 and float16: bytes up, final AUC, adapter drift."""
    fp32 = load_checkpoint(Path(fed["out"])).state.global_params
    result["final_max_abs_diff"] = {}
    for dtype in ("bfloat16", "float16"):
        cfg = base_config(args, tmp / f"bytes-{dtype}", client_cpus=float(CORES), update_dtype=dtype)
        run = timed_simulation(cfg)
        result["up_per_round_by_dtype"][dtype] = statistics.mean(r["bytes_received"] for r in run["rows"][1:])
        result["final_auc"][dtype] = run["summary"]["final"]["auc"]
        result["final_max_abs_diff"][dtype] = max_diff(fp32, load_checkpoint(Path(cfg.out)).state.global_params)
