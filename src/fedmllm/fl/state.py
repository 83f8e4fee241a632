"""All server-side state of a run in one object, so a checkpoint can save and restore it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from fedmllm.errors import FedmllmError
from fedmllm.fl.rules import Params, State

Shapes = dict[str, tuple[int, ...]]
# what a run's tensors may be: float8 and the like cannot even be tested for NaN
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def shapes(params: Params) -> Shapes:
    return {n: tuple(t.shape) for n, t in params.items()}


def names(items: list[str]) -> str:
    """At most 5 names: a hostile file may hold a million."""
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    return ", ".join(repr(n[:200]) for n in items[:5]) + more


def mismatch(found: Shapes, expected: Shapes, prefix: str = "") -> str | None:
    """What differs between two sets of named shapes (names shown with `prefix`), or None."""
    missing = [prefix + n for n in expected if n not in found]
    if missing:
        return f"lacks {names(missing)}"
    extra = [prefix + n for n in found if n not in expected]
    if extra:
        return f"has unexpected {names(extra)}"
    for n, shape in found.items():
        if shape != expected[n]:
            return f"has {names([prefix + n])} of shape {shape}, expected {expected[n]}"
    return None


def not_finite(params: Params, prefix: str = "") -> str | None:
    """Why the tensors are not all finite floating-point numbers, or None."""
    for n, t in params.items():
        if t.dtype not in FLOATS:
            return f"has {names([prefix + n])} of dtype {t.dtype}, not floating point"
        if not bool(torch.isfinite(t).all()):
            return f"has NaN/Inf values in {names([prefix + n])}"
    return None


class ClientStore:
    """Per-client tensors by partition (SCAFFOLD's c_k, the Local baseline's models).

    With a folder, each client's tensors live in their own safetensors file and RAM holds only
    the clients of the current round: for 1000 clients of a real checkpoint the tensors would
    not fit. Files are versioned by the round that wrote them; the checkpoint records each
    client's version, so a round that is killed and run again never overwrites a file the
    checkpoint points at. Without a folder (tests, small runs of the rules) they stay in memory.
    """

    def __init__(
        self,
        kind: str,
        folder: Path | None = None,
        versions: dict[int, int] | None = None,
        expected: Shapes | None = None,
    ) -> None:
        self.kind, self.folder = kind, folder
        self.versions: dict[int, int] = dict(versions or {})  # partition -> round of its file
        self.memory: dict[int, Params] = {}
        self.round = 0  # the version the next write gets (set by the loop to the round being run)
        # names and shapes a client's file must hold; the files are read back from a run folder
        # anyone may have edited, so one with other tensors is refused rather than trained on
        self.expected = expected

    def path(self, partition: int, version: int) -> Path:
        assert self.folder is not None
        return self.folder / f"{self.kind}-{partition}-r{version}.safetensors"

    def get(self, partition: int, default: Params | None = None) -> Params | None:
        if self.folder is None:
            return self.memory.get(partition, default)
        if partition not in self.versions:
            return default
        path = self.path(partition, self.versions[partition])
        try:
            params = load_file(str(path))
        except (OSError, SafetensorError) as e:
            raise FedmllmError(f"{path}: cannot read the state of client {partition} ({e})") from None
        if self.expected is not None:
            problem = mismatch(shapes(params), self.expected) or not_finite(params)
            if problem:
                raise FedmllmError(f"{path}: the state of client {partition} {problem}")
        return params

    def check_file(self, partition: int) -> None:
        """Names and shapes of a client's file against `expected`, from its header alone (cheap
        enough to run on every file at resume, unlike `get`)."""
        assert self.folder is not None and self.expected is not None
        path = self.path(partition, self.versions[partition])
        try:
            with safe_open(str(path), "pt") as f:
                found = {n: tuple(f.get_slice(n).get_shape()) for n in f.keys()}  # noqa: SIM118 (safe_open is no dict)
        except (OSError, SafetensorError) as e:
            raise FedmllmError(f"{path}: cannot read the state of client {partition} ({e})") from None
        problem = mismatch(found, self.expected)
        if problem:
            raise FedmllmError(f"{path}: the state of client {partition} {problem}")

    def __setitem__(self, partition: int, params: Params) -> None:
        if self.folder is None:
            self.memory[partition] = params
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(partition, self.round)
        tmp = path.with_name(path.name + ".tmp")
        save_file({n: t.detach().to("cpu").contiguous() for n, t in params.items()}, str(tmp))
        tmp.replace(path)
        self.versions[partition] = self.round

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self.memory if self.folder is None else self.versions))

    def prune(self) -> None:
        """Delete the files no version points at (call after the checkpoint that records them)."""
        if self.folder is None or not self.folder.is_dir():
            return
        keep = {self.path(k, v).name for k, v in self.versions.items()}
        for f in self.folder.glob(f"{self.kind}-*.safetensors"):
            if f.name not in keep:
                f.unlink()


@dataclass
class ServerState:
    global_params: Params
    round: int = 0
    buffers: State = field(default_factory=dict)  # server optimiser moments / momentum, by name
    control: Params = field(default_factory=dict)  # SCAFFOLD's server control variate c
    client_controls: ClientStore = field(default_factory=lambda: ClientStore("client_controls"))  # SCAFFOLD's c_k
    client_models: ClientStore = field(default_factory=lambda: ClientStore("client_models"))  # Local's own models
    sampler: random.Random = field(default_factory=random.Random)  # client sampling, seeded per run

    @classmethod
    def start(cls, params: Params, seed: int, client_folder: Path | None = None) -> ServerState:
        """`client_folder`: where per-client state is kept (None: in memory)."""
        zeros = {n: torch.zeros_like(t) for n, t in params.items()}
        expected = shapes(params)
        return cls(
            global_params=params,
            control=zeros,
            sampler=random.Random(seed),
            client_controls=ClientStore("client_controls", client_folder, expected=expected),
            client_models=ClientStore("client_models", client_folder, expected=expected),
        )

    def stores(self) -> tuple[ClientStore, ClientStore]:
        return self.client_controls, self.client_models

    def begin_round(self, rnd: int) -> None:
        for store in self.stores():
            store.round = rnd

    def client_control(self, partition: int) -> Params:
        """SCAFFOLD's c_k; zero until the client has trained once."""
        return self.client_controls.get(partition) or {n: torch.zeros_like(t) for n, t in self.control.items()}

    def sample(self, partitions: list[int], count: int) -> list[int]:
        """`count` of the reachable `partitions` (while none is lost, the same draw as range(N))."""
        return sorted(self.sampler.sample(partitions, count))
