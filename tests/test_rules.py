"""Server update rules (fedmllm.fl.rules) against hand-computed values over three rounds.

Expected numbers are written as literals (worked out by hand with exact fractions), never by
re-applying the rule's formula. Each round's client models are the current global model plus the
literal offsets `d1`, `d2`; with weights n = [1, 3] the update is Δ = (d1 + 3·d2)/4.
"""

import pytest
import torch

from fedmllm.errors import FedmllmError
from fedmllm.fl import rules
from fedmllm.fl.algorithms import ALGORITHMS, aggregate
from fedmllm.fl.rules import ServerHyper
from fedmllm.fl.schedule import cosine_lr

HP = ServerHyper()
RULE_NAMES = sorted(a.name for a in ALGORITHMS.values() if a.rule)  # every built-in server rule


def close(actual: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float32), atol=1e-6, rtol=0)


def run_rounds(name, hp, rounds, weights=(1.0, 3.0)):
    """Runs `rounds` = [(offsets, expected_w), ...] from w = 0, yields the state after each round."""
    w = {"x": torch.zeros(2)}
    state = {}
    for offsets, expected in rounds:
        clients = [{"x": w["x"] + torch.tensor(d)} for d in offsets]
        w, state = aggregate(name, state, w, clients, list(weights), hp)
        close(w["x"], expected)
        yield state


# ---------------------------------------------------------------- FedAvg / FedProx


@pytest.mark.parametrize("name", ["fedavg", "fedprox"])
def test_fedavg_is_sample_weighted_mean(name):
    w = {"a": torch.tensor([0.0, 0.0]), "b": torch.tensor([[1.0]])}
    c1 = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([[3.0]])}
    c2 = {"a": torch.tensor([4.0, -1.0]), "b": torch.tensor([[0.0]])}
    out, state = aggregate(name, {}, w, [c1, c2], [1, 3], HP)
    close(out["a"], [(1 + 12) / 4, (2 - 3) / 4])
    close(out["b"], [[3 / 4]])
    assert state == {}


@pytest.mark.parametrize("name", ["fedavg", "fedprox"])
def test_fedavg_weighted_three_rounds(name):
    # Δ = [1, 3], [2, 1], [-1, 1]
    rounds = [
        ([[4.0, 0.0], [0.0, 4.0]], [1.0, 3.0]),
        ([[2.0, -2.0], [2.0, 2.0]], [3.0, 4.0]),
        ([[-4.0, 4.0], [0.0, 0.0]], [2.0, 5.0]),
    ]
    list(run_rounds(name, HP, rounds))


def test_fedavg_equal_weights_three_rounds():
    w = {"x": torch.tensor([1.0])}
    state = {}
    for expected, clients in ((2.0, [3.0, 1.0, 2.0]), (0.0, [0.0, -3.0, 3.0]), (5.0, [5.0, 5.0, 5.0])):
        w, state = aggregate("fedavg", state, w, [{"x": torch.tensor([c])} for c in clients], [10, 10, 10], HP)
        assert w["x"].item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("name", ["fedavg", "fedprox"])
def test_fedavg_server_lr_three_rounds(name):
    # Δ = [1, 3], [2, 1], [-1, 1]; w ← w + 0.5·Δ
    rounds = [
        ([[4.0, 0.0], [0.0, 4.0]], [0.5, 1.5]),
        ([[2.0, -2.0], [2.0, 2.0]], [1.5, 2.0]),
        ([[-4.0, 4.0], [0.0, 0.0]], [1.0, 2.5]),
    ]
    list(run_rounds(name, ServerHyper(server_lr=0.5), rounds))


def test_fedavg_with_eta_one_is_the_mean_bit_for_bit():
    w = {"x": torch.tensor([0.1, 1e-8])}
    clients = [{"x": torch.tensor([0.7, 3.3])}, {"x": torch.tensor([0.2, -1.1])}]
    out, _ = aggregate("fedavg", {}, w, clients, [1, 2], ServerHyper(server_lr=1.0))
    assert torch.equal(out["x"], rules.weighted_mean(clients, [1, 2])["x"])


