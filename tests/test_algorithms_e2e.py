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
    assert_client_state_on_disk(tmp_path / "local", "client_models", [0, 1, 2])


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
    trained = sorted({k for r in rows for k in r["clients"]})
    assert_client_state_on_disk(tmp_path / "scaffold", "client_controls", trained)


def assert_client_state_on_disk(run_dir, kind, partitions):
    """Per-client state is one file per client (its latest version), not in the checkpoint."""
    files = sorted((run_dir / "client_state").glob(f"{kind}-*.safetensors"))
    assert sorted(int(f.name.split("-")[1]) for f in files) == partitions
    assert not any(k.startswith(f"{kind}/") for k in checkpoint_keys(run_dir))


def checkpoint_keys(run_dir):
    from safetensors import safe_open

    with safe_open(str(run_dir / "checkpoint.safetensors"), "pt") as f:
        return list(f.keys())


@pytest.mark.slow
def test_16_bit_updates_halve_the_bytes_up_and_barely_move_the_result(tmp_path):
    full, full_rows = run(tmp_path, "fp32")
    for dtype in ("bfloat16", "float16"):
        half, rows = run(tmp_path, dtype, "--update-dtype", dtype)
        for a, b in zip(full_rows, rows, strict=True):
            assert a["bytes_sent"] == b["bytes_sent"]  # the model still goes down in float32
            assert 0.5 <= b["bytes_received"] / a["bytes_received"] < 0.52
        assert rows[0]["train_loss"] == full_rows[0]["train_loss"]  # round 1 starts from the same model
        assert rows[1]["train_loss"] == pytest.approx(full_rows[1]["train_loss"], rel=1e-3)
        assert half["final"]["auc"] == pytest.approx(full["final"]["auc"], abs=0.02)
    assert "reg_grad_ratio" not in full_rows[0]  # no proximal term in FedAvg


@pytest.mark.slow
def test_fedadagrad_with_both_strategies(tmp_path):
    summary, rows = run(
        tmp_path, "adagrad", "--algorithm", "fedadagrad", "--adaptive-regularization", "--prompt-augmentation"
    )
    assert summary["algorithm"] == "fedadagrad" and 0 <= summary["final"]["auc"] <= 1
    # the adaptive term's gradient against the task's: present each round, small (mu * mu_w = 1e-3)
    assert all(0 < r["reg_grad_ratio"] < 1 for r in rows)
