"""The privacy budget of a DP run: the cumulative epsilon at a given delta after each round, from
Google's dp-accounting RDP accountant (the backend of Flower's own `RdpAccountant`), called
directly because fedmllm's loop owns aggregation (no Flower strategy to wrap).

One round is one release of the global model: the mean of the sampled clients' updates, each
clipped to L2 norm C, plus Gaussian noise of std z*C/m for m sampled clients (fl/privacy.py), so
the noise multiplier with respect to one client's contribution is z. The accountant composes one
Poisson-subsampled Gaussian mechanism per round (rate q: the chance that a client is sampled) and
converts the Renyi DP at its default orders into epsilon at delta.

Pure: no torch, no flwr. dp_accounting (scipy behind it, ~0.8 s to import) is imported on first
use, so a run without DP never loads it.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from fedmllm.errors import FedmllmError

ACCOUNTANT = "RDP (dp-accounting, default orders)"
ASSUMPTIONS = (
    "user-level DP (neighbours: one client's whole data added or removed) of the global models the server "
    "releases, noise added by the trusted server; each round a Gaussian mechanism, noise multiplier z on an "
    "equal-weight mean of clipped updates, Poisson-subsampled at rate q (fedmllm samples a fixed-size subset "
    "without replacement); every round counts"
)


def sampling_rate(sampled: int, available: int) -> float:
    """q of one round: the chance that a given client, of those still available, is sampled."""
    if not 0 < sampled <= available:
        raise FedmllmError(f"privacy accountant: cannot sample {sampled} of {available} clients")
    return sampled / available


def epsilon(rates: Sequence[float], noise_multiplier: float, delta: float) -> float:
    """Cumulative epsilon at `delta` after one round per entry of `rates` (each Poisson-sampled at
    its rate, noise multiplier `noise_multiplier`): 0.0 for no round, math.inf with no noise."""
    check(rates, noise_multiplier, delta)
    if not rates:
        return 0.0
    if noise_multiplier == 0:  # no noise: no finite epsilon (dp-accounting says inf too)
        return math.inf
    return _epsilon(tuple(runs(rates)), noise_multiplier, delta)


@functools.lru_cache(maxsize=64)
def _epsilon(rate_runs: tuple[tuple[float, int], ...], noise_multiplier: float, delta: float) -> float:
    """Cached: a run with a target asks for the next round's epsilon before it runs, and again after
    (each computation takes ~0.1 s at q = 0.3: dp-accounting's series at fractional orders)."""
    from dp_accounting import dp_event
    from dp_accounting.rdp import rdp_privacy_accountant

    accountant = rdp_privacy_accountant.RdpAccountant()  # add-or-remove-one neighbours, default orders
    gaussian = dp_event.GaussianDpEvent(noise_multiplier)
    with quiet_absl():
        for rate, count in rate_runs:  # equal rates as one event times count: the same sums, fewer calls
            accountant.compose(dp_event.PoissonSampledDpEvent(rate, gaussian), count)
        return float(accountant.get_epsilon(delta))


def runs(rates: Sequence[float]) -> list[tuple[float, int]]:
    """Consecutive equal rates as (rate, how many)."""
    return [(rate, len(list(group))) for rate, group in itertools.groupby(rates)]


def check(rates: Sequence[float], noise_multiplier: float, delta: float) -> None:
    if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
        raise FedmllmError(f"config key 'dp_noise_multiplier': must be a finite number >= 0, got {noise_multiplier}")
    if not 0 < delta < 1:
        raise FedmllmError(f"config key 'dp_delta': must be in (0, 1), got {delta}")
    bad = [q for q in rates if not 0 < q <= 1]
    if bad:
        raise FedmllmError(f"privacy accountant: a sampling rate must be in (0, 1], got {bad[0]}")


@contextmanager
def quiet_absl() -> Iterator[None]:
    """dp-accounting logs a warning through absl for every fractional order whose series does not
    converge (eight per call at q = 0.3, z = 1) and leaves that order out: the bound stays valid
    (a minimum over the other orders), and the lines would bury the progress output."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
