"""The client's local optimisation: a bare loop over the process-wide PEFT model.

A fresh AdamW per client update, K steps, then the trainable tensors are read back. (A new
`transformers.Trainer` per client per round costs a fixed ~0.3 s of bookkeeping each time; the
bare loop reaches the same weights.)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from fedmllm.data.batching import batches
from fedmllm.data.sample import Sample
from fedmllm.model.collate import IGNORE, collate, encode

if TYPE_CHECKING:
    from fedmllm.model.load import Session
from fedmllm.fl.regularize import Proximal, grad_ratio
from fedmllm.fl.schedule import local_steps
from fedmllm.scenarios.prompts import target_text


@dataclass(frozen=True)
class LocalResult:
    loss: float  # mean training loss over the local steps
    steps: int
    num_samples: int
    # mean over the steps of |grad of the proximal term| / |grad of the task loss|; None without a term
    reg_grad_ratio: float | None = None


def seed_for(run_seed: int, rnd: int, partition: int) -> int:
    """The seed of one client update: distinct per run seed, round and client."""
    return run_seed * 1_000_003 + rnd * 1_009 + partition


def answer_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The causal-LM loss of `model(**batch).loss` (mean cross-entropy over the labelled tokens),
    with the LM head run only at the positions that predict a labelled token.

    The answer is a few tokens of a prompt of hundreds, so this skips almost all of the
    (batch, length, vocab) logits: on a 150k-vocabulary model that is most of the activation
    memory of a step. Models whose forward has no `logits_to_keep` get the full-logits loss.
    """
    if "logits_to_keep" not in inspect.signature(model.get_base_model().forward).parameters:
        return model(**batch).loss
    labels = batch["labels"]
    keep = (labels[:, 1:] != IGNORE).any(dim=0).nonzero().squeeze(1)  # position p predicts token p + 1
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, logits_to_keep=keep).logits
    return F.cross_entropy(logits.float().flatten(0, 1), labels[:, keep + 1].flatten(), ignore_index=IGNORE)


def train(
    sess: Session,
    samples: list[Sample],
    *,
    lr: float,
    steps: int,
    batch_size: int,
    seed: int,
    variant: str = "modality",
    group_by_length: bool = False,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    regularizer: Proximal | None = None,
    correction: dict[str, torch.Tensor] | None = None,
) -> LocalResult:
    """K local AdamW steps on prompts of `variant` (scenarios.prompts.VARIANTS). `regularizer`
    adds a term to the loss (FedProx, adaptive window), and each step measures its gradient's
    norm against the task loss's (before clipping and SCAFFOLD's correction), averaged into
    `reg_grad_ratio`; `correction` (SCAFFOLD's c - c_k, by parameter name) is added to every gradient;
    `group_by_length` batches samples of similar token length (the lengths come from encoding
    every sample once, which the prompt cache keeps for the steps and later rounds)."""
    model, processor = sess.model, sess.processor
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    corrections = [(p, correction[n].to(p.device, p.dtype)) for n, p in named] if correction else []
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    pad_id = processor.tokenizer.pad_token_id
    model.train()
    torch.manual_seed(seed)  # LoRA dropout
    n_steps = local_steps(len(samples), batch_size, steps)
    total = 0.0
    ratios: list[float | None] = []
    lengths = None
    if group_by_length:
        lengths = [encode(processor, s, target_text(s), variant, sess.prompts).labels.shape[0] for s in samples]
    stream = batches(samples, batch_size, seed, lengths)
    for _ in range(n_steps):
        chunk = next(stream)
        batch = collate([encode(processor, s, target_text(s), variant, sess.prompts) for s in chunk], pad_id)
        batch = {k: v.to(sess.device) for k, v in batch.items()}
        loss = answer_loss(model, batch)
        if regularizer is not None:
            loss = loss + regularizer(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if regularizer is not None:
            ratios.append(grad_ratio({n: p.grad for n, p in named}, regularizer.gradients()))
        for p, c in corrections:  # a tensor without gradient (no image in the batch) still drifts back
            p.grad = c.clone() if p.grad is None else p.grad.add_(c)
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        total += loss.item()
    model.eval()
    return LocalResult(total / n_steps, n_steps, len(samples), mean_ratio(ratios) if regularizer is not None else None)


def mean_ratio(ratios: list[float | None]) -> float:
    """The mean of the per-step ratios; a step whose task gradient was zero (ratio undefined) is
    left out, and NaN stands for no defined step at all."""
    defined = [r for r in ratios if r is not None]
    return sum(defined) / len(defined) if defined else float("nan")
