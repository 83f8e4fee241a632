"""Robust server rules (fedmedian, fedtrimmedavg, krum): hand-computed values over three rounds and
agreement with Flower's own numpy implementations (flwr.server.strategy.aggregate)."""

import numpy as np
import pytest
import torch
from flwr.server.strategy.aggregate import aggregate_krum, aggregate_median, aggregate_trimmed_avg

from fedmllm.fl import rules
from fedmllm.fl.algorithms import aggregate
from fedmllm.fl.rules import ServerHyper

HP = ServerHyper()


def close(actual: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float32), atol=1e-6, rtol=0)


def models(rows: list[list[float]]) -> list[rules.Params]:
    return [{"x": torch.tensor(r)} for r in rows]


# ---------------------------------------------------------------- hand values, three rounds


def test_fedmedian_three_rounds_ignores_weights():
    w = {"x": torch.zeros(2)}
    state: rules.State = {}
    rounds = [
        ([[1.0, 5.0], [3.0, -2.0], [2.0, 0.0]], [1, 1000, 1], [2.0, 0.0]),  # odd count
        ([[0.0, 1.0], [10.0, 2.0], [4.0, -3.0], [6.0, 8.0]], [5, 1, 1, 1], [5.0, 1.5]),  # even: mean of middle two
        ([[1.0, 1.0], [2.0, 2.0], [100.0, -100.0], [3.0, 3.0], [-50.0, 50.0]], [1, 1, 1, 1, 1], [2.0, 2.0]),
    ]
    for rows, weights, expected in rounds:
        w, state = aggregate("fedmedian", state, w, models(rows), weights, HP)
        close(w["x"], expected)


def test_fedtrimmedavg_three_rounds_ignores_weights():
    w = {"x": torch.zeros(2)}
    state: rules.State = {}
    rounds = [
        # n = 5, cut int(0.2·5) = 1 at each end: mean(2, 3, 4) = 3, mean(10, 20, 30) = 20
        ([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [100.0, -100.0]], [9, 1, 1, 1, 1], [3.0, 20.0]),
        # n = 4, cut int(0.8) = 0: the plain unweighted mean
        ([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, -12.0]], [1, 2, 3, 4], [4.0, 0.0]),
        # n = 10, cut 2: mean(3..8) = 5.5; second coordinate keeps 1..6 -> 3.5
        (
            [[float(a), b] for a, b in zip(range(1, 11), [10.0, -10.0, 1, 2, 3, 4, 5, 6, 1000, -1000], strict=True)],
            [1] * 10,
            [5.5, 3.5],
        ),
    ]
    for rows, weights, expected in rounds:
        w, state = aggregate("fedtrimmedavg", state, w, models(rows), weights, HP)
        close(w["x"], expected)
    # trim 0.25 of 4 = 1 at each end: mean(3, 5) = 4, mean(2, 4) = 3
    rows = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, -12.0]]
    out, _ = aggregate("fedtrimmedavg", {}, w, models(rows), [1] * 4, ServerHyper(trim_fraction=0.25))
    close(out["x"], [4.0, 3.0])
    with pytest.raises(ValueError, match="trim_fraction"):
        aggregate("fedtrimmedavg", {}, w, models([[1.0, 2.0]]), [1], ServerHyper(trim_fraction=0.5))


