"""Checkpoints: every piece of server state survives the round trip; safetensors + JSON only."""

import pickle
import random

import pytest
import torch

from fedmllm import checkpoint
from fedmllm.errors import FedmllmError
from fedmllm.fl.state import ServerState


def full_state() -> ServerState:
    g = torch.Generator().manual_seed(1)
    p = lambda: {"a.lora_A.weight": torch.randn(2, 3, generator=g), "b.bias": torch.randn(4, generator=g)}  # noqa: E731
    state = ServerState(global_params=p(), round=7, sampler=random.Random(5))
    state.buffers = {"m": p(), "v": p()}
    state.control = p()
    state.client_controls = {3: p(), 0: p()}
    state.client_models = {1: p()}
    state.sampler.sample(range(10), 3)  # advanced past its seed
    return state


def equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_round_trip_keeps_every_tensor_and_the_sampler(tmp_path):
    state = full_state()
    ckpt = checkpoint.Checkpoint(state, {"auc": 0.5}, [0, 1, 3], {"rounds": 9}, {"latest": {"auc": 0.7}})
    checkpoint.save(tmp_path, ckpt)
    back = checkpoint.load(tmp_path)
    assert back.state.round == 7 and back.alive == [0, 1, 3] and back.extra["latest"] == {"auc": 0.7}
    assert equal(back.state.global_params, state.global_params) and equal(back.state.control, state.control)
    assert back.state.buffers.keys() == {"m", "v"} and all(
        equal(back.state.buffers[k], state.buffers[k]) for k in state.buffers
    )
    assert back.state.client_controls.keys() == {0, 3} and equal(
        back.state.client_controls[3], state.client_controls[3]
    )
    assert equal(back.state.client_models[1], state.client_models[1])
    assert [back.state.sample(list(range(10)), 3) for _ in range(4)] == [
        state.sample(list(range(10)), 3) for _ in range(4)
    ]


def test_a_half_written_checkpoint_never_replaces_the_last_one(tmp_path):
    state = full_state()
    checkpoint.save(tmp_path, checkpoint.Checkpoint(state, {}, [0], {}, {"latest": {}}))
    (tmp_path / "checkpoint.safetensors.tmp").write_bytes(b"\x00" * 100)  # a kill during the next write
    assert checkpoint.load(tmp_path).state.round == 7


def test_loading_never_unpickles(tmp_path, monkeypatch):
    checkpoint.save(tmp_path, checkpoint.Checkpoint(full_state(), {}, [0], {}, {"latest": {}}))

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert checkpoint.load(tmp_path).state.round == 7
    # a pickle planted under the checkpoint's name is refused as unreadable, not executed
    (tmp_path / "checkpoint.safetensors").write_bytes(pickle.dumps({"x": 1}, protocol=2))
    with pytest.raises(FedmllmError, match="checkpoint.safetensors: unreadable checkpoint"):
        checkpoint.load(tmp_path)


def test_missing_checkpoint_names_the_folder(tmp_path):
    with pytest.raises(FedmllmError, match="no checkpoint.safetensors"):
        checkpoint.load(tmp_path)
