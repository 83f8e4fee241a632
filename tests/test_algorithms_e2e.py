"""Baselines and algorithms run end to end on the tiny model (real Flower simulation)."""

import json

import pytest

from fedmllm.cli import main

TINY = [
    "--num-clients",
    "3",
    "--clients-per-round",
    "2",
    "--rounds",
    "2",
    "--synthetic-train",
    "60",
    "--synthetic-test",
    "16",
    "--local-steps",
    "2",
    "--no-generate-eval",
    "--scenario",
    "missing",
]


def run(tmp_path, name, *flags):
    out = tmp_path / name
    assert main(["run", *TINY, *flags, "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return json.loads((out / "summary.json").read_text()), rows


@pytest.mark.slow
def test_local_baseline_trains_every_client_alone(tmp_path):
    summary, rows = run(tmp_path, "local", "--algorithm", "local")
    assert all(r["clients"] == [0, 1, 2] for r in rows)
    assert 0 <= summary["final"]["auc"] <= 1 and "auc_std" in summary["final"]


@pytest.mark.slow
def test_centralized_baseline_moves_no_bytes(tmp_path):
    summary, rows = run(tmp_path, "central", "--algorithm", "centralized")
    assert summary["bytes_per_round"] == 0 and rows[0]["clients"] == [-1]
    assert summary["final"]["auc"] >= 0


@pytest.mark.slow
def test_scaffold_sends_corrections(tmp_path):
    summary, rows = run(tmp_path, "scaffold", "--algorithm", "scaffold")
    per_client = summary["trainable_parameters"] * 4
    # round 1: the global tensors + c - c_k to each of 2 clients; the replies carry the models only
    assert 2 * 2 * per_client <= rows[0]["bytes_sent"] < 2 * 2 * per_client * 1.05
    assert per_client * 2 <= rows[0]["bytes_received"] < per_client * 2 * 1.05


@pytest.mark.slow
def test_fedadagrad_with_both_strategies(tmp_path):
    summary, _ = run(
        tmp_path, "adagrad", "--algorithm", "fedadagrad", "--adaptive-regularization", "--prompt-augmentation"
    )
    assert summary["algorithm"] == "fedadagrad" and 0 <= summary["final"]["auc"] <= 1
