"""Seeded batches, plain and grouped by length."""

from __future__ import annotations

import random
from itertools import islice

import pytest

from fedmllm.data.batching import MEGABATCH, batches


def epochs(stream, n_items: int, batch_size: int, count: int) -> list[list]:
    per_epoch = -(-n_items // batch_size)
    flat = list(islice(stream, per_epoch * count))
    return [flat[e * per_epoch : (e + 1) * per_epoch] for e in range(count)]


def test_plain_batches_are_reshuffled_epochs_in_a_fixed_order() -> None:
    items = list(range(10))
    rng = random.Random(3)  # the stream is random.shuffle of the items, epoch after epoch
    expected = []
    order = list(items)
    for _ in range(2):
        rng.shuffle(order)
        expected.append([order[0:4], order[4:8], order[8:10]])
    assert epochs(batches(items, 4, seed=3), 10, 4, 2) == expected


def test_grouped_batches_cover_every_item_once_per_epoch_with_less_padding() -> None:
    rng = random.Random(0)
    n, bs = 200, 8
    lengths = [rng.choice([30, 40]) + rng.randrange(5) if i % 3 else 600 + rng.randrange(40) for i in range(n)]
    items = list(range(n))

    def padded(batch: list[int]) -> int:
        return max(lengths[i] for i in batch) * len(batch)

    plain = epochs(batches(items, bs, seed=1), n, bs, 3)
    grouped = epochs(batches(items, bs, seed=1, lengths=lengths), n, bs, 3)
    for epoch in grouped:
        assert sorted(i for b in epoch for i in b) == items
        assert all(len(b) <= bs for b in epoch)
    real = sum(lengths) * 3
    plain_tokens = sum(padded(b) for e in plain for b in e)
    grouped_tokens = sum(padded(b) for e in grouped for b in e)
    assert plain_tokens > 2 * real  # a long item in most plain batches
    assert grouped_tokens < 1.1 * real
    # the epochs differ, and not every epoch starts with the longest batch
    assert grouped[0] != grouped[1]
    assert len({max(lengths[i] for i in e[0]) for e in grouped}) > 1


def test_groups_span_megabatches_of_the_shuffled_order() -> None:
    n, bs = 3 * MEGABATCH * 2, 2  # three groups of MEGABATCH batches
    lengths = list(range(n))
    (epoch,) = epochs(batches(list(range(n)), bs, seed=0, lengths=lengths), n, bs, 1)
    assert all(b[0] > b[1] for b in epoch)  # sorted within each group, longest first in a batch


def test_lengths_must_match_items() -> None:
    with pytest.raises(ValueError, match="3 lengths for 2 items"):
        next(batches([1, 2], 2, 0, lengths=[1, 2, 3]))
