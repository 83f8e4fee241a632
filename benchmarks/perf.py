"""Speed, memory, scale and bytes of fedmllm, measured side by side in one run. Prints one table.

    python benchmarks/perf.py [--rounds 8] [--steps 8] [--sections overhead,trainer,memory,bytes,records,eval]
                              [--json perf.json]

Every ratio compares designs run here on the same model, data, clients, seeds and number of
client steps (FedAvg on the default scenario, the built-in tiny model), paired round by round:
after fedmllm's round r (in the report callback, in the server process, while the simulation
waits) each other design runs its own round r, so all of them meet the same machine minute.

- overhead: R rounds through `fedmllm` (Flower's Simulation Engine, one client at a time with all
  cores) against a bare PyTorch loop in one process that runs exactly the same client updates and
  the same server rule. The final adapters must agree. The figure is the median over the steady
  rounds 2..R-1 of fedmllm's round time over the bare loop's (round R also scores the model);
  start-up = everything before round 1 ends, minus one steady round. A second copy of the bare
  loop is paired the same way: its ratio to the first is the run's resolution (noise alone).
- trainer: the common reference design, a `transformers.Trainer` built per client per round (as
  public FedMLLM/OpenFedLLM code does, one client after another on all cores), against fedmllm
  one client at a time and with its default `client_cpus = 1` (Flower runs as many clients at
  once as cores allow).
- padding: tokens of padding in a round's batches and the client update's time, with plain
  shuffled batches and with `group_by_length` (batches of similar token length).
- memory: peak resident memory of the whole process tree (server, Ray, client workers) with
  10, 100 and 1000 virtual clients, 10 sampled per round, SCAFFOLD (per-client state on the server).
- bytes: bytes per round down and up, against the full model's parameter bytes, and with
  `update_dtype` bfloat16 / float16 (final AUC alongside).
- records: a message's tensors into Flower's ArrayRecord and back, Flower's own conversion
  against fedmllm's, for the tiny adapter and a LoRA shaped like one on Qwen2-VL-2B.
- eval: test items per second, batched option-likelihood scoring against one-at-a-time generation.
"""

# The measurements live in perf_sections/ (one module per section, each with `run(args, tmp, out)`)
# and the table in perf_table.py; this file parses the arguments, runs the sections and prints.

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from perf_sections import bytes_sent, eval_speed, memory, overhead, padding, records
from perf_sections.common import CORES
from perf_sections.memory import watch  # noqa: F401  (benchmarks/tiny_vs_smol.py imports it from here)
from perf_table import table

SECTIONS = ("overhead", "trainer", "padding", "memory", "bytes", "records", "eval")
# the order sections run in; "trainer" has none: its rounds are paired with fedmllm's in overhead
RUNS = {
    "overhead": overhead.run,
    "padding": padding.run,
    "memory": memory.run,
    "bytes": bytes_sent.run,
    "records": records.run,
    "eval": eval_speed.run,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny', a hub id or a model folder (e.g. random weights)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=16, help="more rounds, more paired steady rounds")
    parser.add_argument("--steps", type=int, default=8, help="local steps per client update")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--clients", default="10,100,1000", help="memory: numbers of virtual clients")
    parser.add_argument("--memory-rounds", type=int, default=3)
    parser.add_argument("--generate-items", type=int, default=50, help="eval: items generated one at a time")
    parser.add_argument("--json", default="", help="also write every figure here")
    parser.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        return args
    args.clients = [int(n) for n in args.clients.split(",")]
    if args.rounds < 4:
        parser.error("--rounds must be at least 4 (steady state is rounds 2..R-1)")
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    if "trainer" in sections and "overhead" not in sections:
        sections.insert(0, "overhead")  # the Trainer's rounds are paired with fedmllm's there
    args.sections = sections
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.memory_child:
        memory.child(args)
        return
    out: dict[str, Any] = {"cores": CORES, "torch": torch.__version__}
    with tempfile.TemporaryDirectory(prefix="fedmllm-perf-") as tmp:
        for name, run in RUNS.items():
            if name in args.sections:
                print(f"[perf] {name} ...", file=sys.stderr, flush=True)
                run(args, Path(tmp), out)
    print(table(out))
    if args.json:
        # fedmllm_seq is the raw run the overhead section shares with bytes (rows, adapter tensors), not a figure
        clean = {k: v for k, v in out.items() if k != "fedmllm_seq"}
        Path(args.json).write_text(json.dumps(clean, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
