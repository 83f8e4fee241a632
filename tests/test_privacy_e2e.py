"""SecAgg+ and DP through the real stack (Flower simulation, transformers, peft), small."""

import json

import pytest
import torch
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fedmllm.cli import main

SMALL = ["--num-clients", "3", "--clients-per-round", "3", "--rounds", "2", "--synthetic-train", "120",
         "--synthetic-test", "40", "--local-steps", "3", "--lr", "2e-3", "--no-generate-eval", "--no-eval-views",
         "--partition", "iid", "--scenario", "none"]  # fmt: skip


def dp_accounting(q: float, z: float, rounds: int, delta: float = 1e-5) -> float:
    rdp = rdp_privacy_accountant.RdpAccountant()
    rdp.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(z)), rounds)
    return rdp.get_epsilon(delta)


def rows_of(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


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
    settings = ("dp", "noise_multiplier", "clipping_norm", "noise_std_per_round", "delta", "sampling_rate")
    assert {k: private["privacy"][k] for k in settings} == {
        "dp": "client",
        "noise_multiplier": 0.3,
        "clipping_norm": 0.05,
        "noise_std_per_round": [pytest.approx(0.3 * 0.05 / 3)],
        "delta": 1e-5,
        "sampling_rate": 1.0,  # 3 of 3 clients: no sampling, so both epsilons are the Gaussian mechanism's
    }
    assert private["privacy"]["epsilon"] == private["privacy"]["epsilon_without_sampling"] == dp_accounting(1, 0.3, 1)
    changed = torch.cat([(private_adapter[k] - plain_adapter[k]).flatten() for k in plain_adapter])
    assert changed.std().item() > 0.3 * 0.05 / 3 / 2  # the noise is there, at about its scale


@pytest.mark.slow
def test_epsilon_per_round_equals_dp_accountings_and_a_target_stops_before_exceeding_it(tmp_path, capsys):
    # 2 of 4 clients per round: q = 0.5, z = 1, delta = 1e-5
    four = ["--dp", "server", "--num-clients", "4", "--clients-per-round", "2"]
    expected = [dp_accounting(0.5, 1.0, t) for t in (1, 2, 3)]  # 3.894, 5.377, 6.482
    summary, _ = run(tmp_path / "dp", "--rounds", "3", *four)
    privacy = summary["privacy"]
    assert privacy["epsilon_per_round"] == expected and privacy["epsilon"] == expected[-1]
    assert privacy["sampling_rate"] == 0.5 and privacy["sampling_rate_per_round"] == [0.5] * 3
    assert privacy["epsilon_without_sampling"] == dp_accounting(1.0, 1.0, 3) > expected[-1]
    assert "Poisson" in privacy["assumptions"] and summary["rounds"] == 3 and "stopped_early" not in summary
    assert [r["epsilon"] for r in rows_of(tmp_path / "dp")] == expected
    board = EventAccumulator(str(tmp_path / "dp" / "tensorboard"))
    board.Reload()
    assert [e.value for e in board.Scalars("privacy/epsilon")] == pytest.approx(expected, rel=1e-6)
    assert f"| epsilon {expected[0]:.2f}" in capsys.readouterr().out

    # a budget of 6: round 3 would reach 6.482, so the run ends after round 2, fully evaluated
    out = tmp_path / "budget"
    budget, _ = run(out, "--rounds", "3", "--dp-target-epsilon", "6", *four)
    reason = "privacy budget: round 3 would take epsilon to 6.482 > dp_target_epsilon 6 (delta 1e-05); "
    reason += "stopped after round 2 of 3"
    assert budget["rounds"] == 2 and budget["privacy"]["epsilon_per_round"] == expected[:2]
    assert budget["stopped_early"] == {"after_round": 2, "planned_rounds": 3, "reason": reason}
    assert budget["privacy"]["target_epsilon"] == 6.0
    assert {k: rows_of(out)[-1][k] for k in budget["final"]} == budget["final"]  # round 2 scored as the last
    assert rows_of(out)[-1]["stopped"] == reason and reason in capsys.readouterr().out
    assert main(["run", "--resume", str(out)]) == 0  # finds the budget spent before round 3: no round runs
    resumed = json.loads((out / "summary.json").read_text())
    assert resumed["rounds"] == 2 and resumed["stopped_early"] == budget["stopped_early"]
    assert resumed["final"] == budget["final"] and len(rows_of(out)) == 2