def test_krum_three_rounds():
    w = {"x": torch.zeros(2), "y": torch.zeros(1)}
    state: rules.State = {}

    def clients(rows):
        return [{"x": torch.tensor(x), "y": torch.tensor(y)} for x, y in rows]

    # Round 1: n = 5, f = 1 -> 2 nearest. Squared distances over x and y together; client 2 has the
    # lowest score: d(2,3) + d(2,4) = 1 + 2 = 3 (others: 11, 388, 4, 5).
    r1 = [([3.0, 3.0], [1.0]), ([10.0, 10.0], [10.0]), ([1.0, 1.0], [1.0]), ([2.0, 1.0], [1.0]), ([1.0, 2.0], [2.0])]
    w, state = aggregate("krum", state, w, clients(r1), [1, 100, 1, 1, 1], HP)
    close(w["x"], [1.0, 1.0])
    close(w["y"], [1.0])
    # Round 2: n = 4, f = 1 -> 1 nearest. Scores 9, 1, 25, 1: a tie between clients 1 and 3 -> the first.
    r2 = [([0.0, 0.0], [0.0]), ([3.0, 0.0], [0.0]), ([0.0, 5.0], [0.0]), ([3.0, 1.0], [0.0])]
    w, state = aggregate("krum", state, w, clients(r2), [1, 1, 1, 1], HP)
    close(w["x"], [3.0, 0.0])
    close(w["y"], [0.0])
    # Round 3: n = 4, f = 0 -> 2 nearest. Scores 2 + 8, 2 + 2, 2 + 8, 18 + 20 -> client 1.
    r3 = [([0.0, 0.0], [-3.0]), ([1.0, 1.0], [-3.0]), ([2.0, 2.0], [-3.0]), ([-1.0, 5.0], [-3.0])]
    w, state = aggregate("krum", state, w, clients(r3), [1, 1, 1, 1], ServerHyper(krum_byzantine=0))
    close(w["x"], [1.0, 1.0])
    close(w["y"], [-3.0])
    assert rules.krum_scores(clients(r3), 0).tolist() == [10.0, 4.0, 10.0, 38.0]


# ---------------------------------------------------------------- agreement with Flower


def _random_clients(seed: int, n: int) -> tuple[rules.Params, list[rules.Params]]:
    gen = torch.Generator().manual_seed(seed)
    shapes = {"layer.weight": (3, 4), "layer.bias": (4,), "head": (2, 2, 2)}
    clients = []
    for k in range(n):
        c = {name: torch.randn(*s, generator=gen) for name, s in shapes.items()}
        if k == n - 1:  # one outlier client
            c = {name: t * 50 + 20 for name, t in c.items()}
        clients.append(c)
    return {name: torch.zeros(*s) for name, s in shapes.items()}, clients


def _flower_results(clients: list[rules.Params], weights: list[int]):
    return [([t.numpy() for t in c.values()], n) for c, n in zip(clients, weights, strict=True)]


def _assert_matches(out: rules.Params, flower: list[np.ndarray]) -> None:
    assert len(out) == len(flower)
    for tensor, array in zip(out.values(), flower, strict=True):
        np.testing.assert_allclose(tensor.numpy(), array, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8])
def test_fedmedian_matches_flower(n):
    w, clients = _random_clients(seed=n, n=n)
    weights = list(range(1, n + 1))
    out, _ = aggregate("fedmedian", {}, w, clients, weights, HP)
    _assert_matches(out, aggregate_median(_flower_results(clients, weights)))


@pytest.mark.parametrize("n", [1, 3, 4, 5, 7, 10])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.2, 0.25, 0.4])
def test_fedtrimmedavg_matches_flower(n, fraction):
    w, clients = _random_clients(seed=10 + n, n=n)
    weights = [3] * n
    out, _ = aggregate("fedtrimmedavg", {}, w, clients, weights, ServerHyper(trim_fraction=fraction))
    _assert_matches(out, aggregate_trimmed_avg(_flower_results(clients, weights), proportiontocut=fraction))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 10])
@pytest.mark.parametrize("f", [0, 1, 2])
def test_krum_matches_flower(n, f):
    w, clients = _random_clients(seed=100 + n, n=n)
    weights = list(range(n, 0, -1))
    out, _ = aggregate("krum", {}, w, clients, weights, ServerHyper(krum_byzantine=f))
    _assert_matches(out, aggregate_krum(_flower_results(clients, weights), num_malicious=f, to_keep=0))
    if n >= 3:  # the outlier is never chosen
        assert not torch.equal(out["head"], clients[-1]["head"])
