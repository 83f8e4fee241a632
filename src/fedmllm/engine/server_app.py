"""The ServerApp: samples clients, sends them the global adapter, collects their updates.

The round loop itself is the recipe in `fedmllm.run`; `FlowerTransport` is how it reaches the
clients. `app` is what `flwr run .` starts, configured by `[tool.flwr.app.config]`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flwr.app import Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedmllm.engine.records import from_arrays, run_config, to_arrays, to_config
from fedmllm.errors import FedmllmError
from fedmllm.progress import progress_printer
from fedmllm.run import ClientUpdate, RoundResult, TrainJob, create_run_dir, federate

log = logging.getLogger(__name__)


class FlowerTransport:
    """The recipe's view of a Flower Grid."""

    def __init__(self, grid: Grid, wait_for_nodes: float = 120.0) -> None:
        self.grid = grid
        self.wait_for_nodes = wait_for_nodes

    def partitions(self, run: dict[str, Any]) -> dict[int, int]:
        deadline = time.monotonic() + self.wait_for_nodes
        nodes = list(self.grid.get_node_ids())
        while len(nodes) < run["num_clients"] and time.monotonic() < deadline:
            time.sleep(1.0)  # SuperNodes of a deployment connect over time
            nodes = list(self.grid.get_node_ids())
        messages = [
            Message(RecordDict({"run": to_config(run)}), dst_node_id=node, message_type=MessageType.QUERY)
            for node in nodes
        ]
        found = {}
        for reply in self.grid.send_and_receive(messages):
            if reply.has_error():
                raise FedmllmError(f"node {reply.metadata.src_node_id}: {reply.error.reason}")
            found[int(reply.content["info"]["partition-id"])] = reply.metadata.src_node_id
        return found

    def train(
        self, jobs: list[TrainJob], nodes: dict[int, int], run: dict[str, Any], rnd: dict[str, Any]
    ) -> RoundResult:
        shared = {"run": to_config(run), "round": to_config(rnd)}
        arrays = {}  # one record per distinct parameter set (FedAvg & co. send the same one to all)
        messages = []
        for job in jobs:
            key = id(job.params)
            arrays.setdefault(key, to_arrays(job.params))
            content = {"arrays": arrays[key], **shared}
            if job.correction is not None:
                content["correction"] = to_arrays(job.correction)
            messages.append(
                Message(RecordDict(content), dst_node_id=nodes[job.partition], message_type=MessageType.TRAIN)
            )
        result = RoundResult(updates=[])
        result.bytes_sent = sum(
            m.content["arrays"].count_bytes()
            + (m.content["correction"].count_bytes() if "correction" in m.content else 0)
            for m in messages
        )
        for reply in self.grid.send_and_receive(messages):
            if reply.has_error():
                result.failures.append(f"node {reply.metadata.src_node_id}: {reply.error.reason}")
                continue
            metrics = reply.content["metrics"]
            result.bytes_received += reply.content["arrays"].count_bytes()
            result.updates.append(
                ClientUpdate(
                    partition=int(metrics["partition-id"]),
                    params=from_arrays(reply.content["arrays"]),
                    num_samples=int(metrics["num-examples"]),
                    loss=float(metrics["train-loss"]),
                    steps=int(metrics["steps"]),
                    model_loads=int(metrics["model-loads"]),
                )
            )
        result.updates.sort(key=lambda u: u.partition)  # replies arrive in any order
        for failure in result.failures:
            log.warning("round %s: %s", rnd["round"], failure)
        return result


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = run_config(context.run_config, "[tool.flwr.app.config]")
    federate(cfg, create_run_dir(cfg), FlowerTransport(grid), report=progress_printer(cfg.rounds))
