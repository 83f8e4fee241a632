"""All server-side state of a run in one object, so a checkpoint can save and restore it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fedmllm.errors import FedmllmError
from fedmllm.fl.rules import Params, State


class ClientStore:
    """Per-client tensors by partition (SCAFFOLD's c_k, the Local baseline's models).

    With a folder, each client's tensors live in their own safetensors file and RAM holds only
    the clients of the current round: for 1000 clients of a real checkpoint the tensors would
    not fit. Files are versioned by the round that wrote them; the checkpoint records each
    client's version, so a round that is killed and run again never overwrites a file the
    checkpoint points at. Without a folder (tests, small runs of the rules) they stay in memory.
    """

    def __init__(self, kind: str, folder: Path | None = None, versions: dict[int, int] | None = None) -> None:
        self.kind, self.folder = kind, folder
        self.versions: dict[int, int] = dict(versions or {})  # partition -> round of its file
        self.memory: dict[int, Params] = {}
        self.round = 0  # the version the next write gets (set by the loop to the round being run)

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
            return load_file(str(path))
        except (OSError, SafetensorError) as e:
            raise FedmllmError(f"{path}: cannot read the state of client {partition} ({e})") from None

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
        return cls(
            global_params=params,
            control=zeros,
            sampler=random.Random(seed),
            client_controls=ClientStore("client_controls", client_folder),
            client_models=ClientStore("client_models", client_folder),
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
