"""Every baseline x {none, prompt augmentation, adaptive regularization, both} on the embedded
default data (synthetic Hateful Memes, 10 clients, Dirichlet 0.5, missing modality 0.3), one seed.
Runs `fedmllm run` once per cell (resumable: finished cells are skipped) and prints a Markdown
table of final AUC / accuracy. Not a test.

    python benchmarks/algorithm_table.py --out algos/ [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ALGORITHMS = ["fedavg", "fedprox", "fedavgm", "fedadagrad", "fedadam", "fedyogi", "scaffold", "centralized", "local"]
STRATEGIES = {
    "none": [],
    "prompt_aug": ["--prompt-augmentation"],
    "adaptive_reg": ["--adaptive-regularization"],
    "both": ["--prompt-augmentation", "--adaptive-regularization"],
}


def cells(with_strategies: list[str]) -> list[tuple[str, str]]:
    """Plain runs of every algorithm first, then the strategies for `with_strategies` (adaptive
    regularization needs a global model to pull towards, so Local and Centralized get prompt
    augmentation only)."""
    first = [(a, "none") for a in ALGORITHMS]
    rest = [
        (a, s)
        for a in with_strategies
        for s in ("prompt_aug", "adaptive_reg", "both")
        if not (a in ("local", "centralized") and s != "prompt_aug")
    ]
    return first + rest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("algos"))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--strategies-for",
        nargs="*",
        default=ALGORITHMS,
        choices=ALGORITHMS,
        help="algorithms to combine with the strategies (default: all)",
    )
    parser.add_argument("--report-only", action="store_true", help="print the table of the finished cells only")
    args = parser.parse_args()
    results = {}
    for algorithm, strategy in cells(args.strategies_for):
        run_dir = args.out / f"{algorithm}-{strategy}"
        if args.report_only and not (run_dir / "summary.json").is_file():
            continue
        if not (run_dir / "summary.json").is_file():
            shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished cell starts over
            start = time.perf_counter()
            cmd = [
                sys.executable,
                "-m",
                "fedmllm",
                "run",
                "--algorithm",
                algorithm,
                "--rounds",
                str(args.rounds),
                "--eval-every",
                str(args.rounds),
                "--no-generate-eval",
                "--out",
                str(run_dir),
                *STRATEGIES[strategy],
            ]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            print(f"{run_dir.name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        results[algorithm, strategy] = json.loads((run_dir / "summary.json").read_text())
    if not results:
        sys.exit(f"{args.out}: no finished cells")
    zero = next(iter(results.values()))["zero_shot"]
    print("| algorithm | " + " | ".join(f"{s} AUC / acc" for s in STRATEGIES) + " |")
    print("|---|" + "---|" * len(STRATEGIES))
    print(f"| zero-shot | {zero['auc']:.3f} / {zero['accuracy']:.3f} |" + " |" * (len(STRATEGIES) - 1))
    for algorithm in ALGORITHMS:
        row = []
        for strategy in STRATEGIES:
            s = results.get((algorithm, strategy))
            row.append(f"{s['final']['auc']:.3f} / {s['final']['accuracy']:.3f}" if s else "n/a")
        print(f"| {algorithm} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
