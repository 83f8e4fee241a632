"""A run folder is untrusted input: every edit of its checkpoint (metadata, tensors, bytes) and of
its per-client files is a FedmllmError naming the file and the key, never a raw exception, never
an attribute set from the file. A valid checkpoint still round-trips exactly."""

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fedmllm import checkpoint
from fedmllm.checkpoint import CLIENT_FOLDER, NAME
from fedmllm.errors import FedmllmError
from fedmllm.fl.state import ServerState

G = torch.Generator().manual_seed(2)
CFG = {"rounds": 3, "num_clients": 3}
DROP = object()  # a metadata key to delete


def p() -> dict[str, torch.Tensor]:
    return {"a.lora_A.weight": torch.randn(2, 3, generator=G), "b.bias": torch.randn(4, generator=G)}


def make(run_dir, on_disk=True) -> tuple[ServerState, dict[str, torch.Tensor]]:
    """A real state after round 2 of 3, as run.py builds it, saved in `run_dir`."""
    initial = p()
    state = ServerState.start(initial, seed=3, client_folder=run_dir / CLIENT_FOLDER if on_disk else None)
    state.buffers = {"m": p(), "v": p()}
    state.begin_round(2)
    state.client_controls[1], state.client_models[0] = p(), p()
    state.round = 2
    state.sampler.sample(range(10), 3)
    ckpt = checkpoint.Checkpoint(state, {"auc": 0.5}, [0, 1, 2], dict(CFG), {"latest": {"auc": 0.75}})
    checkpoint.save(run_dir, ckpt)
    return state, initial


def read(run_dir) -> tuple[dict, dict]:
    path = str(run_dir / NAME)
    with safe_open(path, "pt") as f:
        return load_file(path), json.loads(f.metadata()["fedmllm"])


def rewrite(run_dir, tensors: dict, meta) -> None:
    raw = meta if isinstance(meta, str) else json.dumps(meta)
    save_file(tensors, str(run_dir / NAME), metadata={"fedmllm": raw})


def edit_meta(run_dir, **changes) -> None:
    tensors, meta = read(run_dir)
    for key, value in changes.items():
        if value is DROP:
            del meta[key]
        else:
            meta[key] = value
    rewrite(run_dir, tensors, meta)


def edit_tensors(run_dir, put=None, drop=()) -> None:
    tensors, meta = read(run_dir)
    for key in drop:
        del tensors[key]
    rewrite(run_dir, tensors | (put or {}), meta)


def fails(run_dir, message: str, on_check: bool = False, initial=None):
    """The error of load (or, with on_check, of check after a clean load) names the file and `message`."""
    pattern = re.escape(str(run_dir / NAME)) + ".*" + re.escape(message)
    with pytest.raises(FedmllmError, match=pattern):
        ckpt = checkpoint.load(run_dir)
        assert on_check, "load accepted it"
        checkpoint.check(ckpt, run_dir, CFG, initial)


def equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("on_disk", [True, False])
def test_a_valid_checkpoint_round_trips_and_load_leaves_the_rng_alone(tmp_path, on_disk):
    torch.manual_seed(11)
    state, initial = make(tmp_path, on_disk)
    after_save = torch.rand(5)  # the draws the saving run made next
    torch.manual_seed(99)  # e.g. the model's LoRA initialisation
    before = torch.get_rng_state()
    ckpt = checkpoint.load(tmp_path)
    assert torch.equal(torch.get_rng_state(), before)
    checkpoint.check(ckpt, tmp_path, CFG, initial)
    checkpoint.restore_rng(ckpt)
    assert torch.equal(torch.rand(5), after_save)
    back = ckpt.state
    assert back.round == 2 and ckpt.alive == [0, 1, 2] and ckpt.zero_shot == {"auc": 0.5}
    assert ckpt.config == CFG and ckpt.extra == {"latest": {"auc": 0.75}}
    assert equal(back.global_params, state.global_params) and equal(back.control, state.control)
    assert back.buffers.keys() == {"m", "v"} and all(equal(back.buffers[k], state.buffers[k]) for k in "mv")
    assert list(back.client_controls) == [1] and list(back.client_models) == [0]
    assert equal(back.client_controls.get(1), state.client_controls.get(1))
    assert equal(back.client_models.get(0), state.client_models.get(0))
    assert back.client_controls.versions == ({1: 2} if on_disk else {})
    assert [back.sample([0, 1, 2, 3, 4], 2) for _ in range(5)] == [state.sample([0, 1, 2, 3, 4], 2) for _ in range(5)]


