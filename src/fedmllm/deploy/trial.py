"""`fedmllm deploy local`: one fedmllm run on a whole TLS + SuperNode-auth deployment on this machine.

The steps a real deployment takes, in order, on 127.0.0.1 (`LocalDeployment`): write each site's data (the
split `fedmllm data prepare` writes, one shard per SuperNode), a dev CA and server certificate, one key pair
per SuperNode; start the SuperLink, register every public key, start the SuperNodes, `flwr run` the app, follow
its rounds; stop every process started, whether the run finished, failed, or the user pressed Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from fedmllm.config import RunConfig
from fedmllm.deploy.certs import write_node_keys
from fedmllm.deploy.commands import LOOPBACK, app_pyproject, run_overrides
from fedmllm.deploy.local import LocalDeployment
from fedmllm.errors import FedmllmError
from fedmllm.progress import print_round

POLL_SECONDS = 1.0  # how often metrics.jsonl is read (a file read: cheap)
# how often the run's status is asked for while it has not written summary.json: each `flwr ls` is a
# Python process that costs about a second of CPU, which the run's own processes need on a small machine
STATUS_SECONDS = 15.0


@dataclass(frozen=True)
class Trial:
    """A checked `fedmllm deploy local`: its folder and the run's config (`client_data = "node"`, one client per
    SuperNode, `out` = `<folder>/run`)."""

    folder: Path
    cfg: RunConfig

    @property
    def nodes(self) -> int:
        return self.cfg.num_clients

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.out)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwinds like Ctrl-C (not caught by `except Exception`), to the cleanup."""


SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_unwind() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into `Interrupted` inside the block. The processes run in their own sessions (the
    terminal's Ctrl-C never reaches them), so this process must live to stop them: see `interrupts_ignored`."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM inside the block: a second Ctrl-C must not cut the cleanup short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def write_data(trial: Trial) -> list[Path]:
    """The sites' training data: the shards a simulation of the same config would build, one file per node."""
    from fedmllm.run import prepare_data  # imported here: it pulls in torch and the datasets
    from fedmllm.scenarios.split import shard_path

    folder = trial.folder / "data"
    prepare_data(trial.cfg.replace(client_data="split", out=""), folder)
    return [shard_path(folder / "clients", k) for k in range(trial.nodes)]


def start(dep: LocalDeployment, trial: Trial, shards: list[Path]) -> None:
    """The SuperLink, then one registered, authenticated SuperNode per shard; returns once all are online."""
    dep.start_superlink()
    names = [f"node-{k}" for k in range(trial.nodes)]
    keys = write_node_keys(trial.folder / "keys", names)
    for k, name in enumerate(names):
        private, public = keys[name]
        dep.register_node(public, name=name)
        node_config = {"partition-id": k, "shard": str(shards[k])}
        dep.start_supernode(name, private, node_config, run_config=trial.cfg.to_dict())
    dep.wait_for_nodes(trial.nodes)


def follow(dep: LocalDeployment, run_id: int, trial: Trial) -> str:
    """Print each round's line as the ServerApp appends it to metrics.jsonl; return the run's final status."""
    metrics, printed, asked = trial.run_dir / "metrics.jsonl", 0, time.monotonic()
    while True:
        lines = metrics.read_text(encoding="utf-8").split("\n")[:-1] if metrics.is_file() else []  # whole lines
        for line in lines[printed:]:
            print_round(json.loads(line), trial.cfg.rounds)
        printed = len(lines)
        done = (trial.run_dir / "summary.json").is_file()  # written last: the status turns "finished" soon
        if done or time.monotonic() - asked >= STATUS_SECONDS:
            status, asked = str(dep.run_status(run_id)["status"]), time.monotonic()
            if status.startswith("finished"):
                return status
        dep.check_alive()
        time.sleep(POLL_SECONDS)


def deploy(trial: Trial) -> None:
    """Data, credentials, processes, the run; every process is stopped when this returns or raises."""
    shards = write_data(trial)
    app = trial.folder / "app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "pyproject.toml").write_text(app_pyproject(), encoding="utf-8")
    dep = LocalDeployment(trial.folder)
    try:
        start(dep, trial, shards)
        print(
            f"SuperLink https://{LOOPBACK}:{dep.port} (TLS, SuperNode authentication), {trial.nodes} SuperNodes online",
            flush=True,
        )
        run_id = dep.run_app(app, run_overrides(trial.cfg))
        print(f"run {run_id} started: `flwr run` of {app}", flush=True)
        status = follow(dep, run_id, trial)
        if status != "finished:completed":
            log = dep.run_logs(run_id)[-3000:]
            raise FedmllmError(f"run {run_id} ended {status}; the ServerApp's log (`flwr log`) ends:\n{log}")
    finally:
        with interrupts_ignored():
            dep.stop()


def run_local(trial: Trial) -> dict[str, Any]:
    """Run `trial` and return the run's summary.json; Ctrl-C (or SIGTERM) stops everything and raises
    FedmllmError."""
    print(
        f"fedmllm deploy local: {trial.nodes} SuperNodes, {trial.cfg.algorithm} on {trial.cfg.dataset}, "
        f"{trial.cfg.rounds} rounds -> {trial.folder} (every command in commands.sh, logs in logs/)",
        flush=True,
    )
    try:
        with interrupts_unwind():
            deploy(trial)
    except Interrupted as e:
        raise FedmllmError(f"interrupted ({e}): every process this command started is stopped") from None
    finally:
        if (trial.folder / "logs").is_dir():  # some process was started (and is stopped by now)
            print(f"stopped the SuperLink and the SuperNodes; logs: {trial.folder / 'logs'}", flush=True)
    return json.loads((trial.run_dir / "summary.json").read_text(encoding="utf-8"))
