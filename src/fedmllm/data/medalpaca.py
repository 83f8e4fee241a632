"""MedAlpaca medical flashcards (Han et al. 2023, `medical_meadow_wikidoc_medical_flashcards`).

One JSON file holding a list of {"instruction", "input", "output"}: the instruction is the same
fixed sentence on every item, the input is the question and the output the answer. Text-only QA
for the text-only clients. The folder's default file name is FILENAME; if it is absent, the one
`*.json` file in the folder is read instead (an error if there is none, or several).

There is no official split: "test" is a seeded 10% of the items (seed 0, the same for every
run), "train" the other 90%.
"""

from __future__ import annotations

import random
from pathlib import Path

from fedmllm.data.jsonl import find_json_file, read_json_list, require
from fedmllm.data.sample import Sample
from fedmllm.errors import FedmllmError

FILENAME = "medical_meadow_wikidoc_medical_flashcards.json"
INSTRUCTION = "Answer this question truthfully"
SPLITS = ("train", "test")
TEST_FRACTION, SPLIT_SEED = 0.1, 0


def vocabulary() -> list[str]:
    return [INSTRUCTION]


def data_file(folder: Path) -> Path:
    return find_json_file(folder, FILENAME)


def held_out_indices(n: int) -> set[int]:
    """The held-out items: a seeded 10% (at least one when there are two or more items)."""
    k = max(1, round(n * TEST_FRACTION)) if n >= 2 else 0
    return set(random.Random(SPLIT_SEED).sample(range(n), k))


def load(folder: Path, split: str, *, allow_external: bool = False) -> list[Sample]:
    """Read one split; every item needs string fields and a non-empty output. The items hold no
    paths, so `allow_external` changes nothing (it is taken so every loader has one signature)."""
    if split not in SPLITS:
        raise FedmllmError(f"medalpaca: unknown split '{split}' (choose from {list(SPLITS)})")
    path = data_file(folder)
    items = read_json_list(path)
    held_out = held_out_indices(len(items))
    samples = []
    for index, (loc, obj) in enumerate(items):
        instruction = require(obj, "instruction", str, loc).strip()
        question = require(obj, "input", str, loc).strip()
        answer = require(obj, "output", str, loc).strip()
        if not answer:
            raise FedmllmError(f"{loc}: field 'output' is empty")
        if not question:  # a few instruction-only items carry the question in the instruction
            question = instruction
        if not question:
            raise FedmllmError(f"{loc}: fields 'input' and 'instruction' are both empty")
        if (index in held_out) != (split == "test"):
            continue
        # the flashcard's question is the sample's text modality, so a text-only client really
        # holds text, and the instruction is the task's question
        samples.append(
            Sample(
                id=f"medalpaca-{index}",
                image=None,
                text=question,
                question=(instruction if question != instruction else "") or INSTRUCTION,
                answer=answer,
                task="qa",
            )
        )
    if not samples:
        raise FedmllmError(f"{path}: no samples in split '{split}'")
    return samples
