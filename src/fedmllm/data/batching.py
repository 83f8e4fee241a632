"""Seeded batches over a list of samples."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")


def batches(items: list[T], batch_size: int, seed: int) -> Iterator[list[T]]:
    """Endless reshuffled epochs over `items`, in batches of `batch_size` (the last may be short)."""
    rng = random.Random(seed)
    order = list(items)
    while True:
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            yield order[i : i + batch_size]