def test_secure_mean_gets_the_server_lr_too():
    """A SecAgg+ round hands server_update one update, the mean client model standing for all
    contributors; FedAvg's eta applies to it like to any update."""
    from fedmllm.config import RunConfig
    from fedmllm.fl.screen import ClientUpdate
    from fedmllm.fl.server import server_update
    from fedmllm.fl.state import ServerState

    cfg = RunConfig(algorithm="fedavg", secagg=True, server_lr=0.25)
    state = ServerState.start({"x": torch.tensor([1.0, -1.0])}, seed=0)
    secure = ClientUpdate(-1, {"x": torch.tensor([5.0, 3.0])}, num_samples=30, loss=0.0, clients=3)
    server_update(cfg, state, [secure], lr=0.1)
    close(state.global_params["x"], [2.0, 0.0])  # 1 + 0.25·4, -1 + 0.25·4


def test_weighted_mean_kept():
    out = rules.weighted_mean([{"x": torch.tensor([2.0])}, {"x": torch.tensor([6.0])}], [3.0, 1.0])
    close(out["x"], [3.0])


# ---------------------------------------------------------------- FedAvgM


def test_fedavgm_three_rounds():
    hp = ServerHyper(server_lr=2.0, momentum=0.5)
    # Δ = [1, 3], [2, 1], [-1, 1]; v = [1, 3], [2.5, 2.5], [0.25, 2.25]
    rounds = [
        ([[4.0, 0.0], [0.0, 4.0]], [2.0, 6.0]),
        ([[2.0, -2.0], [2.0, 2.0]], [7.0, 11.0]),
        ([[-4.0, 4.0], [0.0, 0.0]], [7.5, 15.5]),
    ]
    states = list(run_rounds("fedavgm", hp, rounds))
    assert list(states[0]) == ["momentum"]
    close(states[0]["momentum"]["x"], [1.0, 3.0])
    close(states[1]["momentum"]["x"], [2.5, 2.5])
    close(states[2]["momentum"]["x"], [0.25, 2.25])


def test_fedavgm_unweighted_one_round_with_defaults_is_fedavg():
    w = {"x": torch.tensor([1.0, 1.0])}
    clients = [{"x": torch.tensor([2.0, 0.0])}, {"x": torch.tensor([4.0, 4.0])}]
    out, state = aggregate("fedavgm", {}, w, clients, [5, 5], HP)  # eta = 1, v = Δ = [2, 1]
    close(out["x"], [3.0, 2.0])
    close(state["momentum"]["x"], [2.0, 1.0])


def test_damped_fedavgm_three_rounds():
    from fedmllm.config import RunConfig
    from fedmllm.fl.server import hyper

    hp = hyper(RunConfig(algorithm="fedavgm", server_momentum=0.5, server_momentum_damped=True))
    assert (hp.server_lr, hp.momentum) == (0.5, 0.5)
    # Δ = [1, 3], [2, 1], [-1, 1]; v = [1, 3], [2.5, 2.5], [0.25, 2.25]; w += 0.5·v
    rounds = [
        ([[4.0, 0.0], [0.0, 4.0]], [0.5, 1.5]),
        ([[2.0, -2.0], [2.0, 2.0]], [1.75, 2.75]),
        ([[-4.0, 4.0], [0.0, 0.0]], [1.875, 3.875]),
    ]
    list(run_rounds("fedavgm", hp, rounds))


def test_damped_fedavgm_steady_step_is_fedavgs():
    hp = ServerHyper(server_lr=0.1, momentum=0.9)  # eta = 1 - beta
    w, state = {"x": torch.zeros(1)}, {}
    for _ in range(200):  # the same Δ = 1 every round
        before = w["x"].item()
        w, state = aggregate("fedavgm", state, w, [{"x": w["x"] + 1.0}], [1], hp)
    assert w["x"].item() - before == pytest.approx(1.0, abs=1e-6)  # 1 - 0.9^200


# ---------------------------------------------------------------- FedAdagrad / FedAdam / FedYogi
# beta1 = 0.5, beta2 = 0.75, tau = 1, eta = 1: values chosen so that every √v is exact.


