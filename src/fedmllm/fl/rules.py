"""Server update rules as pure functions on tensors: no Flower, no transformers, no data.

Parameters are `dict[str, Tensor]` (name -> tensor). A rule takes the server state (named buffers,
an empty dict at round 1), the global parameters `w`, the client models `w_k` and their weights
(sample counts `n_k`), and returns the new global parameters and the new state. Rules never modify
their inputs; they return new tensors, in float32, with the key order of `w`.

Notation (the FedMLLM benchmark's): Δ = Σ_k n_k (w_k − w) / Σ_k n_k, the sample-weighted mean update.

- fedavg / fedprox: w ← w + η·Δ (η = 1: the sample-weighted mean of the client models;
  FedProx's proximal term is client-side, so its server step is FedAvg's).
- fedavgm: v ← β·v + Δ; w ← w + η·v (state "momentum", starts at zero). With η = 1 − β (the
  config's `server_momentum_damped`) the steady-state step is Δ, as FedAvg's; this is the
  damped form v' ← β·v' + (1−β)·Δ; w ← w + v' of the FedMLLM authors' / OpenFedLLM's code,
  with v' = (1−β)·v (their first round sets v' = Δ; here v' = (1−β)·Δ).
- fedadagrad / fedadam / fedyogi (Reddi et al., "Adaptive Federated Optimization"):
  m ← β1·m + (1−β1)·Δ; Adagrad v ← v + Δ²; Adam v ← β2·v + (1−β2)·Δ²;
  Yogi v ← v − (1−β2)·Δ²·sign(v − Δ²); w ← w + η·m/(√v + τ) (state "m", "v", start at zero).
  There is NO bias correction: these are exactly the benchmark's formulas. Flower's `FedAdam`
  rescales η by √(1−β2^t)/(1−β1^t), so the rules are written here rather than taken from Flower.
  `ServerHyper.adaptive_moment = "momentum"` (fedadam, fedyogi) puts m² where Δ² stands, m
  updated first, as the FedMLLM authors' / OpenFedLLM's code does; their code also differs in
  ways NOT reproduced here: their first round sets m = Δ, and their Δ is the unweighted mean.
- fedmedian: coordinate-wise median of the client models (unweighted; mean of the two middle
  values for an even count, like `numpy.median` / Flower's `aggregate_median`).
- fedtrimmedavg: coordinate-wise mean after cutting `int(trim_fraction·n)` values at each end
  (unweighted; Flower's `aggregate_trimmed_avg`).
- krum: the client model with the smallest sum of squared distances to its n − f − 2 nearest
  neighbours (at least 1), distances over all parameters (Flower's `aggregate_krum(..., to_keep=0)`).
- scaffold (server part): w ← w + η_g·(1/|S|)·Σ_k (w_k − w), unweighted as in Karimireddy et al.;
  the control variates are updated with `scaffold_controls`, the clients' with
  `scaffold_client_control`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Params = dict[str, torch.Tensor]
State = dict[str, Params]  # named server buffers, e.g. {"m": {...}, "v": {...}}; {} at round 1


@dataclass(frozen=True)
class ServerHyper:
    server_lr: float = 1.0  # eta (fedavg/fedprox, fedavgm, fedadagrad/fedadam/fedyogi, scaffold's eta_g)
    momentum: float = 0.9  # beta for fedavgm
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    trim_fraction: float = 0.2  # fedtrimmedavg: fraction cut at EACH end
    krum_byzantine: int = 1  # f for krum
    adaptive_moment: str = "delta"  # fedadam/fedyogi's v from Δ² ("delta", Reddi et al.) or m² ("momentum")


Rule = Callable[[State, Params, list[Params], list[float], ServerHyper], tuple[Params, State]]


# ---------------------------------------------------------------- validation and helpers


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32)


def _check_same(reference: Params, other: Params, what: str) -> None:
    for name in reference:
        if name not in other:
            raise ValueError(f"{what} is missing parameter {name!r}")
        if other[name].shape != reference[name].shape:
            raise ValueError(
                f"{what}: parameter {name!r} has shape {tuple(other[name].shape)}, "
                f"expected {tuple(reference[name].shape)}"
            )
    for name in other:
        if name not in reference:
            raise ValueError(f"{what} has unexpected parameter {name!r}")


def _check_weights(n: int, weights: list[float]) -> list[float]:
    if len(weights) != n:
        raise ValueError(f"{n} models but {len(weights)} weights")
    ws = [float(x) for x in weights]
    if any(not math.isfinite(x) or x < 0 for x in ws):
        raise ValueError(f"weights must be finite and non-negative, got {ws}")
    if sum(ws) <= 0:
        raise ValueError("weights must sum to a positive number")
    return ws


def _validate(w: Params, clients: list[Params], weights: list[float]) -> list[float]:
    if not clients:
        raise ValueError("no client models to aggregate")
    for k, client in enumerate(clients):
        _check_same(w, client, f"client {k}")
    return _check_weights(len(clients), weights)


def _buffer(state: State, key: str, w: Params) -> Params:
    """State buffer `key`, or zeros shaped like `w` when absent (round 1)."""
    if key not in state:
        return {name: torch.zeros_like(_f32(t)) for name, t in w.items()}
    _check_same(w, state[key], f"state[{key!r}]")
    return {name: _f32(state[key][name]) for name in w}


def _copy_state(state: State) -> State:
    """A new outer/inner dict structure; tensors are shared (rules never modify tensors)."""
    return {key: dict(buf) for key, buf in state.items()}


def _delta(w: Params, clients: list[Params], weights: list[float]) -> Params:
    """Δ = Σ_k n_k (w_k − w) / Σ_k n_k."""
    mean = weighted_mean(clients, weights)
    return {name: mean[name] - _f32(w[name]) for name in w}


def weighted_mean(models: list[Params], weights: list[float]) -> Params:
    """Σ_k n_k · model_k / Σ_k n_k, key by key (float32, key order of `models[0]`)."""
    if not models:
        raise ValueError("no client models to average")
    ws = _check_weights(len(models), weights)
    for k, model in enumerate(models[1:], start=1):
        _check_same(models[0], model, f"model {k}")
    total = sum(ws)
    out: Params = {}
    for name in models[0]:
        acc = _f32(models[0][name]) * (ws[0] / total)  # a new tensor
        for model, wk in zip(models[1:], ws[1:], strict=True):
            acc.add_(_f32(model[name]), alpha=wk / total)
        out[name] = acc
    return out


def _stack(clients: list[Params], name: str) -> torch.Tensor:
    return torch.stack([_f32(c[name]) for c in clients])


# ---------------------------------------------------------------- the rules


def fedavg(
    state: State, w: Params, clients: list[Params], weights: list[float], hp: ServerHyper
) -> tuple[Params, State]:
    """w ← w + η·Δ; with η = 1, the sample-weighted mean of the client models."""
    ws = _validate(w, clients, weights)
    mean = weighted_mean(clients, ws)
    if hp.server_lr == 1.0:  # the mean itself: w + (mean − w) would round differently in float32
        return {name: mean[name] for name in w}, _copy_state(state)
    return {name: _f32(w[name]) + hp.server_lr * (mean[name] - _f32(w[name])) for name in w}, _copy_state(state)


def fedavgm(
    state: State, w: Params, clients: list[Params], weights: list[float], hp: ServerHyper
) -> tuple[Params, State]:
    """v ← β·v + Δ; w ← w + η·v (state "momentum")."""
    ws = _validate(w, clients, weights)
    delta = _delta(w, clients, ws)
    v_old = _buffer(state, "momentum", w)
    v = {name: hp.momentum * v_old[name] + delta[name] for name in w}
    new_w = {name: _f32(w[name]) + hp.server_lr * v[name] for name in w}
    new_state = _copy_state(state)
    new_state["momentum"] = v
    return new_w, new_state


def _adaptive(kind: str) -> Rule:
    def rule(
        state: State, w: Params, clients: list[Params], weights: list[float], hp: ServerHyper
    ) -> tuple[Params, State]:
        ws = _validate(w, clients, weights)
        if hp.adaptive_moment not in ("delta", "momentum") or (hp.adaptive_moment == "momentum" and kind == "adagrad"):
            raise ValueError(f"adaptive_moment {hp.adaptive_moment!r} is not defined for fed{kind}")
        delta = _delta(w, clients, ws)
        m_old, v_old = _buffer(state, "m", w), _buffer(state, "v", w)
        m: Params = {}
        v: Params = {}
        new_w: Params = {}
        for name in w:
            d = delta[name]
            m[name] = hp.beta1 * m_old[name] + (1.0 - hp.beta1) * d
            d2 = m[name] * m[name] if hp.adaptive_moment == "momentum" else d * d
            if kind == "adagrad":
                v[name] = v_old[name] + d2
            elif kind == "adam":
                v[name] = hp.beta2 * v_old[name] + (1.0 - hp.beta2) * d2
            else:  # yogi
                v[name] = v_old[name] - (1.0 - hp.beta2) * d2 * torch.sign(v_old[name] - d2)
            new_w[name] = _f32(w[name]) + hp.server_lr * m[name] / (torch.sqrt(v[name]) + hp.tau)
        new_state = _copy_state(state)
        new_state["m"], new_state["v"] = m, v
        return new_w, new_state

    rule.__name__ = f"fed{kind}"
    rule.__doc__ = (
        f"Fed{kind.capitalize()} (Reddi et al.), no bias correction: m ← β1·m + (1−β1)·Δ; "
        + {
            "adagrad": "v ← v + Δ²",
            "adam": "v ← β2·v + (1−β2)·Δ²",
            "yogi": "v ← v − (1−β2)·Δ²·sign(v − Δ²)",
        }[kind]
        + "; w ← w + η·m/(√v + τ) (state 'm', 'v')."
        + ("" if kind == "adagrad" else " adaptive_moment 'momentum': m² in place of Δ², m updated first.")
    )
    return rule


fedadagrad = _adaptive("adagrad")
fedadam = _adaptive("adam")
fedyogi = _adaptive("yogi")


def fedmedian(
    state: State, w: Params, clients: list[Params], weights: list[float], hp: ServerHyper
) -> tuple[Params, State]:
    """Coordinate-wise median of the client models (unweighted; mean of the middle two if even)."""
    _validate(w, clients, weights)
    n = len(clients)
    out: Params = {}
    for name in w:
        s = torch.sort(_stack(clients, name), dim=0).values
        out[name] = 0.5 * (s[(n - 1) // 2] + s[n // 2])
    return out, _copy_state(state)


def fedtrimmedavg(
    state: State, w: Params, clients: list[Params], weights: list[float], hp: ServerHyper
) -> tuple[Params, State]:
    """Coordinate-wise mean after cutting int(trim_fraction·n) values at each end (unweighted)."""
    _validate(w, clients, weights)
    if not 0.0 <= hp.trim_fraction < 0.5:
        raise ValueError(f"trim_fraction must be in [0, 0.5), got {hp.trim_fraction}")
    n = len(clients)
    cut = int(hp.trim_fraction * n)
    out: Params = {}
    for name in w:
        s = torch.sort(_stack(clients, name), dim=0).values
        out[name] = s[cut : n - cut].mean(dim=0)
    return out, _copy_state(state)


def krum_scores(clients: list[Params], num_byzantine: int) -> torch.Tensor:
    """Krum score of each client: the sum of its squared distances (float64, over all parameters)
    to its max(1, n − f − 2) nearest other clients."""
    n = len(clients)
    dist = torch.zeros(n, n, dtype=torch.float64)
    for name in clients[0]:
        x = torch.stack([c[name].detach().reshape(-1).to(torch.float64) for c in clients])
        for i in range(n):
            dist[i] += ((x - x[i]) ** 2).sum(dim=1).cpu()
    closest = max(1, n - num_byzantine - 2)
    # Skip the smallest entry (the client itself, distance 0), as Flower does.
    return torch.sort(dist, dim=1).values[:, 1 : closest + 1].sum(dim=1)


def krum(state: State, w: Params, clients: list[Params], weights: list[float], hp: ServerHyper) -> tuple[Params, State]:
    """Krum (Blanchard et al.): the client model with the lowest Krum score (first on ties)."""
    _validate(w, clients, weights)
    if hp.krum_byzantine < 0:
        raise ValueError(f"krum_byzantine must be >= 0, got {hp.krum_byzantine}")
    best = int(torch.argmin(krum_scores(clients, hp.krum_byzantine)))
    return {name: _f32(clients[best][name]).clone() for name in w}, _copy_state(state)


def scaffold(
    state: State, w: Params, clients: list[Params], weights: list[float], hp: ServerHyper
) -> tuple[Params, State]:
    """SCAFFOLD's server model step: w ← w + η_g·(1/|S|)·Σ_k (w_k − w) (unweighted).
    Update the server control variate separately with `scaffold_controls`."""
    _validate(w, clients, weights)
    mean = weighted_mean(clients, [1.0] * len(clients))
    new_w = {name: _f32(w[name]) + hp.server_lr * (mean[name] - _f32(w[name])) for name in w}
    return new_w, _copy_state(state)


def scaffold_controls(c: Params, delta_cs: list[Params], num_clients_total: int) -> Params:
    """Server control variate: c ← c + (|S|/N)·mean_k(c_k⁺ − c_k), with `delta_cs` = [c_k⁺ − c_k]."""
    if not delta_cs:
        raise ValueError("no control-variate updates")
    if num_clients_total < len(delta_cs):
        raise ValueError(f"num_clients_total={num_clients_total} < {len(delta_cs)} participating clients")
    for k, dc in enumerate(delta_cs):
        _check_same(c, dc, f"delta_c {k}")
    mean = weighted_mean(delta_cs, [1.0] * len(delta_cs))
    frac = len(delta_cs) / num_clients_total
    return {name: _f32(c[name]) + frac * mean[name] for name in c}


def scaffold_client_control(c_k: Params, c: Params, w: Params, w_k: Params, steps: int, lr: float) -> Params:
    """Client control variate after `steps` local steps at learning rate `lr` (option II):
    c_k⁺ = c_k − c + (w − w_k)/(steps·lr)."""
    if steps <= 0 or lr <= 0:
        raise ValueError(f"steps and lr must be positive, got steps={steps}, lr={lr}")
    for what, p in (("c", c), ("w", w), ("w_k", w_k)):
        _check_same(c_k, p, what)
    scale = 1.0 / (steps * lr)
    return {name: _f32(c_k[name]) - _f32(c[name]) + scale * (_f32(w[name]) - _f32(w_k[name])) for name in c_k}
