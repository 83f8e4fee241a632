"""Client-side proximal terms: FedProx on every trainable tensor, and the paper's adaptive
regularization on the trainable tensors of the middle decoder layers only."""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

Regularizer = Callable[[torch.nn.Module], torch.Tensor]


def adaptive_window(num_layers: int, skip: int) -> tuple[int, int]:
    """Layers [s, L-1-s]. A model shallower than 2s+1 layers gets s = (L-1)//2, so the window
    shrinks to the middle one or two layers instead of vanishing (the paper's s=4 assumes deep LLMs)."""
    s = min(skip, (num_layers - 1) // 2)
    return s, num_layers - 1 - s


def layer_of(name: str, language_model: str) -> int | None:
    """The decoder layer a parameter belongs to, or None outside the language model's layers."""
    match = re.search(rf"{re.escape(language_model)}\.layers\.(\d+)\.", name)
    return int(match.group(1)) if match else None


def prox_weights(
    names: list[str],
    *,
    fedprox_mu: float,
    adaptive_mu: float,
    language_model: str,
    num_layers: int,
    skip: int,
) -> dict[str, float]:
    """Per-tensor weight of (weight/2)|p - p_global|^2: fedprox_mu everywhere, plus adaptive_mu
    (= mu * mu_w) inside the adaptive window. Tensors with weight 0 are left out."""
    low, high = adaptive_window(num_layers, skip)
    weights = {}
    for name in names:
        layer = layer_of(name, language_model)
        inside = layer is not None and low <= layer <= high
        weight = fedprox_mu + (adaptive_mu if inside else 0.0)
        if weight > 0:
            weights[name] = weight
    return weights


def proximal(model: torch.nn.Module, global_params: dict[str, torch.Tensor], weights: dict[str, float]) -> Regularizer:
    """sum_name weights[name]/2 * |p_name - global_name|^2 over the model's named parameters."""
    params = dict(model.named_parameters())
    pairs = [(params[n], global_params[n].to(params[n].device, params[n].dtype), w) for n, w in weights.items()]

    def term(_: torch.nn.Module) -> torch.Tensor:
        return sum(0.5 * w * (p - g).pow(2).sum() for p, g, w in pairs)

    return term