BAD_META = {
    "store __class__": (dict(client_state={"__class__": {}}), "metadata key 'client_state': unknown store '__class__'"),
    "store global_params": (
        dict(client_state={"global_params": {"0": 1}}),
        "metadata key 'client_state': unknown store 'global_params'",
    ),
    "store not an object": (dict(client_state=[]), "metadata key 'client_state': [] is not a JSON object"),
    "versions not an object": (dict(client_state={"client_models": [1]}), "client_models: [1] is not an object"),
    "partition 01": (dict(client_state={"client_models": {"01": 1}}), "client_models: '01' is not a partition id"),
    "partition -1": (dict(client_state={"client_models": {"-1": 1}}), "client_models: '-1' is not a partition id"),
    "version 0": (dict(client_state={"client_models": {"0": 0}}), "client_models[0]: version 0 is not a round in 1..2"),
    "version > round": (dict(client_state={"client_models": {"0": 3}}), "version 3 is not a round in 1..2"),
    "version str": (dict(client_state={"client_models": {"0": "2"}}), "version '2' is not a round in 1..2"),
    "round -1": (dict(round=-1), "metadata key 'round': -1 is not a round number"),
    "round str": (dict(round="3"), "metadata key 'round': '3' is not a round number"),
    "round float": (dict(round=2.0), "metadata key 'round': 2.0 is not a round number"),
    "round bool": (dict(round=True), "metadata key 'round': True is not a round number"),
    "alive str": (dict(alive=[0, "1"]), "metadata key 'alive': [0, '1'] is not a list of partition ids"),
    "alive negative": (dict(alive=[-1]), "metadata key 'alive': [-1] is not a list"),
    "alive repeated": (dict(alive=[0, 2, 0]), "metadata key 'alive': [0, 2, 0] repeats a partition"),
    "alive object": (dict(alive={"0": 1}), "metadata key 'alive'"),
    "sampler str": (dict(sampler="x"), "metadata key 'sampler': 'x' is not [int version"),
    "sampler short": (dict(sampler=[3, [1, 2], None]), "metadata key 'sampler': not a state of Python's random"),
    "sampler big int": (dict(sampler=[3, [2**40] * 624 + [0], None]), "is not [int version, list of 32-bit words"),
    "sampler gauss str": (dict(sampler=[3, [0] * 625, "g"]), "metadata key 'sampler'"),
    "sampler version 9": (dict(sampler=[9, [0] * 625, None]), "not a state of Python's random"),
    "zero_shot str": (dict(zero_shot={"auc": "0.5"}), "metadata key 'zero_shot': metric 'auc' is '0.5', not a number"),
    "zero_shot null": (dict(zero_shot={"auc": None}), "metric 'auc' is None, not a number"),
    "zero_shot bool": (dict(zero_shot={"auc": True}), "metric 'auc' is True, not a number"),
    "zero_shot list": (dict(zero_shot=[0.5]), "metadata key 'zero_shot': [0.5] is not an object"),
    "format 2": (dict(format=2), "metadata key 'format': checkpoint format 2, this fedmllm reads 1"),
    "format str": (dict(format="1"), "metadata key 'format': checkpoint format '1'"),
    "config list": (dict(config=[1]), "metadata key 'config': [1] is not a JSON object"),
    "extra str": (dict(extra="x"), "metadata key 'extra': 'x' is not a JSON object"),
    "unknown key": (dict(__class__="x"), "metadata key '__class__': unknown key"),
    "huge value": (dict(extra="x" * 10**6), "metadata key 'extra': 'xxxxxxxxxx"),
}


@pytest.mark.parametrize("case", BAD_META, ids=list(BAD_META))
def test_each_schema_violation_is_named(tmp_path, case):
    changes, message = BAD_META[case]
    make(tmp_path)
    edit_meta(tmp_path, **changes)
    fails(tmp_path, message)


