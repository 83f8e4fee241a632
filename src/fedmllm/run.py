"""The recipe: one federated run, from a RunConfig to a finished run folder.

The loop lives here and talks to the federation through a `Transport` (implemented with Flower
in `engine/`), so this file holds the logic and the engine only moves messages.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import torch

from fedmllm import checkpoint
from fedmllm.config import RunConfig
from fedmllm.data import registry
from fedmllm.data.sample import Sample
from fedmllm.errors import FedmllmError
from fedmllm.evaluation.scoring import evaluate as evaluate_samples
from fedmllm.fl import client, privacy, rules
from fedmllm.fl.attacks import attackers
from fedmllm.fl.schedule import cosine_lr
from fedmllm.fl.screen import ClientUpdate, Rejection, Rules, params_problem, screen
from fedmllm.fl.state import ServerState
from fedmllm.model.load import (
    LOADS,
    ModelSpec,
    Session,
    check_model,
    load_trainable,
    session,
    trainable_state,
)
from fedmllm.scenarios import split

log = logging.getLogger(__name__)


@dataclass
class RoundResult:
    updates: list[ClientUpdate]
    bytes_sent: int = 0
    bytes_received: int = 0
    failures: list[str] = field(default_factory=list)  # clients that did not reply
    contributors: list[int] | None = None  # partitions in a secure aggregate; None: updates' own
    rejected: list[Rejection] = field(default_factory=list)  # replies that came back unusable
    notes: list[str] = field(default_factory=list)  # weights the server capped


@dataclass
class TrainJob:
    """What one client receives: the parameters to start from and, for SCAFFOLD, c - c_k."""

    partition: int
    params: rules.Params
    correction: rules.Params | None = None
    known_samples: int | None = None  # the client's sample count, where the server wrote its shard


class Transport(Protocol):
    def partitions(self, run: dict[str, Any]) -> dict[int, int]:
        """partition id -> node id of every reachable client."""

    def train(
        self, jobs: list[TrainJob], nodes: dict[int, int], run: dict[str, Any], rnd: dict[str, Any]
    ) -> RoundResult:
        """Send each job to its partition's node, return the updates that came back."""


def model_spec(cfg: RunConfig) -> ModelSpec:
    return ModelSpec(
        name=cfg.model,
        lora_r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        device=cfg.device,
        dtype=cfg.dtype,
        trust_remote_code=cfg.trust_remote_code,
    )


