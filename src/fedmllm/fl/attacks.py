"""Simulated Byzantine clients, for comparing robust rules under attack (config `attack`,
`attackers`, `attack_scale`; docs/robustness.md).

An attacker trains honestly, then the client app replaces what it sends by `apply(...)`; the
result goes through the real codec and the real Flower path, so these functions only shape
tensors and metrics (no Flower here). With w the global tensors a round starts from and w_k the
honestly trained ones:

- sign_flip: w - (w_k - w), the update reversed (a client pulling the model back).
- scale: w + s·(w_k - w), the update blown up (s = attack_scale), to outvote honest clients.
- gaussian: w + N(0, σ²) with σ = s·RMS(w_k - w): noise of a plausible size instead of an update.
- nan: the honest update with one NaN coordinate (a diverged or broken client).
- malformed: a reply the server must reject; the variant cycles with the round (`MALFORMED`).
- weight_inflation: honest tensors, num-examples = 10^12 (claiming the whole weight of a mean).
- identity_spoof: honest tensors sent under the next partition's id.

No marker of the attack travels in the reply: a server that could read one would spot attackers
for free; `attackers(...)` and `malformed_variant(round)` recompute who attacked and how.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch

from fedmllm.config import ATTACKS
from fedmllm.errors import FedmllmError

Params = dict[str, torch.Tensor]

MALFORMED = (
    "missing_tensor", "extra_tensor", "wrong_shape", "wrong_dtype", "missing_metric", "bad_count", "bad_loss",
)  # fmt: skip
INFLATED_EXAMPLES = 10**12


def attackers(seed: int, num_clients: int, count: int) -> list[int]:
    """The attacking partitions: a draw of `count` of `num_clients` from the run seed, sorted.
    Its own seed keeps it independent of the other seeded draws (client sampling uses `seed`)."""
    if not 0 <= count <= num_clients:
        raise FedmllmError(f"attackers = {count}: must be between 0 and num_clients = {num_clients}")
    return sorted(random.Random(seed * 7919 + 17).sample(range(num_clients), count))


def malformed_variant(round: int) -> str:
    """The malformed reply of a round: round 1 the first variant, round 8 the first again, ..."""
    return MALFORMED[(round - 1) % len(MALFORMED)]


def apply(
    kind: str,
    trained: Params,
    start: Params,
    metrics: dict[str, Any],
    *,
    partition: int,
    num_clients: int,
    round: int,
    scale: float,
    seed: int,
) -> tuple[Params, dict[str, Any]]:
    """What an attacker of `kind` sends instead of (trained, metrics); new dicts, inputs untouched."""
    if kind not in ATTACKS:
        raise FedmllmError(f"attack = {kind!r}: not one of {', '.join(ATTACKS)}")
    tensors = {n: t.clone() for n, t in trained.items()}
    out = dict(metrics)
    if kind == "sign_flip":
        tensors = {n: start[n] - (trained[n] - start[n]) for n in trained}
    elif kind == "scale":
        tensors = {n: start[n] + scale * (trained[n] - start[n]) for n in trained}
    elif kind == "gaussian":
        tensors = _gaussian(trained, start, scale, _noise_seed(seed, round, partition))
    elif kind == "nan":
        damaged = tensors[_first(tensors)]
        damaged[(0,) * damaged.dim()] = math.nan  # not view(-1), which fails on a transposed tensor
    elif kind == "malformed":
        tensors, out = _malformed(tensors, out, round)
    elif kind == "weight_inflation":
        out["num-examples"] = INFLATED_EXAMPLES
    elif kind == "identity_spoof":
        out["partition-id"] = (partition + 1) % num_clients
    return tensors, out


def update_rms(trained: Params, start: Params) -> float:
    """The root mean square of w_k - w over all coordinates of all tensors."""
    squares = sum(float(((trained[n] - start[n]).double() ** 2).sum()) for n in trained)
    count = sum(t.numel() for t in trained.values())
    return math.sqrt(squares / count) if count else 0.0


def _noise_seed(seed: int, round: int, partition: int) -> int:
    # distinct per run, round and partition, and from the training seeds (fl.client.seed_for)
    return ((seed * 7919 + 17) * 1_000_003 + round * 1_009 + partition) % 2**63


def _gaussian(trained: Params, start: Params, scale: float, seed: int) -> Params:
    sigma = scale * update_rms(trained, start)
    generator = torch.Generator().manual_seed(seed)
    return {
        n: start[n] + sigma * torch.randn(start[n].shape, generator=generator, dtype=start[n].dtype) for n in trained
    }


def _first(tensors: Params) -> str:
    """The tensor the NaN and malformed attacks damage: the first non-empty one."""
    for name, tensor in tensors.items():
        if tensor.numel():
            return name
    raise FedmllmError("attack: the update has no non-empty tensor to damage")


def _malformed(tensors: Params, metrics: dict[str, Any], round: int) -> tuple[Params, dict[str, Any]]:
    variant = malformed_variant(round)
    second = (round - 1) // len(MALFORMED) % 2 == 1  # every other cycle: the variant's other form
    name = _first(tensors)
    if variant == "missing_tensor":
        del tensors[name]
    elif variant == "extra_tensor":
        tensors[f"{name}.extra"] = torch.zeros_like(tensors[name])
    elif variant == "wrong_shape":  # one value more: no reshape can restore the expected shape
        tensors[name] = torch.cat([tensors[name].reshape(-1), tensors[name].new_zeros(1)])
    elif variant == "wrong_dtype":
        tensors[name] = tensors[name].to(torch.int64 if second else torch.float64)
    elif variant == "missing_metric":
        del metrics["num-examples"]
    elif variant == "bad_count":
        metrics["num-examples"] = math.nan if second else -100
    elif variant == "bad_loss":
        # a wrong type that still travels: a MetricRecord refuses strings on the client side
        loss = float(metrics["train-loss"])
        metrics["train-loss"] = [loss, loss] if second else math.nan
    return tensors, metrics
