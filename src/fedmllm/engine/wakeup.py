"""Wake Flower's Simulation Engine when a message waits, instead of at its next poll.

Inside `fedmllm run`, Flower's Simulation Engine (`flwr.server.superlink.fleet.vce.vce_api`, flwr
1.41/1.42) hands messages between the ServerApp and the Ray workers with two threads: an
extractor that scans the LinkState for new messages every 0.1 s, and an injector that stores the
replies, which the ServerApp then polls for. So each round's first client started 0-100 ms after
the server sent it (67 ms on average on the tiny model, ~3.5% of a 1.9 s round), the last reply
waited for the server's next poll, and the scan, one query per node that walks every stored
message, kept a fifth of a core busy with 1000 virtual nodes (Flower's maintainers call the
polling a stopgap: PR #3369).

`installed(wakeup)` runs the same two loops, with the same LinkState calls, for the duration of one
simulation. The extractor scans when a push through the ServerApp's grid woke it (`watch(grid)`:
the transport's pushes and Flower's own `send_and_receive` and SecAgg+ workflow alike), and
otherwise only every RESCAN_SECONDS; the injector wakes the transport's pull as soon as it has
stored a reply (`wakeup.replied`). If Flower's loops are not the ones this was written for, the
engine runs unchanged and a warning says so.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Empty, Queue
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)
TICK_SECONDS = 0.1  # Flower's interval: how soon the loops see the stop event
RESCAN_SECONDS = 1.0  # a scan without a push (messages pushed some other way, expiries)
# the loops replaced, by the parameters Flower starts them with
EXPECTED = {
    "add_messages_to_queue": ["state", "queue", "nodes_mapping", "f_stop"],
    "put_message_into_state": ["state", "queue", "f_stop"],
}


class Wakeup:
    """Two events between the ServerApp and Flower's engine threads, in one process."""

    def __init__(self) -> None:
        self.pushed = threading.Event()  # set after every push through the watched grid
        self.replied = threading.Event()  # set by the injector after it stored a reply
        self.scans_on_push = 0  # extractor scans a push started (the test's witness)
        self.active = False  # whether Flower's engine runs these loops (set by `installed`)

    def watch(self, grid: Any) -> Any:
        """The same grid, setting `pushed` after each of its pushes (Flower's InMemoryGrid sends
        `send_and_receive` through its own `push_messages` too)."""
        push = grid.push_messages

        def push_and_wake(messages: Any) -> Any:
            ids = push(messages)
            self.pushed.set()
            return ids

        grid.push_messages = push_and_wake
        return grid

    def extract(self, state: Any, queue: Queue, nodes_mapping: Any, f_stop: threading.Event) -> None:
        """Flower's extractor loop: hand each node's next waiting message to the workers, when a
        push woke it or RESCAN_SECONDS have passed."""
        idle = RESCAN_SECONDS  # scan once at the start
        while not f_stop.is_set():
            woken = self.pushed.is_set()
            if woken or idle >= RESCAN_SECONDS:
                self.pushed.clear()  # before the scan: a push during it starts the next one
                self.scans_on_push += woken
                idle = 0.0
                if self.scan(state, queue, nodes_mapping):
                    continue  # a scan hands out one message per node: a node may hold another
            if not self.pushed.wait(TICK_SECONDS):
                idle += TICK_SECONDS

    @staticmethod
    def scan(state: Any, queue: Queue, nodes_mapping: Any) -> int:
        found = 0
        for node_id in nodes_mapping:
            for message in state.get_message_ins(node_id=node_id, limit=1):
                queue.put(message)
                found += 1
        return found

    def inject(self, state: Any, queue: Queue, f_stop: threading.Event) -> None:
        """Flower's injector loop: store each reply, then tell the transport."""
        while not f_stop.is_set():
            try:
                reply = queue.get(timeout=1.0)  # a timeout so that the stop event is seen
            except Empty:
                continue
            state.store_message_res(reply)
            self.replied.set()


def engine() -> ModuleType:
    # imported here: the module pulls in Ray, which a deployed ServerApp does not need
    from flwr.server.superlink.fleet.vce import vce_api

    return vce_api


def compatible() -> str | None:
    """None if Flower's engine loops take the parameters they are replaced with, else why not."""
    vce_api = engine()
    for name, params in EXPECTED.items():
        loop = getattr(vce_api, name, None)
        if loop is None:
            return f"flwr's vce_api has no {name}"
        found = list(inspect.signature(loop).parameters)
        if found != params:
            return f"flwr's vce_api.{name} takes {found}, not {params}"
    return None


@contextmanager
def installed(wakeup: Wakeup) -> Iterator[bool]:
    """Flower's engine uses `wakeup`'s loops inside the block; yields whether it does."""
    reason = compatible()
    if reason is not None:
        log.warning("Flower's Simulation Engine keeps its 0.1 s polling (%s)", reason)
        yield False
        return
    vce_api = engine()
    saved = {name: getattr(vce_api, name) for name in EXPECTED}
    vce_api.add_messages_to_queue = wakeup.extract
    vce_api.put_message_into_state = wakeup.inject
    wakeup.active = True
    try:
        yield True
    finally:
        wakeup.active = False
        for name, loop in saved.items():
            setattr(vce_api, name, loop)
