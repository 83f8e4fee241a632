"""`fedmllm report DIR`: results.csv/.json, Markdown tables and PNG plots from a bench folder's
finished cells (and tuning.json from its [tuning] grid cells). Deterministic: the same cells give
byte-identical tables."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from fedmllm.bench import tuning
from fedmllm.bench.matrix import (
    DATASET_METRICS,
    DONE,
    FAILED,
    NO_GLOBAL_MODEL,
    Cell,
    Matrix,
    expand,
    expand_tuning,
    parse,
    slug,
    swept_key,
)
from fedmllm.bench.stats import Interval, mean_ci, paired_difference
from fedmllm.errors import FedmllmError
from fedmllm.rundir import write_json, write_text

__all__ = ["DATASET_METRICS", "write_report"]  # DATASET_METRICS lives in matrix (the tuning default)

COLUMNS = (
    "model", "dataset", "scenario", "scenario_value", "algorithm", "strategy", "seed",
    "metric", "value", "rounds", "bytes", "seconds", "epsilon", "delta", "phase", "eval_split",
)  # fmt: skip
# (epsilon, delta: a DP cell's privacy budget after its last round, empty without DP), then one
# column per [tuning] grid key: the grid point (phase "tuning") or the value the cell ran with
# (phase "main", for the keys tuned for its algorithm)
ZERO_SHOT = "zero-shot"
PRIVACY_NOTE = (
    "RDP accountant; clients assumed Poisson-sampled at rate clients per round / num_clients (each cell's "
    "summary.json `privacy` states the assumptions)."
)
REFERENCE = "fedavg"  # the row every federated row is compared with, paired by seed
Table = dict[str, dict[Any, dict[int, float]]]  # method -> scenario value -> seed -> metric
HEADER = [
    "- Values: mean ± the 95% confidence half-width over seeds, t·sd/√n with Student's t at n − 1 degrees "
    "of freedom (t = 12.71 for n = 2, 4.30 for n = 3: few seeds give wide intervals), and n, the seeds "
    "finished; one seed shows no ±. Scores on the test split.",
    "- † : the row's difference from FedAvg (strategy none) in the same column, paired by seed, has a 95% "
    "CI (mean difference ± t·sd/√n over the seeds both finished) that excludes 0. The means give its sign; "
    "fewer than 2 shared seeds never mark.",
    "- **Bold**: the best federated mean per column (zero-shot, local and centralized are reference rows).",
]


def load_matrix(out: Path) -> Matrix:
    path = out / "matrix.json"
    if not path.is_file():
        raise FedmllmError(f"{out}: not a bench folder (no matrix.json; run `fedmllm bench` first)")
    return parse(json.loads(path.read_text(encoding="utf-8")), str(path))


def grid_values(matrix: Matrix, cell: Cell) -> dict[str, Any]:
    """The cell's values of the [tuning] grid keys (columns of results.csv)."""
    if matrix.tuning is None:
        return {}
    if cell.point:
        return dict(cell.point)
    return {k: getattr(cell.config, k) for k in matrix.tuning.grid.get(cell.algorithm, {})}


