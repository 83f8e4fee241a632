"""Section eval: test items per second, batched option-likelihood scoring against one-at-a-time generation."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fedmllm.evaluation.scoring import generate_answers, option_logprobs
from fedmllm.model.load import load_trainable, model_spec, session
from fedmllm.run import preflight, prepare_data

from .common import CORES, base_config


def run(args: argparse.Namespace, tmp: Path, out: dict[str, Any]) -> None:
    cfg = base_config(args, tmp)
    preflight(cfg)
    torch.set_num_threads(CORES)
    sess = session(model_spec(cfg))
    load_trainable(sess.model, sess.initial)
    _, tests = prepare_data(cfg.replace(client_data="node"), tmp)
    test = tests["test"]
    # the first pass also pays one-off costs, so it is reported apart from a later one
    cold = rate(lambda s: option_logprobs(sess, s, cfg.eval_batch_size), test)
    warm = rate(lambda s: option_logprobs(sess, s, cfg.eval_batch_size), test)
    one = rate(lambda s: generate_answers(sess, s, batch_size=1), test[: args.generate_items])
    batched_gen = rate(lambda s: generate_answers(sess, s, batch_size=cfg.eval_batch_size), test)
    out["eval"] = {
        "items": len(test),
        "option_batched_cold_per_s": cold,
        "option_batched_per_s": warm,
        "generate_one_per_s": one,
        "generate_batched_per_s": batched_gen,
        "speedup": warm / one,
    }


def rate(fn: Callable[[list], Any], items: list) -> float:
    """Items per second of `fn(items)`."""
    start = time.perf_counter()
    fn(items)
    return len(items) / (time.perf_counter() - start)
