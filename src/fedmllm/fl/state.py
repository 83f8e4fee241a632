"""All server-side state of a run in one object, so a checkpoint can save and restore it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from fedmllm.fl.rules import Params, State


@dataclass
class ServerState:
    global_params: Params
    round: int = 0
    buffers: State = field(default_factory=dict)  # server optimiser moments / momentum, by name
    control: Params = field(default_factory=dict)  # SCAFFOLD's server control variate c
    client_controls: dict[int, Params] = field(default_factory=dict)  # SCAFFOLD's c_k, by partition
    client_models: dict[int, Params] = field(default_factory=dict)  # Local baseline: each client's own model
    sampler: random.Random = field(default_factory=random.Random)  # client sampling, seeded per run

    @classmethod
    def start(cls, params: Params, seed: int) -> ServerState:
        zeros = {n: torch.zeros_like(t) for n, t in params.items()}
        return cls(global_params=params, control=zeros, sampler=random.Random(seed))

    def client_control(self, partition: int) -> Params:
        """SCAFFOLD's c_k; zero until the client has trained once."""
        return self.client_controls.get(partition) or {n: torch.zeros_like(t) for n, t in self.control.items()}

    def sample(self, partitions: list[int], count: int) -> list[int]:
        """`count` of the reachable `partitions` (while none is lost, the same draw as range(N))."""
        return sorted(self.sampler.sample(partitions, count))
