"""Conversions between fedmllm values and Flower records, in one place.

Every record a client sends is untrusted input: a reply is read only after its .npy headers,
names, shapes and dtypes are checked, and any fault is a FedmllmError naming the array."""

from __future__ import annotations

import ast
import io
import math
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord
from flwr.common.constant import SType

from fedmllm.config import TYPES, RunConfig, from_dict
from fedmllm.errors import FedmllmError

# Flower's ArrayRecord stores each tensor as the bytes `np.save` writes, and builds and parses
# them with np.save / np.load: ~15 us out and ~23 us back per tensor, mostly the .npy header.
# A LoRA adapter has 36 (tiny) to ~1000 (all linear layers of a 7B model) tensors, and every round
# converts them 4 times per client. The same bytes are made here with a header cached per dtype and
# shape (~5 us) and read with np.frombuffer behind a header parsed once (~3 us); docs/performance.md.
# Headers arrive from clients, so both caches are LRU with a bound: a stream of distinct hostile
# headers costs parsing time, never memory (the longest header kept is MAX_HEADER bytes).
# where the data starts, dtype, shape, Fortran order, element count, data bytes
Layout = tuple[int, np.dtype, tuple[int, ...], bool, int, int]
_HEADERS: OrderedDict[tuple[str, tuple[int, ...]], bytes] = OrderedDict()
_LAYOUTS: OrderedDict[bytes, Layout] = OrderedDict()
MAX_HEADERS = 1024  # a model has a few dozen distinct (dtype, shape) pairs
MAX_LAYOUTS = 1024

_MAGIC = b"\x93NUMPY"
_LENGTH_FIELD = {b"\x01\x00": 2, b"\x02\x00": 4, b"\x03\x00": 4}  # .npy version -> bytes of the header length
# np.save's header for any allowed array is under 1.6 KB (64 dims of <= 20 digits); np.load's own
# bound is 10000. A longer one is refused before it is decoded, parsed or kept as a cache key.
MAX_HEADER = 4096
MAX_DIMS = 64  # numpy's own limit
MAX_BYTES = 2**63 - 1  # numpy cannot shape past this, even with no elements
# What a tensor update can hold, spelled as np.save writes it (little-endian or byte-order-free):
# anything else (big-endian, structured, strings, dates, objects, complex, void) is refused.
_ALLOWED = "bool, (u)int8-64 or float16/32/64, little-endian"
_DTYPES = {d: np.dtype(d) for d in ("|b1", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "<f2", "<f4", "<f8")}


