"""The privacy budget: fedmllm's epsilon equals dp-accounting's own (and Flower's accountant's),
the edge cases are what the formulas say, and a target stops the run before it is exceeded."""

import csv
import json
import logging
import math

import pytest
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant
from flwr.serverapp import GaussianPrivacyEvent, NeighboringRelation, PrivacyConfig, RdpAccountant, SamplingMethod

from fedmllm.bench import matrix, report
from fedmllm.bench.runner import DONE, cell_record
from fedmllm.config import RunConfig
from fedmllm.errors import FedmllmError
from fedmllm.fl import accountant
from fedmllm.progress import format_epsilon
from fedmllm.run import over_budget, round_rate, spend
from fedmllm.tracking import tag


def theirs(q: float, z: float, rounds: int, delta: float) -> float:
    """dp-accounting used directly: one Poisson-sampled Gaussian event composed `rounds` times."""
    rdp = rdp_privacy_accountant.RdpAccountant()
    rdp.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(z)), rounds)
    return rdp.get_epsilon(delta)


@pytest.mark.parametrize(
    ("q", "z", "rounds", "delta"),
    [(0.3, 1.0, 1, 1e-5), (0.3, 1.0, 20, 1e-5), (0.5, 1.0, 3, 1e-5), (0.1, 0.7, 50, 1e-6), (2 / 3, 2.5, 7, 1e-3)],
)
def test_epsilon_is_dp_accountings(q, z, rounds, delta):
    assert accountant.epsilon([q] * rounds, z, delta) == theirs(q, z, rounds, delta)


def test_changing_rates_compose_round_by_round():
    rates = [0.3, 0.3, 0.375, 0.375, 0.375]  # 3 of 10, then 3 of the 8 left after two were lost
    rdp = rdp_privacy_accountant.RdpAccountant()
    for q in rates:
        rdp.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(1.0)))
    assert accountant.epsilon(rates, 1.0, 1e-5) == pytest.approx(rdp.get_epsilon(1e-5), rel=1e-12)
    assert accountant.runs(rates) == [(0.3, 2), (0.375, 3)]


def test_flowers_accountant_gives_the_same_numbers():
    """Flower 1.42's RdpAccountant (flwr[dp]) on the same events: Poisson sampling at 3/10, and
    no amplification (what its fixed-clipping strategies account: our epsilon_without_sampling)."""
    for method, q in ((SamplingMethod.POISSON, 0.3), (SamplingMethod.NO_AMPLIFICATION, 1.0)):
        config = PrivacyConfig(1e-5, 10, NeighboringRelation.ADD_OR_REMOVE_ONE, method)
        flower = RdpAccountant(config)
        flower.compose(GaussianPrivacyEvent(noise_multiplier=1.0, sample_size=3, population_size=10), count=20)
        assert accountant.epsilon([q] * 20, 1.0, 1e-5) == pytest.approx(flower.get_epsilon(1e-5), rel=1e-12)


def test_without_sampling_the_gaussian_closed_form():
    """q = 1: T rounds of the Gaussian mechanism have RDP T*a/(2 z^2) at order a; dp-accounting
    turns it into epsilon = min_a RDP + log(1 - 1/a) - log(delta * a) / (a - 1) over its orders."""
    orders = [1 + x / 10 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]
    for z, rounds, delta in ((1.0, 20, 1e-5), (0.3, 1, 1e-5), (4.0, 100, 1e-6)):
        by_hand = min(
            rounds * a / (2 * z**2) + math.log1p(-1 / a) - math.log(delta * a) / (a - 1) for a in orders if a > 1.01
        )
        assert accountant.epsilon([1.0] * rounds, z, delta) == pytest.approx(by_hand, rel=1e-12)
    assert accountant.epsilon([1.0] * 20, 1.0, 1e-5) == pytest.approx(30.1266, abs=1e-4)


