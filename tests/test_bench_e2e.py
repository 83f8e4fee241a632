"""`fedmllm bench` end to end: the real CLI in a subprocess, killed after its first cell and rerun."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

MATRIX = """
algorithms = ["fedavg"]
seeds = [0]
[settings]
num_clients = 4
clients_per_round = 2
rounds = 2
synthetic_train = 120
synthetic_test = 40
local_steps = 5
lr = 2e-3
generate_eval = false
[scenarios.missing]
scenario = "missing"
missing_rate = [0.2, 0.5]
"""
FIRST = "cells/tiny/hateful_memes/missing-0.2/fedavg-none-seed0"
SECOND = "cells/tiny/hateful_memes/missing-0.5/fedavg-none-seed0"


def bench(matrix, out, **kwargs):
    cmd = [sys.executable, "-m", "fedmllm", "bench", str(matrix), "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.mark.slow
def test_killed_bench_resumes_with_the_unfinished_cell_only(tmp_path):
    matrix, out = tmp_path / "two.toml", tmp_path / "bench"
    matrix.write_text(MATRIX)
    proc = bench(matrix, out, start_new_session=True)  # its own process group, Ray included
    try:
        deadline = time.monotonic() + 300
        while not (out / FIRST / "cell.json").is_file():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "first cell did not finish in 300 s"
            time.sleep(0.5)
        while not (out / SECOND / "config.toml").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)  # kill inside the second cell, once it has started writing
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / SECOND / "cell.json").exists()
    first_done = (out / FIRST / "cell.json").stat().st_mtime_ns

    rerun = bench(matrix, out)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output
    assert "2 cells, 1 already finished or failed, 1 to run" in output
    assert "[cell 2/2] tiny | hateful_memes | missing=0.5 | fedavg+none | seed 0" in output
    assert (out / FIRST / "cell.json").stat().st_mtime_ns == first_done  # not run again
    assert (out / SECOND / "cell.json").is_file()

    tables, results = (out / "tables.md").read_text(), (out / "results.csv").read_text()
    final = json.loads((out / SECOND / "summary.json").read_text())["final"]
    assert f"{final['auc']:.3f}" in tables and "2 of 2 cells finished, 0 failed" in tables
    (out / "tables.md").unlink()
    (out / "results.csv").unlink()
    done = subprocess.run([sys.executable, "-m", "fedmllm", "report", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (out / "tables.md").read_text() == tables
    assert (out / "results.csv").read_text() == results

    # the per-round metrics went to TensorBoard under the cell
    events = EventAccumulator(str(out / SECOND / "tensorboard"))
    events.Reload()
    rows = [json.loads(line) for line in (out / SECOND / "metrics.jsonl").read_text().splitlines()]
    logged = {e.step: e.value for e in events.Scalars("test/auc")}
    assert logged[2] == pytest.approx(rows[-1]["auc"]) and 0 in logged
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]


TUNED = """
algorithms = ["fedavg"]
seeds = [0]
[settings]
num_clients = 4
clients_per_round = 2
rounds = 2
synthetic_train = 120
synthetic_test = 40
synthetic_dev = 40
local_steps = 2
generate_eval = false
eval_views = false
[scenarios.missing]
scenario = "missing"
missing_rate = [0.3]
[tuning]
[tuning.grid.fedavg]
lr = [1e-5, 3e-3]
"""


@pytest.mark.slow  # three cells: about 100 s on 2 cores
def test_tuning_grid_on_dev_then_the_cells_with_the_choice(tmp_path):
    matrix, out = tmp_path / "tuned.toml", tmp_path / "bench"
    matrix.write_text(TUNED)
    done = subprocess.run(
        [sys.executable, "-m", "fedmllm", "bench", str(matrix), "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    grid = out / "tuning/tiny/hateful_memes/missing-0.3"
    dev = {}
    for lr in (1e-05, 0.003):
        summary = json.loads((grid / f"fedavg-lr={lr}-seed0" / "summary.json").read_text())
        assert summary["eval_split"] == "dev"
        dev[lr] = summary["final"]["auc"]
    best = max(dev, key=lambda lr: (dev[lr], -lr))  # ties: the first in grid order (the smaller lr)
    cell = out / "cells/tiny/hateful_memes/missing-0.3/fedavg-none-seed0"
    assert json.loads((cell / "summary.json").read_text())["eval_split"] == "test"
    assert f"lr = {best}\n" in (cell / "config.toml").read_text()
    assert json.loads((out / "tuning.json").read_text())["choices"][0]["chosen"] == {"lr": best}
    assert f"tuning: tiny | hateful_memes | fedavg: lr={best} (dev auc {dev[best]:.3f}, best of 2)" in done.stdout
    tables = (out / "tables.md").read_text()
    assert f"| fedavg | {best} | {dev[best]:.3f} (n=1) | ✓ |" in tables

    # a rerun re-reads the choice from the grid's cells: nothing changed, nothing to run
    again = subprocess.run(
        [sys.executable, "-m", "fedmllm", "bench", str(matrix), "--out", str(out)], capture_output=True, text=True
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "tuning: 2 grid cells, 2 already finished or failed, 0 to run" in again.stdout
    assert "1 cells, 1 already finished or failed, 0 to run" in again.stdout
    assert (out / "tables.md").read_text() == tables
