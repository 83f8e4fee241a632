"""Flower's Deployment Engine on 127.0.0.1: a SuperLink with TLS and SuperNode authentication, real SuperNode
processes, `flwr run`; `fedmllm deploy local` end to end, and `LocalDeployment` where a test needs its hands on
the processes. Every process is stopped by PID, and the tests check that none is left."""

import json
import os
import signal
import subprocess
import sys
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


def processes_of(folder: Path) -> list[int]:
    """Live processes whose FLWR_HOME lies in `folder`: every process a deployment there started, and their
    children (superexec, ServerApp, ClientApps) inherit it."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            environ = (entry / "environ").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:  # exited meanwhile, or not ours
            continue
        if any(v.startswith(b"FLWR_HOME=" + bytes(folder)) for v in environ):
            found.append(int(entry.name))
    return found


def none_left(folder: Path, timeout: float = 10.0) -> bool:
    """No process of `folder` alive (SIGKILLed ones may take a moment to be gone)."""
    deadline = time.monotonic() + timeout
    while processes_of(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not processes_of(folder)


def start_sites(dep: LocalDeployment, keys_dir: Path, shards: Path, count: int) -> None:
    keys = write_node_keys(keys_dir, [f"site-{k}" for k in range(count)])
    for k in range(count):
        dep.register_node(keys[f"site-{k}"][1])
        dep.start_supernode(
            f"site-{k}", keys[f"site-{k}"][0], {"partition-id": k, "shard": str(shards / f"client_{k}.jsonl")}
        )
    dep.wait_for_nodes(count)


@pytest.mark.slow
def test_deploy_local_matches_the_simulation(tmp_path, capsys):
    config = {**COMMON, "num_clients": 2, "rounds": 2}
    assert main(["run", *flags(config), "--out", str(tmp_path / "sim")]) == 0
    started = time.monotonic()
    assert main(["deploy", "local", *flags(config), "--out", str(tmp_path / "dep")]) == 0
    seconds = time.monotonic() - started
    output = capsys.readouterr().out
    print(f"deploy local wall time: {seconds:.0f} s")  # shown with -rP
    assert "2 SuperNodes online" in output and f"run folder: {tmp_path / 'dep' / 'run'}" in output
    assert none_left(tmp_path / "dep")
    sim = json.loads((tmp_path / "sim" / "summary.json").read_text())
    deployed = json.loads((tmp_path / "dep" / "run" / "summary.json").read_text())
    for metric in ("auc", "accuracy", "macro_f1"):  # same seed, shards and threads: equal up to float noise
        assert deployed["final"][metric] == pytest.approx(sim["final"][metric], abs=1e-6)
    losses = [[json.loads(line)["train_loss"] for line in (d / "metrics.jsonl").read_text().splitlines()]
              for d in (tmp_path / "sim", tmp_path / "dep" / "run")]  # fmt: skip
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    commands = (tmp_path / "dep" / "commands.sh").read_text()
    assert "--enable-supernode-auth" in commands and commands.count("flwr supernode register") == 2


@pytest.mark.slow
def test_ctrl_c_stops_every_process(tmp_path):
    dep = tmp_path / "dep"
    argv = [sys.executable, "-m", "fedmllm", "deploy", "local", "--nodes", "2", "--clients-per-round", "2"]
    proc = subprocess.Popen([*argv, "--synthetic-train", "120", "--out", str(dep)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        cli_log = dep / "logs" / "cli.log"
        while not (cli_log.is_file() and '"run-id"' in cli_log.read_text()):  # the run is submitted
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.5)
        time.sleep(3)  # the ServerApp's processes are starting
        assert processes_of(dep)  # superlink, 2 supernodes and their children
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 2, output
    assert "fedmllm: error: interrupted (SIGINT): every process this command started is stopped" in output
    assert none_left(dep)


@pytest.mark.slow
def test_a_killed_supernode_does_not_stop_the_run_and_an_unregistered_one_is_refused(tmp_path):
    config = {**COMMON, "num_clients": 3, "clients_per_round": 3, "min_clients": 2, "rounds": 3}
    assert main(["data", "prepare", *flags(config), "--out", str(tmp_path / "prep")]) == 0
    out = tmp_path / "deployed"
    with LocalDeployment(tmp_path / "dep") as dep:
        dep.start_superlink()
        intruder_key = write_node_keys(tmp_path / "intruder", ["intruder"])["intruder"][0]
        intruder = dep.start_supernode("intruder", intruder_key, {"partition-id": 0}, max_retries=1)
        start_sites(dep, tmp_path / "keys", tmp_path / "prep" / "clients", 3)
        assert intruder.wait(60) != 0  # never registered: refused
        assert "Failed to activate SuperNode" in intruder.text()
        run_id = dep.run_app(ROOT, {**config, "client_data": "node", "out": str(out)})
        deadline = time.monotonic() + 600
        while not (out / "metrics.jsonl").is_file():  # round 1 done: kill site 2 without warning
            assert time.monotonic() < deadline, dep.run_logs(run_id)
            time.sleep(1)
        os.killpg(dep.supernodes["site-2"].pid, signal.SIGKILL)
        row = dep.wait_run(run_id, timeout=900)
        logs = dep.run_logs(run_id)
        assert row["status"] == "finished:completed", logs
    assert none_left(tmp_path / "dep")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lost_clients"] == [2] and summary["rounds"] == 3
    assert "lost client(s) [2]" in logs
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["clients"] == [0, 1, 2] and rows[-1]["clients"] == [0, 1]
