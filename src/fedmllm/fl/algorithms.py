"""The algorithms: one record each, the one place where an algorithm's name means something.

Config validation, the server step, the jobs sent to clients, the update screen, the engine, the
bench and the docs' table read these records instead of comparing names. Adding a server rule is
one pure function (fl/rules.py, or a module of your own) and one record:

    register(Algorithm("fedavg_half", "FedAvg at half the step", rule="my_rules:fedavg_half",
                       default_lr=0.5, mean_based=True))

This module imports no torch, so the config and the CLI read the records without loading it; a
rule named "module:function" is imported the first time a round is aggregated. A module that
registers algorithms is named in the config's `plugins` (imported before the config is checked,
and by every simulated node; a deployed node imports only the plugins its node config allows).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fedmllm.errors import FedmllmError

# The config options a server rule or the client's term reads (server_lr is read by every rule with
# a server step). A record names the ones it reads; the config refuses any other set away from its
# default, so a setting that would be silently ignored never labels a result.
OPTIONS = (
    "server_momentum",
    "server_momentum_damped",
    "beta1",
    "beta2",
    "tau",
    "adaptive_moment",
    "trim_fraction",
    "krum_byzantine",
    "prox_mu",
)


@dataclass(frozen=True)
class Algorithm:
    name: str
    summary: str  # one line: the docs' table and error messages
    # the server rule (state, w, clients, weights, hyper) -> (w, state): a function or "module:function";
    # None: no aggregate (each client keeps its model, or the server trains the pooled data itself)
    rule: str | Callable[..., Any] | None = None
    # eta when server_lr = 0: a number, or a function of the config; None: the rule takes no step
    # along the mean update (a median, a selection), so a server_lr is refused
    default_lr: float | Callable[[Any], float] | None = 1.0
    reads: tuple[str, ...] = ()  # the OPTIONS it reads
    mean_based: bool = False  # the new model needs only the weighted mean: a SecAgg+ sum can serve it
    proximal: bool = False  # clients add FedProx's (mu/2)|w - w_global|^2 (prox_mu)
    correction: bool = False  # the server sends c - c_k and keeps control variates (SCAFFOLD)
    per_client_models: bool = False  # every client trains its own model every round, scored one by one
    pools_data: bool = False  # no federation: the server trains the pooled data itself
    check: Callable[[Any], None] | None = None  # its own rules on the config (raises FedmllmError)

    @property
    def federated(self) -> bool:
        """It has a global model built from client updates (what the strategies and DP act on)."""
        return not (self.per_client_models or self.pools_data)

    def eta(self, cfg: Any) -> float:
        """The server learning rate in force for `cfg` (its server_lr if set, else the default)."""
        if cfg.server_lr > 0:
            return float(cfg.server_lr)
        if self.default_lr is None:
            raise FedmllmError(f"algorithm '{self.name}' has no server learning rate")
        return float(self.default_lr(cfg)) if callable(self.default_lr) else float(self.default_lr)

    def server_rule(self) -> Callable[..., Any]:
        """The rule function (imported on first use when given as "module:function")."""
        if self.rule is None:
            raise FedmllmError(f"algorithm '{self.name}' has no server rule")
        if callable(self.rule):
            return self.rule
        module, _, name = self.rule.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise FedmllmError(f"algorithm '{self.name}': its rule {self.rule!r} cannot be imported ({e})") from e


def _damped_lr(cfg: Any) -> float:
    """FedAvgM's eta: 1 - beta when damped (the steady step equals FedAvg's), else 1."""
    return 1.0 - cfg.server_momentum if cfg.server_momentum_damped else 1.0


def _krum_check(cfg: Any) -> None:
    """Krum must have something to choose: krum_scores sums each update's distances to its
    max(1, n - f - 2) nearest others, and with n >= f + 2 two updates are honest even if f are not,
    so an honest one has an honest neighbour to be scored against. (Blanchard et al.'s guarantee
    needs n >= 2f + 3; the default, 3 clients per round with f = 1, is below it.)"""
    if cfg.sampled_per_round < cfg.krum_byzantine + 2:
        sampled = "client_fraction" if cfg.client_fraction > 0 else "clients_per_round"
        raise FedmllmError(
            f"config keys 'krum_byzantine' and '{sampled}': Krum tolerating f = {cfg.krum_byzantine} Byzantine "
            f"clients needs at least f + 2 = {cfg.krum_byzantine + 2} clients per round, got "
            f"{cfg.sampled_per_round}; lower krum_byzantine or sample more clients"
        )


_ADAPTIVE_READS = ("beta1", "beta2", "tau", "adaptive_moment")
_BUILT_IN = (
    Algorithm("fedavg", "sample-weighted mean of the client models, w <- w + eta*Delta",
              rule="fedmllm.fl.rules:fedavg", mean_based=True),
    Algorithm("fedprox", "FedAvg with the clients' proximal term (mu/2)·‖w − w_global‖²",
              rule="fedmllm.fl.rules:fedavg", reads=("prox_mu",), mean_based=True, proximal=True),
    Algorithm("fedavgm", "FedAvg with server momentum v <- beta*v + Delta, w <- w + eta*v",
              rule="fedmllm.fl.rules:fedavgm", default_lr=_damped_lr,
              reads=("server_momentum", "server_momentum_damped"), mean_based=True),
    Algorithm("fedadagrad", "adaptive server optimiser (Reddi et al.), v <- v + Delta^2",
              rule="fedmllm.fl.rules:fedadagrad", default_lr=1e-3, reads=("beta1", "tau"), mean_based=True),
    Algorithm("fedadam", "adaptive server optimiser (Reddi et al.), Adam's second moment",
              rule="fedmllm.fl.rules:fedadam", default_lr=1e-3, reads=_ADAPTIVE_READS, mean_based=True),
    Algorithm("fedyogi", "adaptive server optimiser (Reddi et al.), Yogi's second moment",
              rule="fedmllm.fl.rules:fedyogi", default_lr=1e-3, reads=_ADAPTIVE_READS, mean_based=True),
    Algorithm("scaffold", "control variates c, c_k correct the clients' drift (Karimireddy et al.)",
              rule="fedmllm.fl.rules:scaffold", correction=True),
    Algorithm("fedmedian", "coordinate-wise median of the client models (robust)",
              rule="fedmllm.fl.rules:fedmedian", default_lr=None),
    Algorithm("fedtrimmedavg", "coordinate-wise mean after cutting the extremes (robust)",
              rule="fedmllm.fl.rules:fedtrimmedavg", default_lr=None, reads=("trim_fraction",)),
    Algorithm("krum", "the client model closest to its neighbours (robust, Blanchard et al.)",
              rule="fedmllm.fl.rules:krum", default_lr=None, reads=("krum_byzantine",), check=_krum_check),
    Algorithm("local", "baseline: every client trains alone, scored by the mean of its models",
              default_lr=None, per_client_models=True),
    Algorithm("centralized", "baseline: the pooled training data in one place (an upper bound)",
              default_lr=None, pools_data=True),
)  # fmt: skip

ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in _BUILT_IN}


def register(algorithm: Algorithm) -> Algorithm:
    """Add an algorithm (a plugin's); a name is registered once."""
    if algorithm.name in ALGORITHMS:
        raise FedmllmError(f"algorithm '{algorithm.name}' is already registered")
    unknown = sorted(set(algorithm.reads) - set(OPTIONS))
    if unknown:
        raise FedmllmError(f"algorithm '{algorithm.name}' reads unknown options {unknown}; known: {list(OPTIONS)}")
    ALGORITHMS[algorithm.name] = algorithm
    return algorithm


def get(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise FedmllmError(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}") from None


def aggregate(name: str, *args: Any) -> Any:
    """Apply algorithm `name`'s server rule: aggregate(name, state, w, clients, weights, hyper)."""
    return get(name).server_rule()(*args)


def import_plugins(modules: str, source: str) -> None:
    """Import each module of a comma-separated list (each registers its algorithms when imported)."""
    for module in (m.strip() for m in modules.split(",")):
        if not module:
            continue
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise FedmllmError(f"{source}: config key 'plugins': cannot import {module!r} ({e})") from e


def markdown_table() -> str:
    """The records as the table in docs/algorithms.md (tests/test_plugins.py keeps them equal)."""
    lines = [
        "| algorithm | what it does | default eta | options it reads | SecAgg+ | keeps |",
        "|---|---|---|---|---|---|",
    ]
    for a in ALGORITHMS.values():
        eta = (
            "none (no server step)"
            if a.default_lr is None
            else ("1 - beta if damped, else 1" if callable(a.default_lr) else f"{a.default_lr:g}")
        )
        reads = ", ".join(f"`{o}`" for o in a.reads) or "-"
        keeps = (
            "client models"
            if a.per_client_models
            else "pooled data"
            if a.pools_data
            else "control variates"
            if a.correction
            else "-"
        )
        lines.append(f"| `{a.name}` | {a.summary} | {eta} | {reads} | {'yes' if a.mean_based else 'no'} | {keeps} |")
    return "\n".join(lines) + "\n"
