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


def cross_modality(shards: list[list[Sample]], image_clients: int, seed: int) -> list[list[Sample]]:
    """`image_clients` clients (chosen by seed) keep only images, the others only text."""
    chosen = presence_cross(len(shards), image_clients, seed)
    return [[s.drop(text=img, image=not img) for s in shard] for shard, (img, _) in zip(shards, chosen, strict=True)]


def presence_cross(num_clients: int, image_clients: int, seed: int) -> list[tuple[bool, bool]]:
    rng = np.random.default_rng(seed)
    image = set(rng.choice(num_clients, size=image_clients, replace=False).tolist())
    return [(k in image, k not in image) for k in range(num_clients)]


def presence_hybrid(num_clients: int, rate: float, seed: int) -> list[tuple[bool, bool]]:
    """(has images, has text) per client: each lacking with probability `rate`, independently;
    a client left with neither gets one of the two at random."""
    rng = np.random.default_rng(seed)
    out = []
    for has_image, has_text, coin in zip(
        rng.random(num_clients) >= rate, rng.random(num_clients) >= rate, rng.random(num_clients) < 0.5, strict=True
    ):
        if not has_image and not has_text:
            has_image, has_text = bool(coin), not coin
        out.append((bool(has_image), bool(has_text)))
    return out


def hybrid(shards: list[list[Sample]], rate: float, seed: int) -> list[list[Sample]]:
    presence = presence_hybrid(len(shards), rate, seed)
    return [
        [s.drop(image=not img, text=not txt) for s in shard] for shard, (img, txt) in zip(shards, presence, strict=True)
    ]