def test_fedadagrad_three_rounds():
    hp = ServerHyper(server_lr=1.0, beta1=0.5, tau=1.0)
    # Δ = [3, -4], [4, 3], [12, -12]; m = [1.5, -2], [2.75, 0.5], [7.375, -5.75]; v = [9, 16], [25, 25], [169, 169]
    rounds = [
        ([[0.0, -1.0], [4.0, -5.0]], [0.375, -0.4]),
        ([[1.0, 6.0], [5.0, 2.0]], [5 / 6, -19 / 60]),
        ([[9.0, -9.0], [13.0, -13.0]], [457 / 336, -611 / 840]),
    ]
    states = list(run_rounds("fedadagrad", hp, rounds))
    close(states[0]["m"]["x"], [1.5, -2.0])
    close(states[0]["v"]["x"], [9.0, 16.0])
    close(states[2]["m"]["x"], [7.375, -5.75])
    close(states[2]["v"]["x"], [169.0, 169.0])


def test_fedadam_three_rounds():
    hp = ServerHyper(server_lr=1.0, beta1=0.5, beta2=0.75, tau=1.0)
    # Δ = [2, -4], [2.75, 5.5], [-1.625, 3.25]; m = [1, -2], [1.875, 1.75], [0.125, 2.5]
    # v = [1, 4], [2.640625, 10.5625] (√v = [1.625, 3.25]), unchanged in round 3 (Δ² = v)
    rounds = [
        ([[-1.0, -1.0], [3.0, -5.0]], [0.5, -2 / 3]),
        ([[-0.25, 8.5], [3.75, 4.5]], [17 / 14, -13 / 51]),
        ([[-4.625, 6.25], [-0.625, 2.25]], [53 / 42, 1 / 3]),
    ]
    states = list(run_rounds("fedadam", hp, rounds))
    close(states[1]["m"]["x"], [1.875, 1.75])
    close(states[1]["v"]["x"], [2.640625, 10.5625])
    close(states[2]["m"]["x"], [0.125, 2.5])
    close(states[2]["v"]["x"], [2.640625, 10.5625])


def test_fedadam_has_no_bias_correction():
    # One round from zero state, Δ = 2: m = 0.1·Δ = 0.2, v = 0.01·Δ² = 0.04; w = 0.2/(0.2 + 0.001).
    # A bias-corrected Adam (m̂ = Δ, v̂ = Δ²) would step 2/(2 + 0.001) instead.
    w = {"x": torch.tensor([0.0])}
    out, _ = aggregate("fedadam", {}, w, [{"x": torch.tensor([2.0])}], [1], HP)
    close(out["x"], [0.2 / 0.201])


def test_fedyogi_three_rounds():
    hp = ServerHyper(server_lr=1.0, beta1=0.5, beta2=0.75, tau=1.0)
    # Δ = [2, -4], [0.56, 3], [1.44, -1.4]; m = [1, -2], [0.78, 0.5], [1.11, -0.45]
    # v = [1, 4]; [1 - 0.25·0.3136, 4 + 0.25·9] = [0.9216, 6.25] (sign +1, -1);
    # [0.9216 + 0.25·2.0736, 6.25 - 0.25·1.96] = [1.44, 5.76] (sign -1, +1)
    rounds = [
        ([[-1.0, -1.0], [3.0, -5.0]], [0.5, -2 / 3]),
        ([[-2.44, 6.0], [1.56, 2.0]], [44 / 49, -11 / 21]),
        ([[-1.56, 1.6], [2.44, -2.4]], [15119 / 10780, -937 / 1428]),
    ]
    states = list(run_rounds("fedyogi", hp, rounds))
    close(states[0]["v"]["x"], [1.0, 4.0])
    close(states[1]["v"]["x"], [0.9216, 6.25])
    close(states[2]["m"]["x"], [1.11, -0.45])
    close(states[2]["v"]["x"], [1.44, 5.76])


