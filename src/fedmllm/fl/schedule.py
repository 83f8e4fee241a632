"""The clients' schedule: the learning rate per round (linear warm-up, then cosine decay over the
rounds) and the optimiser steps per round."""

from __future__ import annotations

import math


def local_steps(num_samples: int, batch_size: int, steps: int) -> int:
    """`steps` if set, else one epoch."""
    return steps if steps > 0 else max(1, -(-num_samples // batch_size))


def cosine_lr(round_index: int, rounds: int, base_lr: float, warmup: float = 0.01) -> float:
    """Learning rate of 0-based `round_index` of `rounds`; `warmup` is a fraction of the rounds
    (the paper's 1% rounds to zero warm-up rounds for short runs)."""
    warm = round(warmup * rounds)
    if round_index < warm:
        return base_lr * (round_index + 1) / warm
    progress = (round_index - warm) / max(1, rounds - warm)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
