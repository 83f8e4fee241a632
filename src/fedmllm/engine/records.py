"""Conversions between fedmllm values and Flower records, in one place."""

from __future__ import annotations

import io
import math
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
_HEADERS: dict[tuple[str, tuple[int, ...]], bytes] = {}
_LAYOUTS: dict[bytes, tuple[np.dtype, tuple[int, ...], bool]] = {}
MAX_LAYOUTS = 4096  # headers arrive from clients: past this many, new layouts are not remembered


def npy_bytes(array: np.ndarray) -> bytes:
    """`np.save(array)`'s bytes for a C-ordered array (a Fortran-ordered one is written C-ordered)."""
    if not array.flags.c_contiguous:
        array = array.copy(order="C")  # not np.ascontiguousarray, which makes a 0-d array 1-d
    key = (array.dtype.str, array.shape)
    if key not in _HEADERS:
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, np.lib.format.header_data_from_array_1_0(array))
        _HEADERS[key] = buffer.getvalue()  # the magic string, version 1.0 and the header
    return _HEADERS[key] + array.tobytes()


def npy_array(data: bytes, name: str) -> np.ndarray:
    """The (writable) array in `np.save` bytes. The first array of each layout is read by np.load,
    which checks the header; every array is then read straight from the bytes behind it."""
    if data[:6] != b"\x93NUMPY" or len(data) < 10:
        raise FedmllmError(f"array {name!r}: not in the .npy format")
    size = 2 if data[6] == 1 else 4  # the header's length field: uint16 in version 1, uint32 in 2 and 3
    offset = 8 + size + int.from_bytes(data[8 : 8 + size], "little")
    header = data[:offset]
    layout = _LAYOUTS.get(header)
    if layout is None:
        try:
            checked = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as e:  # a bad header, too few bytes, Python objects
            raise FedmllmError(f"array {name!r}: unreadable ({e})") from None
        layout = (checked.dtype, checked.shape, not checked.flags.c_contiguous)
        if len(_LAYOUTS) < MAX_LAYOUTS:
            _LAYOUTS[header] = layout
    dtype, shape, fortran = layout
    count = math.prod(shape)
    if len(data) - offset != count * dtype.itemsize:  # np.load would take trailing bytes: not here
        raise FedmllmError(f"array {name!r}: {len(data) - offset} data bytes for shape {shape} of {dtype}")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    array = flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)
    return array.copy()  # frombuffer shares the message's read-only bytes; copy() keeps the order


def to_arrays(params: dict[str, torch.Tensor]) -> ArrayRecord:
    """The same record as `ArrayRecord(torch_state_dict=params)`, made faster (above)."""
    record = ArrayRecord()
    for name, tensor in params.items():
        array = tensor.detach().cpu().numpy()
        record[name] = Array(dtype=str(array.dtype), shape=tuple(array.shape), stype=SType.NUMPY, data=npy_bytes(array))
    return record


def from_arrays(record: ArrayRecord) -> dict[str, torch.Tensor]:
    """What `record.to_torch_state_dict()` returns, read faster (above)."""
    out = {}
    for name, array in record.items():
        if array.stype != SType.NUMPY:
            raise FedmllmError(f"array {name!r}: serialized as {array.stype!r}, not {SType.NUMPY!r}")
        out[name] = torch.from_numpy(npy_array(array.data, name))
    return out


WIRE_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def to_update(trained: dict[str, torch.Tensor], start: dict[str, torch.Tensor], dtype: str) -> ArrayRecord:
    """A client's update for the wire: the trained tensors (float32), or in 16 bits their
    difference from `start` (rounding the small difference, not the weights, keeps the error far
    below the update itself). bfloat16 travels as its raw bits: numpy, under ArrayRecord, has none."""
    if dtype == "float32":
        return to_arrays(trained)
    deltas = {n: (trained[n] - start[n]).to(WIRE_DTYPES[dtype]) for n in trained}
    if dtype == "bfloat16":
        deltas = {n: t.view(torch.int16) for n, t in deltas.items()}
    return to_arrays(deltas)


def from_update(record: ArrayRecord, start: dict[str, torch.Tensor], dtype: str) -> dict[str, torch.Tensor]:
    """The trained tensors, in float32, from what `to_update` sent."""
    received = from_arrays(record)
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
