"""The recipe: one federated run, from a RunConfig to a finished run folder.

The loop lives here and talks to the federation through a `Transport` (implemented with Flower
in `engine/`), so this file holds the logic and the engine only moves messages.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fedmllm import checkpoint
from fedmllm.config import RunConfig
from fedmllm.data import registry
from fedmllm.data.sample import Sample
from fedmllm.errors import FedmllmError
from fedmllm.evaluation.plots import plot_rounds
from fedmllm.evaluation.scoring import evaluate as evaluate_samples
from fedmllm.fl import accountant, client, privacy
from fedmllm.fl.attacks import attackers
from fedmllm.fl.schedule import cosine_lr, local_steps
from fedmllm.fl.screen import ClientUpdate
from fedmllm.fl.server import apply_round, jobs_for, screen_round
from fedmllm.fl.state import ServerState
from fedmllm.model.load import (
    LOADS,
    Session,
    check_model,
    load_trainable,
    model_spec,
    session,
    trainable_state,
)
from fedmllm.rundir import (
    append_row,
    check_extra,
    check_same_config,
    save_adapter,
    truncate_history,
    write_config,
    write_json,
)
from fedmllm.scenarios import split
from fedmllm.transport import RoundResult, Transport

log = logging.getLogger(__name__)


def preflight(cfg: RunConfig) -> None:
    """Fail fast, before any engine starts: the data folder and the model source must exist.
    (Generates the synthetic data and builds the tiny model on first use.)"""
    registry.resolve_folder(cfg.dataset, cfg.data_dir, data_sizes(cfg), cfg.synthetic_seed)
    check_model(model_spec(cfg))


def data_sizes(cfg: RunConfig) -> dict[str, int]:
    return {"train": cfg.synthetic_train, "dev": cfg.synthetic_dev, "test": cfg.synthetic_test}


def load_dataset(name: str, data_dir: str, cfg: RunConfig, split_name: str) -> list[Sample]:
    folder = registry.resolve_folder(name, data_dir, data_sizes(cfg), cfg.synthetic_seed)
    columns = cfg.data_columns if (name, data_dir) == (cfg.dataset, cfg.data_dir) else ""  # the main dataset's
    return registry.load_split(name, folder, split_name, allow_external=cfg.allow_external_paths, columns=columns)


def prepare_data(
    cfg: RunConfig, run_dir: Path, write: bool = True
) -> tuple[list[list[Sample]], dict[str, list[Sample]]]:
    """Build and write the client shards; return them and the evaluation sets by name ("test",
    "ood"), each read from the `eval_split` split (dev when tuning: the name "test" is the role).
    With client_data = "node" the nodes hold the training data: no shards, only the test sets."""
    tests = {"test": load_dataset(cfg.dataset, cfg.data_dir, cfg, cfg.eval_split)}
    if cfg.ood_dataset:
        tests["ood"] = load_dataset(cfg.ood_dataset, cfg.ood_data_dir, cfg, cfg.eval_split)
    if cfg.client_data == "node":
        return [], tests
    train = load_dataset(cfg.dataset, cfg.data_dir, cfg, "train")
    text_train = (
        load_dataset(cfg.text_dataset, cfg.text_data_dir, cfg, "train") if cfg.scenario == "cross_task" else None
    )
    shards = split.build(train, cfg, text_train)
    if write:  # a resumed run already has them (the same, rebuilt from the seed)
        split.write(shards, run_dir / "clients")
        write_json(run_dir / "clients" / "summary.json", split.describe(shards))
    log.info(
        "data: %s, %d train samples over %d clients; test sets: %s",
        cfg.dataset,
        sum(map(len, shards)),
        len(shards),
        {k: len(v) for k, v in tests.items()},
    )
    return shards, tests


def evaluate(sess: Session, tests: dict[str, list[Sample]], cfg: RunConfig, full: bool) -> dict[str, float]:
    """Metrics of the main test set; with `full` (zero-shot and final) also generation scoring,
    the out-of-domain set ("ood_" keys) and, with `eval_views` where samples have both
    modalities, the same test items with the image only and the text only ("image_only_" /
    "text_only_" keys)."""
    kwargs = {"batch_size": cfg.eval_batch_size, "variant": cfg.prompt_form}
    test = tests["test"]
    result = evaluate_samples(sess, test, generate=full and cfg.generate_eval, **kwargs)
    if not full:
        return result
    if "ood" in tests:
        result |= {f"ood_{k}": v for k, v in evaluate_samples(sess, tests["ood"], **kwargs).items()}
    if cfg.eval_views and all(s.image is not None and s.text is not None for s in test):
        for view, drop in (("image_only", {"text": True}), ("text_only", {"image": True})):
            scores = evaluate_samples(sess, [s.drop(**drop) for s in test], **kwargs)
            result |= {f"{view}_{k}": v for k, v in scores.items()}
    return result


def centralized_round(
    cfg: RunConfig, sess: Session, state: ServerState, pooled: list[Sample], rnd: int, lr: float
) -> RoundResult:
    """The upper-bound baseline: all training data in one place, the compute of one round's
    sampled clients (same steps), trained in this process without any federation."""
    share = cfg.sampled_per_round / cfg.num_clients
    steps = cfg.local_steps * cfg.sampled_per_round or local_steps(round(len(pooled) * share), cfg.batch_size, 0)
    t0 = time.perf_counter()
    load_trainable(sess.model, state.global_params)
    result = client.train(
        sess,
        pooled,
        lr=lr,
        steps=steps,
        batch_size=cfg.batch_size,
        seed=cfg.seed * 1_009 + rnd,
        variant=cfg.prompt_form,
        group_by_length=cfg.group_by_length,
    )
    params = trainable_state(sess.model)
    seconds = time.perf_counter() - t0
    update = ClientUpdate(-1, params, len(pooled), result.loss, result.steps, LOADS["count"], seconds=seconds)
    return RoundResult([update])


def evaluate_local(
    sess: Session, tests: dict[str, list[Sample]], cfg: RunConfig, state: ServerState
) -> dict[str, float]:
    """The Local baseline's score: mean over the clients' own models, with the spread."""
    per_client = []
    for k in range(cfg.num_clients):
        load_trainable(sess.model, state.client_models.get(k, state.global_params))
        per_client.append(evaluate(sess, tests, cfg, full=True))
    result = {}
    for key in per_client[0]:
        values = torch.tensor([m[key] for m in per_client], dtype=torch.float64)
        result[key], result[f"{key}_std"] = values.mean().item(), values.std(unbiased=False).item()
    return result


def federate(
    cfg: RunConfig,
    run_dir: Path,
    transport: Transport,
    report: Callable[[dict[str, Any]], None] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Run every round (with `resume`, every round after the run folder's checkpoint), writing
    the metrics line and then the checkpoint after each; returns the summary."""
    started = time.perf_counter()
    if resume:  # read and checked before the model loads: a bad folder costs nothing
        ckpt = checkpoint.load(run_dir)
        check_same_config(ckpt.config, cfg, run_dir)
        check_extra(ckpt.extra, run_dir)
    sess = session(model_spec(cfg))
    sess.prompts.budget_mb = cfg.prompt_cache_mb
    if resume:
        checkpoint.check(ckpt, run_dir, cfg.to_dict(), sess.initial)
        checkpoint.restore_rng(ckpt)  # after the model: loading LoRA draws from the RNG
        shards, tests = prepare_data(cfg, run_dir, write=False)
        state, zero_shot, latest = ckpt.state, ckpt.zero_shot, ckpt.extra["latest"]
        history = truncate_history(run_dir / "metrics.jsonl", state.round)
        log.info("resuming %s after round %d of %d", run_dir, state.round, cfg.rounds)
    else:
        write_config(cfg, run_dir / "config.toml")
        shards, tests = prepare_data(cfg, run_dir)
        # the initial tensors, not the model's: the process may have run before
        state = ServerState.start(sess.initial, cfg.seed, run_dir / checkpoint.CLIENT_FOLDER)
        load_trainable(sess.model, state.global_params)
        zero_shot = evaluate(sess, tests, cfg, full=True)
        latest, history = dict(zero_shot), []
        report and report({"round": 0, **zero_shot})

    run_msg = cfg.to_dict()
    if cfg.client_data == "split":
        run_msg["shard_dir"] = str((run_dir / "clients").resolve())
    nodes: dict[int, int] = {}
    pooled: list[Sample] = []
    if cfg.algo.pools_data:
        pooled = [s for shard in shards for s in shard]
    else:
        nodes = transport.partitions(run_msg)
        if sorted(nodes) != list(range(cfg.num_clients)):
            raise FedmllmError(
                f"the federation has partitions {sorted(nodes)}, but num_clients={cfg.num_clients} "
                "(start as many SuperNodes as clients, with partition-id 0..num_clients-1)"
            )
    alive = set(ckpt.alive) if resume else set(nodes)  # a lost client is not sampled again
    recent_norms = list(ckpt.extra.get("norms", [])) if resume else []  # the norm screen's memory
    sizes = [len(shard) for shard in shards] if cfg.client_data == "split" else None
    rates = [r["sampling_rate"] for r in history] if cfg.dp != "none" else []  # the accountant's rounds so far
    stopped = None
    for rnd in range(state.round + 1, cfg.rounds + 1):
        if cfg.dp != "none":
            rate = round_rate(cfg, alive)
            if stopped := over_budget(cfg, rates, rate):  # a resumed run that had stopped before this round
                log.info("%s", stopped)
                break
        t0 = time.perf_counter()
        state.begin_round(rnd)
        lr = cosine_lr(rnd - 1, cfg.rounds, cfg.lr, cfg.warmup)
        if cfg.algo.pools_data:  # the server's own update: nothing to screen
            result = centralized_round(cfg, sess, state, pooled, rnd, lr)
        else:
            # with per-client models every client trains every round; the others sample clients
            count = len(alive) if cfg.algo.per_client_models else min(cfg.sampled_per_round, len(alive))
            chosen = state.sample(sorted(alive), count)
            jobs = jobs_for(cfg, state, chosen, sizes)
            result = transport.train(jobs, nodes, run_msg, {"round": rnd, "lr": lr})
            lost = sorted(set(chosen) - set(result.replied()))
            if lost:
                log.warning("round %d: lost client(s) %s, going on without: %s", rnd, lost, "; ".join(result.failures))
                alive -= set(lost)
            if len(result.replied()) < cfg.min_clients:
                raise FedmllmError(
                    f"round {rnd}: {len(result.replied())} client(s) replied, fewer than min_clients="
                    f"{cfg.min_clients} ({'; '.join(result.failures) or 'no failures reported'})"
                )
            screen_round(cfg, state, result, recent_norms)
        for note in [*map(str, result.rejected), *result.notes]:
            log.warning("round %d: %s", rnd, note)
        # a secure sum stands for its contributors (counted above); Local and Centralized have no min_clients
        whole = result.contributors is not None or not cfg.algo.federated
        if result.updates and (whole or len(result.updates) >= cfg.min_clients):
            apply_round(cfg, state, result.updates, lr, rnd)
        else:  # the replies were there but unusable: the model stays, the run goes on
            log.warning("round %d: no usable update (min_clients=%d), the model is unchanged", rnd, cfg.min_clients)
        state.round = rnd
        row = round_row(rnd, lr, result)
        if cfg.dp != "none":
            rates.append(rate)
            stopped = spend(cfg, row, rates, alive, rnd)
        last = rnd == cfg.rounds or stopped is not None
        if cfg.algo.per_client_models:
            if last:
                latest = evaluate_local(sess, tests, cfg, state)
                row.update(latest)
        elif rnd % cfg.eval_every == 0 or last:
            load_trainable(sess.model, state.global_params)
            latest = evaluate(sess, tests, cfg, full=last)
            row.update(latest)
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        append_row(run_dir, row)
        # after the metrics line: a kill between the two reruns this round, whose line is then dropped
        extra = {"latest": latest, "norms": recent_norms}
        checkpoint.save(run_dir, checkpoint.Checkpoint(state, zero_shot, sorted(alive), cfg.to_dict(), extra))
        report and report(row)
        if stopped:  # the reason is in the row (the progress line prints it) and in the summary
            break
    lost = sorted(set(nodes) - alive)
    return finish(cfg, run_dir, sess, state, zero_shot, latest, history, started, lost, stopped)


