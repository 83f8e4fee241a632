"""The ClientApp: runs on every SuperNode (or simulated node) and trains on the local shard.

Everything the client needs arrives in the message (the run config, the round's learning rate,
the global trainable tensors), so the same app serves `fedmllm run`, `flwr run .` and a
deployment. The base model is loaded once per process (`model.load.session`) and reused.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedmllm.data.sample import Sample
from fedmllm.engine.records import from_arrays, run_config, to_arrays
from fedmllm.fl import client
from fedmllm.fl.regularize import prox_weights, proximal
from fedmllm.model.load import LOADS, load_trainable, session, trainable_state
from fedmllm.run import model_spec
from fedmllm.scenarios import split

log = logging.getLogger(__name__)
app = ClientApp()
_SHARDS: dict[Path, list[Sample]] = {}  # per process: a shard is read once


def partition_of(context: Context) -> int:
    return int(context.node_config["partition-id"])


def shard(shard_dir: str, partition: int) -> list[Sample]:
    path = split.shard_path(Path(shard_dir), partition)
    if path not in _SHARDS:
        _SHARDS[path] = split.read(path)
    return _SHARDS[path]


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Tell the server which partition this node holds and how many samples it has."""
    run = dict(msg.content["run"])
    partition = partition_of(context)
    info = MetricRecord({"partition-id": partition, "num-examples": len(shard(run["shard_dir"], partition))})
    return Message(RecordDict({"info": info}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    run = dict(msg.content["run"])
    rnd = dict(msg.content["round"])
    cfg = run_config(run, "train message")
    torch.set_num_threads(max(1, int(cfg.client_cpus)))
    partition = partition_of(context)
    samples = shard(run["shard_dir"], partition)
    sess = session(model_spec(cfg))
    global_params = from_arrays(msg.content["arrays"])
    load_trainable(sess.model, global_params)
    weights = prox_weights(
        list(global_params),
        fedprox_mu=cfg.prox_mu if cfg.algorithm == "fedprox" else 0.0,
        adaptive_mu=cfg.prox_mu * cfg.adaptive_mu_weight if cfg.adaptive_regularization else 0.0,
        language_model=sess.family.language_model,
        num_layers=sess.num_layers,
        skip=cfg.adaptive_skip_layers,
    )
    correction = from_arrays(msg.content["correction"]) if "correction" in msg.content else None
    result = client.train(
        sess,
        samples,
        lr=float(rnd["lr"]),
        steps=cfg.local_steps,
        batch_size=cfg.batch_size,
        seed=cfg.seed * 1_000_003 + int(rnd["round"]) * 1_009 + partition,
        agnostic=cfg.prompt_augmentation,
        regularizer=proximal(sess.model, global_params, weights) if weights else None,
        correction=correction,
    )
    metrics = MetricRecord(
        {
            "partition-id": partition,
            "num-examples": result.num_samples,
            "train-loss": result.loss,
            "steps": result.steps,
            "model-loads": LOADS["count"],
        }
    )
    return Message(RecordDict({"arrays": to_arrays(trainable_state(sess.model)), "metrics": metrics}), reply_to=msg)
