"""The run folder: created fresh, written atomically, checked against the config on resume.

config.toml     the resolved configuration       metrics.jsonl  one line per round
clients/        the client shards (split data)   checkpoint     the last finished round
adapter/        the global LoRA adapter (peft)   summary.json   the final metrics and costs
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from fedmllm import checkpoint
from fedmllm.config import RunConfig
from fedmllm.errors import FedmllmError


def default_out() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def create_run_dir(cfg: RunConfig) -> Path:
    """A fresh run folder. An existing non-empty folder is never overwritten."""
    out = Path(cfg.out) if cfg.out else default_out()
    if out.exists() and any(out.iterdir()):
        raise FedmllmError(f"{out}: run folder exists and is not empty (choose another --out)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_json(path: Path, obj: Any) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_config(cfg: RunConfig, path: Path) -> None:
    lines = [f"{k} = {json.dumps(v)}" for k, v in cfg.to_dict().items()]
    path.write_text("# the resolved configuration of this run\n" + "\n".join(lines) + "\n", encoding="utf-8")


def save_adapter(model: Any, run_dir: Path) -> None:
    """peft's save_pretrained into adapter/, so the folder holds one whole adapter at every instant
    (a resumed run that was killed while finishing replaces the old one last)."""
    adapter, adapter_tmp, adapter_old = (run_dir / name for name in ("adapter", "adapter.tmp", "adapter.old"))
    shutil.rmtree(adapter_tmp, ignore_errors=True)
    model.save_pretrained(adapter_tmp)
    if adapter.exists():
        shutil.rmtree(adapter_old, ignore_errors=True)
        adapter.replace(adapter_old)
    adapter_tmp.replace(adapter)
    shutil.rmtree(adapter_old, ignore_errors=True)


def check_same_config(recorded: dict[str, Any], cfg: RunConfig, run_dir: Path) -> None:
    wanted = cfg.to_dict()
    changed = sorted(k for k in recorded.keys() | wanted.keys() if k != "out" and recorded.get(k) != wanted.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {recorded.get(k)!r} in the folder, {wanted.get(k)!r} now" for k in changed[:5])
        raise FedmllmError(f"{run_dir}: the run folder belongs to a different config ({diffs})")


def check_extra(extra: dict[str, Any], run_dir: Path) -> None:
    """The run's own entries of a checkpoint's `extra` metadata."""
    where = f"{run_dir / checkpoint.NAME}: metadata key 'extra'"
    latest, norms = extra.get("latest"), extra.get("norms", [])
    if not isinstance(latest, dict) or not all(isinstance(v, (int, float)) for v in latest.values()):
        raise FedmllmError(f"{where}: 'latest' must map metric names to numbers")
    if not isinstance(norms, list) or not all(isinstance(v, float) and v >= 0 for v in norms):
        raise FedmllmError(f"{where}: 'norms' must be a list of update norms (non-negative numbers)")


def truncate_history(path: Path, last_round: int) -> list[dict[str, Any]]:
    """The metrics lines up to the checkpoint's round; later ones (written before a kill) are
    dropped from the file, atomically, since those rounds run again."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []
    kept = [r for r in rows if r["round"] <= last_round]
    if len(kept) != len(rows):
        write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def append_row(run_dir: Path, row: dict[str, Any]) -> None:
    with (run_dir / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
