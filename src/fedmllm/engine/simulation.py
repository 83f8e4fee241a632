"""`fedmllm run`: the same ServerApp/ClientApp on Flower's Simulation Engine, in-process."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from fedmllm.config import RunConfig
from fedmllm.engine.client_app import NodeTrust, make_app, names
from fedmllm.engine.server_app import FlowerTransport
from fedmllm.engine.wakeup import Wakeup, installed
from fedmllm.run import federate

# Ray sends a task argument or result larger than 100 KB through its shared-memory object store
# (put, seal, fetch, release), which costs more than the copy itself for a round's adapter-sized
# messages: handing a 0.72 MB message to a client and back took ~9 ms less inline (docs/performance.md).
# Up to this size they travel inline in the task's RPC; larger ones still take the object store.
RAY_INLINE_BYTES = 8 * 2**20
RAY_SYSTEM_CONFIG = {
    "max_direct_call_object_size": RAY_INLINE_BYTES,
    "task_rpc_inlined_bytes_limit": 2 * RAY_INLINE_BYTES,
}


def backend_config(cfg: RunConfig) -> dict[str, Any]:
    """Flower's Ray backend settings: each client's resources, and the inline limit above for the
    cluster `ray.init` starts (Ray refuses a `_system_config` when joining one at RAY_ADDRESS)."""
    config: dict[str, Any] = {"client_resources": {"num_cpus": cfg.client_cpus, "num_gpus": cfg.client_gpus}}
    if not os.environ.get("RAY_ADDRESS"):
        config["init_args"] = {"_system_config": dict(RAY_SYSTEM_CONFIG)}
    return config


class NoClients:
    """The transport of the Centralized baseline, which never reaches a client."""

    def partitions(self, run: dict[str, Any]) -> dict[int, int]:
        raise RuntimeError("the centralized baseline has no clients")

    def train(self, jobs: list, nodes: dict[int, int], run: dict[str, Any], rnd: dict[str, Any]) -> Any:
        raise RuntimeError("the centralized baseline has no clients")


def simulate(
    cfg: RunConfig,
    run_dir: Path,
    report: Callable[[dict[str, Any]], None] | None = None,
    resume: bool = False,
    wakeup: Wakeup | None = None,
) -> dict[str, Any]:
    """Run the federation with one simulated SuperNode per client; returns the run summary.
    `wakeup` (a new one by default) links the transport and Flower's engine threads (`engine.wakeup`).

    `run_simulation` hands the ServerApp an empty run config, so the app built here closes over
    `cfg`. An error inside the ServerApp is carried out and raised here, where the CLI reports it.
    """
    if cfg.algo.pools_data:  # no clients: the pooled data trains in this process
        return federate(cfg, run_dir, NoClients(), report, resume)
    outcome: dict[str, Any] = {}
    server = ServerApp()
    wakeup = Wakeup() if wakeup is None else wakeup

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            # Flower's own injector never sets `replied`: then the transport polls as in a deployment
            transport = FlowerTransport(wakeup.watch(grid), context, wakeup=wakeup if wakeup.active else None)
            outcome["summary"] = federate(cfg, run_dir, transport, report, resume)
        except BaseException as e:
            outcome["error"] = e
            raise

    with installed(wakeup):
        run_simulation(
            server_app=server,
            # the user who starts a simulation owns every node
            client_app=make_app(NodeTrust(cfg.trust_remote_code, plugins=names(cfg.plugins))),
            num_supernodes=cfg.num_clients,
            backend_config=backend_config(cfg),
            verbose_logging=logging.getLogger("flwr").isEnabledFor(logging.DEBUG),
        )
    if "error" in outcome:
        raise outcome["error"]
    if "summary" not in outcome:
        raise RuntimeError("the simulation ended without running the ServerApp")
    return outcome["summary"]