# adaptive_moment = "momentum": v from m², m updated first. One client, so Δ is its offset.
# beta1 = 0.5, beta2 = 0.75, tau = 1, eta = 1; round 1 Δ = [2, -4] gives m = [1, -2] and, from
# v = 0, v = 0.25·m² = [0.25, 1] for both rules (√v = [0.5, 1]): w = [1/1.5, -2/2] = [2/3, -1].
# With v from Δ² ("delta") it would be v = [1, 4] and w = [0.5, -2/3].
MOMENTUM_HP = ServerHyper(server_lr=1.0, beta1=0.5, beta2=0.75, tau=1.0, adaptive_moment="momentum")


def test_fedadam_second_moment_from_momentum():
    # round 2: Δ = [-2, 4]: m = [-0.5, 1]; v = 0.75·[0.25, 1] + 0.25·[0.25, 1] = [0.25, 1];
    # w += [-0.5/1.5, 1/2]
    rounds = [([[2.0, -4.0]], [2 / 3, -1.0]), ([[-2.0, 4.0]], [1 / 3, -0.5])]
    states = list(run_rounds("fedadam", MOMENTUM_HP, rounds, weights=(1.0,)))
    close(states[0]["v"]["x"], [0.25, 1.0])
    close(states[1]["m"]["x"], [-0.5, 1.0])
    close(states[1]["v"]["x"], [0.25, 1.0])


def test_fedyogi_second_moment_from_momentum():
    # round 2: Δ = [0, 5]: m = [0.5, 1.5], m² = [0.25, 2.25]; sign(v − m²) = [0, −1]:
    # v = [0.25, 1 + 0.25·2.25] = [0.25, 1.5625] (√v = [0.5, 1.25]); w += [0.5/1.5, 1.5/2.25]
    rounds = [([[2.0, -4.0]], [2 / 3, -1.0]), ([[0.0, 5.0]], [1.0, -1 / 3])]
    states = list(run_rounds("fedyogi", MOMENTUM_HP, rounds, weights=(1.0,)))
    close(states[0]["v"]["x"], [0.25, 1.0])
    close(states[1]["m"]["x"], [0.5, 1.5])
    close(states[1]["v"]["x"], [0.25, 1.5625])


def test_adaptive_moment_delta_is_the_default_and_adagrad_has_no_momentum_variant():
    w = {"x": torch.zeros(2)}
    delta_hp = ServerHyper(server_lr=1.0, beta1=0.5, beta2=0.75, tau=1.0)
    out, _ = aggregate("fedadam", {}, w, [{"x": torch.tensor([2.0, -4.0])}], [1], delta_hp)
    close(out["x"], [0.5, -2 / 3])
    with pytest.raises(ValueError, match="adaptive_moment 'momentum' is not defined for fedadagrad"):
        aggregate("fedadagrad", {}, w, [{"x": torch.ones(2)}], [1], MOMENTUM_HP)


def test_adaptive_unweighted_one_round():
    # Equal weights: Δ = [2, -2]; Adagrad with defaults: m = 0.1·Δ, v = Δ², w = 0.2/(2 + 0.001)·sign.
    w = {"x": torch.tensor([1.0, 1.0])}
    clients = [{"x": torch.tensor([2.0, 0.0])}, {"x": torch.tensor([4.0, -2.0])}]
    out, state = aggregate("fedadagrad", {}, w, clients, [7, 7], HP)
    close(out["x"], [1 + 0.2 / 2.001, 1 - 0.2 / 2.001])
    close(state["v"]["x"], [4.0, 4.0])


# ---------------------------------------------------------------- SCAFFOLD (hand values)


def test_scaffold_server_three_rounds_unweighted():
    hp = ServerHyper(server_lr=0.5)
    # sample counts are ignored: mean(w_k - w) = [2, 2], [2, 0], [-2, 2]
    rounds = [
        ([[4.0, 0.0], [0.0, 4.0]], [1.0, 1.0]),
        ([[2.0, -2.0], [2.0, 2.0]], [2.0, 1.0]),
        ([[-4.0, 4.0], [0.0, 0.0]], [1.0, 2.0]),
    ]
    list(run_rounds("scaffold", hp, rounds, weights=(1.0, 3.0)))


