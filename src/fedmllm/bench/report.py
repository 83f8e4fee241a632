"""`fedmllm report DIR`: results.csv/.json, Markdown tables and PNG plots from a bench folder's
finished cells. Deterministic: the same cells give byte-identical tables."""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from fedmllm.bench.matrix import NO_GLOBAL_MODEL, Cell, Matrix, expand, parse, slug
from fedmllm.bench.runner import DONE, FAILED
from fedmllm.errors import FedmllmError
from fedmllm.run import write_json, write_text

COLUMNS = (
    "model", "dataset", "scenario", "scenario_value", "algorithm", "strategy", "seed",
    "metric", "value", "rounds", "bytes", "seconds",
)  # fmt: skip
# the paper's metric per task first; the others follow
DATASET_METRICS = {
    "hateful_memes": ("auc", "accuracy"),
    "crisismmd": ("macro_f1", "accuracy"),
    "vqa_rad": ("overall", "closed_accuracy", "open_recall"),
    "slake": ("overall", "closed_accuracy", "open_recall"),
    "medalpaca": ("recall",),
}
ZERO_SHOT = "zero-shot"


def load_matrix(out: Path) -> Matrix:
    path = out / "matrix.json"
    if not path.is_file():
        raise FedmllmError(f"{out}: not a bench folder (no matrix.json; run `fedmllm bench` first)")
    return parse(json.loads(path.read_text(encoding="utf-8")), str(path))


def collect(out: Path, cells: list[Cell]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[Cell, list]]:
    """Long-format rows of the finished cells, the failed cells, and each cell's per-round rows."""
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    history: dict[Cell, list[dict[str, Any]]] = {}
    zero_seen: set[tuple] = set()
    for cell in cells:
        folder = out / cell.path
        if (folder / FAILED).is_file():
            record = json.loads((folder / FAILED).read_text(encoding="utf-8"))
            failed.append({"cell": str(cell.path), "error": record["error"]})
            continue
        if not (folder / DONE).is_file():
            continue
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        base = {
            "model": cell.model,
            "dataset": cell.dataset,
            "scenario": cell.scenario,
            "scenario_value": cell.value,
            "seed": cell.seed,
        }
        cost = {
            "rounds": summary["rounds"],
            "bytes": round(summary["bytes_per_round"] * summary["rounds"]),
            "seconds": round(summary["seconds"], 1),
        }
        for metric, value in summary["final"].items():
            rows.append(
                base
                | {"algorithm": cell.algorithm, "strategy": cell.strategy, "metric": metric}
                | {"value": value}
                | cost
            )
        prompt = "prompt_aug" if cell.config.prompt_augmentation else "none"
        if (key := (*base.values(), prompt)) not in zero_seen:  # the same test set: once per column and seed
            zero_seen.add(key)
            for metric, value in summary["zero_shot"].items():
                rows.append(
                    base
                    | {"algorithm": ZERO_SHOT, "strategy": prompt, "metric": metric, "value": value}
                    | {"rounds": 0, "bytes": 0, "seconds": 0.0}
                )
        lines = (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        history[cell] = [{"round": 0, **summary["zero_shot"]}] + [json.loads(line) for line in lines]
    return [{c: r[c] for c in COLUMNS} for r in rows], failed, history


def write_report(out: Path) -> dict[str, Any]:
    """Write results.csv, results.json, tables.md and plots/; returns counts."""
    matrix = load_matrix(out)
    cells = expand(matrix)
    rows, failed, history = collect(out, cells)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "results.csv", buffer.getvalue())
    finished = len(history)
    write_json(out / "results.json", {"cells": len(cells), "finished": finished, "failed": failed, "results": rows})
    write_text(out / "tables.md", markdown(matrix, rows, failed, len(cells)))
    from fedmllm.bench.plots import plot_bars, plot_curves

    for (model, dataset, scenario), group in groups(rows).items():
        metric = table_metrics(matrix, dataset, group)[0]
        folder = out / "plots" / slug(model) / dataset
        folder.mkdir(parents=True, exist_ok=True)
        plot_bars(table(matrix, group, metric), metric, f"{model} · {dataset} · {scenario}", folder / f"{scenario}.png")
        for value in dict.fromkeys(r["scenario_value"] for r in group):
            per_method: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
            for c, h in history.items():
                if (c.model, c.dataset, c.scenario, c.value) == (model, dataset, scenario, value):
                    per_method[method_name(c.algorithm, c.strategy)].append(h)
            title = f"{model} · {dataset} · {scenario}={value}"
            plot_curves(per_method, metric, title, folder / f"{scenario}-{value}-rounds.png")
    return {"cells": len(cells), "finished": finished, "failed": len(failed)}


