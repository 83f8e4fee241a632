"""The run's checkpoint: every server-side tensor in one safetensors file, everything else in its
JSON metadata, replaced atomically after each round.

One file, written to a temporary name, flushed to disk and renamed over the previous one, so a
kill at any instant leaves either the old or the new checkpoint, never half of one. Only
safetensors and JSON are read back: nothing from a run folder is ever unpickled.
"""

from __future__ import annotations

import json
import os
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from fedmllm.errors import FedmllmError
from fedmllm.fl.state import ClientStore, ServerState

NAME = "checkpoint.safetensors"
CLIENT_FOLDER = "client_state"  # per-client files of the run's ClientStores, next to the checkpoint
FORMAT = 1


@dataclass
class Checkpoint:
    state: ServerState
    zero_shot: dict[str, float]
    alive: list[int]  # partitions still reachable
    config: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


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


def unflatten(tensors: dict[str, torch.Tensor], state: ServerState) -> None:
    for key, tensor in tensors.items():
        kind, rest = key.split("/", 1)
        if kind == "global":
            state.global_params[rest] = tensor
        elif kind == "control":
            state.control[rest] = tensor
        else:
            group, name = rest.split("/", 1)
            if kind == "buffers":
                state.buffers.setdefault(group, {})[name] = tensor
            else:
                getattr(state, kind).memory.setdefault(int(group), {})[name] = tensor


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
    tensors = flatten(ckpt.state) | {"rng/torch": torch.get_rng_state()}
    save_file(tensors, str(tmp), metadata={"fedmllm": json.dumps(meta)})
    with tmp.open("rb") as f:
        os.fsync(f.fileno())  # the bytes are on disk before the name points at them
    if os.environ.get("FEDMLLM_TEST_KILL_IN_CHECKPOINT") == str(ckpt.state.round):  # tests: die mid-write
        os.kill(os.getpid(), signal.SIGKILL)
    tmp.replace(path)
    for store in ckpt.state.stores():  # the files of superseded versions are no longer needed
        store.prune()


def load(run_dir: Path) -> Checkpoint:
    path = run_dir / NAME
    if not path.is_file():
        raise FedmllmError(f"{run_dir}: no {NAME} (the run did not finish a round, or it is not a run folder)")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})["fedmllm"])
    except (SafetensorError, KeyError, json.JSONDecodeError, OSError) as e:
        raise FedmllmError(f"{path}: unreadable checkpoint ({e})") from None
    if meta.get("format") != FORMAT:
        raise FedmllmError(f"{path}: checkpoint format {meta.get('format')}, this fedmllm reads {FORMAT}")
    state = ServerState(global_params={}, round=int(meta["round"]), sampler=random.Random())
    for kind, versions in meta.get("client_state", {}).items():  # JSON keys are strings
        store = ClientStore(kind, run_dir / CLIENT_FOLDER, {int(k): int(v) for k, v in versions.items()})
        setattr(state, kind, store)
    state.sampler.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in meta["sampler"]))
    torch.set_rng_state(tensors.pop("rng/torch"))
    unflatten(tensors, state)
    return Checkpoint(state, meta["zero_shot"], meta["alive"], meta["config"], meta["extra"])


def sampler_state(sampler: random.Random) -> list[Any]:
    version, internal, gauss = sampler.getstate()
    return [version, list(internal), gauss]
