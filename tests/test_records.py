"""Updates on the wire: float32 exactly, 16-bit as rounded differences from the sent model."""

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from fedmllm.config import RunConfig
from fedmllm.engine.records import from_arrays, from_update, to_arrays, to_update
from fedmllm.errors import FedmllmError


def params(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"lora_A": torch.randn(256, 64, generator=g), "proj.bias": torch.randn(4096, generator=g)}


def test_float32_updates_travel_exactly():
    start, trained = params(0), params(1)
    back = from_update(to_update(trained, start, "float32"), start, "float32")
    assert all(torch.equal(back[n], trained[n]) for n in trained)


@pytest.mark.parametrize(("dtype", "mantissa_bits"), [("bfloat16", 8), ("float16", 11)])
def test_16_bit_updates_halve_the_bytes_and_round_only_the_difference(dtype, mantissa_bits):
    start = params(0)
    delta = {n: 1e-3 * t for n, t in params(1).items()}  # a typical update: small against the weights
    trained = {n: start[n] + delta[n] for n in start}
    full, half = to_update(trained, start, "float32"), to_update(trained, start, dtype)
    assert 0.5 * full.count_bytes() <= half.count_bytes() <= 0.51 * full.count_bytes()
    back = from_update(half, start, dtype)
    for n in trained:
        assert back[n].dtype == torch.float32
        error = (back[n] - trained[n]).abs()
        # relative to the update, not to the weights: rounding the weights would cost ~1e-3 of |w|
        assert (error <= delta[n].abs() * 2.0**-mantissa_bits + 1e-7).all()
        assert error.max() < 1e-5


def test_secagg_refuses_16_bit_updates():
    with pytest.raises(FedmllmError, match="update_dtype"):
        RunConfig(secagg=True, update_dtype="float16")


def odd_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return {
        "w": torch.randn(8, 3, generator=g),
        "transposed": torch.randn(3, 8, generator=g).t(),  # not contiguous
        "scalar": torch.tensor(1.5),
        "empty": torch.zeros(0, 4),
        "half": torch.randn(5, generator=g).half(),
        "bits": torch.randn(4, 2, generator=g).bfloat16().view(torch.int16),
        "steps": torch.arange(6, dtype=torch.int64).reshape(2, 3),
    }


def test_arrays_are_the_bytes_flower_writes_and_read_back_exactly():
    tensors = odd_tensors()
    ours, flowers = to_arrays(tensors), ArrayRecord(torch_state_dict=tensors)
    assert list(ours) == list(flowers)
    for name in tensors:
        assert (ours[name].dtype, ours[name].shape, ours[name].stype) == (
            flowers[name].dtype,
            flowers[name].shape,
            flowers[name].stype,
        )
        assert np.array_equal(ours[name].numpy(), flowers[name].numpy())  # Flower reads ours
        if tensors[name].is_contiguous():
            assert ours[name].data == flowers[name].data
    for record in (ours, flowers, to_arrays(tensors)):  # the second read of a layout takes the cached header
        back = from_arrays(record)
        for name, tensor in tensors.items():
            assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name
            back[name].add_(1)  # writable, and not the message's bytes (checked below)
    assert torch.equal(from_arrays(ours)["w"], tensors["w"])


def test_fortran_ordered_arrays_read_back_in_their_order():
    array = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    record = ArrayRecord(numpy_ndarrays=[array, array])  # np.save keeps the Fortran order
    for _ in range(2):
        assert torch.equal(from_arrays(record)["0"], torch.from_numpy(np.ascontiguousarray(array)))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not an array at all", "not in the .npy format"),
        (b"\x93NUMPY\x01\x00\x05\x00{bad}", "unreadable"),
    ],
)
def test_a_malformed_array_names_itself(data, message):
    record = ArrayRecord()
    record["lora_A"] = Array(dtype="float32", shape=(2,), stype="numpy.ndarray", data=data)
    with pytest.raises(FedmllmError, match=f"array 'lora_A': {message}"):
        from_arrays(record)


def test_a_truncated_array_is_refused_once_its_layout_is_known():
    good = to_arrays({"x": torch.ones(7, 5)})
    from_arrays(good)
    cut = ArrayRecord()
    cut["x"] = Array(dtype="float32", shape=(7, 5), stype="numpy.ndarray", data=good["x"].data[:-4])
    with pytest.raises(FedmllmError, match=r"array 'x': 136 data bytes for shape \(7, 5\) of float32"):
        from_arrays(cut)


def test_an_array_in_another_serialization_is_refused():
    record = ArrayRecord()
    record["x"] = Array(dtype="float32", shape=(1,), stype="pickle", data=b"\x00")
    with pytest.raises(FedmllmError, match="serialized as 'pickle'"):
        from_arrays(record)


def test_trailing_bytes_are_refused_on_the_first_read_of_a_layout_too():
    good = to_arrays({"y": torch.ones(11, 13)})  # a layout no other test reads
    longer = ArrayRecord()
    longer["y"] = Array(dtype="float32", shape=(11, 13), stype="numpy.ndarray", data=good["y"].data + b"\x00" * 4)
    for _ in range(2):  # uncached, then cached
        with pytest.raises(FedmllmError, match=r"array 'y': 576 data bytes for shape \(11, 13\) of float32"):
            from_arrays(longer)