def test_messages_from_huge_values_stay_short(tmp_path):
    make(tmp_path)
    edit_meta(tmp_path, extra="x" * 10**6)
    with pytest.raises(FedmllmError) as e:
        checkpoint.load(tmp_path)
    assert len(str(e.value)) < 300


@pytest.mark.parametrize("key", checkpoint.KEYS)
def test_each_missing_key_is_named(tmp_path, key):
    make(tmp_path)
    edit_meta(tmp_path, **{key: DROP})
    fails(tmp_path, f"metadata key '{key}': missing")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{", "unreadable checkpoint (metadata is not JSON"),
        ("[" * 100_000 + "]" * 100_000, "unreadable checkpoint (metadata is not JSON"),  # beyond the recursion limit
        ('{"round": ' + "9" * 5000 + "}", "unreadable checkpoint (metadata is not JSON"),  # beyond int digits
        ("[1, 2]", "metadata is list, not a JSON object"),
    ],
    ids=["broken", "deep", "long int", "list"],
)
def test_metadata_that_is_no_json_object_is_refused(tmp_path, raw, message):
    make(tmp_path)
    rewrite(tmp_path, read(tmp_path)[0], raw)
    fails(tmp_path, message)


def test_a_file_without_fedmllm_metadata_is_refused(tmp_path):
    make(tmp_path)
    save_file(read(tmp_path)[0], str(tmp_path / NAME), metadata={"other": "{}"})
    fails(tmp_path, "no 'fedmllm' metadata")


@pytest.mark.parametrize("cut", [1, 100, 2000])
def test_a_truncated_file_is_unreadable(tmp_path, cut):
    make(tmp_path)
    data = (tmp_path / NAME).read_bytes()
    (tmp_path / NAME).write_bytes(data[:-cut])
    fails(tmp_path, "unreadable checkpoint")


@pytest.mark.parametrize("data", [b"", b"not a checkpoint at all", b"\xff" * 8 + b"{}", b"\x02\0\0\0\0\0\0\0{}"])
def test_a_non_safetensors_file_is_unreadable(tmp_path, data):
    (tmp_path / NAME).write_bytes(data)
    fails(tmp_path, "unreadable checkpoint")


BAD_TENSORS = {
    "unknown kind": ({"weights/x": torch.zeros(1)}, "tensor 'weights/x': not one of global/<name>"),
    "empty name": ({"global/": torch.zeros(1)}, "tensor 'global/': not one of"),
    "rng other": ({"rng/numpy": torch.zeros(1)}, "tensor 'rng/numpy': not one of"),
    "buffer __class__": ({"buffers/__class__/x": torch.zeros(1)}, "unknown buffer '__class__'"),
    "buffer no name": ({"buffers/m": torch.zeros(1)}, "tensor 'buffers/m': not one of"),
    "client not int": ({"client_models/abc/b": torch.zeros(1)}, "tensor 'client_models/abc/b': not one of"),
    "client on disk": (
        {"client_controls/2/b": torch.zeros(1)},
        "tensor 'client_controls/2/b': client_controls are kept in files",
    ),
    "rng float": ({"rng/torch": torch.zeros(5056)}, "tensor 'rng/torch' is torch.float32 of shape (5056,)"),
    "rng 2-d": ({"rng/torch": torch.zeros(2, 5, dtype=torch.uint8)}, "not 1-d uint8"),
    "rng short": ({"rng/torch": torch.zeros(10, dtype=torch.uint8)}, "tensor 'rng/torch' is not a torch RNG state"),
    "rng zeros": ({"rng/torch": torch.zeros(5056, dtype=torch.uint8)}, "is not a torch RNG state"),
}


@pytest.mark.parametrize("case", BAD_TENSORS, ids=list(BAD_TENSORS))
def test_each_unknown_tensor_key_is_named(tmp_path, case):
    put, message = BAD_TENSORS[case]
    make(tmp_path)
    edit_tensors(tmp_path, put)
    fails(tmp_path, message)


def test_a_missing_rng_is_named(tmp_path):
    make(tmp_path)
    edit_tensors(tmp_path, drop=["rng/torch"])
    fails(tmp_path, "tensor 'rng/torch' is missing")