def _short(value: object, limit: int = 80) -> str:
    """`repr(value)`, cut: names and headers come from clients and may be megabytes long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fault(name: str, problem: str) -> FedmllmError:
    return FedmllmError(f"array {_short(name)}: {problem}")


# No lock (it cost ~8% of a read): each step below is one OrderedDict call, atomic under the GIL,
# and a key evicted by another thread between two of them is only a miss, parsed again.
def _recall(cache: OrderedDict, key: Any) -> Any:
    """The cached value for `key`, now the most recently used, or None."""
    try:
        cache.move_to_end(key)
    except KeyError:  # a miss: the caller parses and remembers
        return None
    return cache.get(key)


def _remember(cache: OrderedDict, key: Any, value: Any, bound: int) -> None:
    cache[key] = value
    while len(cache) > bound:  # past the bound, the least recently used go
        cache.popitem(last=False)


def npy_bytes(array: np.ndarray, name: str = "") -> bytes:
    """`np.save(array)`'s bytes for a C-ordered array (a Fortran-ordered one is written C-ordered);
    only of a dtype npy_array reads (checked once per header, when it is made)."""
    if not array.flags.c_contiguous:
        array = array.copy(order="C")  # not np.ascontiguousarray, which makes a 0-d array 1-d
    key = (array.dtype.str, array.shape)
    header = _recall(_HEADERS, key)
    if header is None:
        if key[0] not in _DTYPES:
            raise _fault(name, f"dtype {array.dtype} cannot travel in an update ({_ALLOWED})")
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, np.lib.format.header_data_from_array_1_0(array))
        header = buffer.getvalue()  # the magic string, version 1.0 and the header
        _remember(_HEADERS, key, header, MAX_HEADERS)
    return header + array.tobytes()


def npy_array(data: bytes, name: str, expect: tuple[np.dtype, tuple[int, ...]] | None = None) -> np.ndarray:
    """The (writable) array in `np.save` bytes, of `expect`'s dtype and shape when given. The header
    of each layout is checked once (never by np.load, which would allocate what it claims first);
    every array is then read straight from the bytes behind it, once their length is right."""
    offset, dtype, shape, fortran, count, nbytes = _layout(data, name)
    if expect is not None and (shape != expect[1] or dtype != expect[0]):
        raise _fault(name, _mismatch(dtype, shape, expect))
    if len(data) - offset != nbytes:  # np.load would take trailing bytes: not here
        raise _fault(name, f"{len(data) - offset} data bytes for shape {shape} of {dtype}")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    array = flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)
    return array.copy()  # frombuffer shares the message's read-only bytes


def _mismatch(dtype: np.dtype, shape: tuple[int, ...], expect: tuple[np.dtype, tuple[int, ...]]) -> str:
    if shape != expect[1]:
        return f"shape {shape}, but the model sent has {tuple(expect[1])}"
    return f"dtype {dtype}, but this update travels as {expect[0]}"


def _layout(data: bytes, name: str) -> Layout:
    """The layout of the array in `data`, cached by its header's bytes, which are checked first."""
    if not isinstance(data, bytes) or len(data) < 10 or data[:6] != _MAGIC:
        raise _fault(name, "not in the .npy format")
    field = _LENGTH_FIELD.get(data[6:8])
    if field is None:
        raise _fault(name, f"unreadable: .npy version {data[6]}.{data[7]}, not 1.0, 2.0 or 3.0")
    length = int.from_bytes(data[8 : 8 + field], "little")
    if length > MAX_HEADER:
        raise _fault(name, f"header of {length} bytes, more than the {MAX_HEADER} allowed")
    offset = 8 + field + length
    if offset > len(data):  # also when the length field itself is cut short
        raise _fault(name, f"truncated header: {length} bytes claimed, {max(len(data) - 8 - field, 0)} present")
    header = data[:offset]
    layout = _recall(_LAYOUTS, header)
    if layout is None:
        layout = (offset, *_parse_header(data[8 + field : offset], data[6] == 3, name))
        _remember(_LAYOUTS, header, layout, MAX_LAYOUTS)
    return layout


def _parse_header(text: bytes, utf8: bool, name: str) -> tuple[np.dtype, tuple[int, ...], bool, int, int]:
    """The layout in a .npy header: a dict literal of exactly 'descr', 'fortran_order' and 'shape'."""
    try:  # bounded by MAX_HEADER; the parser refuses deep nesting with a SyntaxError
        fields = ast.literal_eval(text.decode("utf-8" if utf8 else "latin1"))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise _fault(name, f"unreadable header {_short(text)} ({type(e).__name__})") from None
    if not isinstance(fields, dict) or fields.keys() != {"descr", "fortran_order", "shape"}:
        raise _fault(name, f"unreadable header {_short(text)}: not a dict of descr, fortran_order and shape")
    descr, fortran, shape = fields["descr"], fields["fortran_order"], fields["shape"]
    dtype = _DTYPES.get(descr) if isinstance(descr, str) else None
    if dtype is None:
        raise _fault(name, f"dtype {_short(descr)} is not allowed in an update ({_ALLOWED})")
    if type(fortran) is not bool:
        raise _fault(name, f"fortran_order {_short(fortran)} is not True or False")
    if type(shape) is not tuple or len(shape) > MAX_DIMS or not all(type(n) is int and n >= 0 for n in shape):
        raise _fault(name, f"shape {_short(shape)} is not a tuple of at most {MAX_DIMS} sizes >= 0")
    if math.prod(max(n, 1) for n in shape) * dtype.itemsize > MAX_BYTES:  # even with a 0 among them
        raise _fault(name, f"shape {_short(shape)} of {dtype} is too large for any array")
    count = math.prod(shape)
    return dtype, shape, fortran, count, count * dtype.itemsize


def to_arrays(params: dict[str, torch.Tensor]) -> ArrayRecord:
    """The same record as `ArrayRecord(torch_state_dict=params)`, made faster (above)."""
    record = ArrayRecord()
    for name, tensor in params.items():
        try:
            array = tensor.detach().cpu().numpy()
        except TypeError:  # bfloat16 has no numpy dtype (to_update sends its bits as int16)
            raise FedmllmError(f"tensor {_short(name)}: {tensor.dtype} cannot travel in an ArrayRecord") from None
        data = npy_bytes(array, name)
        record[name] = Array(dtype=str(array.dtype), shape=tuple(array.shape), stype=SType.NUMPY, data=data)
    return record


