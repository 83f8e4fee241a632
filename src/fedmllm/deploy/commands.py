"""The command lines and config strings of a loopback Flower deployment, built without starting anything.

Everything here is a pure function of its arguments (or a frozen record), so tests can hold each argv against
Flower's own parsers. `fedmllm.deploy.local.LocalDeployment` runs them; `fedmllm deploy local` drives that.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fedmllm import __version__
from fedmllm.config import RunConfig, coerce
from fedmllm.errors import FedmllmError

LOOPBACK = "127.0.0.1"
BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
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
        if not BARE_KEY.match(key):
            raise FedmllmError(f"config key {key!r} must use only letters, digits, '_' and '-'")
        parts.append(f"{key}={toml_value(value)}")
    return " ".join(parts)


def app_pyproject() -> str:
    """A Flower app's `pyproject.toml` naming the installed fedmllm's ServerApp and ClientApp, every RunConfig key
    at its default: what `flwr run` needs, without the project's source folder (the processes import the installed
    package, as every machine of a deployment does)."""
    config = "\n".join(f"{key} = {toml_value(value)}" for key, value in RunConfig().to_dict().items())
    return (
        f'[project]\nname = "fedmllm"\nversion = "{__version__}"\n'
        'description = "fedmllm on a loopback deployment (written by `fedmllm deploy local`)"\n'
        'license = "Apache-2.0"\n\n'
        '[tool.flwr.app]\npublisher = "fedmllm"\n\n'
        "[tool.flwr.app.components]\n"
        'serverapp = "fedmllm.engine.server_app:app"\nclientapp = "fedmllm.engine.client_app:app"\n\n'
        f"[tool.flwr.app.config]\n{config}\n"
    )


def run_overrides(cfg: RunConfig) -> dict[str, ConfigValue]:
    """The keys of `cfg` that differ from the defaults: the `--run-config` of `flwr run` (short enough to read)."""
    defaults = RunConfig().to_dict()
    return {key: value for key, value in cfg.to_dict().items() if value != defaults[key]}


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


def connection_toml(name: str, port: int, ca_cert: Path) -> str:
    """The `flwr` CLI's `$FLWR_HOME/config.toml`: one named, default connection to the SuperLink over TLS."""
    return (
        "[superlink]\n"
        f"default = {toml_value(name)}\n\n"
        f"[superlink.{name}]\n"
        f"address = {toml_value(f'{LOOPBACK}:{port}')}\n"
        f"root-certificates = {toml_value(str(ca_cert))}\n"
    )


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
