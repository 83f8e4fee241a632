"""A synthetic MedAlpaca flashcards twin: text-only QA about the visual twins' vocabulary.

The flashcards teach, in words only, the concepts the image tasks rest on: which colours are
warm or cool, which shape has how many corners, which caption words are kind or mocking. So a
text-only client's knowledge transfers to the multimodal clients. Answers are one or two words
to keep the tiny model's vocabulary small. The facts repeat (there are a few dozen), as the
templates of the other twins do.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from fedmllm.data import medalpaca
from fedmllm.data.synthetic import memes, staging

CORNERS = {"circle": "no", "square": "four", "triangle": "three"}


def facts() -> list[tuple[str, str]]:
    """Every (question, answer) flashcard the twin draws from."""
    cards = []
    for colours, group in ((memes.WARM, "warm"), (memes.COOL, "cool")):
        for colour in sorted(colours):
            cards.append((f"Which colour group does {colour} belong to?", group))
            cards.append((f"Is {colour} a warm or a cool colour?", group))
    for shape, corners in CORNERS.items():
        cards.append((f"How many corners does a {shape} have?", "none" if corners == "no" else corners))
        cards.append((f"What shape has {corners} corners?", shape))
    for words, tone in ((memes.KIND, "kind"), (memes.MOCKING, "mocking")):
        for word in words:
            cards.append((f"Is the word {word} kind or mocking?", tone))
    return cards


def write(folder: Path, sizes: dict[str, int], seed: int = 0) -> Path:
    """Write one JSON list of sizes["train"] + sizes["test"] flashcards into `folder`.

    The loader makes its own 90/10 split, so `sizes` only sets the total ("dev" is unused).
    Deterministic given (sizes, seed); written into a temporary sibling and renamed.
    """
    folder, tmp = staging(folder)
    rng = random.Random(seed)
    cards = facts()
    rows = []
    for _ in range(sizes["train"] + sizes.get("test", 0)):
        question, answer = rng.choice(cards)
        rows.append({"instruction": medalpaca.INSTRUCTION, "input": question, "output": answer})
    (tmp / medalpaca.FILENAME).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    tmp.rename(folder)
    return folder
