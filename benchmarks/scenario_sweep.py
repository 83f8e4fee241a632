"""The heterogeneity sweep of BENCHMARK.md §4 on the synthetic Hateful Memes twin with the tiny
model: one `fedmllm run` per scenario value (FedAvg, one seed). Prints a Markdown table of the
final test metrics and the per-modality breakdown of the full-modality test items. Not a test.

    python benchmarks/scenario_sweep.py --out sweep/ [--rounds 10]

Rerunning skips cells whose run folder already has a summary.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

CELLS = [
    ("dirichlet", "alpha", 5.0, ["--scenario", "none", "--dirichlet-alpha", "5.0"]),
    ("dirichlet", "alpha", 1.0, ["--scenario", "none", "--dirichlet-alpha", "1.0"]),
    ("dirichlet", "alpha", 0.5, ["--scenario", "none", "--dirichlet-alpha", "0.5"]),
    ("missing", "m", 0.3, ["--scenario", "missing", "--missing-rate", "0.3"]),
    ("missing", "m", 0.4, ["--scenario", "missing", "--missing-rate", "0.4"]),
    ("missing", "m", 0.5, ["--scenario", "missing", "--missing-rate", "0.5"]),
    ("cross_modality", "k", 3, ["--scenario", "cross_modality", "--image-clients", "3"]),
    ("cross_modality", "k", 5, ["--scenario", "cross_modality", "--image-clients", "5"]),
    ("cross_modality", "k", 7, ["--scenario", "cross_modality", "--image-clients", "7"]),
    ("hybrid", "q", 0.2, ["--scenario", "hybrid", "--hybrid-rate", "0.2"]),
    ("hybrid", "q", 0.3, ["--scenario", "hybrid", "--hybrid-rate", "0.3"]),
    ("hybrid", "q", 0.4, ["--scenario", "hybrid", "--hybrid-rate", "0.4"]),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("sweep"))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--extra", nargs="*", default=[], help="more fedmllm run flags for every cell")
    args = parser.parse_args()
    rows = []
    for scenario, param, value, flags in CELLS:
        run_dir = args.out / f"{scenario}-{param}{value}"
        if not (run_dir / "summary.json").is_file():
            shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished cell starts over
            start = time.perf_counter()
            cmd = [
                sys.executable,
                "-m",
                "fedmllm",
                "run",
                "--rounds",
                str(args.rounds),
                "--out",
                str(run_dir),
                "--no-generate-eval",
                *flags,
                *args.extra,
            ]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            print(f"{run_dir.name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        rows.append((scenario, f"{param}={value}", json.loads((run_dir / "summary.json").read_text())))
    print("| scenario | value | zero-shot AUC | AUC | accuracy | image-only acc | text-only acc | s/round |")
    print("|---|---|---|---|---|---|---|---|")
    for scenario, value, s in rows:
        f = s["final"]
        print(
            f"| {scenario} | {value} | {s['zero_shot']['auc']:.3f} | {f['auc']:.3f} | {f['accuracy']:.3f} | "
            f"{f['image_only_accuracy']:.3f} | {f['text_only_accuracy']:.3f} | {s['seconds_per_round']:.1f} |"
        )


if __name__ == "__main__":
    main()