def default_out() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def create_run_dir(cfg: RunConfig) -> Path:
    """A fresh run folder. An existing non-empty folder is never overwritten."""
    out = Path(cfg.out) if cfg.out else default_out()
    if out.exists() and any(out.iterdir()):
        raise FedmllmError(f"{out}: run folder exists and is not empty (choose another --out)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def preflight(cfg: RunConfig) -> None:
    """Fail fast, before any engine starts: the data folder and the model source must exist.
    (Generates the synthetic data and builds the tiny model on first use.)"""
    registry.resolve_folder(cfg.dataset, cfg.data_dir, data_sizes(cfg), cfg.synthetic_seed)
    check_model(model_spec(cfg))


def data_sizes(cfg: RunConfig) -> dict[str, int]:
    return {"train": cfg.synthetic_train, "dev": cfg.synthetic_dev, "test": cfg.synthetic_test}


def write_json(path: Path, obj: Any) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_config(cfg: RunConfig, path: Path) -> None:
    lines = [f"{k} = {json.dumps(v)}" for k, v in cfg.to_dict().items()]
    path.write_text("# the resolved configuration of this run\n" + "\n".join(lines) + "\n", encoding="utf-8")


def load_dataset(name: str, data_dir: str, cfg: RunConfig, split_name: str) -> list[Sample]:
    folder = registry.resolve_folder(name, data_dir, data_sizes(cfg), cfg.synthetic_seed)
    return registry.load_split(name, folder, split_name, allow_external=cfg.allow_external_paths)


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


def hyper(cfg: RunConfig) -> rules.ServerHyper:
    return rules.ServerHyper(
        server_lr=cfg.eta,
        momentum=cfg.server_momentum,
        beta1=cfg.beta1,
        beta2=cfg.beta2,
        tau=cfg.tau,
        trim_fraction=cfg.trim_fraction,
        krum_byzantine=cfg.krum_byzantine,
        adaptive_moment=cfg.adaptive_moment,
    )


def jobs_for(cfg: RunConfig, state: ServerState, chosen: list[int], sizes: list[int] | None) -> list[TrainJob]:
    """Each chosen client's job; `sizes` are the shards' sample counts where the server wrote them."""
    known = (lambda k: sizes[k]) if sizes is not None else (lambda k: None)
    if cfg.algorithm == "local":  # each client continues its own model
        return [TrainJob(k, state.client_models.get(k, state.global_params), None, known(k)) for k in chosen]
    if cfg.algorithm == "scaffold":  # each client also gets its correction c - c_k
        c = state.control
        return [
            TrainJob(k, state.global_params, {n: c[n] - state.client_control(k)[n] for n in c}, known(k))
            for k in chosen
        ]
    return [TrainJob(k, state.global_params, None, known(k)) for k in chosen]


def server_update(cfg: RunConfig, state: ServerState, updates: list[ClientUpdate], lr: float) -> None:
    """Apply the algorithm's server rule to `state` (the rules themselves are pure functions);
    with DP, clip the updates (dp = "server"; "client": the clients did) and noise the result."""
    if cfg.dp == "server":
        clip = cfg.dp_clipping_norm
        updates = [replace(u, params=privacy.clip_update(u.params, state.global_params, clip)) for u in updates]
    models, weights = [u.params for u in updates], [u.num_samples for u in updates]
    if cfg.algorithm == "local":
        for u in updates:
            state.client_models[u.partition] = u.params
        return
    if cfg.algorithm == "centralized":  # one pooled "client": its model is the model
        state.global_params = updates[0].params
        return
    if cfg.algorithm == "scaffold":
        c, deltas = state.control, []
        for u in updates:  # c_k+ = c_k - c + (w - w_k) / (K * lr), computed here from what the client sent
            c_k = state.client_control(u.partition)
            new = rules.scaffold_client_control(c_k, c, state.global_params, u.params, u.steps, lr)
            deltas.append({n: new[n] - c_k[n] for n in new})
            state.client_controls[u.partition] = new
        state.control = rules.scaffold_controls(c, deltas, cfg.num_clients)
    state.global_params, state.buffers = rules.aggregate(
        cfg.algorithm, state.buffers, state.global_params, models, weights, hyper(cfg)
    )
    if cfg.dp != "none":  # seeded by run and round (state.round is the last finished one)
        std = privacy.noise_std(cfg.dp_noise_multiplier, cfg.dp_clipping_norm, sum(u.clients for u in updates))
        state.global_params = privacy.add_noise(state.global_params, std, cfg.seed * 1_000_003 + state.round + 1)


def centralized_round(
    cfg: RunConfig, sess: Session, state: ServerState, pooled: list[Sample], rnd: int, lr: float
) -> RoundResult:
    """The upper-bound baseline: all training data in one place, the compute of one round's
    sampled clients (same steps), trained in this process without any federation."""
    share = cfg.sampled_per_round / cfg.num_clients
    steps = cfg.local_steps * cfg.sampled_per_round or client.local_steps(round(len(pooled) * share), cfg.batch_size, 0)
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
    if cfg.algorithm == "centralized":
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
    for rnd in range(state.round + 1, cfg.rounds + 1):
        t0 = time.perf_counter()
        state.begin_round(rnd)
        lr = cosine_lr(rnd - 1, cfg.rounds, cfg.lr, cfg.warmup)
        if cfg.algorithm == "centralized":  # the server's own update: nothing to screen
            result = centralized_round(cfg, sess, state, pooled, rnd, lr)
        else:
            # Local: every client trains alone every round; the others sample clients
            count = len(alive) if cfg.algorithm == "local" else min(cfg.sampled_per_round, len(alive))
            chosen = state.sample(sorted(alive), count)
            jobs = jobs_for(cfg, state, chosen, sizes)
            result = transport.train(jobs, nodes, run_msg, {"round": rnd, "lr": lr})
            lost = sorted(set(chosen) - set(replied(result)))
            if lost:
                log.warning("round %d: lost client(s) %s, going on without: %s", rnd, lost, "; ".join(result.failures))
                alive -= set(lost)
            if len(replied(result)) < cfg.min_clients:
                raise FedmllmError(
                    f"round {rnd}: {len(replied(result))} client(s) replied, fewer than min_clients="
                    f"{cfg.min_clients} ({'; '.join(result.failures) or 'no failures reported'})"
                )
            screen_round(cfg, state, result, recent_norms)
        for note in [*map(str, result.rejected), *result.notes]:
            log.warning("round %d: %s", rnd, note)
        # a secure sum stands for its contributors (counted above); Local and Centralized have no min_clients
        whole = result.contributors is not None or cfg.algorithm in ("local", "centralized")
        if result.updates and (whole or len(result.updates) >= cfg.min_clients):
            apply_round(cfg, state, result.updates, lr, rnd)
        else:  # the replies were there but unusable: the model stays, the run goes on
            log.warning("round %d: no usable update (min_clients=%d), the model is unchanged", rnd, cfg.min_clients)
        state.round = rnd
        row = round_row(rnd, lr, result)
        last = rnd == cfg.rounds
        if cfg.algorithm == "local":
            if last:
                latest = evaluate_local(sess, tests, cfg, state)
                row.update(latest)
        elif rnd % cfg.eval_every == 0 or last:
            load_trainable(sess.model, state.global_params)
            latest = evaluate(sess, tests, cfg, full=last)
            row.update(latest)
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        with (run_dir / "metrics.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        # after the metrics line: a kill between the two reruns this round, whose line is then dropped
        extra = {"latest": latest, "norms": recent_norms}
        checkpoint.save(run_dir, checkpoint.Checkpoint(state, zero_shot, sorted(alive), cfg.to_dict(), extra))
        report and report(row)
    lost = sorted(set(nodes) - alive)
    return finish(cfg, run_dir, sess, state, zero_shot, latest, history, started, lost)


def screen_round(cfg: RunConfig, state: ServerState, result: RoundResult, recent_norms: list[float]) -> None:
    """Drop the round's unusable updates (fl/screen.py) into `result.rejected`. A secure sum has
    no single updates to judge: only its tensors are checked, and a bad sum drops the round's."""
    if result.contributors is not None:
        for u in result.updates:
            problem = params_problem(u.params, state.global_params)
            if problem:
                reason, detail = problem
                result.rejected.append(Rejection(-1, reason, f"secure aggregate of {result.contributors}: {detail}"))
                result.updates = []
        return
    rules_in_force = Rules(
        batch_size=cfg.batch_size,
        local_steps=cfg.local_steps,
        reject_norm_factor=cfg.reject_norm_factor,
        max_weight_share=cfg.max_weight_share,
        check_norms=cfg.algorithm != "local",  # Local's clients start from their own models
    )
    result.updates, rejected, notes = screen(result.updates, state.global_params, rules_in_force, recent_norms)
    result.rejected += rejected
    result.notes += notes


def check_same_config(recorded: dict[str, Any], cfg: RunConfig, run_dir: Path) -> None:
    wanted = cfg.to_dict()
    changed = sorted(k for k in recorded.keys() | wanted.keys() if k != "out" and recorded.get(k) != wanted.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {recorded.get(k)!r} in the folder, {wanted.get(k)!r} now" for k in changed[:5])
        raise FedmllmError(f"{run_dir}: the run folder belongs to a different config ({diffs})")


def check_extra(extra: dict[str, Any], run_dir: Path) -> None:
    """The run's own entries of a checkpoint's `extra` metadata."""
    where = f"{run_dir / checkpoint.NAME}: metadata key 'extra'"
    latest, norms = extra.get("latest"), extra.get("norms", [])
    if not isinstance(latest, dict) or not all(isinstance(v, (int, float)) for v in latest.values()):
        raise FedmllmError(f"{where}: 'latest' must map metric names to numbers")
    if not isinstance(norms, list) or not all(isinstance(v, float) and v >= 0 for v in norms):
        raise FedmllmError(f"{where}: 'norms' must be a list of update norms (non-negative numbers)")


def truncate_history(path: Path, last_round: int) -> list[dict[str, Any]]:
    """The metrics lines up to the checkpoint's round; later ones (written before a kill) are
    dropped from the file, atomically, since those rounds run again."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []
    kept = [r for r in rows if r["round"] <= last_round]
    if len(kept) != len(rows):
        write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def apply_round(cfg: RunConfig, state: ServerState, updates: list[ClientUpdate], lr: float, rnd: int) -> None:
    """The server rule on the screened updates. Every update has passed the screen, so a failure
    here is the server's own: the run stops, resumable from the last round's checkpoint."""
    try:
        server_update(cfg, state, updates, lr)
    except Exception as e:
        raise FedmllmError(
            f"round {rnd}: the server's {cfg.algorithm} update failed ({type(e).__name__}: {e}); the run folder "
            f"holds round {rnd - 1}'s checkpoint: fix the cause and resume it (fedmllm run --resume)"
        ) from e


def replied(result: RoundResult) -> list[int]:
    """The partitions that answered: usable, rejected, or inside a secure sum."""
    if result.contributors is not None:
        return result.contributors
    return sorted({u.partition for u in result.updates} | {r.partition for r in result.rejected})


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
) -> dict[str, Any]:
    """Write the adapter (the global model; for Local, the mean-scored clients have no single
    model, so the unchanged global one), the plot and the summary."""
    load_trainable(sess.model, state.global_params)
    adapter, adapter_tmp, adapter_old = (run_dir / name for name in ("adapter", "adapter.tmp", "adapter.old"))
    shutil.rmtree(adapter_tmp, ignore_errors=True)
    sess.model.save_pretrained(adapter_tmp)
    if adapter.exists():  # a resumed run that was killed while finishing: one adapter folder at every instant
        shutil.rmtree(adapter_old, ignore_errors=True)
        adapter.replace(adapter_old)
    adapter_tmp.replace(adapter)
    shutil.rmtree(adapter_old, ignore_errors=True)
    from fedmllm.bench.plots import plot_rounds

    plot_rounds(history, zero_shot, run_dir / "metrics.png")
    summary = {
        "algorithm": cfg.algorithm,
        "zero_shot": zero_shot,
        "final": latest,
        "eval_split": cfg.eval_split,  # which split zero_shot, final and metrics.jsonl scored
        "rounds": cfg.rounds,
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
    if cfg.dp != "none":
        summary["privacy"] = {
            "dp": cfg.dp,
            "noise_multiplier": cfg.dp_noise_multiplier,
            "clipping_norm": cfg.dp_clipping_norm,
            "noise_std_per_round": [
                privacy.noise_std(cfg.dp_noise_multiplier, cfg.dp_clipping_norm, len(r["clients"]))
                if r["clients"]
                else 0.0
                for r in history
            ],
        }
    write_json(run_dir / "summary.json", summary)
    return summary


def rejection_counts(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The rejected updates of a run: how many, by reason and by partition."""
    rejected = [r for row in history for r in row.get("rejected", [])]
    by_reason: dict[str, int] = {}
    by_partition: dict[str, int] = {}
    for r in rejected:
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
        by_partition[str(r["partition"])] = by_partition.get(str(r["partition"]), 0) + 1
    return {"total": len(rejected), "by_reason": by_reason, "by_partition": by_partition}
