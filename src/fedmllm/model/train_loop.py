"""The offline training loop of the built-in models (tiny's pretraining, smol's alignment)."""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fedmllm.data.batching import batches
from fedmllm.data.sample import Sample
from fedmllm.model.collate import Encoded, collate

log = logging.getLogger(__name__)


@contextmanager
def reproducible(seed: int) -> Iterator[None]:
    """Run a model build so it gives the same bytes on any machine with the same packages and
    CPU instruction set, whatever its thread count; every setting is restored on exit.

    - One intra-op thread: ATen splits a reduction (a backward pass's sums over the batch, a
      norm, a matmul's partial sums) across threads, and the float sum then depends on how many
      there are. The inter-op pool is left alone: eager training never uses it, and its size can
      only be set before the first parallel work.
    - Deterministic algorithms: an op with a nondeterministic CPU kernel raises instead.
    - Python's, NumPy's and torch's global generators seeded (the recipes seed their own
      generators too, so this only guards code that draws from the globals).
    The BPE tokenizer's training needs nothing: its merges come from integer counts with ties
    broken by the pair's ids (checked: the same tokenizer.json from 14 processes with 1 or 2
    `RAYON_NUM_THREADS`, parallelism on or off).
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            random.setstate(py_state)
            np.random.set_state(np_state)


def shows_bar(quiet: bool = False) -> bool:
    """A bar on a terminal only: a log file, CI or a Ray worker gets the log lines (when INFO is
    on), and so does a caller that asks `quiet`. The log level does not hide the bar: the bench
    raises it to WARNING for one line per cell, and a first cell's model build is its longest wait."""
    return not quiet and sys.stderr.isatty()


@contextmanager
def step_progress(
    label: str, total: int, log_every: int, quiet: bool = False
) -> Iterator[Callable[[int, float], None]]:
    """Yield `report(step, loss)` for a build's steps: a progress bar with the loss and the time
    left on a terminal, else one log line every `log_every` steps and at the last. Only reports:
    the caller's computation is the same either way (the tiny model's bytes are pinned)."""
    if not shows_bar(quiet):

        def log_line(step: int, loss: float) -> None:
            if step % log_every == 0 or step == total - 1:
                log.info("%s step %d/%d loss %.3f", label, step + 1, total, loss)

        yield log_line
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TextColumn("elapsed,"),
        TimeRemainingColumn(),
        TextColumn("left"),
    )
    # auto_refresh off: no render thread beside the training, the bar redraws on each step
    with Progress(*columns, console=Console(stderr=True), auto_refresh=False) as bar:
        task = bar.add_task(label, total=total, loss="-")
        yield lambda step, loss: bar.update(task, completed=step + 1, loss=f"{loss:.3f}", refresh=True)


def train_encoded(
    model: torch.nn.Module,
    processor: object,
    samples: list[Sample],
    encoded: dict[str, Encoded],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    weight_decay: float = 0.0,
    pct_start: float = 0.05,
    window: int = 50,
    label: str = "training",
    log_every: int = 100,
    quiet: bool = False,
) -> float:
    """`steps` AdamW steps with a one-cycle schedule over pre-encoded samples (by sample id),
    training whatever requires grad; returns the mean loss of the last `window` steps. Progress:
    a bar on a terminal unless `quiet`, else a log line every `log_every` steps (`step_progress`)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=pct_start)
    torch.manual_seed(seed)
    model.train()
    stream = batches(samples, batch_size, seed)
    recent: list[float] = []
    with step_progress(label, steps, log_every, quiet) as report:
        for step in range(steps):
            batch = collate([encoded[s.id] for s in next(stream)], processor.tokenizer.pad_token_id)
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            recent = (recent + [loss.item()])[-window:]
            report(step, recent[-1])
    model.eval()
    return sum(recent) / len(recent)
