"""The offline training loop of the built-in models (tiny's pretraining, smol's alignment)."""

from __future__ import annotations

import logging

import torch

from fedmllm.data.batching import batches
from fedmllm.data.sample import Sample
from fedmllm.model.collate import Encoded, collate

log = logging.getLogger(__name__)


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
) -> float:
    """`steps` AdamW steps with a one-cycle schedule over pre-encoded samples (by sample id),
    training whatever requires grad; returns the mean loss of the last `window` steps."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=pct_start)
    torch.manual_seed(seed)
    model.train()
    stream = batches(samples, batch_size, seed)
    recent: list[float] = []
    for step in range(steps):
        batch = collate([encoded[s.id] for s in next(stream)], processor.tokenizer.pad_token_id)
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        recent = (recent + [loss.item()])[-window:]
        if step % log_every == 0 or step == steps - 1:
            log.info("%s step %d/%d loss %.3f", label, step + 1, steps, loss.item())
    model.eval()
    return sum(recent) / len(recent)
