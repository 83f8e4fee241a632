"""Splitting samples over clients: Dirichlet label skew with every label on every client.

flwr-datasets' DirichletPartitioner balances partition sizes but does not guarantee each client
at least one sample of every label, which the benchmark requires, so the rule is written here.
"""

from __future__ import annotations

import numpy as np

from fedmllm.data.sample import Sample
from fedmllm.errors import FedmllmError


def dirichlet(samples: list[Sample], num_clients: int, alpha: float, seed: int) -> list[list[Sample]]:
    """Per label, one sample to each client, then the rest by proportions drawn from Dir(alpha)."""
    rng = np.random.default_rng(seed)
    by_label: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        if s.label is None:
            raise FedmllmError(f"sample {s.id}: Dirichlet label skew needs labelled samples")
        by_label.setdefault(s.label, []).append(i)
    shards: list[list[int]] = [[] for _ in range(num_clients)]
    for label, indices in sorted(by_label.items()):
        if len(indices) < num_clients:
            raise FedmllmError(
                f"label {label} has {len(indices)} samples, fewer than num_clients={num_clients}: "
                "every client must get at least one sample of every label"
            )
        order = rng.permutation(indices)
        for client in range(num_clients):
            shards[client].append(int(order[client]))
        rest = order[num_clients:]
        cuts = (np.cumsum(rng.dirichlet([alpha] * num_clients)) * len(rest)).astype(int)[:-1]
        for client, part in enumerate(np.split(rest, cuts)):
            shards[client].extend(int(i) for i in part)
    return [[samples[i] for i in sorted(shard)] for shard in shards]


def iid(samples: list[Sample], num_clients: int, seed: int) -> list[list[Sample]]:
    """A seeded shuffle cut into `num_clients` near-equal shards."""
    if len(samples) < num_clients:
        raise FedmllmError(f"{len(samples)} samples cannot give each of {num_clients} clients one")
    order = np.random.default_rng(seed).permutation(len(samples))
    return [[samples[i] for i in sorted(part.tolist())] for part in np.array_split(order, num_clients)]
