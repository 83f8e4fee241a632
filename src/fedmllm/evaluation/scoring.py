"""Evaluating multiple-choice tasks two ways, as the benchmark asks.

- Option likelihood: the log-probability of each option's answer tokens given the prompt; the
  softmax over options gives probabilities (AUC) and the argmax a prediction (accuracy).
- Generation: greedy decoding, then parsing the option letter from the text as the paper does;
  answers that name no option count as wrong and are reported as the parse-failure rate. The
  paper's AUC is that of the parsed hard label (`gen_auc`).
"""

from __future__ import annotations

import re

import torch

from fedmllm.data.sample import Sample
from fedmllm.evaluation import metrics
from fedmllm.evaluation.vqa import first_line, token_recall, vqa_scores
from fedmllm.model.collate import IGNORE, collate, encode
from fedmllm.model.load import Session
from fedmllm.scenarios.prompts import LETTERS, option_text


@torch.no_grad()
def option_logprobs(
    sess: Session, samples: list[Sample], batch_size: int = 16, variant: str = "modality"
) -> torch.Tensor:
    """[num_samples, num_options] summed log-probabilities of each option's answer tokens."""
    sess.model.eval()
    pairs = [(i, j) for i, s in enumerate(samples) for j in range(len(s.options))]
    out = torch.full((len(samples), max(len(s.options) for s in samples)), float("-inf"))
    pad_id = sess.processor.tokenizer.pad_token_id
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        items = [
            encode(sess.processor, samples[i], option_text(samples[i].options, j), variant, sess.prompts)
            for i, j in chunk
        ]
        batch = {k: v.to(sess.device) for k, v in collate(items, pad_id).items()}
        labels = batch.pop("labels")
        logits = sess.model(**batch).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = labels[:, 1:]
        mask = target != IGNORE
        picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        totals = (picked * mask).sum(-1).cpu()
        for (i, j), value in zip(chunk, totals.tolist(), strict=True):
            out[i, j] = value
    return out


def parse_letter(text: str, options: tuple[str, ...]) -> int | None:
    """The option a generated answer names: '(B)', 'B', or the option's own words."""
    match = re.search(r"\(([A-Z])\)|^\s*([A-Z])\b", text)
    if match:
        index = LETTERS.find(match.group(1) or match.group(2))
        return index if 0 <= index < len(options) else None
    lowered = text.lower()
    named = [i for i, opt in enumerate(options) if re.search(rf"(?<![\w-]){re.escape(opt.lower())}\b", lowered)]
    return named[0] if len(named) == 1 else None


@torch.no_grad()
def generate_answers(
    sess: Session, samples: list[Sample], batch_size: int = 16, max_new_tokens: int = 8, variant: str = "modality"
) -> list[str]:
    sess.model.eval()
    tok = sess.processor.tokenizer
    answers = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        items = [encode(sess.processor, s, None, variant, sess.prompts) for s in chunk]
        batch = collate(items, tok.pad_token_id, left_pad=True)
        batch.pop("labels")
        batch = {k: v.to(sess.device) for k, v in batch.items()}
        out = sess.model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
        )
        new = out[:, batch["input_ids"].shape[1] :]
        answers += tok.batch_decode(new, skip_special_tokens=True)
    return answers


def evaluate_choice(
    sess: Session, samples: list[Sample], batch_size: int = 16, generate: bool = False, variant: str = "modality"
) -> dict[str, float]:
    """AUC (binary tasks), accuracy and macro-F1 by option likelihood; generation metrics if asked."""
    labels = [s.label for s in samples]
    num_options = len(samples[0].options)
    probs = torch.softmax(option_logprobs(sess, samples, batch_size, variant), dim=-1)
    pred = probs.argmax(-1).tolist()
    result = {
        "accuracy": metrics.accuracy(labels, pred),
        "macro_f1": metrics.macro_f1(labels, pred, num_options),
    }
    if num_options == 2:
        result["auc"] = metrics.roc_auc(labels, probs[:, 1].tolist())
    if generate:
        parsed = [
            parse_letter(a, s.options)
            for a, s in zip(generate_answers(sess, samples, batch_size, variant=variant), samples, strict=True)
        ]
        result |= generation_metrics(labels, parsed, num_options)
    return result


def generation_metrics(labels: list[int], parsed: list[int | None], num_options: int) -> dict[str, float]:
    """Scores of the generated, parsed hard labels (None: the answer named no option), as the
    paper computes AUC and accuracy. `gen_accuracy` counts a parse failure as wrong. `gen_auc`
    (binary tasks) is the AUC of the hard label used as the score, a parse failure scored as the
    wrong class (1 - label): a failure never helps. (The authors' script scores it as a third
    index, 2, which ranks it above "hateful"; that rewards failures on hateful memes.)"""
    result = {
        "gen_accuracy": sum(p == t for p, t in zip(parsed, labels, strict=True)) / len(labels),
        "gen_parse_failure": sum(p is None for p in parsed) / len(labels),
    }
    if num_options == 2:
        hard = [float(1 - t if p is None else p) for p, t in zip(parsed, labels, strict=True)]
        result["gen_auc"] = metrics.roc_auc(labels, hard)
    return result


def evaluate_generation(
    sess: Session, samples: list[Sample], batch_size: int = 16, variant: str = "modality"
) -> dict[str, float]:
    """Open-ended tasks: greedy answers scored against the references (VQA metrics; token recall
    for text QA)."""
    answers = [first_line(a) for a in generate_answers(sess, samples, batch_size, max_new_tokens=16, variant=variant)]
    if samples[0].task == "vqa":
        return vqa_scores(answers, [s.answer for s in samples], [s.answer_type for s in samples])
    return {"recall": sum(token_recall(a, s.answer) for a, s in zip(answers, samples, strict=True)) / len(samples)}


def evaluate(
    sess: Session, samples: list[Sample], batch_size: int = 16, generate: bool = False, variant: str = "modality"
) -> dict[str, float]:
    """The task's metrics: multiple choice by option likelihood (and generation if asked),
    VQA and text QA by generation."""
    if samples[0].task == "classification":
        return evaluate_choice(sess, samples, batch_size, generate=generate, variant=variant)
    return evaluate_generation(sess, samples, batch_size, variant=variant)
