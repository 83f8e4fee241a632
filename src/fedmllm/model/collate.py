"""Samples -> model inputs: mixed image/no-image batches with an answer-only loss mask.

Each sample is encoded alone through the processor's chat template (so every family's image
tokens come out right), then padded into a batch. Image tensors are concatenated over the samples
that have an image; samples without one simply carry no image tokens.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

import torch
from PIL import Image

from fedmllm.data.images import IMAGE_ERRORS
from fedmllm.data.sample import Sample
from fedmllm.errors import FedmllmError
from fedmllm.model.families import PromptRule, prompt_rule
from fedmllm.scenarios.prompts import user_text

IGNORE = -100
TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


@dataclass
class Encoded:
    """One sample's tensors: per-token rows (1-D) and image tensors (batch dim of 1, or absent)."""

    tokens: dict[str, torch.Tensor]
    labels: torch.Tensor
    images: dict[str, torch.Tensor]
    rule: PromptRule = PromptRule()  # its processor's exceptions (batching, for Mllama)


def open_image(sample: Sample) -> Image.Image:
    try:
        with Image.open(sample.image) as img:
            return img.convert("RGB")
    except IMAGE_ERRORS as e:
        raise FedmllmError(f"{sample.image}: cannot read image of sample {sample.id} ({e})") from None


def prompt_text(processor: object, sample: Sample, variant: str) -> str:
    content = [{"type": "image"}] if sample.image is not None else []
    content.append({"type": "text", "text": user_text(sample, variant)})
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode(
    processor: object,
    sample: Sample,
    target: str | None,
    variant: str = "modality",
    cache: PromptCache | None = None,
) -> Encoded:
    """Tokenise the prompt (in prompt `variant`, scenarios.prompts.VARIANTS) and, if given, the
    target. They are encoded separately and joined so that BPE cannot merge tokens across the
    boundary and misplace the loss mask. With a `cache`, the prompt (and its image) is processed
    once per process."""
    prompt = cache.get(processor, sample, variant) if cache is not None else encode_prompt(processor, sample, variant)
    return prompt if target is None else with_target(processor, prompt, target)


def encode_prompt(processor: object, sample: Sample, variant: str) -> Encoded:
    images = [open_image(sample)] if sample.image is not None else None
    text = [prompt_text(processor, sample, variant)]
    if images is None and prompt_rule(processor).text_only_by_tokenizer:  # its processor wants an image
        enc = processor.tokenizer(text, add_special_tokens=False, return_tensors="pt", return_token_type_ids=True)
    else:
        enc = processor(text=text, images=images, return_tensors="pt")
    tokens = {k: enc[k][0] for k in TOKEN_KEYS if k in enc}
    # "labels": PaliGemma's processor returns its own; the loss mask is built below
    image_tensors = {k: v for k, v in enc.items() if k not in TOKEN_KEYS and k != "labels"}
    labels = torch.full((tokens["input_ids"].shape[0],), IGNORE, dtype=torch.long)
    return Encoded(tokens, labels, image_tensors, prompt_rule(processor))


