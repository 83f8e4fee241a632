"""Checkpoints: every piece of server state survives the round trip; safetensors + JSON only."""

import pickle
import random

import pytest
import torch

from fedmllm import checkpoint
from fedmllm.errors import FedmllmError
from fedmllm.fl.state import ClientStore, ServerState

G = torch.Generator().manual_seed(1)


def p() -> dict[str, torch.Tensor]:
    return {"a.lora_A.weight": torch.randn(2, 3, generator=G), "b.bias": torch.randn(4, generator=G)}


def full_state(client_folder=None) -> ServerState:
    state = ServerState(global_params=p(), round=7, sampler=random.Random(5))
    state.client_controls = ClientStore("client_controls", client_folder)
    state.client_models = ClientStore("client_models", client_folder)
    state.buffers = {"m": p(), "v": p()}
    state.control = p()
    state.begin_round(7)
    state.client_controls[3], state.client_controls[0] = p(), p()
    state.client_models[1] = p()
    state.sampler.sample(range(10), 3)  # advanced past its seed
    return state


def equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("on_disk", [False, True])
def test_round_trip_keeps_every_tensor_and_the_sampler(tmp_path, on_disk):
    state = full_state(tmp_path / checkpoint.CLIENT_FOLDER if on_disk else None)
    ckpt = checkpoint.Checkpoint(state, {"auc": 0.5}, [0, 1, 3], {"rounds": 9}, {"latest": {"auc": 0.7}})
    checkpoint.save(tmp_path, ckpt)
    back = checkpoint.load(tmp_path)
    assert back.state.round == 7 and back.alive == [0, 1, 3] and back.extra["latest"] == {"auc": 0.7}
    assert equal(back.state.global_params, state.global_params) and equal(back.state.control, state.control)
    assert back.state.buffers.keys() == {"m", "v"} and all(
        equal(back.state.buffers[k], state.buffers[k]) for k in state.buffers
    )
    assert list(back.state.client_controls) == [0, 3]
    assert equal(back.state.client_controls.get(3), state.client_controls.get(3))
    assert equal(back.state.client_models.get(1), state.client_models.get(1))
    assert back.state.client_models.get(2) is None
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


def test_client_state_on_disk_stays_out_of_ram_and_survives_a_rerun_round(tmp_path):
    """Per-client tensors are files, versioned by round: a round killed after writing new c_k
    (before its checkpoint) leaves the checkpoint's versions readable; the next checkpoint
    deletes the superseded files."""
    folder = tmp_path / checkpoint.CLIENT_FOLDER
    state = full_state(folder)
    assert state.client_controls.memory == {} and state.client_models.memory == {}
    first = state.client_controls.get(3)
    checkpoint.save(tmp_path, checkpoint.Checkpoint(state, {}, [0], {}, {"latest": {}}))
    assert "client_controls/3/b.bias" not in checkpoint.flatten(state)  # referenced, not copied
    state.begin_round(8)
    state.client_controls[3] = p()  # round 8 writes; then the process dies before its checkpoint
    resumed = checkpoint.load(tmp_path)
    assert equal(resumed.state.client_controls.get(3), first)
    resumed.state.begin_round(8)
    resumed.state.client_controls[3] = p()  # round 8 again
    resumed.state.round = 8
    checkpoint.save(tmp_path, checkpoint.Checkpoint(resumed.state, {}, [0], {}, {"latest": {}}))
    names = sorted(f.name for f in folder.iterdir())
    assert names == ["client_controls-0-r7.safetensors", "client_controls-3-r8.safetensors",
                     "client_models-1-r7.safetensors"]  # fmt: skip


def test_a_missing_client_file_is_named(tmp_path):
    folder = tmp_path / checkpoint.CLIENT_FOLDER
    state = full_state(folder)
    (folder / "client_models-1-r7.safetensors").unlink()
    with pytest.raises(FedmllmError, match="client_models-1-r7.safetensors: cannot read the state of client 1"):
        state.client_models.get(1)
