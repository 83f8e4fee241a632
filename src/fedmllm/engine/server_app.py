"""The ServerApp: samples clients, sends them the global adapter, collects their updates.

The round loop itself is the recipe in `fedmllm.run`; `FlowerTransport` is how it reaches the
clients. `app` is what `flwr run .` starts, configured by `[tool.flwr.app.config]`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flwr.app import Context, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedmllm.engine.records import from_update, run_config, to_arrays, to_config
from fedmllm.engine.secagg import SecureRounds
from fedmllm.engine.wakeup import TICK_SECONDS, Wakeup
from fedmllm.errors import FedmllmError
from fedmllm.fl.screen import ClientUpdate, Rejection
from fedmllm.launch import launch
from fedmllm.progress import progress_printer
from fedmllm.run import federate
from fedmllm.transport import RoundResult, TrainJob

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
        found: dict[int, int] = {}
        for reply in self.grid.send_and_receive(messages):
            node = reply.metadata.src_node_id
            if reply.has_error():
                raise FedmllmError(f"node {node}: {reply.error.reason}")
            info = reply.content.metric_records.get("info")
            try:  # a node that cannot say who it is cannot be sampled: the federation is misconfigured
                if info is None:
                    raise FedmllmError("the reply lacks its info record")
                partition, size = metric(info, "partition-id", int), metric(info, "num-examples", int)
                if not 0 <= partition < run["num_clients"] or size < 1:
                    raise FedmllmError(f"partition-id {partition} of 0..{run['num_clients'] - 1}, {size} examples")
            except FedmllmError as e:
                raise FedmllmError(f"node {node}: unusable reply to the partition query ({e})") from None
            if partition in found:
                raise FedmllmError(f"nodes {found[partition]} and {node} both say they hold partition {partition}")
            found[partition] = node
            self.sizes[partition] = size
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
        jobs_by_partition = {job.partition: job for job in jobs}  # what each client trained from
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
            partition = partition_of[node]  # the addressee, whatever the reply says
            job = jobs_by_partition[partition]
            try:  # anything wrong in one reply costs that reply only
                update, size = decode(reply, job, run["update_dtype"])
            except Exception as e:
                reason = str(e) if isinstance(e, FedmllmError) else f"{type(e).__name__}: {e}"
                result.rejected.append(Rejection(partition, "decode", reason))
                continue
            result.bytes_received += size
            result.updates.append(update)
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
        # the quantisation bound: the largest count the server knows, else the nodes' own answers
        max_weight = max(job.known_samples or self.sizes[job.partition] for job in jobs)
        mean, clients, failed = self.secure.run(
            node_ids, params, {"run": run, "round": rnd}, max_weight, run["round_timeout"]
        )
        partition_of = {nodes[job.partition]: job for job in jobs}
        contributors = sorted(partition_of[c["node-id"]].partition for c in clients)
        lost = sorted({job.partition for job in jobs} - set(contributors))
        result = RoundResult(updates=[], contributors=contributors)
        result.failures = [f"partition {p}: dropped out of the SecAgg+ protocol" for p in lost]
        per_message = sum(t.numel() for t in params.values())
        result.bytes_sent = 4 * per_message * len(jobs)  # the global tensors, once per client (float32)
        result.bytes_received = 8 * per_message * len(contributors)  # masked int64 vectors
        if mean is None:
            result.failures.append(f"secure aggregation halted ({failed} failure(s) reported)")
            return result
        problem = secure_problem(clients, partition_of, max_weight)
        if problem:  # the sum is already weighted by every count: one bad count spoils the round's
            result.rejected.append(Rejection(-1, "num_examples", f"secure aggregate of {contributors}: {problem}"))
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


def secure_problem(clients: list[dict[str, Any]], job_of: dict[int, TrainJob], max_weight: int) -> str | None:
    """What makes a secure round's plaintext metadata unusable, or None."""
    for c in clients:
        job = job_of[c["node-id"]]
        try:  # the same types as a plain reply's metrics (decode)
            count = metric(c, "num-examples", int)
            for key, kind in (("train-loss", float), ("steps", int), ("model-loads", int), ("seconds", float)):
                metric(c, key, kind)
        except FedmllmError as e:
            return f"partition {job.partition}: {e}"
        if not 1 <= count <= max(max_weight, job.known_samples or 0):
            return f"partition {job.partition} sent num-examples {count!r}"
    return None


def decode(reply: Message, job: TrainJob, update_dtype: str) -> tuple[ClientUpdate, int]:
    """A train reply as the update of the partition the server sent `job` to, and its bytes.
    Raises FedmllmError naming what is missing or malformed; values are judged by the screen."""
    content = reply.content
    arrays, metrics = content.array_records.get("arrays"), content.metric_records.get("metrics")
    if arrays is None or metrics is None:
        raise FedmllmError(f"the reply lacks its {'arrays' if arrays is None else 'metrics'} record")
    return ClientUpdate(
        partition=job.partition,
        params=from_update(arrays, job.params, update_dtype),
        num_samples=metric(metrics, "num-examples", int),
        loss=metric(metrics, "train-loss", float),
        steps=metric(metrics, "steps", int),
        model_loads=metric(metrics, "model-loads", int),
        seconds=metric(metrics, "seconds", float),
        reg_grad_ratio=metric(metrics, "reg-grad-ratio", float) if "reg-grad-ratio" in metrics else None,
        claimed_partition=metric(metrics, "partition-id", int) if "partition-id" in metrics else None,
        known_samples=job.known_samples,
    ), arrays.count_bytes()


def metric(metrics: MetricRecord | dict[str, Any], key: str, kind: type) -> Any:
    """One metric of a reply, of the type the protocol says (an int is accepted as a float)."""
    if key not in metrics:
        raise FedmllmError(f"metric {key!r} is missing")
    value = metrics[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FedmllmError(f"metric {key!r} is {type(value).__name__} {value!r}, not {kind.__name__}")
    return value


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = run_config(context.run_config, "[tool.flwr.app.config]")
    transport = FlowerTransport(grid, context)
    launch(
        cfg,
        lambda c, run_dir, report, resume: federate(c, run_dir, transport, report, resume),
        progress_printer(cfg.rounds),
    )
