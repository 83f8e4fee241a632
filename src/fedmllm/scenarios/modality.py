"""Modality heterogeneity applied to client shards. Test data always keep both modalities."""

from __future__ import annotations

import numpy as np

from fedmllm.data.sample import Sample


def missing(shards: list[list[Sample]], rate: float, seed: int) -> list[list[Sample]]:
    """Each sample independently loses its image with probability `rate` and its text with
    probability `rate`; it can lose both, leaving only the question."""
    rng = np.random.default_rng(seed)
    out = []
    for shard in shards:
        draws = rng.random((len(shard), 2)) < rate
        out.append([s.drop(image=bool(d[0]), text=bool(d[1])) for s, d in zip(shard, draws, strict=True)])
    return out
