"""Replies are untrusted: every bad array is a FedmllmError naming it, without allocating what it claims."""

import re
import tracemalloc

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord

from fedmllm.engine import records
from fedmllm.engine.records import from_arrays, from_update, to_arrays, to_update
from fedmllm.errors import FedmllmError


def npy(header: str | bytes, data: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """.npy bytes around any header text, valid or not."""
    text = header.encode("latin1") if isinstance(header, str) else header
    field = 2 if version == (1, 0) else 4
    return b"\x93NUMPY" + bytes(version) + len(text).to_bytes(field, "little") + text + data


def dict_header(descr: object = "<f4", shape: object = (2, 3), fortran: object = False) -> str:
    return f"{{'descr': {descr!r}, 'fortran_order': {fortran!r}, 'shape': {shape!r}, }}\n"


def one(data: bytes, name: str = "lora_A") -> ArrayRecord:
    record = ArrayRecord()
    record[name] = Array(dtype="float32", shape=(2, 3), stype="numpy.ndarray", data=data)
    return record


SIX_FLOATS = bytes(24)  # what (2, 3) of float32 needs
HOSTILE = {
    # the frame around the header
    "bad magic": (b"\x93NUMPX\x01\x00\x76\x00" + bytes(200), "not in the .npy format"),
    "shorter than a header": (b"\x93NUMPY\x01", "not in the .npy format"),
    "unknown version": (b"\x93NUMPY\x04\x00\x10\x00" + bytes(40), "unreadable: .npy version 4.0"),
    "length field cut short": (b"\x93NUMPY\x02\x00\x05\x00", "truncated header: 5 bytes claimed, 0 present"),
    "length past the data": (b"\x93NUMPY\x01\x00\x76\x00{'descr'", "truncated header: 118 bytes claimed, 8 present"),
    "length of 4 GB": (b"\x93NUMPY\x02\x00\xff\xff\xff\xff" + bytes(64), "header of 4294967295 bytes, more than"),
    "valid dict padded past the bound": (
        npy(dict_header() + " " * 5000, SIX_FLOATS),
        "header of 5060 bytes, more than",
    ),
    # headers that are not the dict literal np.save writes
    "not a literal": (npy("{bad}"), "unreadable header"),
    "a call": (npy("__import__('os').system('true')"), "unreadable header"),
    "a list": (npy("[1, 2]"), "unreadable header b'[1, 2]': not a dict"),
    "deep nesting": (npy("[" * 1000), "unreadable header"),
    "a chain of minus signs": (npy("-" * 3000 + "1"), "unreadable header"),
    "a null byte": (npy("{'descr': '<f4'\x00}"), "unreadable header"),
    "not utf-8 (version 3)": (npy(b"{'\xff\xfe': 1}", version=(3, 0)), "unreadable header"),
    "a key missing": (npy("{'descr': '<f4', 'shape': (2, 3)}", SIX_FLOATS), "not a dict of descr"),
    "an extra key": (npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}"), "not a dict"),
    "fortran_order 1": (npy(dict_header(fortran=1), SIX_FLOATS), "fortran_order 1 is not True or False"),
    # shapes
    "shape (10**12,)": (npy(dict_header(shape=(10**12,)), bytes(16)), "16 data bytes for shape (1000000000000,)"),
    "shape past any array": (npy(dict_header(shape=(2**40, 2**40))), "is too large for any array"),
    "shape past any array, empty": (npy(dict_header(shape=(0, 2**62))), "is too large for any array"),
    "negative size": (npy(dict_header(shape=(-1,))), "shape (-1,) is not a tuple of at most 64 sizes >= 0"),
    "float size": (npy(dict_header(shape=(2.0,))), "shape (2.0,) is not a tuple"),
    "bool size": (npy(dict_header(shape=(True,))), "shape (True,) is not a tuple"),
    "shape as a list": (npy(dict_header(shape=[2, 3]), SIX_FLOATS), "shape [2, 3] is not a tuple"),
    "shape as a string": (npy(dict_header(shape="2")), "shape '2' is not a tuple"),
    "65 dimensions": (npy(dict_header(shape=(1,) * 65), bytes(4)), "is not a tuple of at most 64 sizes"),
    # the data behind a valid header
    "too few data bytes": (npy(dict_header(), bytes(20)), "20 data bytes for shape (2, 3) of float32"),
    "too many data bytes": (npy(dict_header(), bytes(28)), "28 data bytes for shape (2, 3) of float32"),
}
REFUSED_DTYPES = [
    ">f4",
    ">i8",
    ">f2",
    [("a", "<f4"), ("b", "<i4")],
    "<U10",
    "|S4",
    "<M8[ns]",
    "<m8[s]",
    "|O",
    "<c8",
    "<c16",
    "|V8",
    "<f16",
    ("<f4", (2,)),
    "(2,)<f4",
    "<f4,<f4",
    "float32",
    5,
    None,
]
ITEMSIZE = {">f2": 2, ">f4": 4, ">i8": 8, "<U10": 40, "|S4": 4, "<c8": 8, "<c16": 16, "|V8": 8, "<f16": 16, "|O": 8}
for descr in REFUSED_DTYPES:  # with the data bytes (2, 3) of it would take: only the dtype is wrong
    data = bytes(6 * ITEMSIZE.get(descr, 8) if isinstance(descr, str) else 48)
    HOSTILE[f"dtype {descr!r}"] = (npy(dict_header(descr=descr), data), f"dtype {descr!r} is not allowed")


@pytest.mark.parametrize(("data", "message"), list(HOSTILE.values()), ids=list(HOSTILE))
def test_every_hostile_array_is_refused_by_name(data, message):
    for _ in range(2):  # the second time, nothing of the first may have been cached as good
        with pytest.raises(FedmllmError, match="^array 'lora_A': ") as refused:
            from_arrays(one(data))
        assert message in str(refused.value)


def test_a_huge_shape_is_refused_without_allocating_it():
    data = npy(dict_header(shape=(10**12,)), bytes(16))  # 4 TB claimed, 16 bytes sent
    tracemalloc.start()
    try:
        for _ in range(2):  # parsed, then from the cache
            with pytest.raises(FedmllmError, match=r"array 'big': 16 data bytes for shape \(1000000000000,\)"):
                from_arrays(one(data, "big"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2**20, peak  # numpy reports its buffers to tracemalloc: np.load asked for 4 TB


def test_the_caches_stay_bounded_under_10000_distinct_shapes():
    for i in range(10_000):  # honest and empty: (i, 0) holds no data, so every shape costs nothing
        assert from_arrays(to_arrays({"z": torch.zeros(i, 0)}))["z"].shape == (i, 0)
    for i in range(10_000):  # hostile: valid headers claiming what never comes
        with pytest.raises(FedmllmError, match="data bytes"):
            from_arrays(one(npy(dict_header(shape=(10**12 + i,)), bytes(4))))
    assert len(records._LAYOUTS) == records.MAX_LAYOUTS == 1024
    assert len(records._HEADERS) == records.MAX_HEADERS == 1024


def test_the_caches_evict_the_least_recently_used(monkeypatch):
    monkeypatch.setattr(records, "MAX_LAYOUTS", 3)
    data = {k: to_arrays({k: torch.zeros(n, 7)})[k].data for k, n in zip("abcd", (101, 102, 103, 104), strict=True)}
    header = {k: d[:128] for k, d in data.items()}  # np.save pads these headers to 128 bytes
    for k in "abca":  # a is read again: now the most recently used, b the least
        from_arrays(one(data[k], k))
    from_arrays(one(data["d"], "d"))  # past the bound of 3: b goes
    assert list(records._LAYOUTS)[-3:] == [header["c"], header["a"], header["d"]]
    assert header["b"] not in records._LAYOUTS and len(records._LAYOUTS) == 3


def record_of(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    record = ArrayRecord()
    for name, array in arrays.items():
        record[name] = Array(array)
    return record


START = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}


@pytest.mark.parametrize(
    ("arrays", "dtype", "message"),
    [
        (
            {"a": np.zeros((2, 3), np.float32), "c": np.zeros(4, np.float32), "d": np.zeros(1, np.float32)},
            "float32",
            "the arrays do not match the model sent: missing ['b'], extra ['c', 'd']",
        ),
        (
            {"a": np.zeros((3, 2), np.float32), "b": np.zeros(4, np.float32)},
            "float32",
            "array 'a': shape (3, 2), but the model sent has (2, 3)",
        ),
        (
            {"a": np.zeros((2, 3), np.float32), "b": np.zeros(4, np.float64)},
            "float32",
            "array 'b': dtype float64, but this update travels as float32",
        ),
        (
            {"a": np.zeros((2, 3), np.float16), "b": np.zeros(4, np.float32)},
            "float16",
            "array 'b': dtype float32, but this update travels as float16",
        ),
        (  # the same 2 bytes an element: viewed as bfloat16 before, silently
            {"a": np.zeros((2, 3), np.float16), "b": np.zeros(4, np.int16)},
            "bfloat16",
            "array 'a': dtype float16, but this update travels as int16",
        ),
        ({"a": np.zeros((2, 3), np.float32), "b": np.zeros(4, np.float32)}, "int8", "update_dtype 'int8': not one"),
    ],
)
def test_a_reply_must_match_what_the_server_sent(arrays, dtype, message):
    with pytest.raises(FedmllmError, match=re.escape(message)):
        from_update(record_of(arrays), START, dtype)


def test_a_reply_that_is_not_an_array_record_is_refused():
    with pytest.raises(FedmllmError, match="arrays: a ConfigRecord, not an ArrayRecord"):
        from_update(ConfigRecord({"a": 1}), START, "float32")


def test_a_long_list_of_extra_names_is_cut():
    arrays = {"a": np.zeros((2, 3), np.float32), "b": np.zeros(4, np.float32)}
    arrays |= {f"x{i:04d}": np.zeros(1, np.float32) for i in range(1000)}
    with pytest.raises(FedmllmError, match=r"extra \['x0000', 'x0001', 'x0002', 'x0003', 'x0004', \.\.\. 995 more\]$"):
        from_update(record_of(arrays), START, "float32")


@pytest.mark.parametrize(
    ("trained", "dtype", "message"),
    [
        (
            {"a": torch.zeros(2, 3)},
            "float16",
            "the trained tensors do not match the model sent: missing ['b']",
        ),
        ({"a": torch.zeros(3, 2), "b": torch.zeros(4)}, "bfloat16", "tensor 'a': shape (3, 2), but the model sent has"),
        ({"a": torch.zeros(2, 3), "b": torch.zeros(4, dtype=torch.bfloat16)}, "float32", "tensor 'b': torch.bfloat16,"),
        ({"a": torch.zeros(2, 3), "b": [0.0] * 4}, "float32", "tensor 'b': list, but an update is made from float32"),
        ({"a": torch.zeros(2, 3), "b": torch.zeros(4)}, "fp8", "update_dtype 'fp8': not one of"),
    ],
)
def test_to_update_refuses_what_from_update_would(trained, dtype, message):
    with pytest.raises(FedmllmError, match=re.escape(message)):
        to_update(trained, START, dtype)


def test_tensors_numpy_cannot_hold_are_refused_by_name():
    with pytest.raises(FedmllmError, match=re.escape("tensor 'w': torch.bfloat16 cannot travel")):
        to_arrays({"w": torch.zeros(2, dtype=torch.bfloat16)})
    with pytest.raises(FedmllmError, match=re.escape("array 'w': dtype complex64 cannot travel")):
        to_arrays({"w": torch.zeros(2, dtype=torch.complex64)})


DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]
DTYPES += [torch.float16, torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(), (0,), (5,), (3, 4), (2, 3, 4)], ids=str)
def test_valid_records_are_flowers_own_bytes(dtype, shape):
    tensor = (torch.arange(int(np.prod(shape)), dtype=torch.float64).reshape(shape) * 1.25 - 3).to(dtype)
    ours, flowers = to_arrays({"t": tensor}), ArrayRecord(torch_state_dict={"t": tensor})
    assert ours["t"].data == flowers["t"].data
    for record in (ours, flowers):
        back = from_arrays(record)["t"]
        assert back.dtype == dtype and back.shape == shape and torch.equal(back, tensor)


@pytest.mark.parametrize("shape", [(3, 8), (2, 3, 4)], ids=str)
def test_fortran_ordered_records_still_read_as_flower_reads_them(shape):
    g = torch.Generator().manual_seed(3)
    tensor = torch.randn(shape[::-1], generator=g).permute(*reversed(range(len(shape))))  # Fortran-ordered
    assert tensor.numpy().flags.f_contiguous and not tensor.is_contiguous()
    flowers = ArrayRecord(torch_state_dict={"t": tensor})  # np.save keeps the Fortran order
    assert b"'fortran_order': True" in flowers["t"].data
    for record in (flowers, flowers, to_arrays({"t": tensor})):  # uncached, cached, ours (C-ordered)
        back = from_arrays(record)["t"]
        assert torch.equal(back, tensor) and torch.equal(back, flowers.to_torch_state_dict()["t"])
        assert np.array_equal(record["t"].numpy(), tensor.numpy())  # and Flower reads ours


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_valid_updates_read_back_bitwise_as_flowers_reader_gives(dtype):
    g = torch.Generator().manual_seed(4)
    start = {"a": torch.randn(8, 64, generator=g), "s": torch.tensor(0.5)}
    trained = {"a": start["a"] + 1e-3 * torch.randn(8, 64, generator=g), "s": torch.tensor(2.0)}
    sent = to_update(trained, start, dtype)
    got = from_update(sent, start, dtype)
    flowers = sent.to_torch_state_dict()  # Flower's own np.load, then the same arithmetic
    if dtype == "bfloat16":
        flowers = {n: t.view(torch.bfloat16) for n, t in flowers.items()}
    want = flowers if dtype == "float32" else {n: start[n] + flowers[n].float() for n in start}
    assert all(got[n].dtype == torch.float32 and torch.equal(got[n], want[n]) for n in start)
    assert got["s"].item() == 2.0  # 0.5 + 1.5: exact in every wire dtype
