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

from fedmllm.engine.records import from_update, run_config, to_arrays, to_config
from fedmllm.engine.secagg import SecureRounds
from fedmllm.engine.wakeup import TICK_SECONDS, Wakeup
from fedmllm.errors import FedmllmError
from fedmllm.progress import progress_printer
from fedmllm.run import ClientUpdate, RoundResult, TrainJob, create_run_dir, federate

log = logging.getLogger(__name__)
# how often the server asks for replies: a reply waits for the next poll, and every round waits
# for its last reply, so this is added to each round (a pull is one cheap LinkState/gRPC query)
POLL_SECONDS = 0.02


class FlowerTransport:
    """The recipe's view of a Flower Grid."""

    def __init__(
        self,
        grid: Grid,
        context: Context | None = None,
        wait_for_nodes: float = 120.0,
        wakeup: Wakeup | None = None,
    ) -> None:
        self.grid = grid
        self.wakeup = wakeup  # in simulation: Flower's engine wakes the pull on each reply
        self.wait_for_nodes = wait_for_nodes
        self.sizes: dict[int, int] = {}  # partition -> training samples, as each node reported
        self.secure = SecureRounds(grid, context) if context is not None else None

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
            partition = int(reply.content["info"]["partition-id"])
            found[partition] = reply.metadata.src_node_id
            self.sizes[partition] = int(reply.content["info"]["num-examples"])
        return found

    def pull(self, sent: dict[str, Message], timeout: float) -> dict[str, Message]:
        """Replies by the id of the message they answer, until all are in or `timeout` s pass
        (0 = no limit: a lost node is answered by the SuperLink with an error)."""
        deadline = time.monotonic() + timeout if timeout > 0 else float("inf")
        replies: dict[str, Message] = {}
        while len(replies) < len(sent):
            if self.wakeup is not None:
                self.wakeup.replied.clear()  # before the pull: a reply stored during it ends the wait at once
            for reply in self.grid.pull_messages(list(set(sent) - set(replies))):
                replies[reply.metadata.reply_to_message_id] = reply
            if len(replies) < len(sent):
                if time.monotonic() >= deadline:
                    break
                if self.wakeup is not None:
                    self.wakeup.replied.wait(TICK_SECONDS)  # a reply ends it; the timeout is a fallback
                else:
                    time.sleep(POLL_SECONDS)
        return replies

    def train(
        self, jobs: list[TrainJob], nodes: dict[int, int], run: dict[str, Any], rnd: dict[str, Any]
    ) -> RoundResult:
        if run["secagg"]:
            return self.train_secure(jobs, nodes, run, rnd)
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
        partition_of = {nodes[job.partition]: job.partition for job in jobs}
        start = {job.partition: job.params for job in jobs}  # what each client trained from
        sent: dict[str, Message] = {}
        for message_id, message in zip(self.grid.push_messages(messages), messages, strict=True):
            if message_id:
                sent[message_id] = message
            else:  # the SuperLink no longer knows the node
                node = message.metadata.dst_node_id
                result.failures.append(f"node {node} (partition {partition_of[node]}): unknown to the SuperLink")
        replies = self.pull(sent, run["round_timeout"])
        for message_id, message in sent.items():
            reply = replies.get(message_id)
            node = message.metadata.dst_node_id
            where = f"node {node} (partition {partition_of[node]})"
            if reply is None:
                result.failures.append(f"{where}: no reply within round_timeout={run['round_timeout']} s")
                continue
            if reply.has_error():  # a lost node's error comes from the SuperLink, so name the addressee
                result.failures.append(f"{where}: {reply.error.reason}")
                continue
            metrics = reply.content["metrics"]
            partition = int(metrics["partition-id"])
            result.bytes_received += reply.content["arrays"].count_bytes()
            result.updates.append(
                ClientUpdate(
                    partition=partition,
                    params=from_update(reply.content["arrays"], start[partition], run["update_dtype"]),
                    num_samples=int(metrics["num-examples"]),
                    loss=float(metrics["train-loss"]),
                    steps=int(metrics["steps"]),
                    model_loads=int(metrics["model-loads"]),
                    seconds=float(metrics["seconds"]),
                    reg_grad_ratio=float(metrics["reg-grad-ratio"]) if "reg-grad-ratio" in metrics else None,
                )
            )
        result.updates.sort(key=lambda u: u.partition)  # replies arrive in any order
        for failure in result.failures:
            log.warning("round %s: %s", rnd["round"], failure)
        return result

    def train_secure(
        self, jobs: list[TrainJob], nodes: dict[int, int], run: dict[str, Any], rnd: dict[str, Any]
    ) -> RoundResult:
        """One SecAgg+ round: a single update, the weighted mean, standing for every client that
        took part (their sample counts and losses arrive in plaintext, as in Flower)."""
        if self.secure is None:
            raise FedmllmError("secagg needs the ServerApp's context (FlowerTransport(grid, context))")
        params = jobs[0].params  # SecAgg+ algorithms send every client the same global tensors
        node_ids = [nodes[job.partition] for job in jobs]
        max_weight = max(self.sizes[job.partition] for job in jobs)
        mean, clients, failed = self.secure.run(
            node_ids, params, {"run": run, "round": rnd}, max_weight, run["round_timeout"]
        )
        contributors = sorted(int(c["partition-id"]) for c in clients)
        lost = sorted({job.partition for job in jobs} - set(contributors))
        result = RoundResult(updates=[], contributors=contributors)
        result.failures = [f"partition {p}: dropped out of the SecAgg+ protocol" for p in lost]
        per_message = sum(t.numel() for t in params.values())
        result.bytes_sent = 4 * per_message * len(jobs)  # the global tensors, once per client (float32)
        result.bytes_received = 8 * per_message * len(contributors)  # masked int64 vectors
        if mean is None:
            result.failures.append(f"secure aggregation halted ({failed} failure(s) reported)")
            return result
        total = sum(int(c["num-examples"]) for c in clients)
        loss = sum(float(c["train-loss"]) * int(c["num-examples"]) for c in clients) / total
        steps = max(int(c["steps"]) for c in clients)
        loads = max(int(c["model-loads"]) for c in clients)
        seconds = sum(float(c["seconds"]) for c in clients)
        ratios = [float(c["reg-grad-ratio"]) for c in clients if "reg-grad-ratio" in c]
        ratio = sum(ratios) / len(ratios) if ratios else None
        # the secure mean becomes the new model in run.server_update, through the same rule (and eta)
        result.updates = [ClientUpdate(-1, mean, total, loss, steps, loads, len(contributors), seconds, ratio)]
        return result


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = run_config(context.run_config, "[tool.flwr.app.config]")
    federate(cfg, create_run_dir(cfg), FlowerTransport(grid, context), report=progress_printer(cfg.rounds))
