"""Hateful Memes (Kiela et al. 2020) as published: img/*.png and one JSON-lines file per split.

Each line is {"id", "img", "label", "text"}; "img" is relative to the dataset folder and must
resolve inside it unless `allow_external` (see images.check_inside).
"""

from __future__ import annotations

from pathlib import Path

from fedmllm.data.images import dataset_image
from fedmllm.data.jsonl import read_jsonl, require
from fedmllm.data.sample import Sample
from fedmllm.errors import FedmllmError, where

SPLITS = {"train": "train.jsonl", "dev": "dev_seen.jsonl", "test": "test_seen.jsonl"}
OPTIONS = ("not-hateful", "hateful")
QUESTION = "Is this meme hateful?"


def vocabulary() -> list[str]:
    return [QUESTION, *OPTIONS, "(A) not-hateful", "(B) hateful", "not-hateful (B) hateful"]


def load(folder: Path, split: str, *, allow_external: bool = False) -> list[Sample]:
    """Read one split; every image must exist (inside `folder` unless `allow_external`) and every
    label must be 0 or 1."""
    if split not in SPLITS:
        raise FedmllmError(f"hateful_memes: unknown split '{split}' (choose from {list(SPLITS)})")
    path = Path(folder) / SPLITS[split]
    samples, seen = [], set()
    for number, obj in read_jsonl(path):
        loc = where(path, number)
        sample_id = str(require(obj, "id", (int, str), loc))
        img = require(obj, "img", str, loc)
        text = require(obj, "text", str, loc)
        label = require(obj, "label", int, loc)
        if label not in (0, 1):
            raise FedmllmError(f"{loc}: field 'label' is {label}, expected 0 or 1")
        if sample_id in seen:  # the published files repeat a few ids; keep the first
            continue
        seen.add(sample_id)
        image = dataset_image(folder, Path(folder) / img, img, f"{loc}: field 'img'", allow_external)
        samples.append(
            Sample(
                id=sample_id,
                image=image,
                text=text.strip() or None,
                question=QUESTION,
                answer=OPTIONS[label],
                options=OPTIONS,
                label=label,
            )
        )
    if not samples:
        raise FedmllmError(f"{path}: no samples")
    return samples
