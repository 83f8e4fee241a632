"""The ClientApp: runs on every SuperNode (or simulated node); it only moves messages.

Everything the client needs arrives in the message (the run config, the round's learning rate,
the global trainable tensors), so the same app serves `fedmllm run`, `flwr run .` and a
deployment. It checks the run against the node's trust, picks the node's data
(scenarios/node_data.py) and hands the round to fl/client_round.py.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from fedmllm.config import RunConfig
from fedmllm.engine import secagg
from fedmllm.engine.records import from_arrays, run_config, to_arrays, to_update
from fedmllm.errors import FedmllmError
from fedmllm.fl import attacks
from fedmllm.fl.client_round import client_round
from fedmllm.scenarios.node_data import node_flag, node_samples

log = logging.getLogger(__name__)
_CONFIGS: dict[str, RunConfig] = {}  # the run's config, by its message


def partition_of(context: Context) -> int:
    return int(context.node_config["partition-id"])


def query(msg: Message, context: Context) -> Message:
    """Tell the server which partition this node holds and how many samples it has."""
    run = dict(msg.content["run"])
    partition = partition_of(context)
    samples = node_samples(run, context.node_config, partition)
    info = MetricRecord({"partition-id": partition, "num-examples": len(samples)})
    return Message(RecordDict({"info": info}), reply_to=msg)


def train(msg: Message, context: Context, trust: NodeTrust | None = None) -> Message:
    """A plain round (the global adapter in "arrays", the config in "run"/"round") or the
    training stage of a SecAgg+ round (the legacy FitIns layout; the reply is masked by the mod).
    `trust`: what this node runs (None: its node config says, see NodeTrust)."""
    trust = trust or NodeTrust.from_node_config(context.node_config)
    if secagg.is_secure(msg):
        run, rnd, global_params = secagg.unpack(msg)
        trust.check_plugins(run, partition_of(context))
        trained, metrics = fit(run, rnd, context, global_params, None, trust)
        return secagg.reply(msg, trained, global_params, int(metrics.pop("num-examples")), metrics)
    global_params = from_arrays(msg.content["arrays"])
    correction = from_arrays(msg.content["correction"]) if "correction" in msg.content else None
    run, rnd = dict(msg.content["run"]), dict(msg.content["round"])
    trust.check_plugins(run, partition_of(context))  # before the config is read: reading imports them
    trained, metrics = fit(run, rnd, context, global_params, correction, trust)
    cfg, partition = config_of(run), partition_of(context)
    if cfg.attack != "none" and partition in attacks.attackers(cfg.seed, cfg.num_clients, cfg.attackers):
        # a simulated Byzantine client: honest training, then a hostile reply through the real path
        trained, metrics = attacks.apply(
            cfg.attack, trained, global_params, metrics, partition=partition, num_clients=cfg.num_clients,
            round=int(rnd["round"]), scale=cfg.attack_scale, seed=cfg.seed,
        )  # fmt: skip
        if cfg.attack == "malformed":  # sent as is: the server's decoder must catch it
            return Message(RecordDict({"arrays": to_arrays(trained), "metrics": MetricRecord(metrics)}), reply_to=msg)
    update = to_update(trained, global_params, str(run["update_dtype"]))
    return Message(RecordDict({"arrays": update, "metrics": MetricRecord(metrics)}), reply_to=msg)


@dataclass(frozen=True)
class NodeTrust:
    """What this node agrees to load and run, whatever a server's message asks: the node's
    operator decides (node config `trust-remote-code`, default false; `models`, a comma-separated
    allow-list of model ids / folders, absent = any model; `plugins`, the Python modules a run may
    have it import, absent = none). docs/deployment.md"""

    trust_remote_code: bool = False
    models: tuple[str, ...] | None = None
    plugins: tuple[str, ...] = ()

    @classmethod
    def from_node_config(cls, node: Mapping[str, Any]) -> NodeTrust:
        models = node.get("models")
        allowed = names(str(models)) if models is not None else None
        return cls(node_flag(node, "trust-remote-code"), allowed, names(str(node.get("plugins", ""))))

    def check_plugins(self, run: Mapping[str, Any], partition: int) -> None:
        """Refuse a run that names modules this node has not allowed (reading its config imports them)."""
        refused = [m for m in names(str(run.get("plugins", ""))) if m not in self.plugins]
        if refused:
            raise FedmllmError(
                f"partition {partition}: this node imports only the plugins {list(self.plugins)} (node config "
                f"'plugins'), but the run asks for {refused}"
            )

    def check(self, cfg: RunConfig, partition: int) -> None:
        """Refuse, with the reason, a run this node does not allow (before anything loads)."""
        if cfg.trust_remote_code and not self.trust_remote_code:
            raise FedmllmError(
                f"partition {partition}: this node does not run a checkpoint's own code, but the run asks for "
                f"trust_remote_code = true (model {cfg.model!r}); its operator can allow it with node config "
                "trust-remote-code=true"
            )
        if self.models is not None and cfg.model not in self.models:
            raise FedmllmError(
                f"partition {partition}: this node loads only the models {list(self.models)} (node config "
                f"'models'), not {cfg.model!r}"
            )


def names(text: str) -> tuple[str, ...]:
    """A comma-separated list, stripped, empties dropped."""
    return tuple(m.strip() for m in text.split(",") if m.strip())


def make_app(trust: NodeTrust | None = None) -> ClientApp:
    """The ClientApp. A simulation passes the trust of the user who starts it (every node is
    theirs); a deployed node (`app`) reads its own node config."""
    client_app = ClientApp()
    client_app.query()(query)

    @client_app.train(mods=[secagg.gate])
    def train_message(msg: Message, context: Context) -> Message:
        try:
            return train(msg, context, trust)
        except FedmllmError as e:  # a refusal or bad input: its reason, not a traceback, in the server's log
            return Message(Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, str(e)), reply_to=msg)

    return client_app


app = make_app()


def config_of(run: dict[str, Any]) -> RunConfig:
    """The run's config, validated once per run and process (every message of a run carries it)."""
    key = json.dumps(run, sort_keys=True)
    if key not in _CONFIGS:
        _CONFIGS.clear()  # one run at a time per process: keep only the latest
        _CONFIGS[key] = run_config(run, "train message")
    return _CONFIGS[key]


def fit(
    run: dict[str, Any],
    rnd: dict[str, Any],
    context: Context,
    global_params: dict[str, torch.Tensor],
    correction: dict[str, torch.Tensor] | None,
    trust: NodeTrust,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This node's round: check the run against the node's trust, pick its data, train (fl/client_round.py)."""
    t0 = time.perf_counter()
    cfg = config_of(run)
    partition = partition_of(context)
    trust.check(cfg, partition)
    samples = node_samples(run, context.node_config, partition)
    lr, round_number = float(rnd["lr"]), int(rnd["round"])
    trained, metrics = client_round(
        cfg, samples, global_params, correction, lr=lr, rnd=round_number, partition=partition
    )
    metrics["seconds"] = time.perf_counter() - t0
    return trained, metrics
