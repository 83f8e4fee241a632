"""PNG plots that compare the runs of a bench (the per-round plot of one run is fedmllm.evaluation.plots)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

from fedmllm.bench.matrix import NO_GLOBAL_MODEL
from fedmllm.bench.stats import mean_ci

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_bars(data: dict[str, dict[Any, list[float]]], metric: str, title: str, path: Path) -> None:
    """One group of bars per scenario value, one bar per method, error bars = the 95% CI
    half-width over seeds (as in tables.md; none for one seed)."""
    values = list(dict.fromkeys(v for per in data.values() for v in per))
    width = 0.8 / max(1, len(data))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(values) * (1 + 0.15 * len(data))), 4.5))
    for i, (method, per) in enumerate(data.items()):
        xs = [j + (i - (len(data) - 1) / 2) * width for j, v in enumerate(values) if v in per]
        intervals = [mean_ci(per[v]) for v in values if v in per]
        halves = [iv.half or 0.0 for iv in intervals]
        ax.bar(xs, [iv.mean for iv in intervals], width, yerr=halves, capsize=2, label=method, color=f"C{i % 10}")
    ax.set_xticks(range(len(values)), [str(v) for v in values])
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(per_method: dict[str, list[list[dict[str, Any]]]], metric: str, title: str, path: Path) -> None:
    """The metric per round for each method, mean over seeds (rounds every seed evaluated)."""
    fig = curves_figure(per_method, metric, title)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curves_figure(per_method: dict[str, list[list[dict[str, Any]]]], metric: str, title: str) -> Figure:
    """The figure of `plot_curves` (apart, so a test can read its axes)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (method, histories) in enumerate(per_method.items()):
        rounds = sorted(set.intersection(*({r["round"] for r in h if metric in r} for h in histories)))
        means = [statistics.fmean(next(r[metric] for r in h if r["round"] == t) for h in histories) for t in rounds]
        style = "--" if method.split(" + ")[0] in NO_GLOBAL_MODEL else "-"  # the baselines dashed
        ax.plot(rounds, means, style, marker="o", markersize=3, label=method, color=f"C{i % 10}")
    ax.set_xlabel("round (0 = zero-shot)")
    # rounds are whole: no 2.5 tick; steps of 1, 2, 5 or 10 rounds (the default also allows 3, 6, 8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig
