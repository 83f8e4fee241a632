"""Client-side proximal terms: FedProx on every trainable tensor, and the paper's adaptive
regularization on the trainable tensors of the middle decoder layers only.

As in the authors' code, the adaptive term REPLACES FedProx's: with adaptive regularization on,
the term is (mu * mu_w / 2)|w - w_global|^2 inside the layer window and nothing outside, for
FedProx too (their FedProx and adaptive modes are one trainer with a different layer window and
weight, never two terms added).
"""

from __future__ import annotations

import math
import re

import torch


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
    adaptive_mu: float | None,
    language_model: str,
    num_layers: int,
    skip: int,
) -> dict[str, float]:
    """Per-tensor weight of (weight/2)|p - p_global|^2. `adaptive_mu` (= mu * mu_w) None: adaptive
    regularization off, `fedprox_mu` on every tensor. Otherwise adaptive_mu inside the adaptive
    window and nothing outside, whatever `fedprox_mu` is: the adaptive term replaces FedProx's, as
    in the authors' code. Tensors with weight 0 are left out."""
    low, high = adaptive_window(num_layers, skip)
    weights = {}
    for name in names:
        if adaptive_mu is None:
            weight = fedprox_mu
        else:
            layer = layer_of(name, language_model)
            weight = adaptive_mu if layer is not None and low <= layer <= high else 0.0
        if weight > 0:
            weights[name] = weight
    return weights


class Proximal:
    """sum_name weights[name]/2 * |p_name - global_name|^2 over a model's named parameters, with
    its gradient weights[name] * (p_name - global_name) in closed form (`gradients`)."""

    def __init__(
        self, model: torch.nn.Module, global_params: dict[str, torch.Tensor], weights: dict[str, float]
    ) -> None:
        params = dict(model.named_parameters())
        self.pairs = [
            (n, params[n], global_params[n].to(params[n].device, params[n].dtype), w) for n, w in weights.items()
        ]

    def __call__(self, _: torch.nn.Module | None = None) -> torch.Tensor:
        return sum(0.5 * w * (p - g).pow(2).sum() for _, p, g, w in self.pairs)

    @torch.no_grad()
    def gradients(self) -> dict[str, torch.Tensor]:
        """The term's gradient by parameter name, at the parameters' current values."""
        return {n: w * (p - g) for n, p, g, w in self.pairs}


def grad_ratio(grads: dict[str, torch.Tensor | None], reg_grads: dict[str, torch.Tensor]) -> float | None:
    """|g_reg| / |g_task|, L2 norms over all trainable tensors, from one backward pass of
    task loss + term: `grads` are the total gradients by name (None: no gradient, i.e. zero),
    `reg_grads` the term's own (`Proximal.gradients`), and g_task = g_total - g_reg. None when the
    task gradient is exactly zero (the ratio is undefined)."""
    reg_terms, task_terms = [], []
    for name, g in grads.items():
        r = reg_grads.get(name)
        if g is None and r is None:
            continue
        total = torch.zeros_like(r, dtype=torch.float32) if g is None else g.detach().float()
        reg = torch.zeros_like(total) if r is None else r.detach().float()
        reg_terms.append(reg.pow(2).sum())
        task_terms.append((total - reg).pow(2).sum())
    if not task_terms:
        return None
    device = task_terms[0].device  # one sum, one sync with the device per step
    task_sq = float(torch.stack([t.to(device) for t in task_terms]).sum())
    if task_sq == 0.0:
        return None
    return math.sqrt(float(torch.stack([t.to(device) for t in reg_terms]).sum()) / task_sq)
