"""The server's screen: which client updates a round may use, and with what weight.

A reply comes from another organisation's machine, so nothing in it is trusted: the server,
not the reply, says whose update it is (the partition it addressed), a sample count is checked
against what the server knows, and every tensor is checked against the model it sent. An update
that fails a check is dropped for the round with a `Rejection` (client and reason); the others
go on (docs/robustness.md).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

import torch

from fedmllm.fl import privacy
from fedmllm.fl.rules import Params
from fedmllm.fl.schedule import local_steps
from fedmllm.fl.state import mismatch, shapes

RECENT_NORMS = 8  # accepted update norms kept as the reference of a round with a single update


@dataclass
class ClientUpdate:
    partition: int  # the partition the server addressed (never read from the reply)
    params: Params
    num_samples: int
    loss: float
    steps: int = 1
    model_loads: int = 1  # base-model loads so far in the client's process
    clients: int = 1  # how many clients this update stands for (SecAgg+ returns one sum)
    seconds: float = 0.0  # the client's own time for the update (data, training, packing)
    # |grad of the proximal/adaptive term| / |grad of the task loss|, mean over the local steps
    # (over the contributors for a secure sum); None when no term is active
    reg_grad_ratio: float | None = None
    claimed_partition: int | None = None  # the partition-id the reply states, checked against `partition`
    known_samples: int | None = None  # the count the server knows (it wrote the shard); None: unknown


@dataclass(frozen=True)
class Rejection:
    partition: int
    reason: str  # one word: decode, identity, num_examples, steps, tensors, nonfinite, norm, metrics
    detail: str

    def __str__(self) -> str:
        return f"partition {self.partition}: {self.reason}: {self.detail}"

    def to_dict(self) -> dict[str, object]:
        return {"partition": self.partition, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class Rules:
    """What the screen needs from the run config."""

    batch_size: int
    local_steps: int
    reject_norm_factor: float  # 0 = no norm check
    max_weight_share: float  # the cap on one unknown count's share of the round's weight
    check_norms: bool = True  # False for Local, whose clients start from their own models


def check_one(u: ClientUpdate, reference: Params, rules: Rules) -> Rejection | None:
    """The checks that need only this update: identity, count, steps, tensors, values."""

    def reject(reason: str, detail: str) -> Rejection:
        return Rejection(u.partition, reason, detail)

    if u.claimed_partition is not None and u.claimed_partition != u.partition:
        claim = u.claimed_partition
        return reject("identity", f"the reply says partition-id {claim}, but it was sent to {u.partition}")
    if u.num_samples < 1:
        return reject("num_examples", f"num-examples {u.num_samples} (must be at least 1)")
    if u.known_samples is not None and u.num_samples > u.known_samples:
        return reject("num_examples", f"claims {u.num_samples} examples, its shard holds {u.known_samples}")
    expected = local_steps(u.num_samples, rules.batch_size, rules.local_steps)
    if u.steps != expected:
        return reject("steps", f"{u.steps} local steps, the config gives {expected} for {u.num_samples} examples")
    if not math.isfinite(u.loss):
        return reject("metrics", f"train-loss {u.loss}")
    problem = params_problem(u.params, reference)
    return reject(*problem) if problem else None


def params_problem(params: Params, reference: Params) -> tuple[str, str] | None:
    """(reason, detail) if `params` cannot stand in for `reference`: other names, shapes or
    dtypes ("tensors"), or NaN/Inf values ("nonfinite"); None if they can."""
    problem = mismatch(shapes(params), shapes(reference))
    if problem:
        return "tensors", f"the update {problem}"
    for name, ref in reference.items():
        if params[name].dtype != ref.dtype:
            return "tensors", f"tensor {name!r} is {params[name].dtype}, the model's is {ref.dtype}"
    if not all(bool(torch.isfinite(t).all()) for t in params.values()):
        return "nonfinite", "the update holds NaN/Inf values"
    return None


def screen(
    updates: list[ClientUpdate], reference: Params, rules: Rules, recent_norms: list[float]
) -> tuple[list[ClientUpdate], list[Rejection], list[str]]:
    """The updates a round may use, the rejected ones with their reasons, and notes on weights
    that were capped. `recent_norms` (accepted norms of earlier rounds, newest last) is the
    reference when a round has a single update; the accepted norms are appended to it."""
    rejected, valid = [], []
    for u in updates:
        problem = check_one(u, reference, rules)
        if problem:
            rejected.append(problem)
        else:
            valid.append(u)
    kept = valid
    if rules.check_norms and rules.reject_norm_factor > 0:
        kept, outliers, norms = screen_norms(valid, reference, rules.reject_norm_factor, recent_norms)
        rejected += outliers
        recent_norms[:] = (recent_norms + norms)[-RECENT_NORMS:]
    kept, notes = cap_weights(kept, rules.max_weight_share)
    return kept, rejected, notes


def screen_norms(
    updates: list[ClientUpdate], reference: Params, factor: float, recent: list[float]
) -> tuple[list[ClientUpdate], list[Rejection], list[float]]:
    """Reject an update whose distance from the global model is `factor` times the median of
    the round's other updates' (a lone update: of recent accepted ones; none yet: accepted)."""
    norms = [privacy.update_norm(u.params, reference) for u in updates]
    kept, rejected, accepted = [], [], []
    for i, u in enumerate(updates):
        pool = norms[:i] + norms[i + 1 :] or recent
        median = statistics.median(pool) if pool else 0.0
        if median > 0 and norms[i] > factor * median:
            detail = f"update norm {norms[i]:.3g} > {factor:g} x the median {median:.3g} of the others"
            rejected.append(Rejection(u.partition, "norm", detail))
        else:
            kept.append(u)
            accepted.append(norms[i])
    return kept, rejected, accepted


def cap_weights(updates: list[ClientUpdate], share: float) -> tuple[list[ClientUpdate], list[str]]:
    """A count the server cannot check weighs at most `share` of the round: n_k <= share/(1-share)
    x the others' counts (as claimed). Counts the server knows are already exact."""
    if share >= 1 or len(updates) < 2:
        return updates, []
    total = sum(u.num_samples for u in updates)
    out, notes = [], []
    for u in updates:
        cap = math.floor(share / (1 - share) * (total - u.num_samples))
        if u.known_samples is None and u.num_samples > max(1, cap):
            notes.append(f"partition {u.partition}: num-examples {u.num_samples} capped to {max(1, cap)}")
            u = replace(u, num_samples=max(1, cap))
        out.append(u)
    return out, notes
