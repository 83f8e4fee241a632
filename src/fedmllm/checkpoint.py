"""The run's checkpoint: every server-side tensor in one safetensors file, everything else in its
JSON metadata, replaced atomically after each round.

One file, written to a temporary name, flushed to disk and renamed over the previous one, so a
kill at any instant leaves either the old or the new checkpoint, never half of one. Only
safetensors and JSON are read back: nothing from a run folder is ever unpickled.

A run folder may have been edited by anyone, so reading trusts nothing in it: `load` checks the
metadata against a fixed schema and every tensor key against the kinds `save` writes, and builds
the state from fixed attribute names only. `check` then holds the checkpoint against the run's
config and the model's tensors. Neither touches torch's RNG: `restore_rng` does, once the model
(whose LoRA initialisation draws from it) has loaded.
"""

from __future__ import annotations

import json
import os
import random
import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from fedmllm.errors import FedmllmError
from fedmllm.fl.rules import Params
from fedmllm.fl.state import ClientStore, ServerState, mismatch, not_finite, shapes

NAME = "checkpoint.safetensors"
CLIENT_FOLDER = "client_state"  # per-client files of the run's ClientStores, next to the checkpoint
FORMAT = 1
KEYS = ("format", "round", "sampler", "zero_shot", "alive", "config", "extra", "client_state")  # all required
STORES = ("client_controls", "client_models")  # the ServerState fields a ClientStore fills
BUFFERS = ("momentum", "m", "v")  # the state names the rules of fl/rules.py keep
RNG = "rng/torch"
PARTITION = re.compile(r"0|[1-9][0-9]{0,17}")  # canonical decimal: "03" and "3" are not two clients


@dataclass
class Checkpoint:
    state: ServerState
    zero_shot: dict[str, float]
    alive: list[int]  # partitions still reachable
    config: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    rng: torch.Tensor | None = None  # torch's CPU RNG state as saved (`save` writes the current one)


def flatten(state: ServerState) -> dict[str, torch.Tensor]:
    """'kind/name' keys ('buffers/<buffer>/<name>', 'client_models/<k>/<name>', ...)."""
    out = {f"global/{n}": t for n, t in state.global_params.items()}
    out |= {f"control/{n}": t for n, t in state.control.items()}
    for buffer, params in state.buffers.items():
        out |= {f"buffers/{buffer}/{n}": t for n, t in params.items()}
    for store in state.stores():  # in-memory stores only: a folder's files are referenced by version
        for k, params in store.memory.items():
            out |= {f"{store.kind}/{k}/{n}": t for n, t in params.items()}
    return {k: t.detach().to("cpu").contiguous().clone() for k, t in out.items()}


def save(run_dir: Path, ckpt: Checkpoint) -> None:
    """Atomically replace `run_dir/checkpoint.safetensors`."""
    meta = {
        "format": FORMAT,
        "round": ckpt.state.round,
        "sampler": sampler_state(ckpt.state.sampler),
        "zero_shot": ckpt.zero_shot,
        "alive": ckpt.alive,
        "config": ckpt.config,
        "extra": ckpt.extra,
        "client_state": {s.kind: s.versions for s in ckpt.state.stores() if s.folder is not None},
    }
    path = run_dir / NAME
    tmp = path.with_name(NAME + ".tmp")
    tensors = flatten(ckpt.state) | {RNG: torch.get_rng_state()}
    save_file(tensors, str(tmp), metadata={"fedmllm": json.dumps(meta)})
    with tmp.open("rb") as f:
        os.fsync(f.fileno())  # the bytes are on disk before the name points at them
    publish(tmp, path)
    for store in ckpt.state.stores():  # the files of superseded versions are no longer needed
        store.prune()


def publish(tmp: Path, path: Path) -> None:
    """Point `path` at the complete, fsynced `tmp`: the one instant the run's checkpoint changes.
    Before it, a reader (or a resume after a kill) sees the previous checkpoint whole."""
    tmp.replace(path)


def sampler_state(sampler: random.Random) -> list[Any]:
    version, internal, gauss = sampler.getstate()
    return [version, list(internal), gauss]


# ---------------------------------------------------------------- reading


def load(run_dir: Path) -> Checkpoint:
    """The checkpoint of `run_dir`, schema-checked; torch's RNG is left alone (see `restore_rng`)."""
    path = run_dir / NAME
    if not path.is_file():
        raise FedmllmError(f"{run_dir}: no {NAME} (the run did not finish a round, or it is not a run folder)")
    tensors, meta = read(path)
    state = ServerState(global_params={}, round=meta["round"], sampler=meta["sampler"])
    for kind, versions in meta["client_state"].items():
        store = ClientStore(kind, run_dir / CLIENT_FOLDER, versions)
        if kind == "client_controls":  # fixed names, never one taken from the file
            state.client_controls = store
        else:
            state.client_models = store
    rng = tensors.pop(RNG, None)
    if rng is None:
        raise FedmllmError(f"{path}: tensor {RNG!r} is missing")
    check_rng(path, rng)
    for key, tensor in tensors.items():
        place(path, key, tensor, state)
    return Checkpoint(state, meta["zero_shot"], meta["alive"], meta["config"], meta["extra"], rng)


