"""Differential privacy with fixed clipping, as Flower defines it (McMahan et al. 2018, "Learning
differentially private recurrent language models"): each client's update w_k - w is scaled to an
L2 norm of at most C, on the client (`dp = "client"`) or on the server (`dp = "server"`), and the
aggregate gets Gaussian noise of std noise_multiplier * C / m for m sampled clients.

Pure torch, like the other rules, and tested to agree with Flower's own
`compute_clip_model_update` and `compute_stdv`; the noise is drawn from a generator seeded by
the run seed and round, so a private run is reproducible and resumable.
"""

from __future__ import annotations

import torch

from fedmllm.fl.rules import Params


def update_norm(params: Params, reference: Params) -> float:
    return float(torch.sqrt(sum(((params[n] - reference[n]).double() ** 2).sum() for n in reference)))


def clip_update(params: Params, reference: Params, clipping_norm: float) -> Params:
    """reference + (params - reference) * min(1, C / ||params - reference||)."""
    norm = update_norm(params, reference)
    if norm <= clipping_norm:  # also a zero update, where Flower's version divides by zero
        return params
    scale = clipping_norm / norm
    return {n: reference[n] + (params[n] - reference[n]) * scale for n in reference}


def noise_std(noise_multiplier: float, clipping_norm: float, num_sampled: int) -> float:
    return noise_multiplier * clipping_norm / num_sampled


def add_noise(params: Params, std: float, seed: int) -> Params:
    generator = torch.Generator().manual_seed(seed)
    return {n: t + torch.randn(t.shape, generator=generator, dtype=t.dtype) * std for n, t in params.items()}
