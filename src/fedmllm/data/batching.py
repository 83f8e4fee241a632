"""Seeded batches over a list of samples."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
MEGABATCH = 50  # batches per length-sorted group (the `mega_batch_mult` of HF's LengthGroupedSampler)


def batches(items: list[T], batch_size: int, seed: int, lengths: list[int] | None = None) -> Iterator[list[T]]:
    """Endless reshuffled epochs over `items`, in batches of `batch_size` (the last may be short).

    With `lengths` (one per item), each epoch's shuffled order is cut into groups of MEGABATCH
    batches, each group is sorted by length and cut into batches, and the epoch's batches are
    shuffled: a batch holds items of similar length (little padding; with missing modalities,
    mostly one modality, like LLaVA's `group_by_modality_length`), and every epoch still sees
    every item once.
    """
    if lengths is not None and len(lengths) != len(items):
        raise ValueError(f"{len(lengths)} lengths for {len(items)} items")
    rng = random.Random(seed)
    order = list(range(len(items)))
    span = MEGABATCH * batch_size
    while True:
        rng.shuffle(order)
        if lengths is None:
            chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        else:
            chunks = []
            for g in range(0, len(order), span):
                group = sorted(order[g : g + span], key=lambda i: lengths[i], reverse=True)
                chunks += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
            rng.shuffle(chunks)  # long and short batches in random order, not longest first
        for chunk in chunks:
            yield [items[i] for i in chunk]
