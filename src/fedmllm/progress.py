"""One progress line per round, the same for `fedmllm run` and `flwr run .`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def print_round(row: dict[str, Any], rounds: int) -> None:
    if row["round"] == 0:
        print(f"zero-shot       | {format_metrics(row)}", flush=True)
        return
    mb = (row["bytes_sent"] + row["bytes_received"]) / 1e6
    loss = "skipped (no usable update)" if row["train_loss"] is None else f"{row['train_loss']:.4f}"
    rejected = sorted({r["partition"] for r in row.get("rejected", [])})
    print(
        f"round {row['round']:>3}/{rounds} | clients {row['clients']}{f' (rejected {rejected})' if rejected else ''} | "
        f"loss {loss} | {format_metrics(row)} | {row['seconds']:.1f} s | {mb:.2f} MB{format_epsilon(row)}",
        flush=True,
    )
    if row.get("stopped"):  # the privacy budget ends the run before the next round
        print(row["stopped"], flush=True)


MAIN_METRICS = ("auc", "accuracy", "macro_f1", "closed_accuracy", "open_recall", "overall", "recall")


def format_metrics(row: dict[str, Any]) -> str:
    return " ".join(f"{k} {row[k]:.3f}" for k in MAIN_METRICS if k in row)


def format_epsilon(row: dict[str, Any]) -> str:
    """With DP: the cumulative epsilon after the round (null in the row: no noise, infinite)."""
    if "epsilon" not in row:
        return ""
    return f" | epsilon {'inf' if row['epsilon'] is None else format(row['epsilon'], '.2f')}"


def progress_printer(rounds: int) -> Callable[[dict[str, Any]], None]:
    return lambda row: print_round(row, rounds)
