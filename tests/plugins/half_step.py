"""A server rule from outside fedmllm, registered as a plugin (tests/test_plugins.py):
FedAvg at half the step, w <- w + (mean - w) / 2, written here from the rules' public helpers."""

from fedmllm.fl import rules
from fedmllm.fl.algorithms import Algorithm, register


def fedavg_half(state, w, clients, weights, hp):
    mean = rules.weighted_mean(clients, weights)
    return {n: w[n].float() + 0.5 * (mean[n] - w[n].float()) for n in w}, {k: dict(v) for k, v in state.items()}


register(Algorithm("fedavg_half", "FedAvg at half the step", rule=fedavg_half, default_lr=None, mean_based=True))
