"""`flwr run .` runs the same ServerApp/ClientApp through Flower's own CLI and a local SuperLink."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def stop_superlinks(flwr_home: Path) -> None:
    """`flwr run` leaves its local SuperLink running; stop the one using this FLWR_HOME."""
    found = subprocess.run(["pgrep", "-f", f"flower-superlink.*{flwr_home}"], capture_output=True, text=True)
    for pid in found.stdout.split():
        os.kill(int(pid), signal.SIGTERM)


@pytest.mark.slow
def test_flwr_run_dot(tmp_path):
    home, out = tmp_path / "flwr-home", tmp_path / "run"
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",  # else uv reinstalls (CUDA) torch
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    run_config = (
        f"rounds=2 num_clients=3 clients_per_round=2 synthetic_train=120 synthetic_test=40 local_steps=2 "
        f'generate_eval=false out="{out}"'
    )
    try:
        proc = subprocess.run(
            ["flwr", "run", ".", "--run-config", run_config, "--federation-config", "num-supernodes=3", "--stream"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
    finally:
        stop_superlinks(home)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [len(r["clients"]) for r in rows] == [2, 2], rows
    assert "round   2/2" in proc.stdout, proc.stdout[-3000:]
