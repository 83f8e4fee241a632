"""The per-round plot of one run (metrics.png).

It lives here, below both `fedmllm.run` (which draws it at the end of every run) and
`fedmllm.bench` (whose plots compare runs), so the recipe never imports the bench.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

from fedmllm.progress import MAIN_METRICS

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_rounds(history: list[dict[str, Any]], zero_shot: dict[str, float], path: Path) -> None:
    """Test metrics of the global model per round, with zero-shot as dashed lines."""
    fig = rounds_figure(history, zero_shot)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def rounds_figure(history: list[dict[str, Any]], zero_shot: dict[str, float]) -> Figure:
    """The figure of `plot_rounds` (apart, so a test can read its axes)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, name in enumerate(m for m in MAIN_METRICS if m in zero_shot):
        rows = [r for r in history if name in r]
        colour = f"C{i}"
        ax.plot(
            [0] + [r["round"] for r in rows],
            [zero_shot[name]] + [r[name] for r in rows],
            marker="o",
            markersize=3,
            color=colour,
            label=name,
        )
        ax.axhline(zero_shot[name], color=colour, linestyle="--", linewidth=0.8, alpha=0.6)
    ax.set_xlabel("round")
    # rounds are whole: no 2.5 tick; steps of 1, 2, 5 or 10 rounds (the default also allows 3, 6, 8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_ylabel("test metric (global model)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("global model per round (dashed: zero-shot)")
    fig.tight_layout()
    return fig