def test_the_default_settings_budget():
    """z = 1, q = 3/10, delta = 1e-5 (the README's figures)."""
    spent = [accountant.epsilon([0.3] * t, 1.0, 1e-5) for t in (1, 3, 10, 20)]
    assert [round(e, 2) for e in spent] == [3.29, 4.91, 7.83, 10.66]
    assert accountant.epsilon([0.3] * 20, 2.0, 1e-5) < spent[-1] < accountant.epsilon([0.3] * 20, 1.0, 1e-6)


def test_edges_no_round_no_noise_and_bad_values():
    assert accountant.epsilon([], 1.0, 1e-5) == 0.0
    assert accountant.epsilon([0.3], 0.0, 1e-5) == math.inf  # no noise: no finite epsilon
    assert theirs(0.3, 0.0, 1, 1e-5) == math.inf  # dp-accounting agrees
    with pytest.raises(FedmllmError, match=r"'dp_delta': must be in \(0, 1\), got 1.0"):
        accountant.epsilon([0.3], 1.0, 1.0)
    with pytest.raises(FedmllmError, match="'dp_noise_multiplier': must be a finite number >= 0, got -1"):
        accountant.epsilon([0.3], -1.0, 1e-5)
    with pytest.raises(FedmllmError, match=r"sampling rate must be in \(0, 1\], got 1.5"):
        accountant.epsilon([0.3, 1.5], 1.0, 1e-5)
    with pytest.raises(FedmllmError, match="cannot sample 4 of 3 clients"):
        accountant.sampling_rate(4, 3)
    assert accountant.sampling_rate(3, 10) == 0.3


def test_dp_accountings_warnings_stay_out_of_the_log(caplog):
    with caplog.at_level(logging.WARNING):
        accountant.epsilon([0.3] * 4, 1.1, 1e-5)  # fractional orders that do not converge: 8 warnings
    assert [r for r in caplog.records if r.name == "absl"] == []
    assert logging.getLogger("absl").level == logging.NOTSET  # restored


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dp_target_epsilon": 5.0}, "'dp_target_epsilon', 'dp' and 'dp_noise_multiplier': a privacy target needs"),
        ({"dp": "server", "dp_noise_multiplier": 0.0, "dp_target_epsilon": 5.0}, "no finite epsilon"),
        (
            {"dp": "client", "dp_target_epsilon": 3.0},
            r"'dp_target_epsilon': 3 is below the first round's epsilon 3.291 \(q = 0.3, dp_noise_multiplier = 1",
        ),
        ({"dp": "client", "dp_delta": 0.0}, r"config key 'dp_delta': must be in \(0, 1\), got 0.0"),
    ],
)
def test_budget_keys_are_checked(changes, message):
    with pytest.raises(FedmllmError, match=message):
        RunConfig(**changes)


def test_the_target_stops_before_the_round_that_would_exceed_it():
    cfg = RunConfig(dp="server", dp_target_epsilon=5.0, rounds=10)  # 4.905 after 3 rounds, 5.455 after 4
    alive = set(range(10))
    assert round_rate(cfg, alive) == 0.3 and round_rate(cfg, alive - {4, 7}) == 3 / 8
    assert over_budget(cfg, [0.3, 0.3], 0.3) is None
    row: dict = {}
    assert spend(cfg, row, [0.3, 0.3], alive, rnd=2) is None and "stopped" not in row
    assert row == {"sampling_rate": 0.3, "epsilon": theirs(0.3, 1.0, 2, 1e-5)}
    reason = spend(cfg, row, [0.3] * 3, alive, rnd=3)
    assert row["epsilon"] == theirs(0.3, 1.0, 3, 1e-5) == pytest.approx(4.905, abs=1e-3)
    expected = "privacy budget: round 4 would take epsilon to 5.455 > dp_target_epsilon 5 (delta 1e-05); "
    assert reason == row["stopped"] == expected + "stopped after round 3 of 10"
    assert f"{theirs(0.3, 1.0, 4, 1e-5):.3f}" == "5.455"
    assert over_budget(cfg, [0.3] * 3, 0.3) == reason  # what a resumed run finds before round 4
    assert spend(cfg, {}, [0.3] * 10, alive, rnd=10) is None  # the last round: nothing to stop
    assert over_budget(cfg.replace(dp_target_epsilon=0.0), [0.3] * 50, 0.3) is None  # no target
    infinite: dict = {}
    spend(RunConfig(dp="server", dp_noise_multiplier=0.0), infinite, [0.3], alive, rnd=1)
    assert infinite == {"sampling_rate": 0.3, "epsilon": None}  # JSON has no infinity


