"""The table `benchmarks/perf.py` prints: one markdown row per figure, a function per section."""

from __future__ import annotations

from typing import Any

HEADER = ["| measure | value | goal |", "|---|---|---|"]


def table(out: dict[str, Any]) -> str:
    """Every measured section's rows, in the order of the sections; `out` is what the sections stored."""
    cores = out["cores"]
    lines = [*HEADER]
    if "overhead" in out:
        lines += overhead_rows(out["overhead"], cores)
    if "trainer" in out:
        lines += trainer_rows(out["trainer"], cores)
    if "padding" in out:
        lines += padding_rows(out["padding"])
    if "memory" in out:
        lines += memory_rows(out["memory"])
    if "bytes" in out:
        lines += bytes_rows(out["bytes"])
    lines += records_rows(out.get("records", {}))
    if "eval" in out:
        lines += eval_rows(out["eval"])
    return "\n".join(lines)


def row(measure: str, value: str, goal: str = "") -> str:
    return f"| {measure} | {value} | {goal} |"


def spread(xs: list[float]) -> str:
    return f"{min(xs):.2f}..{max(xs):.2f}"


def overhead_rows(o: dict[str, Any], cores: int) -> list[str]:
    rows = [
        row("steady round, fedmllm (Flower simulation, 1 client at a time)", f"{o['fedmllm_steady_s']:.2f} s"),
        row("steady round, bare PyTorch loop (same steps, same rule)", f"{o['bare_steady_s']:.2f} s"),
        row(
            "**framework overhead**, fedmllm / bare (median of per-round ratios)",
            f"**{o['ratio']:.3f}x** (rounds {spread(o['per_round_ratios'])})",
            "<= 1.05x",
        ),
        row(
            "resolution: the bare loop / itself, paired the same way (machine noise alone)",
            f"{o['noise_ratio']:.3f}x (rounds {spread(o['noise_per_round_ratios'])})",
        ),
    ]
    if "default_ratio" in o:  # only when the trainer section ran fedmllm's default as well
        rows.append(default_row(o, cores))
    return rows + [
        row("of which: round / clients' own time, within fedmllm's run", f"{o['within_run_ratio']:.3f}x"),
        row("of which: clients' own time in fedmllm's workers / bare loop's round", f"{o['compute_ratio']:.3f}x"),
        row("start-up of fedmllm (Ray, model loads, zero-shot scoring)", f"{o['fedmllm_startup_s']:.1f} s"),
        row(
            "final adapter, max abs diff fedmllm vs bare / bare vs its copy",
            f"{o['final_adapter_max_abs_diff']:.1e} / {o['noise_adapter_max_abs_diff']:.1e}",
            "same steps",
        ),
        row(
            "base model loads: server / per client worker",
            f"{o['server_model_loads']} / {o['client_model_loads_per_worker']}",
            "1 / 1",
        ),
    ]


def default_row(o: dict[str, Any], cores: int) -> str:
    return row(
        f"**wall time, fedmllm default (client_cpus=1, {cores} clients at a time) / bare loop on all cores**",
        f"**{o['default_ratio']:.3f}x** ({o['default_steady_s']:.2f} s / {o['default_bare_steady_s']:.2f} s; "
        f"rounds {spread(o['default_per_round_ratios'])})",
        "<= 1.05x",
    )


def trainer_rows(t: dict[str, Any], cores: int) -> list[str]:
    return [
        row("steady round, HF Trainer per client per round", f"{t['trainer_steady_s']:.2f} s"),
        row(
            "**speed-up vs Trainer**, fedmllm 1 client at a time",
            f"**{t['speedup_seq']:.2f}x** (rounds {spread(t['per_round_speedups_seq'])})",
            ">= 2x",
        ),
        row(
            f"**speed-up vs Trainer**, fedmllm default (client_cpus=1, {cores} cores)",
            f"**{t['speedup_par']:.2f}x** (rounds {spread(t['per_round_speedups_par'])})",
            ">= 2x",
        ),
    ]


def padding_rows(pad: dict[str, Any]) -> list[str]:
    return [
        row(
            "padding in a round's batches, plain / `group_by_length` (share of the samples' own tokens)",
            f"{pad['plain_padding']:.1%} / {pad['grouped_padding']:.1%}",
        ),
        row(
            "client update, plain / `group_by_length` (median of per-client ratios)",
            f"{pad['plain_update_s']:.2f} s / {pad['grouped_update_s']:.2f} s (**{pad['speedup']:.2f}x**)",
        ),
    ]


def memory_rows(memory: dict[int, dict[str, float]]) -> list[str]:
    return [
        row(
            f"peak RSS (process tree), {n} clients, SCAFFOLD, 10 per round",
            f"{r['peak_tree_rss_mb']:.0f} MB ({r['vs_first']:.2f}x; server {r['peak_server_rss_mb']:.0f} MB; "
            f"state on disk {r['client_state_on_disk_mb']:.1f} MB; {r['seconds']:.0f} s)",
            "100 <= 1.2x of 10; 1000 runs",
        )
        for n, r in memory.items()
    ]


def bytes_rows(b: dict[str, Any]) -> list[str]:
    m, k = b["model_bytes"], b["clients_per_round"]
    rows = [
        row(
            "bytes per round down (all clients)",
            f"{b['down_per_round'] / 1e6:.3f} MB ({b['down_per_round'] / m:.1%} of model x1)",
        ),
        row(
            "bytes per round up (all clients), float32",
            f"{b['up_per_round'] / 1e6:.3f} MB ({b['up_per_round'] / k / m:.2%} of the model per client)",
        ),
        row("full model parameter bytes", f"{m / 1e6:.2f} MB"),
    ]
    rows += [
        row(
            f"bytes per round up, update_dtype={dtype}",
            f"{up / 1e6:.3f} MB ({up / b['up_per_round']:.2f}x of float32)",
            "0.5x",
        )
        for dtype, up in b["up_per_round_by_dtype"].items()
    ]
    rows.append(row("final AUC by update dtype", ", ".join(f"{d} {v:.3f}" for d, v in b["final_auc"].items())))
    rows += [
        row(f"final adapter max abs diff, {dtype} vs float32", f"{diff:.1e}")
        for dtype, diff in b.get("final_max_abs_diff", {}).items()
    ]
    return rows


def records_rows(records: dict[str, dict[str, Any]]) -> list[str]:
    return [
        row(
            f"message to ArrayRecord and back, {label} ({r['tensors']} tensors, {r['mb']:.1f} MB): "
            "Flower's conversion / fedmllm's",
            f"out {1e3 * r['flower_out']:.2f} / {1e3 * r['ours_out']:.2f} ms, "
            f"back {1e3 * r['flower_back']:.2f} / {1e3 * r['ours_back']:.2f} ms "
            f"(**{(r['flower_out'] + r['flower_back']) / (r['ours_out'] + r['ours_back']):.1f}x**)",
        )
        for label, r in records.items()
    ]


def eval_rows(e: dict[str, Any]) -> list[str]:
    return [
        row(
            "eval, batched option likelihood (first pass / later)",
            f"{e['option_batched_cold_per_s']:.0f} / {e['option_batched_per_s']:.0f} items/s",
        ),
        row(
            "eval, generation one at a time / batched",
            f"{e['generate_one_per_s']:.1f} / {e['generate_batched_per_s']:.0f} items/s",
        ),
        row("**eval speed-up**, batched option likelihood vs one-at-a-time generation", f"**{e['speedup']:.1f}x**"),
    ]