def round_rate(cfg: RunConfig, alive: set[int]) -> float:
    """The accountant's q for the next round: the clients it samples over those still reachable (a
    lost client is never sampled again, so the others are sampled more often)."""
    return accountant.sampling_rate(min(cfg.sampled_per_round, len(alive)), len(alive))


def over_budget(cfg: RunConfig, rates: list[float], rate: float) -> str | None:
    """Why the next round (sampled at `rate`) may not run: it would take the cumulative epsilon
    above dp_target_epsilon. None without a target, or within it."""
    if cfg.dp_target_epsilon == 0:
        return None
    eps = accountant.epsilon([*rates, rate], cfg.dp_noise_multiplier, cfg.dp_delta)
    if eps <= cfg.dp_target_epsilon:
        return None
    return (
        f"privacy budget: round {len(rates) + 1} would take epsilon to {eps:.3f} > dp_target_epsilon "
        f"{cfg.dp_target_epsilon:g} (delta {cfg.dp_delta:g}); stopped after round {len(rates)} of {cfg.rounds}"
    )


def spend(cfg: RunConfig, row: dict[str, Any], rates: list[float], alive: set[int], rnd: int) -> str | None:
    """Record the round's sampling rate and cumulative epsilon in its row (null when infinite: no
    noise; JSON has no infinity). Return why the run stops after it, also in the row, or None."""
    eps = accountant.epsilon(rates, cfg.dp_noise_multiplier, cfg.dp_delta)
    row["sampling_rate"], row["epsilon"] = rates[-1], eps if math.isfinite(eps) else None
    stopped = over_budget(cfg, rates, round_rate(cfg, alive)) if rnd < cfg.rounds else None
    if stopped:
        row["stopped"] = stopped
    return stopped


