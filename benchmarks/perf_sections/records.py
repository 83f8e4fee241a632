"""Section records: a message's tensors into Flower's ArrayRecord and back, Flower's conversion against fedmllm's."""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord

from fedmllm.engine.records import from_arrays, to_arrays
from fedmllm.model.load import model_spec, session, trainable_state

from .common import base_config

REPEATS = 30  # each conversion timed this many times, alternating; the median is reported


def run(args: argparse.Namespace, tmp: Path, out: dict[str, Any]) -> None:
    """Flower's own conversion (np.save / np.load per tensor) against fedmllm's (`engine.records`),
    for the tiny adapter and a LoRA shaped like one on Qwen2-VL-2B."""
    adapters = {
        "tiny": trainable_state(session(model_spec(base_config(args, tmp))).model),
        # Qwen2-VL-2B's language model (28 layers, hidden 1536, 2 KV heads of 128, MLP 8960), r = 8
        "Qwen2-VL-2B-shaped LoRA r=8, all linear layers": {
            n: torch.randn(shape) for n, shape in lora_shapes(28, 1536, 256, 8960, 8).items()
        },
    }
    out["records"] = {label: conversion_times(params) for label, params in adapters.items()}


def conversion_times(params: dict[str, torch.Tensor]) -> dict[str, Any]:
    seconds: dict[str, list[float]] = {"flower_out": [], "flower_back": [], "ours_out": [], "ours_back": []}
    for _ in range(REPEATS):
        for who, make, read in (
            ("flower", lambda p: ArrayRecord(torch_state_dict=p), lambda r: r.to_torch_state_dict()),
            ("ours", to_arrays, from_arrays),
        ):
            t0 = time.perf_counter()
            record = make(params)
            t1 = time.perf_counter()
            read(record)
            seconds[f"{who}_out"].append(t1 - t0)
            seconds[f"{who}_back"].append(time.perf_counter() - t1)
    return {
        "tensors": len(params),
        "mb": sum(t.numel() * t.element_size() for t in params.values()) / 1e6,
        **{k: statistics.median(v) for k, v in seconds.items()},
    }


def lora_shapes(layers: int, hidden: int, kv: int, inter: int, r: int) -> dict[str, tuple[int, int]]:
    """A LoRA of rank r on every linear layer of a decoder's blocks, as PEFT names its tensors."""
    linears = {
        "q_proj": (hidden, hidden),
        "k_proj": (hidden, kv),
        "v_proj": (hidden, kv),
        "o_proj": (hidden, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }
    shapes = {}
    for i, (name, (n_in, n_out)) in itertools.product(range(layers), linears.items()):
        shapes[f"model.layers.{i}.{name}.lora_A.weight"] = (r, n_in)
        shapes[f"model.layers.{i}.{name}.lora_B.weight"] = (n_out, r)
    return shapes
