"""Sections overhead and trainer: fedmllm's round against a bare PyTorch loop and a per-client HF Trainer.

The trainer section's rounds are paired with fedmllm's rounds here, so it runs inside this one.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from fedmllm.checkpoint import load as load_checkpoint
from fedmllm.config import RunConfig
from fedmllm.model.collate import collate, encode
from fedmllm.scenarios.prompts import target_text

from .common import CORES, base_config, max_diff
from .pairing import Replica, TrainOne, bare_step, paired


def run(args: argparse.Namespace, tmp: Path, out: dict[str, Any]) -> None:
    """fedmllm one client at a time with all cores, paired round by round with the bare loop
    and (section trainer) the Trainer design, all with all cores; then (section trainer)
    fedmllm's default, clients side by side on one core each, paired with the Trainer."""
    cfg = base_config(args, tmp / "fedmllm-seq", client_cpus=float(CORES))
    fed = paired(cfg, sequential_designs(cfg, tmp, with_trainer="trainer" in args.sections))
    out["fedmllm_seq"] = fed
    out["overhead"] = overhead_figures(fed)
    if "trainer" in args.sections:
        par = default_run(args, cfg, tmp)
        out["overhead"].update(default_figures(par))
        out["trainer"] = trainer_figures(fed, par)


def sequential_designs(cfg: RunConfig, tmp: Path, with_trainer: bool) -> dict[str, Replica]:
    designs = {"bare": bare_step(cfg)}
    if with_trainer:
        designs["trainer"] = trainer_step(cfg, tmp / "trainer-scratch")
    # the bare loop again, paired the same way: the two copies differ only by the machine's noise,
    # so their ratio is the smallest difference this run can tell from noise
    designs["bare-again"] = bare_step(cfg)
    return {name: Replica(cfg, fn, tmp / f"{name}-data") for name, fn in designs.items()}


def overhead_figures(fed: dict[str, Any]) -> dict[str, Any]:
    bare, again = fed["replicas"]["bare"], fed["replicas"]["bare-again"]
    steady_rows = fed["rows"][1:-1]
    final = load_checkpoint(Path(fed["out"])).state.global_params
    ratios = [1 / x for x in bare["vs_fedmllm"]]  # fedmllm's round over the bare loop's
    noise = [a / b for a, b in zip(again["per_round"][1:-1], bare["per_round"][1:-1], strict=True)]
    return {
        "fedmllm_steady_s": fed["steady"],
        "bare_steady_s": bare["steady"],
        "ratio": statistics.median(ratios),
        "per_round_ratios": ratios,
        "noise_ratio": statistics.median(noise),
        "noise_per_round_ratios": noise,
        "noise_adapter_max_abs_diff": max_diff(again["params"], bare["params"]),
        # within one run: round wall time over the clients' own time, the same seconds on both sides
        "within_run_ratio": statistics.median(r["seconds"] / r["client_seconds"] for r in steady_rows),
        # the clients' own time in fedmllm's workers over the bare loop's round, round by round
        "compute_ratio": statistics.median(
            r["client_seconds"] / b for r, b in zip(steady_rows, bare["per_round"][1:-1], strict=True)
        ),
        "fedmllm_startup_s": fed["startup"],
        "final_adapter_max_abs_diff": max_diff(final, bare["params"]),
        "server_model_loads": fed["summary"]["server_model_loads"],
        "client_model_loads_per_worker": fed["summary"]["client_model_loads"],
    }


def default_run(args: argparse.Namespace, cfg: RunConfig, tmp: Path) -> dict[str, Any]:
    """fedmllm with its default client_cpus = 1 (Flower runs clients side by side), paired with
    the Trainer and the bare loop, which run one client at a time on all cores as before."""
    cfg_par = base_config(args, tmp / "fedmllm-par")
    ref_cfg = cfg.replace(out=cfg_par.out)
    return paired(
        cfg_par,
        {
            "trainer": Replica(ref_cfg, trainer_step(ref_cfg, tmp / "trainer-scratch"), tmp / "t2"),
            "bare": Replica(ref_cfg, bare_step(ref_cfg), tmp / "b2"),
        },
    )


def default_figures(par: dict[str, Any]) -> dict[str, Any]:
    bare_par = par["replicas"]["bare"]
    default_ratios = [1 / x for x in bare_par["vs_fedmllm"]]
    return {
        "default_ratio": statistics.median(default_ratios),
        "default_per_round_ratios": default_ratios,
        "default_steady_s": par["steady"],
        "default_bare_steady_s": bare_par["steady"],
    }


def trainer_figures(fed: dict[str, Any], par: dict[str, Any]) -> dict[str, Any]:
    trainer_seq, trainer_par = fed["replicas"]["trainer"], par["replicas"]["trainer"]
    return {
        "trainer_steady_s": trainer_seq["steady"],
        "trainer_steady_par_run_s": trainer_par["steady"],
        "fedmllm_seq_steady_s": fed["steady"],
        "fedmllm_par_steady_s": par["steady"],
        "speedup_seq": statistics.median(trainer_seq["vs_fedmllm"]),
        "speedup_par": statistics.median(trainer_par["vs_fedmllm"]),
        "per_round_speedups_seq": trainer_seq["vs_fedmllm"],
        "per_round_speedups_par": trainer_par["vs_fedmllm"],
    }


def trainer_step(cfg: RunConfig, scratch: Path) -> TrainOne:
    """A `transformers.Trainer` per client update, as the reference design builds it."""
    from transformers import PrinterCallback, Trainer, TrainingArguments

    def train_one(sess: Any, samples: list, lr: float, seed: int) -> float:
        pad = sess.processor.tokenizer.pad_token_id
        args = TrainingArguments(
            output_dir=str(scratch),
            max_steps=cfg.local_steps,
            per_device_train_batch_size=cfg.batch_size,
            learning_rate=lr,
            lr_scheduler_type="constant",
            weight_decay=0.0,
            max_grad_norm=1.0,
            seed=seed,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            use_cpu=sess.device.type == "cpu",
            remove_unused_columns=False,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=sess.model,
            args=args,
            train_dataset=samples,
            data_collator=lambda chunk: collate([encode(sess.processor, s, target_text(s)) for s in chunk], pad),
        )
        trainer.remove_callback(PrinterCallback)  # one metrics dict per client update otherwise
        return float(trainer.train().training_loss)

    return train_one