def round_row(rnd: int, lr: float, result: RoundResult) -> dict[str, Any]:
    updates = result.updates
    weight = sum(u.num_samples for u in updates)
    row = {
        "round": rnd,
        "clients": sorted(u.partition for u in updates) if result.contributors is None else result.contributors,
        "failed": result.failures,
        "rejected": [r.to_dict() for r in result.rejected],
        "lr": lr,
        "train_loss": sum(u.loss * u.num_samples for u in updates) / weight if weight else None,
        "client_model_loads": max((u.model_loads for u in updates), default=0),
        "client_seconds": sum(u.seconds for u in updates),  # compute; the rest of "seconds" is the framework
        "bytes_sent": result.bytes_sent,
        "bytes_received": result.bytes_received,
    }
    if result.notes:
        row["capped"] = result.notes
    if not updates:
        row["skipped"] = True  # no usable update: the model is unchanged
    ratios = [u.reg_grad_ratio for u in updates if u.reg_grad_ratio is not None]
    if ratios:  # a proximal/adaptive term was active: the clients' mean
        row["reg_grad_ratio"] = sum(ratios) / len(ratios)
    return row


def finish(
    cfg: RunConfig,
    run_dir: Path,
    sess: Session,
    state: ServerState,
    zero_shot: dict[str, float],
    latest: dict[str, float],
    history: list[dict[str, Any]],
    started: float,
    lost: list[int] | None = None,
    stopped: str | None = None,
) -> dict[str, Any]:
    """Write the adapter (the global model; for Local, the mean-scored clients have no single
    model, so the unchanged global one), the plot and the summary. `rounds` counts the rounds
    run: fewer than the config's when the privacy budget `stopped` the run."""
    load_trainable(sess.model, state.global_params)
    save_adapter(sess.model, run_dir)
    plot_rounds(history, zero_shot, run_dir / "metrics.png")
    summary = {
        "algorithm": cfg.algorithm,
        "zero_shot": zero_shot,
        "final": latest,
        "eval_split": cfg.eval_split,  # which split zero_shot, final and metrics.jsonl scored
        "rounds": state.round,
        "seconds": time.perf_counter() - started,
        "seconds_per_round": sum(r["seconds"] for r in history) / len(history),
        "bytes_per_round": sum(r["bytes_sent"] + r["bytes_received"] for r in history) / len(history),
        "trainable_parameters": sum(t.numel() for t in state.global_params.values()),
        "server_model_loads": LOADS["count"],
        "client_model_loads": max(r["client_model_loads"] for r in history),
        "lost_clients": lost or [],
        "rejected_updates": rejection_counts(history),
        "skipped_rounds": [r["round"] for r in history if r.get("skipped")],
    }
    if cfg.attack != "none":  # simulated Byzantine clients: who attacked, to read the rejections against
        summary["attack"] = {"kind": cfg.attack, "attackers": attackers(cfg.seed, cfg.num_clients, cfg.attackers)}
    if stopped:
        summary["stopped_early"] = {"after_round": state.round, "planned_rounds": cfg.rounds, "reason": stopped}
    if cfg.dp != "none":
        summary["privacy"] = privacy_summary(cfg, history)
    write_json(run_dir / "summary.json", summary)
    return summary


