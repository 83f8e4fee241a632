"""The Simulation Engine as fedmllm starts it: Ray's settings, and Flower's engine threads woken
by the transport instead of polling."""

import logging
import threading
import time
from queue import Queue

import pytest
from flwr.server.superlink.fleet.vce import vce_api

from fedmllm.config import RunConfig
from fedmllm.engine.simulation import RAY_INLINE_BYTES, backend_config, simulate
from fedmllm.engine.wakeup import TICK_SECONDS, Wakeup, compatible, installed
from fedmllm.run import preflight
from fedmllm.rundir import create_run_dir


def test_a_new_cluster_sends_adapter_sized_messages_inline(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = backend_config(RunConfig(client_cpus=2.0, client_gpus=0.5))
    assert config["client_resources"] == {"num_cpus": 2.0, "num_gpus": 0.5}
    system = config["init_args"]["_system_config"]
    assert system["max_direct_call_object_size"] == RAY_INLINE_BYTES == 8 * 2**20
    assert system["task_rpc_inlined_bytes_limit"] >= RAY_INLINE_BYTES  # one message fits a task's arguments


def test_an_existing_cluster_keeps_its_own_settings(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")  # ray.init refuses _system_config when joining
    assert backend_config(RunConfig()) == {"client_resources": {"num_cpus": 1.0, "num_gpus": 0.0}}


# Flower's engine threads, woken by the transport (engine/wakeup.py)


def start(loop, state, *nodes):
    """One of the engine loops in its own thread, as Flower starts it: (state, queue, [nodes,] stop)."""
    queue, stop = Queue(), threading.Event()
    thread = threading.Thread(target=loop, args=(state, queue, *nodes, stop))
    thread.start()
    return queue, stop, thread


def until(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


class Messages:
    """A LinkState's two calls the engine loops make, over plain lists."""

    def __init__(self):
        self.waiting, self.stored = {}, []

    def get_message_ins(self, node_id, limit):
        return [self.waiting.pop(node_id)] if node_id in self.waiting else []

    def store_message_res(self, message):
        self.stored.append(message)


def test_the_installed_flower_runs_the_loops_wakeup_replaces():
    assert compatible() is None  # fails on a Flower whose engine loops changed: revisit wakeup.py


def test_the_extractor_hands_each_nodes_waiting_message_to_the_workers():
    wakeup, state = Wakeup(), Messages()
    queue, stop, thread = start(wakeup.extract, state, {7: 0, 9: 1})
    state.waiting[9] = "for node 9"
    wakeup.pushed.set()
    assert queue.get(timeout=5) == "for node 9"
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive() and queue.empty()


def test_a_watched_grid_wakes_the_extractor_after_each_push():
    class Grid:
        def push_messages(self, messages):
            return [f"id-{m}" for m in messages]

    wakeup = Wakeup()
    grid = wakeup.watch(Grid())
    assert not wakeup.pushed.is_set()
    assert grid.push_messages(["a", "b"]) == ["id-a", "id-b"]
    assert wakeup.pushed.is_set()


def test_the_extractor_scans_on_a_push_not_every_tick():
    class Counting(Messages):
        scans = 0

        def get_message_ins(self, node_id, limit):
            self.scans += node_id == 7
            return super().get_message_ins(node_id, limit)

    wakeup, state = Wakeup(), Counting()
    queue, stop, thread = start(wakeup.extract, state, {7: 0})
    until(lambda: state.scans >= 1)
    stop.wait(3 * TICK_SECONDS)  # ticks without a push: only the start-up scan
    assert state.scans == 1
    state.waiting[7] = "pushed"
    wakeup.pushed.set()
    assert queue.get(timeout=5) == "pushed"
    assert wakeup.scans_on_push == 1
    until(lambda: state.scans >= 3)
    assert state.scans == 3  # the push's scan found a message, so it looked once more
    stop.wait(3 * TICK_SECONDS)
    assert state.scans == 3  # and then waits for the next push
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_the_injector_stores_a_reply_then_wakes_the_pull():
    wakeup, state = Wakeup(), Messages()
    queue, stop, thread = start(wakeup.inject, state)
    queue.put("reply")
    assert wakeup.replied.wait(timeout=5)
    assert state.stored == ["reply"]  # stored before the event: the pull it wakes finds it
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_installed_swaps_the_loops_for_the_block_only():
    original = vce_api.add_messages_to_queue, vce_api.put_message_into_state
    wakeup = Wakeup()
    with installed(wakeup) as active:
        assert active and wakeup.active
        assert vce_api.add_messages_to_queue == wakeup.extract
        assert vce_api.put_message_into_state == wakeup.inject
    assert (vce_api.add_messages_to_queue, vce_api.put_message_into_state) == original
    assert not wakeup.active


def test_a_changed_flower_engine_is_left_alone_with_a_warning(monkeypatch, caplog):
    def renamed(state, queue, node_ids, f_stop):  # a future Flower's loop, parameters renamed
        return None

    monkeypatch.setattr(vce_api, "add_messages_to_queue", renamed)
    assert "node_ids" in compatible()
    with caplog.at_level(logging.WARNING), installed(Wakeup()) as active:
        assert not active
        assert vce_api.add_messages_to_queue is renamed
    assert "keeps its 0.1 s polling" in caplog.text and "node_ids" in caplog.text


@pytest.mark.slow
def test_a_simulation_wakes_flowers_engine_on_every_round(tmp_path):
    cfg = RunConfig(
        num_clients=2,
        clients_per_round=2,
        rounds=3,
        local_steps=2,
        synthetic_train=32,
        synthetic_test=16,
        generate_eval=False,
        eval_views=False,
        out=str(tmp_path / "run"),
    )
    wakeup = Wakeup()
    preflight(cfg)
    summary = simulate(cfg, create_run_dir(cfg), wakeup=wakeup)
    assert summary["rounds"] == 3
    # the partition query and each round's push start a scan (without them: one a second)
    assert wakeup.scans_on_push >= 3
    assert vce_api.add_messages_to_queue != wakeup.extract  # restored after the run
