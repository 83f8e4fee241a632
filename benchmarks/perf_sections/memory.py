"""Section memory: peak resident memory of the whole process tree with 10, 100 and 1000 virtual clients.

Each scale runs in a child process (`perf.py --memory-child N`) so that its peak is its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from fedmllm.config import RunConfig
from fedmllm.engine.simulation import simulate
from fedmllm.launch import launch

PERF_SCRIPT = Path(__file__).resolve().parent.parent / "perf.py"  # the child is perf.py --memory-child


def run(args: argparse.Namespace, tmp: Path, out: dict[str, Any]) -> None:
    rows = {n: one_scale(args, tmp, n) for n in args.clients}
    first = rows[args.clients[0]]["peak_tree_rss_mb"]
    for row in rows.values():
        row["vs_first"] = row["peak_tree_rss_mb"] / first
    out["memory"] = rows


def one_scale(args: argparse.Namespace, tmp: Path, n: int) -> dict[str, float]:
    run_dir = tmp / f"memory-{n}"
    cmd = [sys.executable, str(PERF_SCRIPT), "--memory-child", str(n), "--json", str(run_dir / "child.json")]
    cmd += ["--rounds", str(args.memory_rounds), "--steps", "2", "--model", args.model, "--device", args.device]
    start = time.perf_counter()
    run_dir.mkdir(parents=True)
    with (run_dir / "stderr.txt").open("w") as log:
        proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        peaks = watch(proc)
    if proc.returncode != 0:
        raise SystemExit(f"memory run with {n} clients failed:\n{(run_dir / 'stderr.txt').read_text()[-3000:]}")
    child = json.loads((run_dir / "child.json").read_text())
    return {
        "peak_tree_rss_mb": peaks["tree"] / 2**20,
        "peak_server_rss_mb": peaks["server"] / 2**20,
        "seconds": time.perf_counter() - start,
        "client_state_on_disk_mb": child["client_state_mb"],
    }


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a worker that exited meanwhile holds no memory
            total += p.memory_info().rss
    return total


def watch(proc: psutil.Popen) -> dict[str, int]:
    """Wait for `proc`, sampling its resident memory (and its whole tree's) every 0.2 s."""
    peaks = {"tree": 0, "server": 0}
    while proc.poll() is None:
        peaks["tree"] = max(peaks["tree"], tree_rss(proc))
        with contextlib.suppress(psutil.Error):
            peaks["server"] = max(peaks["server"], proc.memory_info().rss)
        time.sleep(0.2)
    return peaks


def child(args: argparse.Namespace) -> None:
    """The measured run itself (`perf.py --memory-child N`): SCAFFOLD with N clients, 10 per round."""
    n = args.memory_child
    run_dir = Path(args.json).parent
    cfg = RunConfig(
        model=args.model,
        device=args.device,
        algorithm="scaffold",
        num_clients=n,
        clients_per_round=10,
        partition="iid",
        synthetic_train=2000,  # the same data at every scale: only the number of clients changes
        rounds=args.rounds,
        local_steps=args.steps,
        eval_every=args.rounds,
        generate_eval=False,
        eval_views=False,
        out=str(run_dir / "run"),
    )
    launch(cfg, simulate)
    state_bytes = sum(f.stat().st_size for f in Path(cfg.out).rglob("*.safetensors") if "adapter" not in f.parts)
    Path(args.json).write_text(json.dumps({"client_state_mb": state_bytes / 2**20}))