def restore_rng(ckpt: Checkpoint) -> None:
    """Set torch's RNG to the checkpoint's: after the model has loaded, as in the run that saved it."""
    if ckpt.rng is None:
        raise FedmllmError("the checkpoint holds no RNG state (it was not read from a file)")
    torch.set_rng_state(ckpt.rng)


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            raw = (f.metadata() or {}).get("fedmllm")
    except (SafetensorError, OSError) as e:
        raise FedmllmError(f"{path}: unreadable checkpoint ({e})") from None
    if raw is None:
        raise FedmllmError(f"{path}: unreadable checkpoint (no 'fedmllm' metadata: not a fedmllm checkpoint)")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as e:  # RecursionError: "[[[[..." nested beyond the parser
        raise FedmllmError(f"{path}: unreadable checkpoint (metadata is not JSON: {str(e)[:200]})") from None
    return tensors, parse_meta(path, meta)


SHORT = reprlib.Repr()  # keyword arguments only from Python 3.12
SHORT.maxlevel, SHORT.maxstring, SHORT.maxother, SHORT.maxlist, SHORT.maxdict = 3, 60, 60, 8, 4


def show(value: Any) -> str:
    """A value from the file, cut short: it may be megabytes, or lists in lists 900 deep."""
    return SHORT.repr(value)