def privacy_summary(cfg: RunConfig, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The DP settings, the noise and the budget spent: epsilon after each round at dp_delta
    (null: infinite, no noise), and, for comparison, the epsilon without the sampling assumption
    (q = 1 each round; what Flower 1.42's fixed-clipping strategies account)."""
    z, delta = cfg.dp_noise_multiplier, cfg.dp_delta
    unsampled = accountant.epsilon([1.0] * len(history), z, delta)
    return {
        "dp": cfg.dp,
        "noise_multiplier": z,
        "clipping_norm": cfg.dp_clipping_norm,
        "noise_std_per_round": [
            privacy.noise_std(z, cfg.dp_clipping_norm, len(r["clients"])) if r["clients"] else 0.0 for r in history
        ],
        "delta": delta,
        "sampling_rate": accountant.sampling_rate(cfg.sampled_per_round, cfg.num_clients),
        "sampling_rate_per_round": [r["sampling_rate"] for r in history],
        "epsilon_per_round": [r["epsilon"] for r in history],
        "epsilon": history[-1]["epsilon"],
        "epsilon_without_sampling": unsampled if math.isfinite(unsampled) else None,
        "target_epsilon": cfg.dp_target_epsilon or None,
        "accountant": accountant.ACCOUNTANT,
        "assumptions": accountant.ASSUMPTIONS,
    }


def rejection_counts(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The rejected updates of a run: how many, by reason and by partition."""
    rejected = [r for row in history for r in row.get("rejected", [])]
    by_reason: dict[str, int] = {}
    by_partition: dict[str, int] = {}
    for r in rejected:
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
        by_partition[str(r["partition"])] = by_partition.get(str(r["partition"]), 0) + 1
    return {"total": len(rejected), "by_reason": by_reason, "by_partition": by_partition}
