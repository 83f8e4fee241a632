"""A synthetic Hateful Memes twin: procedurally drawn images and short captions.

The label needs BOTH modalities, like the real set's "benign confounders": the visual attribute
(the main shape is drawn in a warm or a cool colour) and the textual attribute (the caption uses
a kind or a mocking word) are independent fair coins, and a meme is hateful when exactly one of
them is "marked" (label = warm XOR mocking). Either modality alone therefore predicts the label
no better than chance, while both together determine it. Shape, position, size, background and
the caption's other words are distractors.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from fedmllm.data.synthetic import staging

WARM = {"red": (220, 40, 40), "orange": (240, 140, 20), "yellow": (230, 210, 30)}
COOL = {"blue": (40, 70, 220), "green": (40, 170, 60), "purple": (140, 50, 200)}
KIND = ["lovely", "friendly", "wonderful", "gentle", "cheerful", "brilliant"]
MOCKING = ["disgusting", "filthy", "worthless", "pathetic", "stupid", "ugly"]
NOUNS = ["neighbor", "crowd", "family", "visitor", "team", "teacher", "driver", "student"]
TEMPLATES = [
    "look at this {adj} {noun}",
    "such a {adj} {noun} today",
    "every {noun} here is {adj}",
    "my {noun} is so {adj}",
    "when the {noun} is {adj}",
]
SHAPES = ["circle", "square", "triangle"]


@dataclass(frozen=True)
class MemeSpec:
    """What one synthetic meme shows; enough to redraw it."""

    colour: str
    shape: str
    adjective: str
    noun: str
    template: int

    @property
    def warm(self) -> bool:
        return self.colour in WARM

    @property
    def mocking(self) -> bool:
        return self.adjective in MOCKING

    @property
    def label(self) -> int:
        return int(self.warm != self.mocking)

    @property
    def text(self) -> str:
        return TEMPLATES[self.template].format(adj=self.adjective, noun=self.noun)


def random_spec(rng: random.Random) -> MemeSpec:
    warm, mocking = rng.random() < 0.5, rng.random() < 0.5
    return MemeSpec(
        colour=rng.choice(sorted(WARM if warm else COOL)),
        shape=rng.choice(SHAPES),
        adjective=rng.choice(MOCKING if mocking else KIND),
        noun=rng.choice(NOUNS),
        template=rng.randrange(len(TEMPLATES)),
    )


def draw(spec: MemeSpec, rng: random.Random, size: int = 64) -> Image.Image:
    """The main shape on a pale, noisy background; everything but the colour is a distractor."""
    grey = rng.randint(170, 235)
    img = Image.new("RGB", (size, size), (grey, grey, grey))
    pen = ImageDraw.Draw(img)
    for _ in range(12):  # faint speckles so no two backgrounds are identical
        x, y = rng.randrange(size), rng.randrange(size)
        shade = grey + rng.randint(-25, 25)
        pen.rectangle([x, y, x + 2, y + 2], fill=(shade, shade, shade))
    extent = rng.randint(size * 4 // 10, size * 7 // 10)
    x0, y0 = rng.randint(0, size - extent), rng.randint(0, size - extent)
    box = [x0, y0, x0 + extent, y0 + extent]
    fill = {**WARM, **COOL}[spec.colour]
    if spec.shape == "circle":
        pen.ellipse(box, fill=fill)
    elif spec.shape == "square":
        pen.rectangle(box, fill=fill)
    else:
        pen.polygon([(x0, y0 + extent), (x0 + extent, y0 + extent), (x0 + extent // 2, y0)], fill=fill)
    return img


def write(folder: Path, sizes: dict[str, int], seed: int = 0, image_size: int = 64) -> Path:
    """Write img/*.png, train.jsonl, dev_seen.jsonl and test_seen.jsonl into `folder`.

    Deterministic given (sizes, seed, image_size). Written into a temporary sibling and renamed,
    so an interrupted generation never leaves a half-written dataset behind.
    """
    folder, tmp = staging(folder)
    (tmp / "img").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    next_id = 10000
    for split, file in (("train", "train.jsonl"), ("dev", "dev_seen.jsonl"), ("test", "test_seen.jsonl")):
        lines = []
        for _ in range(sizes[split]):
            spec = random_spec(rng)
            name = f"img/{next_id}.png"
            draw(spec, rng, image_size).save(tmp / name)
            lines.append({"id": next_id, "img": name, "label": spec.label, "text": spec.text})
            next_id += 1
        (tmp / file).write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    tmp.rename(folder)
    return folder
