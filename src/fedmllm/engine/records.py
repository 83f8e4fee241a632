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


def to_config(values: dict[str, Any]) -> ConfigRecord:
    return ConfigRecord(dict(values))


def run_config(record: ConfigRecord | dict[str, Any], source: str) -> RunConfig:
    """The RunConfig inside a record or a Flower run config; other keys (shard_dir) are skipped."""
    return from_dict({k: v for k, v in dict(record).items() if k.replace("-", "_") in TYPES}, source)
