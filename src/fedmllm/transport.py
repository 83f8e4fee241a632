"""What travels between the recipe (run.py) and a federation: the jobs sent, the round's replies,
and the `Transport` protocol the engine implements with Flower (engine/server_app.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from fedmllm.fl.rules import Params
from fedmllm.fl.screen import ClientUpdate, Rejection


@dataclass
class RoundResult:
    updates: list[ClientUpdate]
    bytes_sent: int = 0
    bytes_received: int = 0
    failures: list[str] = field(default_factory=list)  # clients that did not reply
    contributors: list[int] | None = None  # partitions in a secure aggregate; None: updates' own
    rejected: list[Rejection] = field(default_factory=list)  # replies that came back unusable
    notes: list[str] = field(default_factory=list)  # weights the server capped

    def replied(self) -> list[int]:
        """The partitions that answered: usable, rejected, or inside a secure sum."""
        if self.contributors is not None:
            return self.contributors
        return sorted({u.partition for u in self.updates} | {r.partition for r in self.rejected})


@dataclass
class TrainJob:
    """What one client receives: the parameters to start from and, for SCAFFOLD, c - c_k."""

    partition: int
    params: Params
    correction: Params | None = None
    known_samples: int | None = None  # the client's sample count, where the server wrote its shard


class Transport(Protocol):
    def partitions(self, run: dict[str, Any]) -> dict[int, int]:
        """partition id -> node id of every reachable client."""

    def train(
        self, jobs: list[TrainJob], nodes: dict[int, int], run: dict[str, Any], rnd: dict[str, Any]
    ) -> RoundResult:
        """Send each job to its partition's node, return the updates that came back."""
