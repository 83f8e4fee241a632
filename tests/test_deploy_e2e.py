"""Flower's Deployment Engine on 127.0.0.1: a SuperLink with TLS and SuperNode authentication,
real SuperNode processes, `flwr run .`; every process is stopped by PID (LocalDeployment)."""

import json
import os
import signal
import time
from pathlib import Path

import pytest

from fedmllm.cli import main
from fedmllm.deploy.certs import write_node_keys
from fedmllm.deploy.local import LocalDeployment

ROOT = Path(__file__).resolve().parents[1]
COMMON = {
    "clients_per_round": 2,
    "synthetic_train": 120,
    "synthetic_test": 40,
    "local_steps": 3,
    "lr": 2e-3,
    "generate_eval": False,
    "eval_views": False,
    "partition": "iid",
    "scenario": "none",
}


def flags(config: dict) -> list[str]:
    out = []
    for key, value in config.items():
        flag = "--" + key.replace("_", "-")
        out += [flag if value else "--no-" + flag[2:]] if isinstance(value, bool) else [flag, str(value)]
    return out


def start_sites(dep: LocalDeployment, keys_dir: Path, shards: Path, count: int) -> None:
    keys = write_node_keys(keys_dir, [f"site-{k}" for k in range(count)])
    for k in range(count):
        dep.register_node(keys[f"site-{k}"][1])
        dep.start_supernode(
            f"site-{k}", keys[f"site-{k}"][0], {"partition-id": k, "shard": str(shards / f"client_{k}.jsonl")}
        )
    dep.wait_for_nodes(count)


@pytest.mark.slow
def test_tls_authenticated_deployment_matches_the_simulation(tmp_path):
    config = {**COMMON, "num_clients": 2, "rounds": 2}
    assert main(["run", *flags(config), "--out", str(tmp_path / "sim")]) == 0
    assert main(["data", "prepare", *flags(config), "--out", str(tmp_path / "prep")]) == 0  # the same split
    out = tmp_path / "deployed"
    with LocalDeployment(tmp_path / "dep") as dep:
        started = time.monotonic()
        dep.start_superlink()
        intruder_key = write_node_keys(tmp_path / "intruder", ["intruder"])["intruder"][0]
        intruder = dep.start_supernode("intruder", intruder_key, {"partition-id": 0}, max_retries=1)
        start_sites(dep, tmp_path / "keys", tmp_path / "prep" / "clients", 2)
        assert intruder.wait(60) != 0  # never registered: refused
        assert "Failed to activate SuperNode" in intruder.text()
        run_id = dep.run_app(ROOT, {**config, "client_data": "node", "out": str(out)})
        row = dep.wait_run(run_id, timeout=900)
        assert row["status"] == "finished:completed", dep.run_logs(run_id)
        print(f"deployment wall time: {time.monotonic() - started:.0f} s")
    sim = json.loads((tmp_path / "sim" / "summary.json").read_text())
    deployed = json.loads((out / "summary.json").read_text())
    for metric in ("auc", "accuracy", "macro_f1"):  # same seed, shards and threads: equal up to float noise
        assert deployed["final"][metric] == pytest.approx(sim["final"][metric], abs=1e-6)
    losses = [[json.loads(line)["train_loss"] for line in (d / "metrics.jsonl").read_text().splitlines()]
              for d in (tmp_path / "sim", out)]  # fmt: skip
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)


@pytest.mark.slow
def test_a_killed_supernode_does_not_stop_the_run(tmp_path):
    config = {**COMMON, "num_clients": 3, "clients_per_round": 3, "min_clients": 2, "rounds": 3}
    assert main(["data", "prepare", *flags(config), "--out", str(tmp_path / "prep")]) == 0
    out = tmp_path / "deployed"
    with LocalDeployment(tmp_path / "dep") as dep:
        dep.start_superlink()
        start_sites(dep, tmp_path / "keys", tmp_path / "prep" / "clients", 3)
        run_id = dep.run_app(ROOT, {**config, "client_data": "node", "out": str(out)})
        deadline = time.monotonic() + 600
        while not (out / "metrics.jsonl").is_file():  # round 1 done: kill site 2 without warning
            assert time.monotonic() < deadline, dep.run_logs(run_id)
            time.sleep(1)
        os.killpg(dep.supernodes["site-2"].pid, signal.SIGKILL)
        row = dep.wait_run(run_id, timeout=900)
        logs = dep.run_logs(run_id)
        assert row["status"] == "finished:completed", logs
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lost_clients"] == [2] and summary["rounds"] == 3
    assert "lost client(s) [2]" in logs
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["clients"] == [0, 1, 2] and rows[-1]["clients"] == [0, 1]