def test_load_sets_no_attribute_named_by_the_file(tmp_path):
    """The old loader did setattr(state, kind, ...) for every client_state key."""
    make(tmp_path)
    edit_meta(tmp_path, client_state={"round": {"0": 1}})
    fails(tmp_path, "metadata key 'client_state': unknown store 'round'")


BAD_FOR_THE_RUN = {
    "round beyond rounds": (
        dict(meta=dict(round=10**9)),
        "metadata key 'round': 1000000000 is beyond the run's rounds=3",
    ),
    "alive beyond clients": (dict(meta=dict(alive=[0, 99])), "metadata key 'alive': partition 99 is not in 0..2"),
    "client file beyond clients": (
        dict(meta=dict(client_state={"client_controls": {"1": 2, "7": 2}, "client_models": {"0": 2}})),
        "metadata key 'client_state': client_controls of partition 7, not in 0..2",
    ),
    "global shape": (
        dict(put={"global/b.bias": torch.zeros(5)}),
        "tensor set 'global' has 'global/b.bias' of shape (5,), expected (4,), against the model's",
    ),
    "global extra": (dict(put={"global/evil": torch.zeros(1)}), "tensor set 'global' has unexpected 'global/evil'"),
    "control missing": (
        dict(drop=["control/a.lora_A.weight"]),
        "tensor set 'control' lacks 'control/a.lora_A.weight'",
    ),
    "buffer shape": (
        dict(put={"buffers/v/a.lora_A.weight": torch.zeros(3, 2)}),
        "tensor set 'buffers/v' has 'buffers/v/a.lora_A.weight' of shape (3, 2), expected (2, 3)",
    ),
    "buffer extra group": (
        dict(put={"buffers/momentum/b.bias": torch.zeros(4)}),
        "tensor set 'buffers/momentum' lacks 'buffers/momentum/a.lora_A.weight'",
    ),
    "global NaN": (
        dict(put={"global/b.bias": torch.tensor([0.0, float("nan"), 0.0, 0.0])}),
        "tensor set 'global' has NaN/Inf values in 'global/b.bias'",
    ),
    "control Inf": (
        dict(put={"control/b.bias": torch.tensor([0.0, float("inf"), 0.0, 0.0])}),
        "tensor set 'control' has NaN/Inf values in 'control/b.bias'",
    ),
    "global int": (
        dict(put={"global/b.bias": torch.zeros(4, dtype=torch.int64)}),
        "tensor set 'global' has 'global/b.bias' of dtype torch.int64, not floating point",
    ),
}


@pytest.mark.parametrize("case", BAD_FOR_THE_RUN, ids=list(BAD_FOR_THE_RUN))
def test_a_checkpoint_that_does_not_fit_the_run_is_named(tmp_path, case):
    edit, message = BAD_FOR_THE_RUN[case]
    _, initial = make(tmp_path)
    if "meta" in edit:
        edit_meta(tmp_path, **edit["meta"])
    else:
        edit_tensors(tmp_path, edit.get("put"), edit.get("drop", ()))
    fails(tmp_path, message, on_check=True, initial=initial)


def test_in_memory_client_tensors_are_checked_against_the_run(tmp_path):
    _, initial = make(tmp_path, on_disk=False)
    edit_tensors(tmp_path, {"client_models/9/b.bias": torch.zeros(4)})
    fails(tmp_path, "tensors: client_models of partition 9, not in 0..2", on_check=True, initial=initial)
    _, initial = make(tmp_path, on_disk=False)
    edit_tensors(tmp_path, {"client_models/0/b.bias": torch.zeros(2)})
    fails(tmp_path, "tensor set 'client_models/0' has 'client_models/0/b.bias' of shape (2,)", True, initial)


