"""A whole Flower 1.42 deployment on one machine (loopback): TLS SuperLink with SuperNode auth, registered SuperNodes.

This exists so tests and users can try the Deployment Engine end to end before spreading it over machines. It
runs the same commands a real deployment runs, only on 127.0.0.1, and records every one of them (with the
environment variables it sets) in `LocalDeployment.commands` and `<folder>/commands.sh`, so the docs can show
exactly what to type. Every API it starts listens on 127.0.0.1 only: Flower 1.42's Control API has no login, so
anyone who reached it could start runs, i.e. execute code on every SuperNode (docs/deployment.md). Typical use::

    from fedmllm.deploy.certs import write_node_keys
    from fedmllm.deploy.local import LocalDeployment

    with LocalDeployment(Path("/tmp/fedmllm-deploy")) as dep:
        dep.start_superlink()
        keys = write_node_keys(dep.folder / "keys", ["node0", "node1"])
        for i, (name, (private, public)) in enumerate(keys.items()):
            dep.register_node(public, name=name)
            dep.start_supernode(name, private, {"partition-id": i, "num-partitions": 2})
        dep.wait_for_nodes(2)
        run_id = dep.run_app(Path("."), {"rounds": 2, "num_clients": 2})
        print(dep.wait_run(run_id)["status"], dep.run_logs(run_id))
    # every process started here is stopped (SIGTERM, then SIGKILL after `grace` seconds) on exit

Layout of `folder`: `certs/` (dev CA and server cert), `flwr-home/` (the CLI's and SuperLink's FLWR_HOME, with
`config.toml`), `nodes/<name>/flwr-home/` (one FLWR_HOME per SuperNode, as on separate machines; they would
otherwise race installing the same FAB), `superlink.db` (so `flwr supernode register` survives a SuperLink
restart), `logs/<process>.log` (stdout+stderr of each process) and `logs/cli.log` (every `flwr` CLI call).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fedmllm.config import RunConfig, coerce
from fedmllm.deploy.certs import DEFAULT_HOSTS, write_dev_certs
from fedmllm.errors import FedmllmError

LOOPBACK = "127.0.0.1"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

ConfigValue = bool | int | float | str
# Flower 1.42 can still start its old gRPC Fleet and Control servers, on 0.0.0.0:9092 and 0.0.0.0:9093, when these
# are "1" in the environment; the launcher passes its caller's environment on, so it switches them off explicitly.
LEGACY_GRPC_OFF = {"FLWR_INTERNAL_GRPC_FLEET_API": "0", "FLWR_INTERNAL_GRPC_CONTROL_API": "0"}


def toml_value(value: ConfigValue) -> str:
    """Render one `--node-config`/`--run-config` value as TOML that survives Flower's key=value splitter.

    Flower cuts values with the regex `'[^']*'|"[^"]*"|\\S+` before TOML-parsing them, so a string is written as a
    literal string ('...', no escapes, safe for Windows paths) unless it contains `'` or control characters; then
    as a basic string with `"` and control characters as `\\uXXXX` escapes (a `\\"` escape would end the match).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)  # 'inf', '-inf', '1e+20' are all TOML floats
    if isinstance(value, str):
        if "'" not in value and not _CONTROL.search(value):
            return f"'{value}'"
        escaped = value.replace("\\", "\\\\")
        escaped = re.sub(r'["\x00-\x1f\x7f]', lambda m: f"\\u{ord(m.group()):04x}", escaped)
        return f'"{escaped}"'
    raise FedmllmError(f"config value {value!r} must be a bool, int, float or str, not {type(value).__name__}")


def render_config(config: Mapping[str, ConfigValue]) -> str:
    """Render a flat dict as Flower's space-separated `key=value` config string (for `--node-config`/`--run-config`)."""
    parts = []
    for key, value in config.items():
        if not _BARE_KEY.match(key):
            raise FedmllmError(f"config key {key!r} must use only letters, digits, '_' and '-'")
        parts.append(f"{key}={toml_value(value)}")
    return " ".join(parts)


