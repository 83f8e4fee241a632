"""Kill a real `fedmllm run` (SIGKILL, whole process group) and resume it: the result equals an
uninterrupted run bitwise (CPU, same seed)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from fedmllm import checkpoint

# fedadam: the server's optimizer moments must survive the kill too
SMALL = "--num-clients 3 --clients-per-round 2 --rounds 3 --synthetic-train 120 --synthetic-test 20 --local-steps 2 "
SMALL = (SMALL + "--lr 2e-3 --no-generate-eval --no-eval-views --algorithm fedadam --server-lr 0.01").split()
KILLER = Path(__file__).with_name("kill_in_checkpoint.py")  # `fedmllm` dying inside one round's checkpoint.save


def fedmllm(*args, kill_in_checkpoint=None):
    """`fedmllm run ARGS`; with kill_in_checkpoint=N, one that dies inside round N's checkpoint.save."""
    command = [sys.executable, "-m", "fedmllm"]
    if kill_in_checkpoint is not None:
        command = [sys.executable, str(KILLER), str(kill_in_checkpoint)]
    return subprocess.Popen([*command, "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip


def rows(run_dir):
    out = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "client_seconds")} for r in out]


def finish(proc, timeout=600):
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output
    return output


def kill_when(proc, ready, run_dir, delay, timeout=600):
    deadline = time.monotonic() + timeout
    while not ready(run_dir):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed, not finished


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path):
    whole = tmp_path / "whole"
    finish(fedmllm(*SMALL, "--out", str(whole)))
    reference, adapter = rows(whole), load_file(whole / "adapter" / "adapter_model.safetensors")

    def lines(run_dir):
        path = run_dir / "metrics.jsonl"
        return len(path.read_text().splitlines()) if path.is_file() else 0

    cases = {
        # after the last round's checkpoint, while the adapter and summary are written
        "in-finish": dict(ready=lambda d: (d / "adapter.tmp").is_dir() or (d / "adapter").is_dir(), delay=0),
        # after round 1's line, during round 2's client steps
        "in-round": dict(ready=lambda d: lines(d) >= 1, delay=0.3),
        # round 2's checkpoint written and fsynced to its .tmp, not yet renamed (its metrics line is there)
        "in-checkpoint": dict(ready=None, delay=0),
        # right after round 2's line
        "between-rounds": dict(ready=lambda d: lines(d) >= 2, delay=0),
    }
    for name, case in cases.items():
        run_dir = tmp_path / name
        proc = fedmllm(*SMALL, "--out", str(run_dir), kill_in_checkpoint=2 if case["ready"] is None else None)
        if case["ready"] is None:  # the process kills itself inside checkpoint.save (tests/kill_in_checkpoint.py)
            proc.communicate(timeout=600)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its Ray workers
            assert proc.returncode == -signal.SIGKILL
            assert lines(run_dir) == 2
            assert checkpoint.read(run_dir / "checkpoint.safetensors.tmp")[1]["round"] == 2  # written whole
            assert checkpoint.load(run_dir).state.round == 1  # never published: round 1's is the checkpoint
        else:
            kill_when(proc, case["ready"], run_dir, case["delay"])
        output = finish(fedmllm("--resume", str(run_dir)))
        assert "(resumed)" in output
        assert rows(run_dir) == reference, name
        resumed = load_file(run_dir / "adapter" / "adapter_model.safetensors")
        assert all((resumed[k] == adapter[k]).all() for k in adapter), name  # bitwise


@pytest.mark.slow
def test_resume_refuses_a_different_config(tmp_path, capsys):
    from fedmllm.cli import main

    run_dir = tmp_path / "run"
    assert main(["run", *SMALL, "--rounds", "1", "--out", str(run_dir)]) == 0
    before = (run_dir / "metrics.jsonl").read_text()
    assert main(["run", "--resume", str(run_dir), "--lr", "0.5"]) == 2
    assert "belongs to a different config (lr: 0.002 in the folder, 0.5 now)" in capsys.readouterr().err
    assert (run_dir / "metrics.jsonl").read_text() == before  # nothing written
