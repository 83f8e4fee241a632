"""The ClientApp: runs on every SuperNode (or simulated node) and trains on the local shard.

Everything the client needs arrives in the message (the run config, the round's learning rate,
the global trainable tensors), so the same app serves `fedmllm run`, `flwr run .` and a
deployment. The base model is loaded once per process (`model.load.session`) and reused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from fedmllm.config import RunConfig
from fedmllm.data import registry
from fedmllm.data.sample import Sample
from fedmllm.engine import secagg
from fedmllm.engine.records import from_arrays, run_config, to_arrays, to_update
from fedmllm.errors import FedmllmError
from fedmllm.fl import attacks, client, privacy
from fedmllm.fl.regularize import Proximal, prox_weights
from fedmllm.model.load import LOADS, load_trainable, session, trainable_state
from fedmllm.run import model_spec
from fedmllm.scenarios import split

log = logging.getLogger(__name__)
_SHARDS: dict[Path, list[Sample]] = {}  # per process: a shard is read once


def partition_of(context: Context) -> int:
    return int(context.node_config["partition-id"])


def shard(shard_dir: str, partition: int) -> list[Sample]:
    return read_once(split.shard_path(Path(shard_dir), partition), split.read)


def read_once(path: Path, read: Callable[[Path], list[Sample]]) -> list[Sample]:
    if path not in _SHARDS:
        _SHARDS[path] = read(path)
    return _SHARDS[path]


def client_samples(run: dict[str, Any], context: Context) -> list[Sample]:
    """This client's training data: its shard of the server's split (simulation, benchmarks) or,
    with client_data = "node", the data its own node config names:
    `shard = "/path/client_3.jsonl"` (a file written by `fedmllm data prepare`) or
    `data-dir = "/path/to/dataset"` (the dataset as published) with an optional
    `modality = "image" | "text"` (the site holds only that modality)."""
    partition = partition_of(context)
    if run["client_data"] == "split":
        return shard(run["shard_dir"], partition)
    node = context.node_config
    if "shard" in node:
        return read_once(Path(str(node["shard"])), split.read)
    if "data-dir" not in node:
        raise FedmllmError(f"partition {partition}: node config needs 'shard' or 'data-dir' (client_data = 'node')")
    folder, kind = Path(str(node["data-dir"])), str(node.get("modality", "image+text"))
    drops = {"image+text": {}, "image": {"text": True}, "text": {"image": True}}
    if kind not in drops:
        raise FedmllmError(f"partition {partition}: node config 'modality' = {kind!r}, not one of {list(drops)}")
    # the node's own files: only its own config may let their image paths leave its folder
    outside = node_flag(node, "allow-external-paths")
    samples = read_once(folder, lambda f: registry.load_split(str(run["dataset"]), f, "train", allow_external=outside))
    return [s.drop(**drops[kind]) for s in samples] if drops[kind] else samples


def query(msg: Message, context: Context) -> Message:
    """Tell the server which partition this node holds and how many samples it has."""
    run = dict(msg.content["run"])
    partition = partition_of(context)
    info = MetricRecord({"partition-id": partition, "num-examples": len(client_samples(run, context))})
    return Message(RecordDict({"info": info}), reply_to=msg)


def train(msg: Message, context: Context, trust: NodeTrust | None = None) -> Message:
    """A plain round (the global adapter in "arrays", the config in "run"/"round") or the
    training stage of a SecAgg+ round (the legacy FitIns layout; the reply is masked by the mod).
    `trust`: what this node runs (None: its node config says, see NodeTrust)."""
    trust = trust or NodeTrust.from_node_config(context.node_config)
    if secagg.is_secure(msg):
        run, rnd, global_params = secagg.unpack(msg)
        trained, metrics = fit(run, rnd, context, global_params, None, trust)
        return secagg.reply(msg, trained, global_params, int(metrics.pop("num-examples")), metrics)
    global_params = from_arrays(msg.content["arrays"])
    correction = from_arrays(msg.content["correction"]) if "correction" in msg.content else None
    run, rnd = dict(msg.content["run"]), dict(msg.content["round"])
    trained, metrics = fit(run, rnd, context, global_params, correction, trust)
    cfg = run_config(run, "train message") if run["attack"] != "none" else None  # fit validated it already
    partition = partition_of(context)
    if cfg is not None and partition in attacks.attackers(cfg.seed, cfg.num_clients, cfg.attackers):
        # a simulated Byzantine client: honest training, then a hostile reply through the real path
        trained, metrics = attacks.apply(
            cfg.attack, trained, global_params, metrics, partition=partition, num_clients=cfg.num_clients,
            round=int(rnd["round"]), scale=cfg.attack_scale, seed=cfg.seed,
        )  # fmt: skip
        if cfg.attack == "malformed":  # sent as is: the server's decoder must catch it
            return Message(RecordDict({"arrays": to_arrays(trained), "metrics": MetricRecord(metrics)}), reply_to=msg)
    update = to_update(trained, global_params, str(run["update_dtype"]))
    return Message(RecordDict({"arrays": update, "metrics": MetricRecord(metrics)}), reply_to=msg)


def node_flag(node: Mapping[str, Any], key: str) -> bool:
    """A true/false node-config key (absent: false); anything else is an error, never a guess."""
    value = node.get(key, False)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if not isinstance(value, bool):
        raise FedmllmError(f"node config '{key}': {value!r} is not true or false")
    return value


@dataclass(frozen=True)
class NodeTrust:
    """What this node agrees to load and run, whatever a server's message asks: the node's
    operator decides (node config `trust-remote-code`, default false, and `models`, a
    comma-separated allow-list of model ids / folders; absent = any model). docs/deployment.md"""

    trust_remote_code: bool = False
    models: tuple[str, ...] | None = None

    @classmethod
    def from_node_config(cls, node: Mapping[str, Any]) -> NodeTrust:
        models = node.get("models")
        allowed = tuple(m.strip() for m in str(models).split(",") if m.strip()) if models is not None else None
        return cls(node_flag(node, "trust-remote-code"), allowed)

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


def fit(
    run: dict[str, Any],
    rnd: dict[str, Any],
    context: Context,
    global_params: dict[str, torch.Tensor],
    correction: dict[str, torch.Tensor] | None,
    trust: NodeTrust,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train from the global tensors on this client's data; returns the trained tensors (clipped
    when dp = "client") and the metrics the server reads."""
    t0 = time.perf_counter()
    cfg = run_config(run, "train message")
    torch.set_num_threads(max(1, int(cfg.client_cpus)))
    partition = partition_of(context)
    trust.check(cfg, partition)
    samples = client_samples(run, context)
    sess = session(model_spec(cfg))
    sess.prompts.budget_mb = cfg.prompt_cache_mb
    load_trainable(sess.model, global_params)
    weights = prox_weights(  # the adaptive term, when on, replaces FedProx's (as the authors' code)
        list(global_params),
        fedprox_mu=cfg.prox_mu if cfg.algorithm == "fedprox" else 0.0,
        adaptive_mu=cfg.prox_mu * cfg.adaptive_mu_weight if cfg.adaptive_regularization else None,
        language_model=sess.family.language_model,
        num_layers=sess.num_layers,
        skip=cfg.adaptive_skip_layers,
    )
    result = client.train(
        sess,
        samples,
        lr=float(rnd["lr"]),
        steps=cfg.local_steps,
        batch_size=cfg.batch_size,
        seed=client.seed_for(cfg.seed, int(rnd["round"]), partition),
        variant=cfg.prompt_form,
        group_by_length=cfg.group_by_length,
        regularizer=Proximal(sess.model, global_params, weights) if weights else None,
        correction=correction,
    )
    metrics = {
        "partition-id": partition,
        "num-examples": result.num_samples,
        "train-loss": result.loss,
        "steps": result.steps,
        "model-loads": LOADS["count"],
    }
    if result.reg_grad_ratio is not None:  # only with a proximal/adaptive term
        metrics["reg-grad-ratio"] = result.reg_grad_ratio
    trained = trainable_state(sess.model)
    if cfg.dp == "client":  # the update leaves this node clipped (the server adds the noise)
        trained = privacy.clip_update(trained, global_params, cfg.dp_clipping_norm)
    metrics["seconds"] = time.perf_counter() - t0
    return trained, metrics
