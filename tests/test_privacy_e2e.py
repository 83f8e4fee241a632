"""SecAgg+ and DP through the real stack (Flower simulation, transformers, peft), small."""

import json

import pytest
import torch
from safetensors.torch import load_file

from fedmllm.cli import main

SMALL = ["--num-clients", "3", "--clients-per-round", "3", "--rounds", "2", "--synthetic-train", "120",
         "--synthetic-test", "40", "--local-steps", "3", "--lr", "2e-3", "--no-generate-eval", "--no-eval-views",
         "--partition", "iid", "--scenario", "none"]  # fmt: skip


def run(out, *extra):
    assert main(["run", *SMALL, "--out", str(out), *extra]) == 0
    summary = json.loads((out / "summary.json").read_text())
    return summary, load_file(out / "adapter" / "adapter_model.safetensors")


@pytest.mark.slow
def test_secagg_gives_the_fedavg_aggregate_and_dp_noise_is_recorded(tmp_path):
    # one round: its adapter is the aggregate itself. SecAgg+ quantises the masked updates with
    # stochastic rounding (measured error ~1e-8 per value); a second round of Adam steps from that
    # model amplifies it run to run (measured 6e-5..2e-4), so later rounds cannot be compared
    plain, plain_adapter = run(tmp_path / "plain", "--rounds", "1")
    secure, secure_adapter = run(tmp_path / "secure", "--rounds", "1", "--secagg")
    assert plain_adapter.keys() == secure_adapter.keys()
    worst = max((plain_adapter[k] - secure_adapter[k]).abs().max().item() for k in plain_adapter)
    assert worst < 1e-6
    assert secure["final"]["auc"] == pytest.approx(plain["final"]["auc"], abs=1e-3)
    run(tmp_path / "secure2", "--secagg")  # a new protocol instance every round
    rows = [json.loads(line) for line in (tmp_path / "secure2" / "metrics.jsonl").read_text().splitlines()]
    assert [r["clients"] for r in rows] == [[0, 1, 2], [0, 1, 2]]

    private, private_adapter = run(tmp_path / "dp", "--rounds", "1", "--dp", "client", "--dp-noise-multiplier", "0.3",
                                   "--dp-clipping-norm", "0.05")  # fmt: skip
    assert private["privacy"] == {
        "dp": "client",
        "noise_multiplier": 0.3,
        "clipping_norm": 0.05,
        "noise_std_per_round": [pytest.approx(0.3 * 0.05 / 3)],
    }
    changed = torch.cat([(private_adapter[k] - plain_adapter[k]).flatten() for k in plain_adapter])
    assert changed.std().item() > 0.3 * 0.05 / 3 / 2  # the noise is there, at about its scale
