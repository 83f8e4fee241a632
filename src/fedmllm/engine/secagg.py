"""SecAgg+ rounds: Flower's `SecAggPlusWorkflow` (server) and `secaggplus_mod` (client) driven
from fedmllm's own round loop, so the server learns only the weighted sum of the updates.

Flower 1.42 offers SecAgg+ only through its legacy workflow, which speaks the legacy FitIns /
FitRes record layout and asks a legacy Strategy which nodes to use. `FixedNodes` is that
Strategy reduced to "these nodes, this config" plus capturing the result. What was measured
(/docs/deployment.md): clients send float64 deltas, max_weight = largest sampled client,
clipping_range 1.0 and the largest quantisation range whose K-fold sum fits the 2^32 modulus
(Flower only checks num_shares against it) keep the error near 1e-9.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType
from flwr.client.mod import secaggplus_mod
from flwr.common import Code, FitIns, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common.recorddict_compat import fitres_to_recorddict
from flwr.server import LegacyContext
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.strategy import Strategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.serverapp import Grid

CLIPPING_RANGE = 1.0  # deltas beyond +-1 (times n_k / max_weight) would be clipped silently
MODULUS_BITS = 32  # Flower's default modulus_range 2^32


def quantization_range(clients: int) -> int:
    """The largest range whose sum over `clients` quantised vectors stays below the modulus."""
    return 2 ** min(30, MODULUS_BITS - math.ceil(math.log2(clients + 1)))


class FixedNodes(Strategy):
    """The legacy Strategy the workflow consults: the caller sets the nodes and the FitIns
    config; `aggregate_fit` receives the secure average (every result carries the same one)."""

    def __init__(self, grid: Grid, run_id: int) -> None:
        self.grid, self.run_id = grid, run_id
        self.node_ids: list[int] = []
        self.config: dict[str, Any] = {}
        self.average: list[np.ndarray] | None = None
        self.results: list[tuple[Any, FitRes]] = []
        self.failures: list[Any] = []

    def initialize_parameters(self, client_manager: Any) -> None:
        return None

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> list[tuple[Any, FitIns]]:
        return [
            (GridClientProxy(n, self.grid, self.run_id), FitIns(parameters, dict(self.config))) for n in self.node_ids
        ]

    def aggregate_fit(self, server_round: int, results: list, failures: list) -> tuple[Any, dict]:
        self.results, self.failures = results, failures
        if not results:
            return None, {}
        self.average = parameters_to_ndarrays(results[0][1].parameters)
        return results[0][1].parameters, {}

    def configure_evaluate(self, server_round: int, parameters: Any, client_manager: Any) -> list:
        return []

    def aggregate_evaluate(self, server_round: int, results: list, failures: list) -> tuple[None, dict]:
        return None, {}

    def evaluate(self, server_round: int, parameters: Any) -> None:
        return None


class DropTolerantSecAggPlus(SecAggPlusWorkflow):
    """Flower 1.42 halts a round when a node fails before it has shared its keys (the survivors
    are later asked for shares they never got); such a node never contributed a mask, so it is
    treated as not sampled. Relies on the workflow's internal state: flwr is pinned below 1.43."""

    def setup_stage(self, grid: Grid, context: Any, state: Any) -> bool:
        ok = super().setup_stage(grid, context, state)
        state.sampled_node_ids = set(state.active_node_ids)
        return ok

    def share_keys_stage(self, grid: Grid, context: Any, state: Any) -> bool:
        ok = super().share_keys_stage(grid, context, state)
        state.sampled_node_ids = set(state.active_node_ids)
        return ok


class SecureRounds:
    """One SecAgg+ round per `run`: returns w + the weighted mean update (the mean client model)
    and the clients' plaintext metadata (sample counts, loss, steps, reg-grad-ratio), or None when
    the protocol halted. The new global model is made from it by `run.server_update`, through
    the algorithm's rule like any update (so FedAvg's eta applies: w + eta * mean update)."""

    def __init__(self, grid: Grid, context: Context) -> None:
        self.grid = grid
        self.strategy = FixedNodes(grid, context.run_id)
        self.context = LegacyContext(context, strategy=self.strategy)

    def run(
        self,
        node_ids: list[int],
        params: dict[str, torch.Tensor],
        config: dict[str, Any],
        max_weight: int,
        timeout: float,
    ) -> tuple[dict[str, torch.Tensor] | None, list[dict[str, Any]], int]:
        names = list(params)
        strategy = self.strategy
        strategy.node_ids, strategy.average, strategy.results, strategy.failures = node_ids, None, [], []
        # FitIns config values must be scalars: the nested run config travels as JSON
        strategy.config = {name: json.dumps(value) for name, value in config.items()} | {"names": json.dumps(names)}
        state = self.context.state
        state.config_records["config"] = ConfigRecord({"current_round": int(config["round"]["round"])})
        state.array_records["parameters"] = ArrayRecord([params[n].numpy() for n in names])
        workflow = DropTolerantSecAggPlus(
            num_shares=1.0,  # every sampled node holds a share ...
            reconstruction_threshold=0.67,  # ... and two thirds of them can unmask (at least 2)
            max_weight=float(max_weight),
            clipping_range=CLIPPING_RANGE,
            quantization_range=quantization_range(len(node_ids)),
            timeout=timeout or None,
        )
        workflow(self.grid, self.context)
        # "node-id" is the server's knowledge of who replied (a reply's own partition-id is a claim)
        clients = [
            dict(res.metrics) | {"num-examples": res.num_examples, "node-id": proxy.node_id}
            for proxy, res in strategy.results
        ]
        if strategy.average is None:
            return None, clients, len(strategy.failures)
        mean = {
            n: params[n] + torch.from_numpy(a).to(params[n].dtype) for n, a in zip(names, strategy.average, strict=True)
        }
        return mean, clients, len(strategy.failures)


def gate(msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
    """Only SecAgg+ TRAIN messages go through `secaggplus_mod` (it fails on plain ones)."""
    if msg.metadata.message_type == MessageType.TRAIN and RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


def is_secure(msg: Message) -> bool:
    return "fitins.parameters" in msg.content.array_records


def unpack(msg: Message) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor]]:
    """(run, round, global params) of a SecAgg+ training message."""
    config = msg.content.config_records["fitins.config"]
    names = json.loads(str(config["names"]))
    arrays = msg.content.array_records["fitins.parameters"].to_numpy_ndarrays()
    params = {n: torch.from_numpy(np.array(a, dtype=np.float32)) for n, a in zip(names, arrays, strict=True)}
    return json.loads(str(config["run"])), json.loads(str(config["round"])), params


def reply(
    msg: Message, trained: dict[str, torch.Tensor], start: dict[str, torch.Tensor], num_examples: int, metrics: dict
) -> Message:
    """The update as float64 deltas (float32 arithmetic would dominate the quantisation error)."""
    deltas = [(trained[n].double() - start[n].double()).numpy() for n in start]
    fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(deltas), num_examples=num_examples, metrics=metrics)
    return Message(fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)
