"""Section padding: plain shuffled batches against batches grouped by token length (`group_by_length`)."""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from fedmllm.config import RunConfig
from fedmllm.data.batching import batches
from fedmllm.fl import client
from fedmllm.model.collate import encode
from fedmllm.model.load import load_trainable, model_spec, session
from fedmllm.run import prepare_data
from fedmllm.scenarios.prompts import target_text

from .common import CORES, base_config


def run(args: argparse.Namespace, tmp: Path, out: dict[str, Any]) -> None:
    """The tokens a round's batches hold against the samples' own tokens, and each client's
    update timed both ways back to back (alternating which goes first), twice."""
    cfg = base_config(args, tmp / "padding")
    torch.set_num_threads(CORES)
    sess = session(model_spec(cfg))
    shards, _ = prepare_data(cfg, tmp / "padding")
    held, real = batch_tokens(cfg, sess, shards)
    seconds = update_seconds(cfg, sess, shards)
    out["padding"] = {
        "plain_padding": held["plain"] / real["plain"] - 1,
        "grouped_padding": held["grouped"] / real["grouped"] - 1,
        "plain_update_s": statistics.median(seconds[False]),
        "grouped_update_s": statistics.median(seconds[True]),
        "speedup": statistics.median(a / b for a, b in zip(seconds[False], seconds[True], strict=True)),
    }


def batch_tokens(cfg: RunConfig, sess: Any, shards: list[list]) -> tuple[dict[str, int], dict[str, int]]:
    """Tokens in a round's padded batches (held) and the samples' own tokens (real), plain and grouped."""
    held = {"plain": 0, "grouped": 0}
    real = {"plain": 0, "grouped": 0}
    for k, shard in enumerate(shards):
        lengths = [encode(sess.processor, s, target_text(s), False, sess.prompts).labels.shape[0] for s in shard]
        for name, by in (("plain", None), ("grouped", lengths)):
            for batch in itertools.islice(batches(list(range(len(shard))), cfg.batch_size, k, by), cfg.local_steps):
                held[name] += max(lengths[i] for i in batch) * len(batch)
                real[name] += sum(lengths[i] for i in batch)
    return held, real


def update_seconds(cfg: RunConfig, sess: Any, shards: list[list]) -> dict[bool, list[float]]:
    """Each client's update, plain (False) and grouped (True), from the same initial adapter."""
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for rep in range(2):
        for k, shard in enumerate(shards):
            for grouped in (False, True) if (k + rep) % 2 else (True, False):
                load_trainable(sess.model, sess.initial)
                start = time.perf_counter()
                client.train(
                    sess,
                    shard,
                    lr=cfg.lr,
                    steps=cfg.local_steps,
                    batch_size=cfg.batch_size,
                    seed=k,
                    group_by_length=grouped,
                )
                seconds[grouped].append(time.perf_counter() - start)
    return seconds