def with_target(processor: object, prompt: Encoded, target: str) -> Encoded:
    """The prompt followed by the target's tokens and EOS, with the loss on those only."""
    tok = processor.tokenizer
    answer = tok(" " + target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    answer = torch.tensor(answer, dtype=torch.long)
    fills = {"attention_mask": 1, "token_type_ids": prompt_rule(processor).target_token_type}
    tokens = {}
    for key, row in prompt.tokens.items():
        fill = answer if key == "input_ids" else torch.full_like(answer, fills.get(key, 0))
        tokens[key] = torch.cat([row, fill.to(row.dtype)])
    images = dict(prompt.images)
    for key in set(prompt.rule.per_token_images) & set(images):  # the answer sees what the prompt's end sees
        last = images[key][:, -1:]
        images[key] = torch.cat([images[key], last.expand(-1, answer.shape[0], *last.shape[2:])], dim=1)
    return replace(prompt, tokens=tokens, labels=torch.cat([prompt.labels, answer]), images=images)


class PromptCache:
    """Encoded prompts (token rows and processed pixels) by processor, sample and prompt variant
    (one sample's prompts differ by variant), least recently used out first
    past `budget_mb`: a client's shard and the test set are decoded and processed once per
    process instead of once per round. Entries are shared, so nothing may modify them in place
    (`collate` and `with_target` build new tensors)."""

    def __init__(self, budget_mb: float = 1024) -> None:
        self.budget_mb = budget_mb
        self.entries: OrderedDict[tuple[int, Sample, str], Encoded] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0

    def get(self, processor: object, sample: Sample, variant: str) -> Encoded:
        key = (id(processor), sample, variant)
        if key in self.entries:
            self.hits += 1
            self.entries.move_to_end(key)
            return self.entries[key]
        self.misses += 1
        encoded = encode_prompt(processor, sample, variant)
        size = nbytes(encoded)
        budget = self.budget_mb * 2**20
        if size <= budget:
            self.entries[key] = encoded
            self.bytes += size
            while self.bytes > budget:
                _, old = self.entries.popitem(last=False)
                self.bytes -= nbytes(old)
        return encoded


def nbytes(e: Encoded) -> int:
    return sum(t.nbytes for t in [*e.tokens.values(), e.labels, *e.images.values()])


def collate(items: list[Encoded], pad_id: int, left_pad: bool = False) -> dict[str, torch.Tensor]:
    """Pad token rows to one length (left for generation) and concatenate image tensors."""
    length = max(e.labels.shape[0] for e in items)
    batch: dict[str, torch.Tensor] = {}
    pads = {"input_ids": pad_id, "labels": IGNORE}
    for key in [*items[0].tokens, "labels"]:
        rows = [e.labels if key == "labels" else e.tokens[key] for e in items]
        batch[key] = torch.stack([_pad(r, length, pads.get(key, 0), left_pad) for r in rows])
    for key in {k for e in items for k in e.images}:
        if items[0].rule.per_row_images:
            batch[key] = _concat([_image_row(e, key, items, length, left_pad) for e in items])
        elif key in items[0].rule.packed_images:
            batch[key] = torch.cat([e.images[key] for e in items if key in e.images], dim=-1)
        else:
            batch[key] = _concat([e.images[key] for e in items if key in e.images])
    return batch


def _image_row(e: Encoded, key: str, items: list[Encoded], length: int, left: bool) -> torch.Tensor:
    """One batch row of an image tensor whose rows align with the samples (Mllama's): the
    processor's padding for a sample without an image, per-token ones padded like the tokens."""
    row = e.images.get(key)
    per_token = key in e.rule.per_token_images
    if row is None:
        like = next(i.images[key] for i in items if key in i.images)
        shape = (1, e.labels.shape[0], *like.shape[2:]) if per_token else like.shape
        row = like.new_zeros(shape)
        if key in e.rule.absent_first_one:
            row[..., 0] = 1
    if per_token and row.shape[1] < length:
        fill = row.new_zeros((1, length - row.shape[1], *row.shape[2:]))
        row = torch.cat([fill, row] if left else [row, fill], dim=1)
    return row


def _pad(row: torch.Tensor, length: int, value: int, left: bool) -> torch.Tensor:
    fill = torch.full((length - row.shape[0],), value, dtype=row.dtype)
    return torch.cat([fill, row] if left else [row, fill])


def _concat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along dim 0; pad the other dims at their end with zeros where families tile
    images into a varying number of crops (Idefics3 treats all-zero crops as padding) or keep each
    image's own size (Pixtral, Idefics2: the model crops by `image_sizes` / the pixel mask), as
    their processors pad a batch."""
    if tensors[0].dim() > 2 and len({t.shape[1:] for t in tensors}) > 1:
        most = [max(sizes) for sizes in zip(*(t.shape[1:] for t in tensors), strict=True)]
        tensors = [_pad_end(t, most) for t in tensors]
    return torch.cat(tensors, dim=0)


def _pad_end(t: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    padding: list[int] = []  # torch.nn.functional.pad's order: last dim first, (before, after) each
    for have, want in zip(reversed(t.shape[1:]), reversed(sizes), strict=True):
        padding += [0, want - have]
    return torch.nn.functional.pad(t, padding)