def client_file(run_dir, name="client_controls-1-r2.safetensors"):
    return run_dir / CLIENT_FOLDER / name


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"a.lora_A.weight": torch.zeros(2, 3)}, "lacks 'b.bias'"),
        ({"a.lora_A.weight": torch.zeros(2, 3), "b.bias": torch.zeros(4), "x": torch.zeros(1)}, "has unexpected 'x'"),
        (
            {"a.lora_A.weight": torch.zeros(3, 2), "b.bias": torch.zeros(4)},
            "has 'a.lora_A.weight' of shape (3, 2), expected (2, 3)",
        ),
    ],
    ids=["missing", "extra", "shape"],
)
def test_a_client_file_of_other_tensors_is_named_by_check_and_get(tmp_path, tensors, message):
    _, initial = make(tmp_path)
    save_file(tensors, str(client_file(tmp_path)))
    ckpt = checkpoint.load(tmp_path)
    with pytest.raises(FedmllmError, match=re.escape(f"{client_file(tmp_path)}: the state of client 1 {message}")):
        checkpoint.check(ckpt, tmp_path, CFG, initial)
    with pytest.raises(FedmllmError, match=re.escape(f"{client_file(tmp_path)}: the state of client 1 {message}")):
        ckpt.state.client_controls.get(1)  # armed by check even though it failed on this file
    assert ckpt.state.client_models.get(0).keys() == initial.keys()  # the valid one still reads


def test_a_missing_or_broken_client_file_is_named(tmp_path):
    _, initial = make(tmp_path)
    client_file(tmp_path).unlink()
    ckpt = checkpoint.load(tmp_path)
    with pytest.raises(FedmllmError, match=re.escape(f"{client_file(tmp_path)}: cannot read the state of client 1")):
        checkpoint.check(ckpt, tmp_path, CFG, initial)
    client_file(tmp_path).write_bytes(b"\x10\0\0\0\0\0\0\0{not json}")
    with pytest.raises(FedmllmError, match=re.escape(f"{client_file(tmp_path)}: cannot read the state of client 1")):
        ckpt.state.client_controls.get(1)


def test_a_client_file_with_nan_is_refused_when_read(tmp_path):
    """The header check at resume cannot see values; `get` does, before anything trains on them."""
    _, initial = make(tmp_path)
    save_file(
        {"a.lora_A.weight": torch.full((2, 3), float("nan")), "b.bias": torch.zeros(4)}, str(client_file(tmp_path))
    )
    ckpt = checkpoint.load(tmp_path)
    checkpoint.check(ckpt, tmp_path, CFG, initial)
    with pytest.raises(FedmllmError, match=re.escape(f"{client_file(tmp_path)}: the state of client 1 has NaN/Inf")):
        ckpt.state.client_controls.get(1)


def test_a_fresh_state_checks_its_client_files_too(tmp_path):
    initial = p()
    state = ServerState.start(initial, seed=0, client_folder=tmp_path)
    state.begin_round(1)
    state.client_models[2] = p()
    assert state.client_models.get(2).keys() == initial.keys()
    save_file({"b.bias": torch.zeros(4)}, str(tmp_path / "client_models-2-r1.safetensors"))
    with pytest.raises(FedmllmError, match="client_models-2-r1.safetensors: the state of client 2 lacks 'a.lora_A"):
        state.client_models.get(2)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("valid")
    return run_dir, make(run_dir)[1]


def load_and_check(valid, edit) -> str:
    """'ok' or 'error' after `edit(run_dir)` on a copy of the valid run folder; any other exception fails."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        shutil.copytree(valid[0], run_dir)
        edit(run_dir)
        try:
            ckpt = checkpoint.load(run_dir)
            checkpoint.check(ckpt, run_dir, CFG, valid[1])
            ckpt.state.client_controls.get(1), ckpt.state.client_models.get(0)
        except FedmllmError as e:
            assert str(run_dir) in str(e)  # names the checkpoint or the client file
            return "error"
    return "ok"


@FUZZ
@given(key=st.sampled_from(checkpoint.KEYS + ("other",)), value=JSON)
def test_any_json_under_any_metadata_key_is_accepted_or_named(valid, key, value):
    load_and_check(valid, lambda run_dir: edit_meta(run_dir, **{key: value}))


@FUZZ
@given(at=st.floats(0, 1), size=st.integers(1, 16), payload=st.binary(min_size=1, max_size=16))
def test_any_overwritten_bytes_are_accepted_or_named(valid, at, size, payload):
    """Mostly in the JSON header (the first ~14 kB), where a flip changes structure, not values."""

    def edit(run_dir):
        path = run_dir / NAME
        data = bytearray(path.read_bytes())
        start = int(at * min(len(data), 16_000))
        data[start : start + size] = payload
        path.write_bytes(bytes(data))

    load_and_check(valid, edit)