def free_port(host: str = LOOPBACK) -> int:
    """A port the OS says is free right now (another process could still take it before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def node_trust_config(run_config: Mapping[str, ConfigValue] | None) -> dict[str, ConfigValue]:
    """The node-config keys a SuperNode needs to accept `run_config` ("What a node accepts" in docs/deployment.md).

    A node refuses remote model code unless its own config allows it. This launcher is the same user on the same
    machine as the run it starts, so for a run with `trust_remote_code = true` it lets its nodes load exactly that
    run's model with remote code; any other run needs nothing extra (an empty dict).
    """
    run = {key.replace("-", "_"): value for key, value in (run_config or {}).items()}
    if not coerce("trust_remote_code", run.get("trust_remote_code", False), "run config"):
        return {}
    model = coerce("model", run.get("model", RunConfig().model), "run config")
    return {"trust-remote-code": True, "models": model}


def superlink_argv(certs: Mapping[str, Path], database: Path, port: int) -> list[str]:
    """`flower-superlink` with TLS and SuperNode auth, its one HTTPS port (Fleet, Control, Runtime) on 127.0.0.1."""
    return [
        "flower-superlink",
        "--ssl-ca-certfile", str(certs["ca_cert"]),
        "--ssl-certfile", str(certs["server_cert"]),
        "--ssl-keyfile", str(certs["server_key"]),
        "--enable-supernode-auth",
        "--disable-runtime-dependency-installation",
        "--database", str(database),
        "--host", LOOPBACK,
        "--port", str(port),
    ]  # fmt: skip


@dataclass(frozen=True)
class NodeLaunch:
    """What one `flower-supernode` is started with (see `LocalDeployment.start_supernode`)."""

    superlink_port: int
    ca_cert: Path
    port: int
    private_key: Path | None = None
    node_config: Mapping[str, ConfigValue] | None = None
    run_config: Mapping[str, ConfigValue] | None = None
    max_retries: int = 5
    max_wait_time: float = 60.0

    def argv(self) -> list[str]:
        """The command line; its own Runtime API (for its ClientApp processes) on 127.0.0.1 too.

        `--node-config` is `node_trust_config(run_config)` overlaid with `node_config`: a key the caller sets wins,
        so a test can start a node that refuses what the run asks for.
        """
        argv = [
            "flower-supernode",
            "--superlink", f"{LOOPBACK}:{self.superlink_port}",
            "--root-certificates", str(self.ca_cert),
            "--host", LOOPBACK,
            "--port", str(self.port),
            "--max-retries", str(self.max_retries),
            "--max-wait-time", str(self.max_wait_time),
        ]  # fmt: skip
        if self.private_key is not None:
            argv += ["--auth-supernode-private-key", str(Path(self.private_key).resolve())]
        config = {**node_trust_config(self.run_config), **(self.node_config or {})}
        if config:
            argv += ["--node-config", render_config(config)]
        return argv


@dataclass(frozen=True)
class Command:
    """One command the launcher ran: argv, the environment variables it set on top of the caller's, and cwd."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path | None = None

    def shell(self) -> str:
        """The command as one copy-pasteable shell line."""
        assigns = []
        for key, value in self.env.items():
            if key == "PATH" and value.endswith(f"{os.pathsep}$PATH"):  # keep the caller's PATH expandable
                assigns.append(f"PATH={shlex.quote(value.removesuffix(f'{os.pathsep}$PATH'))}{os.pathsep}$PATH")
            else:
                assigns.append(f"{key}={shlex.quote(value)}")
        line = " ".join([*assigns, shlex.join(self.argv)])
        return f"(cd {shlex.quote(str(self.cwd))} && {line})" if self.cwd else line


@dataclass
class Process:
    """A long-running process this deployment started; its stdout and stderr go to `log`."""

    name: str
    command: Command
    popen: subprocess.Popen[bytes]
    log: Path
    started: float  # time.monotonic() at start
    ready_seconds: float | None = None  # set once the launcher saw it ready (SuperLink: /health answered)
    stopped: bool = False
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """None while running."""
        return self.popen.poll()

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; raise FedmllmError (with the log's tail) if it is still running."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise FedmllmError(f"{self.name} (pid {self.pid}) still running after {timeout}s\n{self.tail()}") from err

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.log} (last {chars} chars) ---\n{self.text()[-chars:]}"


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
        if not _BARE_KEY.match(connection):
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
        self.commands.append(command)
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "commands.sh").open("a", encoding="utf-8") as out:
            out.write(command.shell() + "\n")
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
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        log_file = log.open("ab")
        try:
            # own session: the process and the superexec/app processes it spawns form one group we can clean up
            popen = subprocess.Popen(
                command.argv,
                env=full_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            log_file.close()
            raise
        return Process(name, command, popen, log, time.monotonic(), _log_file=log_file)

    def write_connection(self) -> Path:
        """Write `$FLWR_HOME/config.toml` with one named connection to the SuperLink (address + absolute CA path)."""
        if self.port is None:
            raise FedmllmError("start the SuperLink before writing the CLI connection (its port is not known yet)")
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        path = self.flwr_home / "config.toml"
        text = (
            "[superlink]\n"
            f"default = {toml_value(self.connection)}\n\n"
            f"[superlink.{self.connection}]\n"
            f"address = {toml_value(f'{LOOPBACK}:{self.port}')}\n"
            f"root-certificates = {toml_value(str(self.certs['ca_cert']))}\n"
        )
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
            self._check_alive()
            time.sleep(poll)

    def run_logs(self, run_id: int) -> str:
        """`flwr log <id> <connection> --show`: the ServerApp's stdout/stderr (ClientApp output is in the node logs)."""
        return self.cli(["log", str(run_id), self.connection, "--show"])

    def _check_alive(self) -> None:
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
        if name in self.supernodes or not _BARE_KEY.match(name):
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

    def stop_process(self, proc: Process) -> int:
        """SIGTERM the process (SuperNodes then deactivate cleanly), SIGKILL its group after `grace` seconds.

        Only the process group this deployment created (its own session) is signalled, never anything by name.
        """
        if proc.stopped:  # its pid (and group id) may belong to someone else by now
            return int(proc.popen.returncode)
        if proc.returncode is None:
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.popen.wait(timeout=self.grace)
        # children (superexec, serverapp/clientapp) that outlived their parent
        with contextlib.suppress(ProcessLookupError):  # raised when the group is empty: everything already exited
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stopped = True
        if proc._log_file is not None:
            proc._log_file.close()
            proc._log_file = None
        return int(proc.popen.returncode)

    def stop(self) -> None:
        """Stop all SuperNodes, then the SuperLink; safe to call twice."""
        for proc in reversed(list(self.supernodes.values())):
            self.stop_process(proc)
        if self.superlink is not None:
            self.stop_process(self.superlink)

    def script(self) -> str:
        """Every command run so far, as a shell script (what `<folder>/commands.sh` holds)."""
        return "\n".join(c.shell() for c in self.commands) + "\n"
