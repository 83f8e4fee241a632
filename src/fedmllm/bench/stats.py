"""Confidence intervals over seeds for the bench tables: pure functions, no scipy.

A bench has few seeds (2-5), so the normal 1.96 would understate the uncertainty badly: the
half-width uses Student's t with n - 1 degrees of freedom (12.71 for 2 seeds, 4.30 for 3).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# two-sided 95% (the 0.975 quantile) of Student's t, df 1..30; beyond, the normal's 1.96
T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
Z95 = 1.96


def t95(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"t quantile needs df >= 1, got {df}")
    return T95[df - 1] if df <= len(T95) else Z95


@dataclass(frozen=True)
class Interval:
    mean: float
    half: float | None  # 95% CI half-width; None for a single value (no spread to estimate)
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.half is not None and abs(self.mean) > self.half


def mean_ci(xs: list[float]) -> Interval:
    """Mean ± t(n-1) * sd / sqrt(n) of `xs` (sd with n - 1 in the denominator)."""
    if not xs:
        raise ValueError("mean_ci of no values")
    n = len(xs)
    mean = statistics.fmean(xs)
    if n < 2:
        return Interval(mean, None, n)
    return Interval(mean, t95(n - 1) * statistics.stdev(xs) / math.sqrt(n), n)


def paired_difference(xs: dict[int, float], reference: dict[int, float]) -> Interval | None:
    """The CI of mean(x_seed - reference_seed) over the seeds both have (a paired t interval:
    the seed fixes the data split, the modality draws, sampling and data order, so pairing removes
    that shared noise).
    None when no seed is shared."""
    seeds = sorted(xs.keys() & reference.keys())
    if not seeds:
        return None
    return mean_ci([xs[s] - reference[s] for s in seeds])
