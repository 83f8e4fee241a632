"""Conversions between fedmllm values and Flower records, in one place."""

from __future__ import annotations

from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord

from fedmllm.config import TYPES, RunConfig, from_dict


def to_arrays(params: dict[str, torch.Tensor]) -> ArrayRecord:
    return ArrayRecord(torch_state_dict=params)


def from_arrays(record: ArrayRecord) -> dict[str, torch.Tensor]:
    return dict(record.to_torch_state_dict())


WIRE_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def to_update(trained: dict[str, torch.Tensor], start: dict[str, torch.Tensor], dtype: str) -> ArrayRecord:
    """A client's update for the wire: the trained tensors (float32), or in 16 bits their
    difference from `start` (rounding the small difference, not the weights, keeps the error far
    below the update itself). bfloat16 travels as its raw bits: numpy, under ArrayRecord, has none."""
    if dtype == "float32":
        return to_arrays(trained)
    deltas = {n: (trained[n] - start[n]).to(WIRE_DTYPES[dtype]) for n in trained}
    if dtype == "bfloat16":
        deltas = {n: t.view(torch.int16) for n, t in deltas.items()}
    return to_arrays(deltas)


def from_update(record: ArrayRecord, start: dict[str, torch.Tensor], dtype: str) -> dict[str, torch.Tensor]:
    """The trained tensors, in float32, from what `to_update` sent."""
    received = from_arrays(record)
    if dtype == "float32":
        return received
    if dtype == "bfloat16":
        received = {n: t.view(torch.bfloat16) for n, t in received.items()}
    return {n: start[n] + received[n].to(start[n].dtype) for n in received}


def to_config(values: dict[str, Any]) -> ConfigRecord:
    return ConfigRecord(dict(values))


def run_config(record: ConfigRecord | dict[str, Any], source: str) -> RunConfig:
    """The RunConfig inside a record or a Flower run config; other keys (shard_dir) are skipped."""
    return from_dict({k: v for k, v in dict(record).items() if k.replace("-", "_") in TYPES}, source)