def collect(
    out: Path, cells: list[Cell], matrix: Matrix, phase: str = "main"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[Cell, list]]:
    """Long-format rows of the finished cells, the failed cells, and each cell's per-round rows.
    Tuning cells (phase "tuning") give their final dev scores only: no zero-shot, no curves."""
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    history: dict[Cell, list[dict[str, Any]]] = {}
    zero_seen: set[tuple] = set()
    blank = dict.fromkeys(matrix.tuning.keys() if matrix.tuning else [], "")
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
        } | budget(summary)
        tail = {"phase": phase, "eval_split": summary.get("eval_split", "test")}  # older cells: test
        for metric, value in summary["final"].items():
            rows.append(
                base
                | {"algorithm": cell.algorithm, "strategy": cell.strategy, "metric": metric, "value": value}
                | cost
                | tail
                | blank
                | grid_values(matrix, cell)
            )
        history[cell] = []
        if phase != "main":
            continue
        prompt = "prompt_aug" if cell.config.prompt_augmentation else "none"
        if (key := (*base.values(), prompt)) not in zero_seen:  # the same test set: once per column and seed
            zero_seen.add(key)
            for metric, value in summary["zero_shot"].items():
                rows.append(
                    base
                    | {"algorithm": ZERO_SHOT, "strategy": prompt, "metric": metric, "value": value}
                    | {"rounds": 0, "bytes": 0, "seconds": 0.0, "epsilon": None, "delta": None}
                    | tail
                    | blank
                )
        lines = (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        history[cell] = [{"round": 0, **summary["zero_shot"]}] + [json.loads(line) for line in lines]
    return rows, failed, history


def budget(summary: dict[str, Any]) -> dict[str, Any]:
    """A DP cell's final epsilon at its delta (inf: no noise); None without DP, or for a cell
    recorded before fedmllm reported epsilon."""
    privacy = summary.get("privacy")
    if privacy is None or "delta" not in privacy:
        return {"epsilon": None, "delta": None}
    eps = privacy["epsilon"]
    return {"epsilon": math.inf if eps is None else eps, "delta": privacy["delta"]}


def write_report(out: Path) -> dict[str, Any]:
    """Write results.csv, results.json, tables.md, plots/ and (with [tuning]) tuning.json;
    returns counts."""
    matrix = load_matrix(out)
    found = tuning.choices(matrix, out)
    blocked = tuning.waiting(found)
    cells = expand(matrix, tuning.tuned(found))
    ready = [c for c in cells if (c.model, c.dataset, c.algorithm) not in blocked]
    rows, failed, history = collect(out, ready, matrix)
    grid_cells = expand_tuning(matrix)
    grid_rows, grid_failed, grid_done = collect(out, grid_cells, matrix, phase="tuning")
    columns = COLUMNS + tuple(matrix.tuning.keys() if matrix.tuning else ())
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(grid_rows + rows)
    write_text(out / "results.csv", buffer.getvalue())
    counts = {"cells": len(cells), "finished": len(history), "failed": len(failed)}
    results = counts | {"failed": grid_failed + failed, "results": grid_rows + rows}
    if matrix.tuning:
        payload = tuning.payload(matrix, found)
        write_json(out / "tuning.json", payload)
        results["tuning"] = payload
        counts |= {
            "tuning_cells": len(grid_cells),
            "tuning_finished": len(grid_done),
            "waiting": len(cells) - len(ready),
        }
    write_json(out / "results.json", results)
    write_text(out / "tables.md", markdown(matrix, rows, grid_failed + failed, len(cells), len(history), found))
    write_plots(out, matrix, rows, history)
    return counts


def write_plots(out: Path, matrix: Matrix, rows: list[dict[str, Any]], history: dict[Cell, list]) -> None:
    from fedmllm.bench.plots import plot_bars, plot_curves

    for (model, dataset, scenario), group in groups(rows).items():
        metric = table_metrics(matrix, dataset, group)[0]
        folder = out / "plots" / slug(model) / dataset
        folder.mkdir(parents=True, exist_ok=True)
        data = {
            m: {v: list(seeds.values()) for v, seeds in per.items()} for m, per in table(matrix, group, metric).items()
        }
        plot_bars(data, metric, f"{model} · {dataset} · {scenario}", folder / f"{scenario}.png")
        for value in dict.fromkeys(r["scenario_value"] for r in group):
            per_method: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
            for c, h in history.items():
                if (c.model, c.dataset, c.scenario, c.value) == (model, dataset, scenario, value):
                    per_method[method_name(c.algorithm, c.strategy)].append(h)
            title = f"{model} · {dataset} · {scenario}={value}"
            plot_curves(per_method, metric, title, folder / f"{scenario}-{value}-rounds.png")


def method_name(algorithm: str, strategy: str) -> str:
    return algorithm if strategy == "none" else f"{algorithm} + {strategy}"


def groups(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r["model"], r["dataset"], r["scenario"]].append(r)
    return out


def table_metrics(matrix: Matrix, dataset: str, group: list[dict[str, Any]]) -> list[str]:
    """The matrix's metrics, else the dataset's (and their ood_ twins), keeping only those the
    cells produced (e.g. gen_auc needs generate_eval)."""
    present = dict.fromkeys(r["metric"] for r in group)
    wanted = matrix.metrics or [name for m in DATASET_METRICS.get(dataset, ()) for name in (m, f"ood_{m}")]
    return [m for m in wanted if m in present] or [next(iter(present))]


def method_order(matrix: Matrix) -> list[str]:
    """zero-shot, local, centralized (the paper's reference rows), then the FL algorithms."""
    baselines = [a for a in NO_GLOBAL_MODEL if a in matrix.algorithms]
    algorithms = baselines + [a for a in matrix.algorithms if a not in NO_GLOBAL_MODEL]
    zero = [method_name(ZERO_SHOT, s) for s in ("none", "prompt_aug")]
    return zero + [method_name(a, s) for a in algorithms for s in matrix.strategies]


def table(matrix: Matrix, group: list[dict[str, Any]], metric: str) -> Table:
    """method -> scenario value -> seed -> the metric, in table order."""
    values: dict[str, dict[Any, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in group:
        if r["metric"] == metric:
            values[method_name(r["algorithm"], r["strategy"])][r["scenario_value"]][r["seed"]] = r["value"]
    return {m: dict(values[m]) for m in method_order(matrix) if m in values}


def interval_text(iv: Interval) -> str:
    spread = f" ± {iv.half:.3f}" if iv.half is not None else ""
    return f"{iv.mean:.3f}{spread} (n={iv.n})"


def differs_from_reference(method: str, seeds: dict[int, float], reference: dict[int, float] | None) -> bool:
    """A federated row whose paired difference from FedAvg has a 95% CI excluding 0."""
    if not federated(method) or method == REFERENCE or reference is None:
        return False
    diff = paired_difference(seeds, reference)
    return diff is not None and diff.excludes_zero


def column(data: Table, value: Any) -> dict[str, str]:
    """The cells of one column: mean ± CI (n), bold for the best federated mean, † where the
    row differs from FedAvg."""
    per = {m: d[value] for m, d in data.items() if value in d}
    stats = {m: mean_ci(list(seeds.values())) for m, seeds in per.items()}
    best = max((iv.mean for m, iv in stats.items() if federated(m)), default=None)
    texts = {}
    for method, iv in stats.items():
        text = interval_text(iv)
        text = f"**{text}**" if federated(method) and iv.mean == best else text
        texts[method] = text + (" †" if differs_from_reference(method, per[method], per.get(REFERENCE)) else "")
    return texts


def markdown(
    matrix: Matrix,
    rows: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    cells: int,
    finished: int,
    found: list[tuning.Choice] | None = None,
) -> str:
    main_failed = sum(not f["cell"].startswith("tuning") for f in failed)
    lines = ["# fedmllm bench results", "", f"{finished} of {cells} cells finished, {main_failed} failed.", "", *HEADER]
    if matrix.tuning:
        lines += tuning_section(matrix, found or [])
    lines += overview(matrix, rows)
    lines += privacy_section(matrix, rows)
    for (model, dataset, scenario), group in groups(rows).items():
        values = list(dict.fromkeys(r["scenario_value"] for r in group))
        swept = swept_key(matrix.scenarios[scenario])
        for metric in table_metrics(matrix, dataset, group):
            data = table(matrix, group, metric)
            seeds = max(len(s) for per in data.values() for s in per.values())
            lines += ["", f"## {model} · {dataset} · {scenario} ({swept}) — {metric}, n ≤ {seeds}", ""]
            lines += ["| method | " + " | ".join(str(v) for v in values) + " |", "|---|" + "---:|" * len(values)]
            columns = {v: column(data, v) for v in values}
            for method in data:
                lines.append(f"| {method} | " + " | ".join(columns[v].get(method, "") for v in values) + " |")
    if failed:
        lines += ["", "## failed cells", ""] + [f"- `{f['cell']}`: {f['error']}" for f in failed]
    return "\n".join(lines) + "\n"


def overview(matrix: Matrix, rows: list[dict[str, Any]]) -> list[str]:
    """Per model and dataset, the main metric of every scenario column side by side: the one
    table to read first."""
    lines = []
    by_dataset: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_dataset[r["model"], r["dataset"]].append(r)
    for (model, dataset), group in by_dataset.items():
        metric = table_metrics(matrix, dataset, group)[0]
        columns = list(dict.fromkeys((r["scenario"], r["scenario_value"]) for r in group))
        texts = []
        for scenario, value in columns:
            sub = [r for r in group if (r["scenario"], r["scenario_value"]) == (scenario, value)]
            texts.append(column(table(matrix, sub, metric), value))
        methods = [m for m in method_order(matrix) if any(m in t for t in texts)]
        lines += ["", f"## Overview: {model} · {dataset} — {metric}", ""]
        lines += ["| method | " + " | ".join(f"{s}={v}" for s, v in columns) + " |", "|---|" + "---:|" * len(columns)]
        for method in methods:
            lines.append(f"| {method} | " + " | ".join(t.get(method, "") for t in texts) + " |")
    return lines


def privacy_section(matrix: Matrix, rows: list[dict[str, Any]]) -> list[str]:
    """Per model and dataset, the epsilon each DP method reached in each scenario column (the
    largest over seeds: they differ only where a client was lost); nothing without DP cells."""
    spent: dict[tuple[str, str], dict[str, dict[tuple[str, Any], tuple[float, float]]]] = defaultdict(dict)
    for r in rows:
        if r.get("epsilon") is None:  # no DP (rows built by hand may lack the key)
            continue
        per = spent[r["model"], r["dataset"]].setdefault(method_name(r["algorithm"], r["strategy"]), {})
        key, value = (r["scenario"], r["scenario_value"]), (r["epsilon"], r["delta"])
        per[key] = max(per[key], value) if key in per else value
    lines = []
    for (model, dataset), methods in spent.items():
        columns = list(dict.fromkeys(k for per in methods.values() for k in per))
        lines += ["", f"## Privacy budget: {model} · {dataset} — epsilon (delta) after the last round", ""]
        lines += ["| method | " + " | ".join(f"{s}={v}" for s, v in columns) + " |", "|---|" + "---:|" * len(columns)]
        for method in (m for m in method_order(matrix) if m in methods):
            per = methods[method]
            texts = [f"{per[c][0]:.2f} ({per[c][1]:g})" if c in per else "" for c in columns]
            lines.append(f"| {method} | " + " | ".join(texts) + " |")
        lines += ["", PRIVACY_NOTE]
    return lines


def tuning_section(matrix: Matrix, found: list[tuning.Choice]) -> list[str]:
    """The grid, each point's dev score and the choice, per model and dataset."""
    assert matrix.tuning is not None
    spec = matrix.tuning
    values = matrix.scenarios[spec.scenario]
    swept = swept_key(values)
    lines = [
        "",
        "## Tuning",
        "",
        f"Before the cells, every grid point ran as a cell on {spec.scenario} ({swept} = {values[swept][0]}), "
        f"strategy none, seeds {spec.seeds}, scoring the **dev** split (the test split stays unseen). Per model, "
        "dataset and algorithm, the point with the best mean dev score (ties: the first in grid order) is "
        "chosen (✓); every cell of that algorithm, in every scenario column and strategy, runs with it (it "
        "overrides algorithm_settings). Algorithms without a grid, and datasets the tuning scenario does not "
        "cover, run with algorithm_settings.",
    ]
    by_dataset: dict[tuple[str, str], list[tuning.Choice]] = defaultdict(list)
    for choice in found:
        by_dataset[choice.model, choice.dataset].append(choice)
    for (model, dataset), choices in by_dataset.items():
        keys = list(dict.fromkeys(k for c in choices for k in spec.grid[c.algorithm]))
        lines += ["", f"### {model} · {dataset} — dev {choices[0].metric}", ""]
        lines += ["| algorithm | " + " | ".join(keys) + " | dev score | chosen |", "|---|" + "---:|" * (len(keys) + 2)]
        for c in choices:
            for i, g in enumerate(c.grid):
                point = dict(g.point)
                score = interval_text(mean_ci(list(g.scores.values()))) if g.scores else ""
                score += f" ({len(g.missing)} seed(s) unfinished)" if g.missing else ""
                cells = [str(point.get(k, "")) for k in keys] + [score, "✓" if i == c.chosen else ""]
                lines.append(f"| {c.algorithm} | " + " | ".join(cells) + " |")
        waiting = [c.algorithm for c in choices if c.chosen is None]
        if waiting:
            lines += ["", f"Grid unfinished, so no choice and no cells yet: {', '.join(waiting)}."]
    return lines


def federated(method: str) -> bool:
    return method.split(" + ")[0] not in (ZERO_SHOT, *NO_GLOBAL_MODEL)