def test_scaffold_controls_hand_values():
    c = {"x": torch.tensor([1.0, -1.0])}
    delta_cs = [{"x": torch.tensor([2.0, 0.0])}, {"x": torch.tensor([0.0, 4.0])}]
    close(rules.scaffold_controls(c, delta_cs, num_clients_total=4)["x"], [1.5, 0.0])  # + (2/4)·[1, 2]
    close(rules.scaffold_controls(c, delta_cs, num_clients_total=2)["x"], [2.0, 1.0])  # + (2/2)·[1, 2]
    with pytest.raises(ValueError, match="num_clients_total"):
        rules.scaffold_controls(c, delta_cs, num_clients_total=1)


def test_scaffold_client_control_hand_values():
    c_k = {"x": torch.tensor([0.5, 0.0])}
    c = {"x": torch.tensor([1.5, 0.0])}
    w = {"x": torch.tensor([1.0, 2.0])}
    w_k = {"x": torch.tensor([0.0, 3.0])}
    # c_k - c = [-1, 0]; (w - w_k)/(10·0.05) = [1, -1]/0.5 = [2, -2]
    close(rules.scaffold_client_control(c_k, c, w, w_k, steps=10, lr=0.05)["x"], [1.0, -2.0])


def _quadratic_federation(use_scaffold: bool) -> tuple[float, float, float]:
    """4 non-IID clients, f_k(x) = 0.5·||A_k x - b_k||²; 30 rounds, K = 10 local SGD steps at lr 0.05,
    full participation. Returns (final Σ_k f_k, optimum Σ_k f_k, mean client drift ||w_k - w|| in the last round)."""
    gen = torch.Generator().manual_seed(0)
    dim, n_clients, rounds, steps, lr = 4, 4, 30, 10, 0.05
    problems = []
    for k in range(n_clients):
        scale = torch.full((dim,), 0.3)
        scale[k] = 3.0  # each client is well-conditioned along a different axis
        a = torch.diag(scale) @ torch.linalg.qr(torch.randn(dim, dim, generator=gen))[0]
        b = 4.0 * torch.randn(dim, generator=gen) + 3.0 * (k - 1.5)
        problems.append((a, b))

    def grad(k: int, x: torch.Tensor) -> torch.Tensor:
        a, b = problems[k]
        return a.T @ (a @ x - b)

    def objective(x: torch.Tensor) -> float:
        return sum(0.5 * float(((a @ x - b) ** 2).sum()) for a, b in problems)

    hessian = sum(a.T @ a for a, _ in problems)
    x_star = torch.linalg.solve(hessian, sum(a.T @ b for a, b in problems))

    hp = ServerHyper(server_lr=1.0)
    w = {"x": torch.zeros(dim)}
    c = {"x": torch.zeros(dim)}
    c_ks = [{"x": torch.zeros(dim)} for _ in range(n_clients)]
    state: rules.State = {}
    drift = 0.0
    for _ in range(rounds):
        models, delta_cs = [], []
        for k in range(n_clients):
            y = w["x"].clone()
            correction = c["x"] - c_ks[k]["x"] if use_scaffold else torch.zeros(dim)
            for _ in range(steps):
                y = y - lr * (grad(k, y) + correction)
            models.append({"x": y})
            if use_scaffold:
                new_ck = rules.scaffold_client_control(c_ks[k], c, w, {"x": y}, steps, lr)
                delta_cs.append({"x": new_ck["x"] - c_ks[k]["x"]})
                c_ks[k] = new_ck
        drift = sum(float(torch.linalg.norm(m["x"] - w["x"])) for m in models) / n_clients
        w, state = aggregate("scaffold" if use_scaffold else "fedavg", state, w, models, [1.0] * n_clients, hp)
        if use_scaffold:
            c = rules.scaffold_controls(c, delta_cs, n_clients)
    return objective(w["x"]), objective(x_star), drift


def test_scaffold_beats_fedavg_on_non_iid_quadratics():
    f_scaffold, f_star, drift_scaffold = _quadratic_federation(use_scaffold=True)
    f_fedavg, f_star2, drift_fedavg = _quadratic_federation(use_scaffold=False)
    assert f_star == f_star2
    assert f_scaffold < f_fedavg
    assert drift_scaffold < drift_fedavg
    # SCAFFOLD with full participation removes client drift and reaches the global optimum; FedAvg does not.
    assert f_scaffold - f_star < 1e-2 * (f_fedavg - f_star)