def test_progress_line_and_tensorboard_tags_show_the_budget():
    row = {"round": 2, "clients": [0, 1], "train_loss": 0.5, "seconds": 1.0, "bytes_sent": 0, "bytes_received": 0}
    assert format_epsilon(row) == ""  # no DP
    assert format_epsilon(row | {"epsilon": 5.3770}) == " | epsilon 5.38"
    assert format_epsilon(row | {"epsilon": None}) == " | epsilon inf"  # no noise
    assert (tag("epsilon"), tag("sampling_rate")) == ("privacy/epsilon", "privacy/sampling_rate")


def test_the_bench_report_shows_each_dp_cells_budget(tmp_path):
    """A DP sweep over the noise multiplier: epsilon and delta columns in results.csv, and one
    table of the budgets in tables.md (none without DP cells)."""
    data = {
        "algorithms": ["fedavg"], "strategies": ["none"], "seeds": [0, 1],
        "settings": {"rounds": 3, "dp": "server"},
        "scenarios": {"noise": {"scenario": "none", "dp_noise_multiplier": [1.0, 2.0]}},
    }  # fmt: skip
    m = matrix.parse(data, "m.toml")
    (tmp_path / "matrix.json").write_text(json.dumps(m.to_dict()))
    for cell in matrix.expand(m):
        z = cell.config.dp_noise_multiplier
        eps = [accountant.epsilon([0.3] * t, z, 1e-5) for t in (1, 2, 3)]
        privacy = {"delta": 1e-5, "epsilon": eps[-1], "epsilon_per_round": eps}
        summary = {"final": {"auc": 0.6}, "zero_shot": {"auc": 0.5}, "rounds": 3, "bytes_per_round": 1.0,
                   "seconds": 1.0, "privacy": privacy}  # fmt: skip
        (tmp_path / cell.path).mkdir(parents=True)
        (tmp_path / cell.path / "summary.json").write_text(json.dumps(summary))
        (tmp_path / cell.path / "metrics.jsonl").write_text("")
        (tmp_path / cell.path / DONE).write_text(json.dumps(cell_record(cell)))
    report.write_report(tmp_path)
    with (tmp_path / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    fedavg = [r for r in rows if r["algorithm"] == "fedavg"]
    expected = {"1.0": accountant.epsilon([0.3] * 3, 1.0, 1e-5), "2.0": accountant.epsilon([0.3] * 3, 2.0, 1e-5)}
    assert {(r["scenario_value"], float(r["epsilon"]), r["delta"]) for r in fedavg} == {
        (v, e, "1e-05") for v, e in expected.items()
    }
    assert {r["epsilon"] for r in rows if r["algorithm"] == "zero-shot"} == {""}
    tables = (tmp_path / "tables.md").read_text()
    assert "## Privacy budget: tiny · hateful_memes — epsilon (delta) after the last round" in tables
    assert "| method | noise=1.0 | noise=2.0 |" in tables
    assert f"| fedavg | {expected['1.0']:.2f} (1e-05) | {expected['2.0']:.2f} (1e-05) |" in tables
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert report.privacy_section(m, [r | {"epsilon": None, "delta": None} for r in results]) == []  # no DP
