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

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import torch
from flwr.app import ArrayRecord

from fedmllm.checkpoint import load as load_checkpoint
from fedmllm.config import RunConfig
from fedmllm.data.batching import batches
from fedmllm.engine.records import from_arrays, to_arrays
from fedmllm.engine.simulation import simulate
from fedmllm.evaluation.scoring import generate_answers, option_logprobs
from fedmllm.fl import client
from fedmllm.fl.schedule import cosine_lr
from fedmllm.fl.state import ServerState
from fedmllm.model.collate import collate, encode
from fedmllm.model.load import load_trainable, session, trainable_state
from fedmllm.run import ClientUpdate, create_run_dir, model_spec, preflight, prepare_data, server_update
from fedmllm.scenarios.prompts import target_text

SECTIONS = ("overhead", "trainer", "padding", "memory", "bytes", "records", "eval")
CORES = os.cpu_count() or 1


def base_config(args: argparse.Namespace, out: Path, **changes: Any) -> RunConfig:
    cfg = RunConfig(
        model=args.model,
        device=args.device,
        rounds=args.rounds,
        local_steps=args.steps,
        eval_every=args.rounds,  # only the last round scores the model: rounds 2..R-1 are pure training
        generate_eval=False,
        eval_views=False,
        out=str(out),
    )
    return cfg.replace(**changes)


def timed_simulation(cfg: RunConfig, between: Any = None) -> dict[str, Any]:
    """Run fedmllm; the wall-clock instant each round (metrics line and checkpoint) was done.
    `between(rnd)`, if given, runs in the server process after round `rnd` and before the next
    one; its time is left out of fedmllm's rounds."""
    preflight(cfg)
    marks: dict[int, float] = {}
    paused = [0.0]  # time spent in `between` so far

    def report(row: dict[str, Any]) -> None:
        marks[row["round"]] = time.perf_counter() - paused[0]
        if between is not None:
            t = time.perf_counter()
            between(row["round"])
            paused[0] += time.perf_counter() - t

    start = time.perf_counter()
    summary = simulate(cfg, create_run_dir(cfg), report=report)
    end = time.perf_counter() - paused[0]
    rows = [json.loads(line) for line in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    return {"summary": summary, "rows": rows, "out": cfg.out, **round_times(start, marks, end, cfg.rounds)}


def round_times(start: float, marks: dict[int, float], end: float, rounds: int) -> dict[str, Any]:
    ends = [marks[r] for r in range(1, rounds + 1)]
    per_round = [b - a for a, b in zip([marks.get(0, start), *ends[:-1]], ends, strict=True)]
    steady = statistics.median(per_round[1:-1])
    return {"per_round": per_round, "steady": steady, "startup": ends[0] - start - steady, "total": end - start}


class Replica:
    """One design's copy of `fedmllm run`'s server in this process: the same data, sampling,
    client seeds and server rule; `train_one(sess, samples, lr, seed)` is the client update."""

    def __init__(self, cfg: RunConfig, train_one: Any, data_dir: Path) -> None:
        self.cfg, self.train_one = cfg, train_one
        self.sess = session(model_spec(cfg))
        self.shards, _ = prepare_data(cfg.replace(out=str(data_dir)), data_dir)
        self.state = ServerState.start(self.sess.initial, cfg.seed)
        self.seconds: dict[int, float] = {}

    def round(self, rnd: int) -> None:
        cfg, sess = self.cfg, self.sess
        torch.set_num_threads(int(cfg.client_cpus))
        start = time.perf_counter()
        lr = cosine_lr(rnd - 1, cfg.rounds, cfg.lr, cfg.warmup)
        updates = []
        for k in self.state.sample(list(range(cfg.num_clients)), cfg.sampled_per_round):
            load_trainable(sess.model, self.state.global_params)
            loss = self.train_one(sess, self.shards[k], lr, client.seed_for(cfg.seed, rnd, k))
            updates.append(ClientUpdate(k, trainable_state(sess.model), len(self.shards[k]), loss, cfg.local_steps))
        server_update(cfg, self.state, updates, lr)
        self.seconds[rnd] = time.perf_counter() - start


def paired(cfg: RunConfig, replicas: dict[str, Replica]) -> dict[str, Any]:
    """fedmllm's round r, then each replica's round r, then fedmllm's round r+1, ...: every
    design does round r within seconds of the others, so the machine's drift (tens of percent
    from one minute to the next on a shared VM) hits them alike. Ratios are medians over the
    steady rounds 2..R-1 of per-round ratios."""
    order = list(replicas)

    def between(rnd: int) -> None:
        if rnd == 0:
            return
        for name in order if rnd % 2 else order[::-1]:  # neither replica always goes first
            replicas[name].round(rnd)

    fed = timed_simulation(cfg, between)
    steady = range(2, cfg.rounds)  # round R also scores the model in fedmllm
    fed["replicas"] = {}
    for name, rep in replicas.items():
        own = [rep.seconds[r] for r in range(1, cfg.rounds + 1)]
        fed["replicas"][name] = {
            "per_round": own,
            "steady": statistics.median(own[r - 1] for r in steady),
            # the replica's time over fedmllm's, round by round
            "vs_fedmllm": [own[r - 1] / fed["per_round"][r - 1] for r in steady],
            "params": rep.state.global_params,
        }
    return fed


def bare_step(cfg: RunConfig) -> Any:
    def train_one(sess: Any, samples: list, lr: float, seed: int) -> float:
        kw = {
            "steps": cfg.local_steps,
            "batch_size": cfg.batch_size,
            "variant": cfg.prompt_form,
            "group_by_length": cfg.group_by_length,
        }
        return client.train(sess, samples, lr=lr, seed=seed, **kw).loss

    return train_one


def trainer_step(cfg: RunConfig, scratch: Path) -> Any:
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


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[n] - b[n]).abs().max().item() for n in a)


