"""Paired rounds: other designs run their round r right after fedmllm's round r, in its server process."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fedmllm.config import RunConfig
from fedmllm.fl import client
from fedmllm.fl.schedule import cosine_lr
from fedmllm.fl.screen import ClientUpdate
from fedmllm.fl.server import server_update
from fedmllm.fl.state import ServerState
from fedmllm.model.load import load_trainable, model_spec, session, trainable_state
from fedmllm.run import prepare_data

from .common import timed_simulation

# train_one(sess, samples, lr, seed) -> the client update's mean loss
TrainOne = Callable[[Any, list, float, int], float]


class Replica:
    """One design's copy of `fedmllm run`'s server in this process: the same data, sampling,
    client seeds and server rule; `train_one(sess, samples, lr, seed)` is the client update."""

    def __init__(self, cfg: RunConfig, train_one: TrainOne, data_dir: Path) -> None:
        self.cfg, self.train_one = cfg, train_one
        self.sess = session(model_spec(cfg))
        self.shards, _ = prepare_data(cfg.replace(out=str(data_dir)), data_dir)
        self.state = ServerState.start(self.sess.initial, cfg.seed)
        self.seconds: dict[int, float] = {}

    def round(self, rnd: int) -> None:
        cfg, sess = self.cfg, self.sess
        torch.set_num_threads(int(cfg.client_cpus))
        start = time.perf_counter()
        lr = cosine_lr(rnd - 1, cfg.rounds, cfg.lr, cfg.warmup)
        updates = []
        for k in self.state.sample(list(range(cfg.num_clients)), cfg.sampled_per_round):
            load_trainable(sess.model, self.state.global_params)
            loss = self.train_one(sess, self.shards[k], lr, client.seed_for(cfg.seed, rnd, k))
            updates.append(ClientUpdate(k, trainable_state(sess.model), len(self.shards[k]), loss, cfg.local_steps))
        server_update(cfg, self.state, updates, lr)
        self.seconds[rnd] = time.perf_counter() - start


def paired(cfg: RunConfig, replicas: dict[str, Replica]) -> dict[str, Any]:
    """fedmllm's round r, then each replica's round r, then fedmllm's round r+1, ...: every
    design does round r within seconds of the others, so the machine's drift (tens of percent
    from one minute to the next on a shared VM) hits them alike. Ratios are medians over the
    steady rounds 2..R-1 of per-round ratios."""
    order = list(replicas)

    def between(rnd: int) -> None:
        if rnd == 0:
            return
        for name in order if rnd % 2 else order[::-1]:  # neither replica always goes first
            replicas[name].round(rnd)

    fed = timed_simulation(cfg, between)
    steady = range(2, cfg.rounds)  # round R also scores the model in fedmllm
    fed["replicas"] = {}
    for name, rep in replicas.items():
        own = [rep.seconds[r] for r in range(1, cfg.rounds + 1)]
        fed["replicas"][name] = {
            "per_round": own,
            "steady": statistics.median(own[r - 1] for r in steady),
            # the replica's time over fedmllm's, round by round
            "vs_fedmllm": [own[r - 1] / fed["per_round"][r - 1] for r in steady],
            "params": rep.state.global_params,
        }
    return fed


def bare_step(cfg: RunConfig) -> TrainOne:
    """fedmllm's own client update (`fl.client.train`), called directly in this process."""

    def train_one(sess: Any, samples: list, lr: float, seed: int) -> float:
        kw = {
            "steps": cfg.local_steps,
            "batch_size": cfg.batch_size,
            "variant": cfg.prompt_form,
            "group_by_length": cfg.group_by_length,
        }
        return client.train(sess, samples, lr=lr, seed=seed, **kw).loss

    return train_one
