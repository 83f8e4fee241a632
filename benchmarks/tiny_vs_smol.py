"""The built-in tiny model against the smol model (real SmolLM2 language model) on the same task
and scenario: `fedmllm run --preset smol`, once with `--model tiny`. Prints one table.

    python benchmarks/tiny_vs_smol.py [--out DIR]

Needs the smol model's weights (README, "The smol model"). Peak memory is the resident memory
of the whole process tree (server, Ray, client workers), sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from perf import watch  # noqa: E402


def run(model: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "fedmllm", "run", "--preset", "smol", "--model", model, "--out", str(out)]
    start = time.perf_counter()
    with (out.parent / f"{out.name}.log").open("w") as log:
        proc = psutil.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        peaks = watch(proc)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: see {out.parent / f'{out.name}.log'}")
    summary = json.loads((out / "summary.json").read_text())
    return {"summary": summary, "wall": time.perf_counter() - start, "peak_mb": peaks["tree"] / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="keep the two run folders here")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="tiny-vs-smol-"))
    root.mkdir(parents=True, exist_ok=True)
    results = {name: run(name, root / name) for name in ("tiny", "smol")}
    columns = ["model", "zero-shot AUC", "final AUC", "final accuracy", "s/round", "adapter MB/round (up+down)"]
    columns += ["trainable params", "peak RSS (tree)", "wall"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        s = r["summary"]
        print(
            f"| {name} | {s['zero_shot']['auc']:.3f} | {s['final']['auc']:.3f} | {s['final']['accuracy']:.3f} | "
            f"{s['seconds_per_round']:.1f} | {s['bytes_per_round'] / 1e6:.2f} | {s['trainable_parameters']:,} | "
            f"{r['peak_mb'] / 1024:.1f} GB | {r['wall'] / 60:.1f} min |"
        )
    (root / "tiny_vs_smol.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