def method_name(algorithm: str, strategy: str) -> str:
    return algorithm if strategy == "none" else f"{algorithm} + {strategy}"


def groups(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r["model"], r["dataset"], r["scenario"]].append(r)
    return out


def table_metrics(matrix: Matrix, dataset: str, group: list[dict[str, Any]]) -> list[str]:
    present = dict.fromkeys(r["metric"] for r in group)
    wanted = matrix.metrics or [name for m in DATASET_METRICS.get(dataset, ()) for name in (m, f"ood_{m}")]
    return [m for m in wanted if m in present] or [next(iter(present))]


def method_order(matrix: Matrix) -> list[str]:
    """zero-shot, local, centralized (the paper's reference rows), then the FL algorithms."""
    baselines = [a for a in NO_GLOBAL_MODEL if a in matrix.algorithms]
    algorithms = baselines + [a for a in matrix.algorithms if a not in NO_GLOBAL_MODEL]
    zero = [method_name(ZERO_SHOT, s) for s in ("none", "prompt_aug")]
    return zero + [method_name(a, s) for a in algorithms for s in matrix.strategies]


def table(matrix: Matrix, group: list[dict[str, Any]], metric: str) -> dict[str, dict[Any, list[float]]]:
    """method -> scenario value -> the metric over seeds, in table order."""
    values: dict[str, dict[Any, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in group:
        if r["metric"] == metric:
            values[method_name(r["algorithm"], r["strategy"])][r["scenario_value"]].append(r["value"])
    return {m: dict(values[m]) for m in method_order(matrix) if m in values}


def mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def markdown(matrix: Matrix, rows: list[dict[str, Any]], failed: list[dict[str, Any]], cells: int) -> str:
    finished = len({tuple(r[c] for c in COLUMNS[:7]) for r in rows if r["algorithm"] != ZERO_SHOT})
    lines = [
        "# fedmllm bench results",
        "",
        f"{finished} of {cells} cells finished, {len(failed)} failed. Mean ± std over seeds (n = seeds "
        "finished). **Bold**: the best federated method per column (zero-shot, local and centralized "
        "are reference rows).",
    ]
    lines += overview(matrix, rows)
    for (model, dataset, scenario), group in groups(rows).items():
        values = list(dict.fromkeys(r["scenario_value"] for r in group))
        swept = next(k for k, v in matrix.scenarios[scenario].items() if isinstance(v, list))
        for metric in table_metrics(matrix, dataset, group):
            data = table(matrix, group, metric)
            seeds = max(len(xs) for per in data.values() for xs in per.values())
            lines += ["", f"## {model} · {dataset} · {scenario} ({swept}) — {metric}, n ≤ {seeds}", ""]
            lines += ["| method | " + " | ".join(str(v) for v in values) + " |", "|---|" + "---:|" * len(values)]
            best = {
                v: max((mean_std(per[v])[0] for m, per in data.items() if v in per and federated(m)), default=None)
                for v in values
            }
            for method, per in data.items():
                row = []
                for v in values:
                    if v not in per:
                        row.append("")
                        continue
                    mean, std = mean_std(per[v])
                    text = f"{mean:.3f} ± {std:.3f}" if len(per[v]) > 1 else f"{mean:.3f}"
                    row.append(f"**{text}**" if federated(method) and mean == best[v] else text)
                lines.append(f"| {method} | " + " | ".join(row) + " |")
    if failed:
        lines += ["", "## failed cells", ""] + [f"- `{f['cell']}`: {f['error']}" for f in failed]
    return "\n".join(lines) + "\n"


def overview(matrix: Matrix, rows: list[dict[str, Any]]) -> list[str]:
    """Per model and dataset, the main metric of every scenario column side by side (mean over
    seeds): the one table to read first."""
    lines = []
    by_dataset: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_dataset[r["model"], r["dataset"]].append(r)
    for (model, dataset), group in by_dataset.items():
        metric = table_metrics(matrix, dataset, group)[0]
        columns = list(dict.fromkeys((r["scenario"], r["scenario_value"]) for r in group))
        data = {
            c: table(matrix, [r for r in group if (r["scenario"], r["scenario_value"]) == c], metric) for c in columns
        }
        methods = [m for m in method_order(matrix) if any(m in d for d in data.values())]
        lines += ["", f"## Overview: {model} · {dataset} — {metric} (mean over seeds)", ""]
        lines += ["| method | " + " | ".join(f"{s}={v}" for s, v in columns) + " |", "|---|" + "---:|" * len(columns)]
        for method in methods:
            cells = [f"{mean_std(d[method][c[1]])[0]:.3f}" if method in d else "" for c, d in data.items()]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def federated(method: str) -> bool:
    return method.split(" + ")[0] not in (ZERO_SHOT, *NO_GLOBAL_MODEL)
