"""Simulated Byzantine clients: each attack's tensors and metrics, hand-computed on tiny inputs."""

import math

import pytest
import torch

from fedmllm import config
from fedmllm.errors import FedmllmError
from fedmllm.fl import attacks

START = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([[0.0, 0.0]])}
TRAINED = {"a": torch.tensor([2.0, 0.0]), "b": torch.tensor([[1.0, 1.0]])}
METRICS = {"partition-id": 2, "num-examples": 40, "train-loss": 0.5, "steps": 3, "model-loads": 1, "seconds": 1.5}


def run(kind, trained=TRAINED, start=START, metrics=METRICS, *, partition=2, round=1, scale=10.0, seed=0):
    return attacks.apply(
        kind, trained, start, metrics, partition=partition, num_clients=3, round=round, scale=scale, seed=seed
    )


def test_attack_names_are_the_configs():
    assert attacks.ATTACKS == config.ATTACKS
    with pytest.raises(FedmllmError, match="attack = 'flood'"):
        run("flood")


def test_attackers_are_a_seeded_draw():
    assert attackers_ok(attacks.attackers(0, 10, 3), 10, 3)
    assert attacks.attackers(0, 10, 3) == attacks.attackers(0, 10, 3)
    assert attacks.attackers(0, 10, 0) == []
    assert attacks.attackers(5, 4, 4) == [0, 1, 2, 3]
    # the draw depends on the seed: over 20 seeds, more than one set of 3 of 10
    assert len({tuple(attacks.attackers(s, 10, 3)) for s in range(20)}) > 1
    for count in (-1, 5):
        with pytest.raises(FedmllmError, match=f"attackers = {count}"):
            attacks.attackers(0, 4, count)


def attackers_ok(drawn, num_clients, count):
    return drawn == sorted(set(drawn)) and len(drawn) == count and all(0 <= p < num_clients for p in drawn)


def test_none_returns_copies():
    tensors, metrics = run("none")
    assert metrics == METRICS and metrics is not METRICS
    for n in TRAINED:
        assert torch.equal(tensors[n], TRAINED[n]) and tensors[n] is not TRAINED[n]


def test_sign_flip_and_scale():
    flipped, metrics = run("sign_flip")
    assert flipped["a"].tolist() == [0.0, 4.0]  # 1 - (2 - 1), 2 - (0 - 2)
    assert flipped["b"].tolist() == [[-1.0, -1.0]]
    assert metrics == METRICS
    scaled, _ = run("scale", scale=10.0)
    assert scaled["a"].tolist() == [11.0, -18.0]  # 1 + 10 * 1, 2 + 10 * (-2)
    assert scaled["b"].tolist() == [[10.0, 10.0]]


def test_gaussian_noise_has_the_update_rms_times_scale():
    # update (1, -2, 1, 1): RMS = sqrt(7 / 4)
    assert attacks.update_rms(TRAINED, START) == pytest.approx(math.sqrt(7 / 4))
    start, trained = {"w": torch.zeros(20_000)}, {"w": torch.full((20_000,), 0.01)}  # RMS 0.01
    noisy, _ = run("gaussian", trained, start, scale=10.0)
    assert noisy["w"].std().item() == pytest.approx(0.1, rel=0.03)
    assert abs(noisy["w"].mean().item()) < 0.005  # centred on w: the honest update (0.01) is gone
    again, _ = run("gaussian", trained, start, scale=10.0)
    assert torch.equal(noisy["w"], again["w"])
    for other in ({"partition": 1}, {"round": 2}, {"seed": 1}):
        assert not torch.equal(noisy["w"], run("gaussian", trained, start, scale=10.0, **other)[0]["w"])
    zero, _ = run("gaussian", START, START)  # no update, no noise
    assert all(torch.equal(zero[n], START[n]) for n in START)


