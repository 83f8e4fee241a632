"""Server update rules as pure functions on tensors: no Flower, no transformers, no data.

Parameters are `dict[str, Tensor]` (name -> tensor); a rule takes the global parameters and the
client models with their weights, and returns new global parameters.
"""

from __future__ import annotations

import torch

Params = dict[str, torch.Tensor]


def weighted_mean(models: list[Params], weights: list[float]) -> Params:
    """sum_k w_k * model_k / sum_k w_k, key by key."""
    if not models:
        raise ValueError("no client models to average")
    if len(models) != len(weights):
        raise ValueError(f"{len(models)} models but {len(weights)} weights")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("weights must sum to a positive number")
    return {
        name: sum(w / total * m[name].to(torch.float32) for m, w in zip(models, weights, strict=True))
        for name in models[0]
    }


def fedavg(global_params: Params, client_params: list[Params], num_samples: list[int]) -> Params:
    """FedAvg (McMahan et al.): w <- w + Δ with Δ the sample-weighted mean of w_k - w, which is
    the sample-weighted mean of the client models."""
    if client_params and client_params[0].keys() != global_params.keys():
        raise ValueError("client parameters do not match the global parameter names")
    return weighted_mean(client_params, [float(n) for n in num_samples])


RULES = {"fedavg": fedavg}