def bad(path: Path, key: str, what: str) -> FedmllmError:
    return FedmllmError(f"{path}: metadata key {key!r}: {what}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no round number


def parse_meta(path: Path, meta: Any) -> dict[str, Any]:
    """The metadata with every key checked against the schema (sampler as a random.Random,
    client_state with int partitions)."""
    if not isinstance(meta, dict):
        raise FedmllmError(f"{path}: metadata is {type(meta).__name__}, not a JSON object")
    if "format" in meta and (not is_int(meta["format"]) or meta["format"] != FORMAT):  # first: other keys
        raise bad(path, "format", f"checkpoint format {show(meta['format'])}, this fedmllm reads {FORMAT}")
    unknown = sorted(k for k in meta if k not in KEYS)
    if unknown:
        raise bad(path, unknown[0][:80], "unknown key")
    for key in KEYS:
        if key not in meta:
            raise bad(path, key, "missing")
    if not is_int(meta["round"]) or meta["round"] < 0:
        raise bad(path, "round", f"{show(meta['round'])} is not a round number (an int >= 0)")
    return {"format": FORMAT, "round": meta["round"]} | {
        key: parse(path, meta[key], meta["round"]) for key, parse in PARSERS.items()
    }


def parse_sampler(path: Path, value: Any, _round: int) -> random.Random:
    ok = (
        isinstance(value, list)
        and len(value) == 3
        and is_int(value[0])
        and isinstance(value[1], list)
        and all(is_int(x) and 0 <= x < 2**32 for x in value[1])  # random would cut bigger words silently
        and (value[2] is None or isinstance(value[2], float))
    )
    if not ok:
        raise bad(path, "sampler", f"{show(value)} is not [int version, list of 32-bit words, None or float]")
    sampler = random.Random()
    try:
        sampler.setstate((value[0], tuple(value[1]), value[2]))
    except (ValueError, TypeError, OverflowError) as e:
        raise bad(path, "sampler", f"not a state of Python's random ({e})") from None
    return sampler


def parse_zero_shot(path: Path, value: Any, _round: int) -> dict[str, float]:
    if not isinstance(value, dict):
        raise bad(path, "zero_shot", f"{show(value)} is not an object of metrics")
    for k, v in value.items():
        if not isinstance(v, float) and not is_int(v):  # JSON writes 1.0 as 1.0, but a metric may be int
            raise bad(path, "zero_shot", f"metric {show(k)} is {show(v)}, not a number")
    return {k: float(v) for k, v in value.items()}


def parse_alive(path: Path, value: Any, _round: int) -> list[int]:
    if not isinstance(value, list) or not all(is_int(x) and x >= 0 for x in value):
        raise bad(path, "alive", f"{show(value)} is not a list of partition ids (ints >= 0)")
    if len(set(value)) != len(value):
        raise bad(path, "alive", f"{show(value)} repeats a partition")
    return list(value)


def parse_object(key: str) -> Callable[[Path, Any, int], dict[str, Any]]:
    def parse(path: Path, value: Any, _round: int) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise bad(path, key, f"{show(value)} is not a JSON object")
        return value

    return parse


def parse_client_state(path: Path, value: Any, rnd: int) -> dict[str, dict[int, int]]:
    """{store: {"<partition>": version}}, the version being the round that wrote the file."""
    if not isinstance(value, dict):
        raise bad(path, "client_state", f"{show(value)} is not a JSON object")
    out: dict[str, dict[int, int]] = {}
    for kind, versions in value.items():
        if kind not in STORES:
            raise bad(path, "client_state", f"unknown store {show(kind)} (known: {', '.join(STORES)})")
        if not isinstance(versions, dict):
            raise bad(path, "client_state", f"{kind}: {show(versions)} is not an object of versions")
        out[kind] = {}
        for k, v in versions.items():
            if not PARTITION.fullmatch(k):
                raise bad(path, "client_state", f"{kind}: {show(k)} is not a partition id")
            if not is_int(v) or not 0 < v <= rnd:
                raise bad(path, "client_state", f"{kind}[{k}]: version {show(v)} is not a round in 1..{rnd}")
            out[kind][int(k)] = v
    return out


PARSERS: dict[str, Callable[[Path, Any, int], Any]] = {  # the KEYS after format and round
    "sampler": parse_sampler,
    "zero_shot": parse_zero_shot,
    "alive": parse_alive,
    "config": parse_object("config"),
    "extra": parse_object("extra"),
    "client_state": parse_client_state,
}


def check_rng(path: Path, rng: torch.Tensor) -> None:
    if rng.dtype != torch.uint8 or rng.dim() != 1:
        raise FedmllmError(f"{path}: tensor {RNG!r} is {rng.dtype} of shape {tuple(rng.shape)}, not 1-d uint8")
    try:
        torch.Generator().set_state(rng)  # a scratch generator: torch's own is restored later
    except RuntimeError as e:
        raise FedmllmError(f"{path}: tensor {RNG!r} is not a torch RNG state ({str(e)[:200]})") from None


def place(path: Path, key: str, tensor: torch.Tensor, state: ServerState) -> None:
    """Put one tensor where its key says, for the key forms `flatten` writes only."""
    kind, _, rest = key.partition("/")
    if kind in ("global", "control") and rest:
        (state.global_params if kind == "global" else state.control)[rest] = tensor
        return
    group, _, name = rest.partition("/")
    if kind == "buffers" and name:
        if group not in BUFFERS:
            raise FedmllmError(
                f"{path}: tensor {show(key)}: unknown buffer {show(group)} (known: {', '.join(BUFFERS)})"
            )
        state.buffers.setdefault(group, {})[name] = tensor
        return
    if kind in STORES and name and PARTITION.fullmatch(group):
        store = state.client_controls if kind == "client_controls" else state.client_models
        if store.folder is not None:
            raise FedmllmError(f"{path}: tensor {show(key)}: {kind} are kept in files (metadata 'client_state')")
        store.memory.setdefault(int(group), {})[name] = tensor
        return
    raise FedmllmError(
        f"{path}: tensor {show(key)}: not one of global/<name>, control/<name>, buffers/<buffer>/<name>, "
        f"client_controls/<partition>/<name>, client_models/<partition>/<name>, {RNG}"
    )


# ---------------------------------------------------------------- against the run


def check(ckpt: Checkpoint, run_dir: Path, cfg: Mapping[str, Any], initial: Params) -> None:
    """Hold a loaded checkpoint against the run's config (`rounds`, `num_clients`) and the model's
    trainable tensors `initial`: every tensor set has their names and shapes, and is finite.
    Also arms both stores to check each client file they read (`ClientStore.expected`)."""
    path = run_dir / NAME
    state, expected = ckpt.state, shapes(initial)
    if state.round > cfg["rounds"]:
        raise bad(path, "round", f"{show(state.round)} is beyond the run's rounds={cfg['rounds']}")
    clients = range(cfg["num_clients"])
    outside = [k for k in ckpt.alive if k not in clients]
    if outside:
        raise bad(path, "alive", f"partition {outside[0]} is not in 0..{cfg['num_clients'] - 1}")
    tensor_sets = {"global": state.global_params, "control": state.control}
    tensor_sets |= {f"buffers/{b}": params for b, params in state.buffers.items()}
    for store in state.stores():
        outside = [k for k in [*store.versions, *store.memory] if k not in clients]
        if outside:
            where = "metadata key 'client_state'" if outside[0] in store.versions else "tensors"
            raise FedmllmError(
                f"{path}: {where}: {store.kind} of partition {outside[0]}, not in 0..{cfg['num_clients'] - 1}"
            )
        tensor_sets |= {f"{store.kind}/{k}": params for k, params in store.memory.items()}
    for group, params in tensor_sets.items():
        problem = mismatch(shapes(params), expected, f"{group}/")
        if problem:
            raise FedmllmError(f"{path}: tensor set {group!r} {problem}, against the model's trainable tensors")
        problem = not_finite(params, f"{group}/")
        if problem:
            raise FedmllmError(f"{path}: tensor set {group!r} {problem}")
    for store in state.stores():
        store.expected = expected
        for k in store.versions:
            store.check_file(k)
