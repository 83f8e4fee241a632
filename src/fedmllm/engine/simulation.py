"""`fedmllm run`: the same ServerApp/ClientApp on Flower's Simulation Engine, in-process."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from fedmllm.config import RunConfig
from fedmllm.engine.client_app import app as client_app
from fedmllm.engine.server_app import FlowerTransport
from fedmllm.run import federate


class NoClients:
    """The transport of the Centralized baseline, which never reaches a client."""

    def partitions(self, run: dict[str, Any]) -> dict[int, int]:
        raise RuntimeError("the centralized baseline has no clients")

    def train(self, jobs: list, nodes: dict[int, int], run: dict[str, Any], rnd: dict[str, Any]) -> Any:
        raise RuntimeError("the centralized baseline has no clients")


def simulate(
    cfg: RunConfig, run_dir: Path, report: Callable[[dict[str, Any]], None] | None = None, resume: bool = False
) -> dict[str, Any]:
    """Run the federation with one simulated SuperNode per client; returns the run summary.

    `run_simulation` hands the ServerApp an empty run config, so the app built here closes over
    `cfg`. An error inside the ServerApp is carried out and raised here, where the CLI reports it.
    """
    if cfg.algorithm == "centralized":  # no clients: the pooled data trains in this process
        return federate(cfg, run_dir, NoClients(), report, resume)
    outcome: dict[str, Any] = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            outcome["summary"] = federate(cfg, run_dir, FlowerTransport(grid, context), report, resume)
        except BaseException as e:
            outcome["error"] = e
            raise

    resources = {"num_cpus": cfg.client_cpus, "num_gpus": cfg.client_gpus}
    run_simulation(
        server_app=server,
        client_app=client_app,
        num_supernodes=cfg.num_clients,
        backend_config={"client_resources": resources},
        verbose_logging=logging.getLogger("flwr").isEnabledFor(logging.DEBUG),
    )
    if "error" in outcome:
        raise outcome["error"]
    if "summary" not in outcome:
        raise RuntimeError("the simulation ended without running the ServerApp")
    return outcome["summary"]
