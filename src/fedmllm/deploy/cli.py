"""`fedmllm deploy`: credentials for Flower's Deployment Engine (`certs`, `keys`), and a whole TLS + SuperNode-auth
deployment on this machine that runs fedmllm once (`local`). docs/deployment.md explains all three."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedmllm.errors import FedmllmError
from fedmllm.progress import format_metrics

if TYPE_CHECKING:  # the launcher's imports (cryptography, the config) wait until `deploy` runs
    from fedmllm.deploy.trial import Trial

DEFAULT_NODES = 3  # the default config's clients per round
MAX_NODES = 32  # every SuperNode is a Python process on this one machine


ConfigFlags = Callable[[argparse.ArgumentParser], None]


def add_deploy_parser(sub: Any, add_config_flags: ConfigFlags) -> None:
    """Add `deploy` and its subcommands to the `fedmllm` parser's subparsers `sub`; `add_config_flags` adds the
    run config's flags to a parser (passed in: the package layers forbid importing `fedmllm.cli` from here)."""
    deploy = sub.add_parser(
        "deploy", help="Flower's Deployment Engine: credentials, or a whole deployment here (docs/deployment.md)"
    )
    deploy_sub = deploy.add_subparsers(dest="deploy_command", required=True)
    certs = deploy_sub.add_parser(
        "certs", help="a development CA and a SuperLink TLS certificate (ca.crt, server.pem, server.key)"
    )
    certs.add_argument("--out", type=Path, required=True, help="folder for the files (never overwritten)")
    certs.add_argument(
        "--host",
        action="append",
        default=[],
        help="a name or IP the SuperNodes dial, repeatable (localhost, 127.0.0.1 and ::1 are always included)",
    )
    keys = deploy_sub.add_parser("keys", help="SuperNode authentication keys (OpenSSH ECDSA P-384), one pair per name")
    keys.add_argument("names", nargs="+", help="one name per SuperNode, e.g. hospital-a hospital-b")
    keys.add_argument("--out", type=Path, required=True, help="folder for the keys (never overwritten)")
    add_local_parser(deploy_sub, add_config_flags)


def add_local_parser(deploy_sub: Any, add_config_flags: ConfigFlags) -> None:
    local = deploy_sub.add_parser(
        "local",
        help="try a TLS + SuperNode-auth deployment on this machine: SuperLink, N SuperNodes, one `flwr run`",
        description="Start a SuperLink (TLS, SuperNode authentication) and N SuperNodes on 127.0.0.1, each node "
        "holding its own shard of the configured data, run fedmllm on them with `flwr run`, print each round, then "
        "stop every process started (also on an error or Ctrl-C). Precedence: defaults < --config file < flags; "
        "num_clients is the number of nodes and client_data is 'node'.",
        conflict_handler="resolve",  # its --out (below) replaces the run config's
    )
    local.add_argument("--config", type=Path, help="a TOML or YAML file of config keys")
    add_config_flags(local)
    local.add_argument(
        "--nodes",
        type=int,
        help=f"SuperNodes to start, one client each (default: the config's num_clients if set, else {DEFAULT_NODES})",
    )
    local.add_argument(
        "--out",
        type=Path,
        help="the deployment folder, new or empty (default: runs/deploy-<timestamp>); the run folder is OUT/run",
    )


def cmd_deploy(args: argparse.Namespace) -> None:
    if args.deploy_command == "certs":
        cmd_certs(args)
    elif args.deploy_command == "keys":
        cmd_keys(args)
    else:
        cmd_local(args)


def cmd_certs(args: argparse.Namespace) -> None:
    from fedmllm.deploy.certs import write_dev_certs

    hosts = list(dict.fromkeys(["localhost", "127.0.0.1", "::1", *args.host]))
    for name, path in write_dev_certs(args.out, hosts).items():
        print(f"{name}: {path}")


def cmd_keys(args: argparse.Namespace) -> None:
    from fedmllm.deploy.certs import write_node_keys

    for name, (private, public) in write_node_keys(args.out, args.names).items():
        print(f"{name}: {private} (for its SuperNode) and {public} (for `flwr supernode register`)")


def cmd_local(args: argparse.Namespace) -> None:
    from fedmllm.deploy.trial import run_local

    trial = local_trial(args)
    summary = run_local(trial)
    print(f"zero-shot: {format_metrics(summary['zero_shot'])}")
    print(f"federated ({summary['rounds']} rounds): {format_metrics(summary['final'])}")
    print(f"run folder: {trial.run_dir}  ({summary['seconds']:.0f} s; summary.json has every metric)")


def local_trial(args: argparse.Namespace) -> Trial:
    """The checked `deploy local` request; raises FedmllmError naming the flag or key at fault before anything is
    written."""
    from fedmllm.config import RunConfig, coerce
    from fedmllm.config_files import load, read_file
    from fedmllm.deploy.trial import Trial

    given = {k.replace("-", "_"): v for k, v in (read_file(args.config) if args.config else {}).items()}
    if "num_clients" in given:  # checked here: it decides how many nodes start
        coerce("num_clients", given["num_clients"], str(args.config))
    names = [f.name for f in dataclasses.fields(RunConfig) if f.name != "out"]  # OUT is the deployment's folder
    flags = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    given |= flags
    nodes = node_count(args.nodes, given.get("num_clients"))
    if given.get("client_data", "node") != "node":
        raise FedmllmError(
            f"config key 'client_data': {given['client_data']!r}, but every SuperNode of `deploy local` reads its "
            "own shard (client_data = 'node'); leave the key out"
        )
    folder = (args.out or Path("runs") / datetime.now().strftime("deploy-%Y%m%d-%H%M%S")).resolve()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise FedmllmError(f"{folder}: deployment folder exists and is not empty (choose another --out)")
    fixed = {"num_clients": nodes, "client_data": "node", "out": str(folder / "run")}
    return Trial(folder, load(args.config, {**flags, **fixed}))


def node_count(nodes: int | None, num_clients: int | None) -> int:
    """`--nodes`, else the config's num_clients, else DEFAULT_NODES; the two must agree when both are given."""
    if nodes is not None and num_clients is not None and nodes != num_clients:
        raise FedmllmError(
            f"--nodes {nodes} but config key 'num_clients' is {num_clients!r}: every client is one SuperNode "
            "(give one of the two)"
        )
    count = nodes if nodes is not None else num_clients if num_clients is not None else DEFAULT_NODES
    if not 1 <= count <= MAX_NODES:
        raise FedmllmError(f"--nodes / num_clients: {count} is not in 1..{MAX_NODES} (each node is a process here)")
    return count