def from_arrays(
    record: ArrayRecord, expect: dict[str, tuple[np.dtype, tuple[int, ...]]] | None = None
) -> dict[str, torch.Tensor]:
    """What `record.to_torch_state_dict()` returns, read faster (above); with `expect`, the record
    holds exactly its names, each of the dtype and shape given for it."""
    if not isinstance(record, ArrayRecord):
        raise FedmllmError(f"arrays: a {type(record).__name__}, not an ArrayRecord")
    if expect is not None:
        _check_names(record.keys(), expect.keys(), "the arrays")
    out = {}
    for name, array in record.items():
        if array.stype != SType.NUMPY:
            raise _fault(name, f"serialized as {_short(array.stype)}, not {SType.NUMPY!r}")
        out[name] = torch.from_numpy(npy_array(array.data, name, None if expect is None else expect[name]))
    return out


WIRE_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
# What each update_dtype's arrays are on the wire: bfloat16 travels as its raw int16 bits.
WIRE_ARRAYS = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"), "bfloat16": np.dtype("<i2")}


def to_update(trained: dict[str, torch.Tensor], start: dict[str, torch.Tensor], dtype: str) -> ArrayRecord:
    """A client's update for the wire: the trained tensors (float32), or in 16 bits their
    difference from `start` (rounding the small difference, not the weights, keeps the error far
    below the update itself). bfloat16 travels as its raw bits: numpy, under ArrayRecord, has none."""
    _check_update(trained, start, dtype)
    if dtype == "float32":
        return to_arrays(trained)
    deltas = {n: (trained[n] - start[n]).to(WIRE_DTYPES[dtype]) for n in trained}
    if dtype == "bfloat16":
        deltas = {n: t.view(torch.int16) for n, t in deltas.items()}
    return to_arrays(deltas)


def _check_update(trained: dict[str, torch.Tensor], start: dict[str, torch.Tensor], dtype: str) -> None:
    """The trained tensors are float32 copies of `start`'s names and shapes: what from_update expects."""
    if dtype not in WIRE_ARRAYS:
        raise FedmllmError(f"update_dtype {_short(dtype)}: not one of {list(WIRE_ARRAYS)}")
    _check_names(trained.keys(), start.keys(), "the trained tensors")
    for name, tensor in trained.items():
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.float32:
            kind = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise FedmllmError(f"tensor {_short(name)}: {kind}, but an update is made from float32 tensors")
        if tensor.shape != start[name].shape:
            shapes = f"{tuple(tensor.shape)}, but the model sent has {tuple(start[name].shape)}"
            raise FedmllmError(f"tensor {_short(name)}: shape {shapes}")


def _check_names(got: Any, sent: Any, what: str) -> None:
    if got != sent:  # dict key views compare as sets
        missing, extra = sorted(sent - got), sorted(got - sent)
        raise FedmllmError(f"{what} do not match the model sent: missing {_names(missing)}, extra {_names(extra)}")


def _names(names: list[str]) -> str:
    shown = ", ".join(_short(n, 60) for n in names[:5])
    return f"[{shown}{f', ... {len(names) - 5} more' if len(names) > 5 else ''}]"


def from_update(record: ArrayRecord, start: dict[str, torch.Tensor], dtype: str) -> dict[str, torch.Tensor]:
    """The trained tensors, in float32, from what `to_update` sent, checked against what the server
    sent: exactly `start`'s names, each of its shape and of the update's wire dtype."""
    if dtype not in WIRE_ARRAYS:
        raise FedmllmError(f"update_dtype {_short(dtype)}: not one of {list(WIRE_ARRAYS)}")
    wire = WIRE_ARRAYS[dtype]
    received = from_arrays(record, {n: (wire, t.shape) for n, t in start.items()})
    if dtype == "float32":
        return received
    if dtype == "bfloat16":
        received = {n: t.view(torch.bfloat16) for n, t in received.items()}
    return {n: start[n] + received[n].to(start[n].dtype) for n in received}


def to_config(values: dict[str, Any]) -> ConfigRecord:
    return ConfigRecord(dict(values))


def run_config(record: ConfigRecord | dict[str, Any], source: str) -> RunConfig:
    """The RunConfig inside a record or a Flower run config; other keys (shard_dir) are skipped."""
    return from_dict({k: v for k, v in dict(record).items() if k.replace("-", "_") in TYPES}, source)