def overhead(args: argparse.Namespace, tmp: Path, out: dict[str, Any]) -> None:
    """fedmllm one client at a time with all cores, paired round by round with the bare loop
    and (section trainer) the Trainer design, all with all cores; then (section trainer)
    fedmllm's default, clients side by side on one core each, paired with the Trainer."""
    cfg = base_config(args, tmp / "fedmllm-seq", client_cpus=float(CORES))
    designs = {"bare": bare_step(cfg)}
    if "trainer" in args.sections:
        designs["trainer"] = trainer_step(cfg, tmp / "trainer-scratch")
    # the bare loop again, paired the same way: the two copies differ only by the machine's noise,
    # so their ratio is the smallest difference this run can tell from noise
    designs["bare-again"] = bare_step(cfg)
    reps = {name: Replica(cfg, fn, tmp / f"{name}-data") for name, fn in designs.items()}
    fed = paired(cfg, reps)
    bare = fed["replicas"]["bare"]
    steady_rows = fed["rows"][1:-1]
    final = load_checkpoint(Path(fed["out"])).state.global_params
    out["fedmllm_seq"] = fed
    ratios = [1 / x for x in bare["vs_fedmllm"]]  # fedmllm's round over the bare loop's
    again = fed["replicas"]["bare-again"]
    noise = [a / b for a, b in zip(again["per_round"][1:-1], bare["per_round"][1:-1], strict=True)]
    out["overhead"] = {
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
    if "trainer" not in args.sections:
        return
    cfg_par = base_config(args, tmp / "fedmllm-par")  # client_cpus = 1: Flower runs clients side by side
    ref_cfg = cfg.replace(out=cfg_par.out)  # the reference design runs one client at a time on all cores
    par = paired(
        cfg_par,
        {
            "trainer": Replica(ref_cfg, trainer_step(ref_cfg, tmp / "trainer-scratch"), tmp / "t2"),
            "bare": Replica(ref_cfg, bare_step(ref_cfg), tmp / "b2"),
        },
    )
    trainer_seq, trainer_par = fed["replicas"]["trainer"], par["replicas"]["trainer"]
    bare_par = par["replicas"]["bare"]
    default_ratios = [1 / x for x in bare_par["vs_fedmllm"]]
    out["overhead"]["default_ratio"] = statistics.median(default_ratios)
    out["overhead"]["default_per_round_ratios"] = default_ratios
    out["overhead"]["default_steady_s"] = par["steady"]
    out["overhead"]["default_bare_steady_s"] = bare_par["steady"]
    out["trainer"] = {
        "trainer_steady_s": trainer_seq["steady"],
        "trainer_steady_par_run_s": trainer_par["steady"],
        "fedmllm_seq_steady_s": fed["steady"],
        "fedmllm_par_steady_s": par["steady"],
        "speedup_seq": statistics.median(trainer_seq["vs_fedmllm"]),
        "speedup_par": statistics.median(trainer_par["vs_fedmllm"]),
        "per_round_speedups_seq": trainer_seq["vs_fedmllm"],
        "per_round_speedups_par": trainer_par["vs_fedmllm"],
    }


def padding(args: argparse.Namespace, tmp: Path, out: dict[str, Any]) -> None:
    """Plain shuffled batches against batches grouped by token length (`group_by_length`): the
    tokens a round's batches hold against the samples' own tokens, and each client's update
    timed both ways back to back (alternating which goes first), twice."""
    cfg = base_config(args, tmp / "padding")
    torch.set_num_threads(CORES)
    sess = session(model_spec(cfg))
    shards, _ = prepare_data(cfg, tmp / "padding")
    held = {"plain": 0, "grouped": 0}  # tokens in the padded batches
    real = {"plain": 0, "grouped": 0}  # the samples' own tokens
    for k, shard in enumerate(shards):
        lengths = [encode(sess.processor, s, target_text(s), False, sess.prompts).labels.shape[0] for s in shard]
        for name, by in (("plain", None), ("grouped", lengths)):
            for batch in itertools.islice(batches(list(range(len(shard))), cfg.batch_size, k, by), cfg.local_steps):
                held[name] += max(lengths[i] for i in batch) * len(batch)
                real[name] += sum(lengths[i] for i in batch)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for rep in range(2):
        for k, shard in enumerate(shards):
            for grouped in (False, True) if (k + rep) % 2 else (True, False):
                load_trainable(sess.model, sess.initial)
                start = time.perf_counter()
                client.train(
                    sess,
                    shard,
                    lr=cfg.lr,
                    steps=cfg.local_steps,
                    batch_size=cfg.batch_size,
                    seed=k,
                    group_by_length=grouped,
                )
                seconds[grouped].append(time.perf_counter() - start)
    out["padding"] = {
        "plain_padding": held["plain"] / real["plain"] - 1,
        "grouped_padding": held["grouped"] / real["grouped"] - 1,
        "plain_update_s": statistics.median(seconds[False]),
        "grouped_update_s": statistics.median(seconds[True]),
        "speedup": statistics.median(a / b for a, b in zip(seconds[False], seconds[True], strict=True)),
    }


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a worker that exited meanwhile holds no memory
            total += p.memory_info().rss
    return total


def watch(proc: psutil.Popen) -> dict[str, int]:
    """Wait for `proc`, sampling its resident memory (and its whole tree's) every 0.2 s."""
    peaks = {"tree": 0, "server": 0}
    while proc.poll() is None:
        peaks["tree"] = max(peaks["tree"], tree_rss(proc))
        with contextlib.suppress(psutil.Error):
            peaks["server"] = max(peaks["server"], proc.memory_info().rss)
        time.sleep(0.2)
    return peaks


def memory(args: argparse.Namespace, tmp: Path, out: dict[str, Any]) -> None:
    rows = {}
    for n in args.clients:
        run = tmp / f"memory-{n}"
        cmd = [sys.executable, __file__, "--memory-child", str(n), "--json", str(run / "child.json")]
        cmd += ["--rounds", str(args.memory_rounds), "--steps", "2", "--model", args.model, "--device", args.device]
        start = time.perf_counter()
        run.mkdir(parents=True)
        with (run / "stderr.txt").open("w") as log:
            proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
            peaks = watch(proc)
        if proc.returncode != 0:
            raise SystemExit(f"memory run with {n} clients failed:\n{(run / 'stderr.txt').read_text()[-3000:]}")
        child = json.loads((run / "child.json").read_text())
        rows[n] = {
            "peak_tree_rss_mb": peaks["tree"] / 2**20,
            "peak_server_rss_mb": peaks["server"] / 2**20,
            "seconds": time.perf_counter() - start,
            "client_state_on_disk_mb": child["client_state_mb"],
        }
    first = rows[args.clients[0]]["peak_tree_rss_mb"]
    for row in rows.values():
        row["vs_first"] = row["peak_tree_rss_mb"] / first
    out["memory"] = rows


def memory_child(args: argparse.Namespace) -> None:
    n = args.memory_child
    run = Path(args.json).parent
    cfg = RunConfig(
        model=args.model,
        device=args.device,
        algorithm="scaffold",
        num_clients=n,
        clients_per_round=10,
        partition="iid",
        synthetic_train=2000,  # the same data at every scale: only the number of clients changes
        rounds=args.rounds,
        local_steps=args.steps,
        eval_every=args.rounds,
        generate_eval=False,
        eval_views=False,
        out=str(run / "run"),
    )
    preflight(cfg)
    simulate(cfg, create_run_dir(cfg))
    state_bytes = sum(f.stat().st_size for f in Path(cfg.out).rglob("*.safetensors") if "adapter" not in f.parts)
    Path(args.json).write_text(json.dumps({"client_state_mb": state_bytes / 2**20}))


def bytes_section(args: argparse.Namespace, tmp: Path, out: dict[str, Any]) -> None:
    fed = out.get("fedmllm_seq") or timed_simulation(base_config(args, tmp / "bytes-fp32", client_cpus=float(CORES)))
    sess = session(model_spec(base_config(args, tmp)))
    model_bytes = sum(p.numel() * p.element_size() for p in sess.model.parameters())
    rows = fed["rows"][1:]
    result = {
        "down_per_round": statistics.mean(r["bytes_sent"] for r in rows),
        "up_per_round": statistics.mean(r["bytes_received"] for r in rows),
        "model_bytes": model_bytes,
        "clients_per_round": base_config(args, tmp).sampled_per_round,
        "final_auc": {"float32": fed["summary"]["final"]["auc"]},
        "up_per_round_by_dtype": {},
    }
    if "update_dtype" in RunConfig.__dataclass_fields__:
        fp32 = load_checkpoint(Path(fed["out"])).state.global_params
        result["final_max_abs_diff"] = {}
        for dtype in ("bfloat16", "float16"):
            cfg = base_config(args, tmp / f"bytes-{dtype}", client_cpus=float(CORES), update_dtype=dtype)
            run = timed_simulation(cfg)
            result["up_per_round_by_dtype"][dtype] = statistics.mean(r["bytes_received"] for r in run["rows"][1:])
            result["final_auc"][dtype] = run["summary"]["final"]["auc"]
            result["final_max_abs_diff"][dtype] = max_diff(fp32, load_checkpoint(Path(cfg.out)).state.global_params)
    out["bytes"] = result


def lora_shapes(layers: int, hidden: int, kv: int, inter: int, r: int) -> dict[str, tuple[int, int]]:
    """A LoRA of rank r on every linear layer of a decoder's blocks, as PEFT names its tensors."""
    linears = {
        "q_proj": (hidden, hidden),
        "k_proj": (hidden, kv),
        "v_proj": (hidden, kv),
        "o_proj": (hidden, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }
    shapes = {}
    for i, (name, (n_in, n_out)) in itertools.product(range(layers), linears.items()):
        shapes[f"model.layers.{i}.{name}.lora_A.weight"] = (r, n_in)
        shapes[f"model.layers.{i}.{name}.lora_B.weight"] = (n_out, r)
    return shapes


def records_section(args: argparse.Namespace, tmp: Path, out: dict[str, Any]) -> None:
    """A message's tensors to Flower's ArrayRecord and back: Flower's own conversion (np.save /
    np.load per tensor) against fedmllm's (`engine.records`), alternating, median of 30."""
    adapters = {
        "tiny": trainable_state(session(model_spec(base_config(args, tmp))).model),
        # Qwen2-VL-2B's language model (28 layers, hidden 1536, 2 KV heads of 128, MLP 8960), r = 8
        "Qwen2-VL-2B-shaped LoRA r=8, all linear layers": {
            n: torch.randn(shape) for n, shape in lora_shapes(28, 1536, 256, 8960, 8).items()
        },
    }
    result = {}
    for label, params in adapters.items():
        seconds: dict[str, list[float]] = {"flower_out": [], "flower_back": [], "ours_out": [], "ours_back": []}
        for _ in range(30):
            for who, make, read in (
                ("flower", lambda p: ArrayRecord(torch_state_dict=p), lambda r: r.to_torch_state_dict()),
                ("ours", to_arrays, from_arrays),
            ):
                t0 = time.perf_counter()
                record = make(params)
                t1 = time.perf_counter()
                read(record)
                seconds[f"{who}_out"].append(t1 - t0)
                seconds[f"{who}_back"].append(time.perf_counter() - t1)
        result[label] = {
            "tensors": len(params),
            "mb": sum(t.numel() * t.element_size() for t in params.values()) / 1e6,
            **{k: statistics.median(v) for k, v in seconds.items()},
        }
    out["records"] = result


def eval_section(args: argparse.Namespace, tmp: Path, out: dict[str, Any]) -> None:
    cfg = base_config(args, tmp)
    preflight(cfg)
    torch.set_num_threads(CORES)
    sess = session(model_spec(cfg))
    load_trainable(sess.model, sess.initial)
    _, tests = prepare_data(cfg.replace(client_data="node"), tmp)
    test = tests["test"]

    def rate(fn: Any, items: list) -> float:
        start = time.perf_counter()
        fn(items)
        return len(items) / (time.perf_counter() - start)

    cold = rate(lambda s: option_logprobs(sess, s, cfg.eval_batch_size), test)
    warm = rate(lambda s: option_logprobs(sess, s, cfg.eval_batch_size), test)
    one = rate(lambda s: generate_answers(sess, s, batch_size=1), test[: args.generate_items])
    batched_gen = rate(lambda s: generate_answers(sess, s, batch_size=cfg.eval_batch_size), test)
    out["eval"] = {
        "items": len(test),
        "option_batched_cold_per_s": cold,
        "option_batched_per_s": warm,
        "generate_one_per_s": one,
        "generate_batched_per_s": batched_gen,
        "speedup": warm / one,
    }


def table(out: dict[str, Any]) -> str:
    lines = ["| measure | value | goal |", "|---|---|---|"]

    def add(measure: str, value: str, goal: str = "") -> None:
        lines.append(f"| {measure} | {value} | {goal} |")

    def spread(xs: list[float]) -> str:
        return f"{min(xs):.2f}..{max(xs):.2f}"

    if "overhead" in out:
        o = out["overhead"]

        add("steady round, fedmllm (Flower simulation, 1 client at a time)", f"{o['fedmllm_steady_s']:.2f} s")
        add("steady round, bare PyTorch loop (same steps, same rule)", f"{o['bare_steady_s']:.2f} s")
        add(
            "**framework overhead**, fedmllm / bare (median of per-round ratios)",
            f"**{o['ratio']:.3f}x** (rounds {spread(o['per_round_ratios'])})",
            "<= 1.05x",
        )
        add(
            "resolution: the bare loop / itself, paired the same way (machine noise alone)",
            f"{o['noise_ratio']:.3f}x (rounds {spread(o['noise_per_round_ratios'])})",
        )
        if "default_ratio" in o:
            add(
                f"**wall time, fedmllm default (client_cpus=1, {CORES} clients at a time) / bare loop on all cores**",
                f"**{o['default_ratio']:.3f}x** ({o['default_steady_s']:.2f} s / {o['default_bare_steady_s']:.2f} s; "
                f"rounds {spread(o['default_per_round_ratios'])})",
                "<= 1.05x",
            )
        add("of which: round / clients' own time, within fedmllm's run", f"{o['within_run_ratio']:.3f}x")
        add("of which: clients' own time in fedmllm's workers / bare loop's round", f"{o['compute_ratio']:.3f}x")
        add("start-up of fedmllm (Ray, model loads, zero-shot scoring)", f"{o['fedmllm_startup_s']:.1f} s")
        add(
            "final adapter, max abs diff fedmllm vs bare / bare vs its copy",
            f"{o['final_adapter_max_abs_diff']:.1e} / {o['noise_adapter_max_abs_diff']:.1e}",
            "same steps",
        )
        add(
            "base model loads: server / per client worker",
            f"{o['server_model_loads']} / {o['client_model_loads_per_worker']}",
            "1 / 1",
        )
    if "trainer" in out:
        t = out["trainer"]
        add("steady round, HF Trainer per client per round", f"{t['trainer_steady_s']:.2f} s")
        add(
            "**speed-up vs Trainer**, fedmllm 1 client at a time",
            f"**{t['speedup_seq']:.2f}x** (rounds {spread(t['per_round_speedups_seq'])})",
            ">= 2x",
        )
        add(
            f"**speed-up vs Trainer**, fedmllm default (client_cpus=1, {CORES} cores)",
            f"**{t['speedup_par']:.2f}x** (rounds {spread(t['per_round_speedups_par'])})",
            ">= 2x",
        )
    if "padding" in out:
        pad = out["padding"]
        add(
            "padding in a round's batches, plain / `group_by_length` (share of the samples' own tokens)",
            f"{pad['plain_padding']:.1%} / {pad['grouped_padding']:.1%}",
        )
        add(
            "client update, plain / `group_by_length` (median of per-client ratios)",
            f"{pad['plain_update_s']:.2f} s / {pad['grouped_update_s']:.2f} s (**{pad['speedup']:.2f}x**)",
        )
    if "memory" in out:
        for n, row in out["memory"].items():
            add(
                f"peak RSS (process tree), {n} clients, SCAFFOLD, 10 per round",
                f"{row['peak_tree_rss_mb']:.0f} MB ({row['vs_first']:.2f}x; server {row['peak_server_rss_mb']:.0f} MB; "
                f"state on disk {row['client_state_on_disk_mb']:.1f} MB; {row['seconds']:.0f} s)",
                "100 <= 1.2x of 10; 1000 runs",
            )
    if "bytes" in out:
        b = out["bytes"]
        m, k = b["model_bytes"], b["clients_per_round"]
        add(
            "bytes per round down (all clients)",
            f"{b['down_per_round'] / 1e6:.3f} MB ({b['down_per_round'] / m:.1%} of model x1)",
        )
        add(
            "bytes per round up (all clients), float32",
            f"{b['up_per_round'] / 1e6:.3f} MB ({b['up_per_round'] / k / m:.2%} of the model per client)",
        )
        add("full model parameter bytes", f"{m / 1e6:.2f} MB")
        for dtype, up in b["up_per_round_by_dtype"].items():
            add(
                f"bytes per round up, update_dtype={dtype}",
                f"{up / 1e6:.3f} MB ({up / b['up_per_round']:.2f}x of float32)",
                "0.5x",
            )
        aucs = ", ".join(f"{d} {v:.3f}" for d, v in b["final_auc"].items())
        add("final AUC by update dtype", aucs)
        for dtype, diff in b.get("final_max_abs_diff", {}).items():
            add(f"final adapter max abs diff, {dtype} vs float32", f"{diff:.1e}")
    for label, r in out.get("records", {}).items():
        add(
            f"message to ArrayRecord and back, {label} ({r['tensors']} tensors, {r['mb']:.1f} MB): "
            "Flower's conversion / fedmllm's",
            f"out {1e3 * r['flower_out']:.2f} / {1e3 * r['ours_out']:.2f} ms, "
            f"back {1e3 * r['flower_back']:.2f} / {1e3 * r['ours_back']:.2f} ms "
            f"(**{(r['flower_out'] + r['flower_back']) / (r['ours_out'] + r['ours_back']):.1f}x**)",
        )
    if "eval" in out:
        e = out["eval"]
        add(
            "eval, batched option likelihood (first pass / later)",
            f"{e['option_batched_cold_per_s']:.0f} / {e['option_batched_per_s']:.0f} items/s",
        )
        add(
            "eval, generation one at a time / batched",
            f"{e['generate_one_per_s']:.1f} / {e['generate_batched_per_s']:.0f} items/s",
        )
        add("**eval speed-up**, batched option likelihood vs one-at-a-time generation", f"**{e['speedup']:.1f}x**")
    return "\n".join(lines)


def main() -> None:
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
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args)
        return
    args.clients = [int(n) for n in args.clients.split(",")]
    if args.rounds < 4:
        parser.error("--rounds must be at least 4 (steady state is rounds 2..R-1)")
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    out: dict[str, Any] = {"cores": CORES, "torch": torch.__version__}
    runs = {
        "overhead": overhead,
        "padding": padding,
        "memory": memory,
        "bytes": bytes_section,
        "records": records_section,
        "eval": eval_section,
    }
    if "trainer" in sections and "overhead" not in sections:
        sections.insert(0, "overhead")  # the Trainer's rounds are paired with fedmllm's there
    args.sections = sections
    with tempfile.TemporaryDirectory(prefix="fedmllm-perf-") as tmp:
        for name in runs:
            if name in sections:
                print(f"[perf] {name} ...", file=sys.stderr, flush=True)
                runs[name](args, Path(tmp), out)
    print(table(out))
    if args.json:
        clean = {k: v for k, v in out.items() if k != "fedmllm_seq"}
        Path(args.json).write_text(json.dumps(clean, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