def test_nan_damages_one_coordinate():
    tensors, _ = run("nan")
    assert math.isnan(tensors["a"][0].item()) and tensors["a"][1].item() == 0.0
    assert torch.equal(tensors["b"], TRAINED["b"])
    empty_first = {"e": torch.zeros(0), **TRAINED}
    tensors, _ = run("nan", empty_first, {"e": torch.zeros(0), **START})
    assert math.isnan(tensors["a"][0].item())
    transposed = {"t": torch.arange(6.0).reshape(2, 3).t()}  # not contiguous
    assert run("nan", transposed, transposed)[0]["t"].isnan().tolist() == [[True, False], [False] * 2, [False] * 2]
    with pytest.raises(FedmllmError, match="no non-empty tensor"):
        run("nan", {"e": torch.zeros(0)}, {"e": torch.zeros(0)})


def test_malformed_variants_cycle_with_the_round():
    assert [attacks.malformed_variant(r) for r in range(1, 9)] == [*attacks.MALFORMED, attacks.MALFORMED[0]]
    by_round = {r: run("malformed", round=r) for r in range(1, 15)}
    assert list(by_round[1][0]) == ["b"]  # missing_tensor
    assert list(by_round[2][0]) == ["a", "b", "a.extra"] and by_round[2][0]["a.extra"].tolist() == [0.0, 0.0]
    assert by_round[3][0]["a"].tolist() == [2.0, 0.0, 0.0]  # wrong_shape: (2,) -> (3,)
    assert by_round[4][0]["a"].dtype == torch.float64 and by_round[4][0]["a"].tolist() == [2.0, 0.0]
    assert by_round[11][0]["a"].dtype == torch.int64 and by_round[11][0]["a"].tolist() == [2, 0]
    assert "num-examples" not in by_round[5][1]  # missing_metric
    assert by_round[6][1]["num-examples"] == -100
    assert math.isnan(by_round[13][1]["num-examples"])
    assert math.isnan(by_round[7][1]["train-loss"])
    assert by_round[14][1]["train-loss"] == [0.5, 0.5]
    for r, (tensors, metrics) in by_round.items():
        damaged_tensors = attacks.malformed_variant(r) in attacks.MALFORMED[:4]
        assert (metrics == METRICS) == damaged_tensors  # one fault a reply, and no marker in the metrics
        same = [tensors[n].dtype == t.dtype and torch.equal(tensors[n], t) for n, t in TRAINED.items() if n in tensors]
        honest = list(tensors) == list(TRAINED) and all(same)
        assert honest != damaged_tensors


def test_weight_inflation_and_identity_spoof_send_honest_tensors():
    tensors, metrics = run("weight_inflation")
    assert metrics == {**METRICS, "num-examples": 10**12}
    assert all(torch.equal(tensors[n], TRAINED[n]) for n in TRAINED)
    tensors, metrics = run("identity_spoof", partition=2)
    assert metrics == {**METRICS, "partition-id": 0}  # (2 + 1) % 3
    assert all(torch.equal(tensors[n], TRAINED[n]) for n in TRAINED)
    assert run("identity_spoof", partition=0)[1]["partition-id"] == 1


@pytest.mark.parametrize("kind", config.ATTACKS)
@pytest.mark.parametrize("round", range(1, 8))
def test_inputs_are_not_modified(kind, round):
    trained = {n: t.clone() for n, t in TRAINED.items()}
    start = {n: t.clone() for n, t in START.items()}
    metrics = dict(METRICS)
    tensors, out = run(kind, trained, start, metrics, round=round)
    assert metrics == METRICS and out is not metrics and tensors is not trained
    assert list(trained) == list(TRAINED) and list(start) == list(START)
    assert all(torch.equal(trained[n], TRAINED[n]) and torch.equal(start[n], START[n]) for n in TRAINED)


@pytest.mark.parametrize("round", range(1, 15))
def test_every_reply_can_be_sent(round):
    """What an attacker sends fits in Flower's records: a MetricRecord takes the metrics (it refuses
    strings, hence no string loss), and the .npy encoding carries the tensors unchanged."""
    from flwr.app import MetricRecord

    from fedmllm.engine.records import from_arrays, to_arrays

    for kind in config.ATTACKS:
        tensors, metrics = run(kind, round=round)
        MetricRecord(metrics)
        received = from_arrays(to_arrays(tensors))
        assert list(received) == list(tensors)
        for n, t in tensors.items():
            assert received[n].dtype == t.dtype and torch.equal(received[n].nan_to_num(7.0), t.nan_to_num(7.0))
