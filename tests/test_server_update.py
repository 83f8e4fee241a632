"""The recipe's server side without any engine: SCAFFOLD bookkeeping, Local and sampling."""

import pytest
import torch

from fedmllm.config import RunConfig
from fedmllm.fl.screen import ClientUpdate
from fedmllm.fl.server import jobs_for, server_update
from fedmllm.fl.state import ServerState


def test_scaffold_controls_and_corrections_by_hand():
    cfg = RunConfig(algorithm="scaffold", num_clients=2, clients_per_round=1)
    state = ServerState.start({"x": torch.tensor([0.0])}, seed=0)
    (job,) = jobs_for(cfg, state, [0], None)
    assert job.correction["x"].item() == 0.0
    # client 0 moved x 0 -> 1 in K=2 steps at lr 0.5: c_0+ = 0 - 0 + (0 - 1) / (2 * 0.5) = -1
    server_update(cfg, state, [ClientUpdate(0, {"x": torch.tensor([1.0])}, 10, 0.0, steps=2)], lr=0.5)
    assert state.client_control(0)["x"].item() == pytest.approx(-1.0)
    assert state.control["x"].item() == pytest.approx(-0.5)  # c + |S|/N * mean(dc) = 0 + 1/2 * -1
    assert state.global_params["x"].item() == pytest.approx(1.0)  # eta_g = 1
    corrections = [j.correction["x"].item() for j in jobs_for(cfg, state, [0, 1], None)]
    assert corrections == pytest.approx([0.5, -0.5])  # c - c_k


def test_local_keeps_each_clients_model():
    cfg = RunConfig(algorithm="local", num_clients=2, clients_per_round=1)
    state = ServerState.start({"x": torch.tensor([0.0])}, seed=0)
    server_update(cfg, state, [ClientUpdate(1, {"x": torch.tensor([3.0])}, 5, 0.0)], lr=0.1)
    jobs = jobs_for(cfg, state, [0, 1], None)
    assert [j.params["x"].item() for j in jobs] == [0.0, 3.0]
    assert state.global_params["x"].item() == 0.0


def test_sampling_is_seeded():
    a, b = ServerState.start({}, seed=4), ServerState.start({}, seed=4)
    assert [a.sample(list(range(10)), 3) for _ in range(5)] == [b.sample(list(range(10)), 3) for _ in range(5)]
    assert RunConfig(client_fraction=0.25).sampled_per_round == 2  # round(2.5) = 2 (banker's)