# ---------------------------------------------------------------- API, purity and validation


def test_rules_registry():
    assert {a.name for a in ALGORITHMS.values() if a.rule} == {
        "fedavg",
        "fedprox",
        "fedavgm",
        "fedadagrad",
        "fedadam",
        "fedyogi",
        "fedmedian",
        "fedtrimmedavg",
        "krum",
        "scaffold",
    }
    with pytest.raises(FedmllmError, match="unknown algorithm 'fedsgd'.*fedavg.*scaffold"):
        aggregate("fedsgd", {}, {"x": torch.zeros(1)}, [{"x": torch.zeros(1)}], [1], HP)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_rules_are_pure_keep_key_order_and_return_float32(name):
    w = {"b": torch.tensor([1.0, 2.0], dtype=torch.bfloat16), "a": torch.tensor([[0.5]])}
    clients = [
        {"a": torch.tensor([[float(k)]]), "b": torch.tensor([k, -k], dtype=torch.bfloat16) + 1.0} for k in range(4)
    ]
    state = {"m": {"b": torch.ones(2), "a": torch.ones(1, 1)}, "v": {"b": torch.ones(2), "a": torch.ones(1, 1)}}
    state["momentum"] = {"b": torch.ones(2), "a": torch.ones(1, 1)}
    snapshot = [{k: t.clone() for k, t in p.items()} for p in [w, *clients, *state.values()]]
    out, new_state = aggregate(name, state, w, clients, [1, 2, 3, 4], HP)
    out2, _ = aggregate(name, state, w, clients, [1, 2, 3, 4], HP)
    for before, after in zip(snapshot, [w, *clients, *state.values()], strict=True):
        for k in before:
            assert torch.equal(before[k], after[k]), f"{name} modified an input"
    assert list(out) == ["b", "a"]
    assert all(t.dtype == torch.float32 for t in out.values())
    for k in out:
        torch.testing.assert_close(out[k], out2[k], atol=0, rtol=0)
        assert all(out[k].data_ptr() != p[k].data_ptr() for p in [w, *clients])
    assert new_state is not state
    assert set(new_state) >= set(state)


def test_validation_errors():
    w = {"x": torch.zeros(2), "y": torch.zeros(1)}
    good = {"x": torch.ones(2), "y": torch.ones(1)}
    for name in RULE_NAMES:
        with pytest.raises(ValueError, match="missing parameter 'y'"):
            aggregate(name, {}, w, [good, {"x": torch.ones(2)}], [1, 1], HP)
        with pytest.raises(ValueError, match="unexpected parameter 'z'"):
            aggregate(name, {}, w, [{**good, "z": torch.ones(1)}], [1], HP)
        with pytest.raises(ValueError, match="no client models"):
            aggregate(name, {}, w, [], [], HP)
        with pytest.raises(ValueError, match="positive"):
            aggregate(name, {}, w, [good, good], [0, 0], HP)
        with pytest.raises(ValueError, match="2 models but 1 weights"):
            aggregate(name, {}, w, [good, good], [1], HP)
        with pytest.raises(ValueError, match="shape"):
            aggregate(name, {}, w, [{"x": torch.ones(3), "y": torch.ones(1)}], [1], HP)
    with pytest.raises(ValueError, match=r"state\['m'\] is missing parameter 'y'"):
        aggregate("fedadam", {"m": {"x": torch.zeros(2)}}, w, [good], [1], HP)


def test_cosine_schedule():
    assert cosine_lr(0, 10, 1.0, warmup=0.0) == pytest.approx(1.0)
    assert cosine_lr(5, 10, 1.0, warmup=0.0) == pytest.approx(0.5)
    # 10% warm-up of 20 rounds = 2 rounds: 0.5, 1.0, then cosine from the peak
    assert [cosine_lr(r, 20, 1.0, warmup=0.1) for r in range(3)] == pytest.approx([0.5, 1.0, 1.0])
