"""A whole Flower 1.42 deployment on one machine (loopback): TLS SuperLink with SuperNode auth, registered SuperNodes.

This exists so tests and users can try the Deployment Engine end to end before spreading it over machines. It
runs the same commands a real deployment runs, only on 127.0.0.1, and records every one of them (with the
environment variables it sets) in `LocalDeployment.commands` and, once each, in `<folder>/commands.sh`: exactly
what to type. Every API it starts listens on 127.0.0.1 only: Flower 1.42's Control API has no login, so
anyone who reached it could start runs, i.e. execute code on every SuperNode (docs/deployment.md).
`fedmllm deploy local` (`fedmllm.deploy.trial`) is its typical use; every process started here is stopped
(SIGTERM, then SIGKILL after `grace` seconds) when the `with` block ends, however it ends.

Layout of `folder`: `certs/` (dev CA and server cert), `flwr-home/` (the CLI's and SuperLink's FLWR_HOME, with
`config.toml`), `nodes/<name>/flwr-home/` (one FLWR_HOME per SuperNode, as on separate machines; they would
otherwise race installing the same FAB), `superlink.db` (so `flwr supernode register` survives a SuperLink
restart), `logs/<process>.log` (stdout+stderr of each process) and `logs/cli.log` (every `flwr` CLI call).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedmllm.deploy.certs import DEFAULT_HOSTS, write_dev_certs
from fedmllm.deploy.commands import (
    BARE_KEY,
    LEGACY_GRPC_OFF,
    LOOPBACK,
    Command,
    ConfigValue,
    NodeLaunch,
    connection_toml,
    render_config,
    superlink_argv,
)
from fedmllm.deploy.process import Process
from fedmllm.errors import FedmllmError


def free_port(host: str = LOOPBACK) -> int:
    """A port the OS says is free right now (another process could still take it before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalDeployment:
    """SuperLink + SuperNodes + `flwr` CLI on loopback, all under `folder`; a context manager that always cleans up.

    Every process gets `FLWR_HOME`, `PATH` starting with `bin_dir` (Flower spawns `flower-superexec`,
    `flwr-serverapp` and `flwr-clientapp` by bare name), `FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1` (else
    uv re-resolves torch for every run), `FLWR_TELEMETRY_ENABLED=0`, `FLWR_DISABLE_UPDATE_CHECK=1` and
    `PYTHONUNBUFFERED=1` (so logs can be grepped while the process runs).
    """

    def __init__(
        self,
        folder: Path,
        *,
        connection: str = "fedmllm-local",
        bin_dir: Path | None = None,
        hosts: Sequence[str] = DEFAULT_HOSTS,
        grace: float = 10.0,
    ) -> None:
        if not BARE_KEY.match(connection):
            raise FedmllmError(f"connection name {connection!r} must use only letters, digits, '_' and '-'")
        self.folder = Path(folder).resolve()
        self.connection = connection
        self.bin_dir = (bin_dir or Path(sys.executable).parent).resolve()
        self.hosts = list(hosts)
        self.grace = grace
        self.flwr_home = self.folder / "flwr-home"
        self.logs = self.folder / "logs"
        self.database = self.folder / "superlink.db"
        self.certs: dict[str, Path] = {}
        self.commands: list[Command] = []
        self.superlink: Process | None = None
        self.supernodes: dict[str, Process] = {}
        self.port: int | None = None
        self._ports: set[int] = set()
        for tool in ("flower-superlink", "flower-supernode", "flwr", "flower-superexec"):
            if not (self.bin_dir / tool).exists():
                raise FedmllmError(f"{self.bin_dir / tool} not found; pass bin_dir= the venv's bin folder with flwr")

    # -- context manager -------------------------------------------------------------------------------------------

    def __enter__(self) -> LocalDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- setup ------------------------------------------------------------------------------------------------------

    def ensure_certs(self) -> dict[str, Path]:
        """Write dev certs into `<folder>/certs` the first time; reuse them when all four files are already there."""
        folder = self.folder / "certs"
        names = {"ca_cert": "ca.crt", "ca_key": "ca.key", "server_cert": "server.pem", "server_key": "server.key"}
        existing = {key: folder / name for key, name in names.items()}
        if all(p.exists() for p in existing.values()):
            self.certs = existing
        else:
            self.certs = write_dev_certs(folder, self.hosts)  # raises naming the file if only some exist
        return self.certs

    def env(self, flwr_home: Path | None = None) -> dict[str, str]:
        """The variables set for every command (PATH shown with `$PATH` for the caller's own PATH)."""
        return {
            "FLWR_HOME": str(flwr_home or self.flwr_home),
            "PATH": f"{self.bin_dir}{os.pathsep}$PATH",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "PYTHONUNBUFFERED": "1",
        }

    def _record(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None) -> tuple[Command, dict[str, str]]:
        command = Command(tuple(argv), dict(env), cwd)
        if command not in self.commands:  # a status poll repeats its command: commands.sh shows it once
            self.folder.mkdir(parents=True, exist_ok=True)
            with (self.folder / "commands.sh").open("a", encoding="utf-8") as out:
                out.write(command.shell() + "\n")
        self.commands.append(command)
        full = {**os.environ, **env, "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        return command, full

    def _note(self, text: str) -> None:
        """A comment in commands.sh for a step that is not a command (config file written, readiness polled)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "commands.sh").open("a", encoding="utf-8") as out:
            out.write("".join(f"# {line}\n" for line in text.splitlines()))

    def _take_port(self, port: int | None) -> int:
        if port is not None and port in self._ports:
            raise FedmllmError(f"port {port} is already used by this deployment")
        port = port or free_port()
        while port in self._ports:
            port = free_port()
        self._ports.add(port)
        return port

    def _spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Process:
        command, full_env = self._record(argv, env, None)
        return Process.start(name, command, full_env, self.logs / f"{name}.log")

    def write_connection(self) -> Path:
        """Write `$FLWR_HOME/config.toml` with one named connection to the SuperLink (address + absolute CA path)."""
        if self.port is None:
            raise FedmllmError("start the SuperLink before writing the CLI connection (its port is not known yet)")
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        path = self.flwr_home / "config.toml"
        text = connection_toml(self.connection, self.port, self.certs["ca_cert"])
        path.write_text(text, encoding="utf-8")
        self._note(f"wrote {path}:\n{text}")
        return path

    # -- SuperLink --------------------------------------------------------------------------------------------------

    def start_superlink(self, port: int | None = None, *, timeout: float = 60.0) -> Process:
        """Start `flower-superlink` with TLS and SuperNode auth, wait for `GET /health` over HTTPS, write config.toml.

        Fleet, Control and Runtime APIs share this one port, on 127.0.0.1 only (there is deliberately no `host`:
        exposing the port exposes the Control API; docs/deployment.md shows how to expose only the Fleet API).
        Raises FedmllmError with the log tail if it exits or is not healthy within `timeout` seconds.
        """
        if self.superlink is not None:
            raise FedmllmError(f"the SuperLink is already running (pid {self.superlink.pid})")
        certs = self.ensure_certs()
        self.port = self._take_port(port)
        argv = superlink_argv(certs, self.database, self.port)
        self.superlink = self._spawn("superlink", argv, {**self.env(), **LEGACY_GRPC_OFF})
        self.write_connection()
        self._wait_health(self.superlink, timeout)
        return self.superlink

    def _wait_health(self, proc: Process, timeout: float) -> None:
        url = f"https://{LOOPBACK}:{self.port}/health"
        self._note(f"wait until this answers 200: curl --cacert {self.certs['ca_cert']} {url}")
        context = ssl.create_default_context(cafile=str(self.certs["ca_cert"]))
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise FedmllmError(
                    f"{proc.name} exited with code {proc.returncode} before it was healthy\n{proc.tail()}"
                )
            try:
                with urllib.request.urlopen(url, context=context, timeout=2) as response:
                    if response.status == 200:
                        proc.ready_seconds = time.monotonic() - proc.started
                        return
            except OSError as err:  # not listening yet (or a TLS problem: reported below if it persists)
                last_error = err
            time.sleep(0.1)
        raise FedmllmError(f"{url} not healthy after {timeout}s (last error: {last_error!r})\n{proc.tail()}")

    # -- flwr CLI ---------------------------------------------------------------------------------------------------

    def cli(self, args: Sequence[str], *, cwd: Path | None = None, timeout: float = 120.0) -> str:
        """Run `flwr <args>` against this deployment's FLWR_HOME; return stdout, raise FedmllmError if it fails."""
        command, full_env = self._record(["flwr", *args], self.env(), cwd)
        proc = subprocess.run(
            command.argv, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / "cli.log").open("a", encoding="utf-8") as out:
            out.write(f"$ {command.shell()}\n[exit {proc.returncode}]\n{proc.stdout}{proc.stderr}\n")
        if proc.returncode != 0:
            output = proc.stdout[-3000:] + proc.stderr[-3000:]
            raise FedmllmError(f"`{shlex.join(command.argv)}` exited with code {proc.returncode}\n{output}")
        return proc.stdout

    def _cli_json(self, args: Sequence[str], *, cwd: Path | None = None, timeout: float = 120.0) -> dict[str, Any]:
        out = self.cli([*args, "--format", "json"], cwd=cwd, timeout=timeout)
        start = out.find("{")  # `--format json` prints one JSON object; anything before it is a stray banner
        try:
            data = json.loads(out[start:]) if start >= 0 else None
        except json.JSONDecodeError as err:
            raise FedmllmError(f"`flwr {' '.join(args)}` did not print JSON:\n{out[-3000:]}") from err
        if not isinstance(data, dict) or not data.get("success"):
            raise FedmllmError(f"`flwr {' '.join(args)}` failed:\n{out[-3000:]}")
        return data

    def register_node(self, public_key: Path, *, name: str | None = None) -> int:
        """`flwr supernode register <public_key> <connection>`; returns the node id (stable across restarts)."""
        args = ["supernode", "register", str(Path(public_key).resolve()), self.connection]
        if name:
            args += ["--name", name]
        return int(self._cli_json(args)["node-id"])

    def list_nodes(self) -> list[dict[str, Any]]:
        """`flwr supernode ls <connection>`: dicts with "node-id", "status" ("online", "offline", "registered"...)."""
        return list(self._cli_json(["supernode", "ls", self.connection])["nodes"])

    def wait_for_nodes(self, count: int, *, timeout: float = 120.0, poll: float = 1.0) -> list[dict[str, Any]]:
        """Wait until at least `count` SuperNodes are online; returns the online ones."""
        deadline = time.monotonic() + timeout
        while True:
            online = [n for n in self.list_nodes() if n["status"] == "online"]
            if len(online) >= count:
                return online
            if time.monotonic() > deadline:
                logs = "\n".join(p.tail(1500) for p in self.supernodes.values())
                raise FedmllmError(f"only {len(online)}/{count} SuperNodes online after {timeout}s\n{logs}")
            time.sleep(poll)

    def run_app(self, app: Path, run_config: Mapping[str, ConfigValue] | None = None, *, timeout: float = 300) -> int:
        """`flwr run . <connection> [--run-config ...]` in `app` (builds and uploads the FAB); returns the run id."""
        args = ["run", ".", self.connection]
        if run_config:
            args += ["--run-config", render_config(run_config)]
        return int(self._cli_json(args, cwd=Path(app).resolve(), timeout=timeout)["run-id"])

    def run_status(self, run_id: int) -> dict[str, Any]:
        """`flwr ls <connection> --run-id <id>`: the run's row ("status" is e.g. "running", "finished:completed")."""
        runs = self._cli_json(["ls", self.connection, "--run-id", str(run_id)])["runs"]
        if len(runs) != 1:
            raise FedmllmError(f"flwr ls --run-id {run_id} returned {len(runs)} runs")
        return dict(runs[0])

    def wait_run(self, run_id: int, *, timeout: float = 3600.0, poll: float = 3.0) -> dict[str, Any]:
        """Poll the run's status until it is `finished:*` and return its row; check `row["status"]` for the outcome.

        `flwr run --stream` exits 0 even when the ServerApp failed, so the status is the only reliable signal.
        """
        deadline = time.monotonic() + timeout
        while True:
            row = self.run_status(run_id)
            if str(row["status"]).startswith("finished"):
                return row
            if time.monotonic() > deadline:
                raise FedmllmError(f"run {run_id} still {row['status']!r} after {timeout}s")
            self.check_alive()
            time.sleep(poll)

    def run_logs(self, run_id: int) -> str:
        """`flwr log <id> <connection> --show`: the ServerApp's stdout/stderr (ClientApp output is in the node logs)."""
        return self.cli(["log", str(run_id), self.connection, "--show"])

    def check_alive(self) -> None:
        """Raise FedmllmError, with its log's tail, if the SuperLink has exited."""
        if self.superlink is not None and self.superlink.returncode is not None:
            raise FedmllmError(f"the SuperLink exited with code {self.superlink.returncode}\n{self.superlink.tail()}")

    # -- SuperNodes -------------------------------------------------------------------------------------------------

    def start_supernode(
        self,
        name: str,
        private_key: Path | None,
        node_config: Mapping[str, ConfigValue] | None = None,
        *,
        run_config: Mapping[str, ConfigValue] | None = None,
        port: int | None = None,
        max_retries: int = 5,
        max_wait_time: float = 60.0,
    ) -> Process:
        """Start `flower-supernode` dialling the SuperLink over TLS, with its own Runtime API port and FLWR_HOME.

        `private_key` is the OpenSSH key whose `.pub` was registered (None: an ephemeral key, which a SuperLink with
        `--enable-supernode-auth` rejects). `node_config` becomes `--node-config` (the ClientApp's
        `context.node_config`); `run_config`, the config of the run this node is started for, adds what the node
        needs to accept it (`node_trust_config`). `max_retries`/`max_wait_time` bound reconnect attempts so a broken
        node exits instead of retrying forever. Does not wait: use `wait_for_nodes`, or `Process.wait` for a node that
        should fail.
        """
        if self.superlink is None or self.port is None:
            raise FedmllmError("start the SuperLink before any SuperNode")
        if name in self.supernodes or not BARE_KEY.match(name):
            raise FedmllmError(f"SuperNode name {name!r} is taken or not made of letters, digits, '_' and '-'")
        launch = NodeLaunch(
            superlink_port=self.port,
            ca_cert=self.certs["ca_cert"],
            port=self._take_port(port),
            private_key=private_key,
            node_config=node_config,
            run_config=run_config,
            max_retries=max_retries,
            max_wait_time=max_wait_time,
        )
        argv = launch.argv()  # before any side effect: a bad config raises here
        home = self.folder / "nodes" / name / "flwr-home"
        home.mkdir(parents=True, exist_ok=True)
        proc = self._spawn(f"supernode-{name}", argv, self.env(home))
        self.supernodes[name] = proc
        return proc

    # -- teardown ---------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop all SuperNodes, then the SuperLink (`Process.stop`: SIGTERM, SIGKILL after `grace` seconds); safe to
        call twice."""
        for proc in reversed(list(self.supernodes.values())):
            proc.stop(self.grace)
        if self.superlink is not None:
            self.superlink.stop(self.grace)
