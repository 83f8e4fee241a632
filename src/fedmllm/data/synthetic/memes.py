"""A synthetic Hateful Memes twin: procedurally drawn images and short captions.

Each modality carries PARTIAL signal and both together carry more, as in the real set (Kiela et
al. 2020: unimodal image ~0.55 AUC, text ~0.65, multimodal models 0.70-0.75). Two cues, each a
fair coin: t = +1 when the caption uses a mocking word (-1 for a kind word) and v = +1 when the
main shape is warm-coloured (-1 for cool). The label is drawn once, with the generator's rng, as

    hateful ~ Bernoulli(sigmoid(TEXT_WEIGHT * t + IMAGE_WEIGHT * v + INTERACTION * t * v)),

so the label noise is in the published files and nothing saturates. The interaction is larger
than either main effect, like the real set's "benign confounders" (the same picture is benign
under a kind caption): a mocking caption on a warm shape is hateful 92% of the time, a kind one on
a warm shape 17%; cool shapes sit in between (32% mocking, 46% kind). Because the ordering of the
four cells is not monotone in the cues, the best additive score f(t) + g(v) (what clients holding
one modality each can at best learn together) falls short of the joint one. `ceilings()` gives
the exact Bayes AUCs; docs/twins.md tabulates them. Shape, position, size, background and the
caption's other words are distractors.
"""

from __future__ import annotations

import json
import math
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

VERSION = 2  # of the label rule and the draws; the registry's cache folder names it
# logit of P(hateful) per unit of each cue (+-1); chosen so that the exact Bayes AUCs are
# joint 0.80, text 0.65, image 0.58 and best additive 0.69 (see ceilings())
TEXT_WEIGHT = 0.85  # t: mocking (+1) or kind (-1) caption word
IMAGE_WEIGHT = 0.45  # v: warm (+1) or cool (-1) shape colour
INTERACTION = 1.15  # t * v


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
    def cues(self) -> tuple[int, int]:
        """(t, v): +1 for a mocking caption word / a warm colour, -1 for a kind word / a cool colour."""
        return (1 if self.mocking else -1, 1 if self.warm else -1)

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


def hateful_probability(t: int, v: int) -> float:
    """P(hateful | cues) of the label rule (module docstring)."""
    return 1 / (1 + math.exp(-(TEXT_WEIGHT * t + IMAGE_WEIGHT * v + INTERACTION * t * v)))


def labelled_spec(rng: random.Random) -> tuple[MemeSpec, int]:
    """A meme and its label, drawn from the rule with `rng` (after the meme, before its image)."""
    spec = random_spec(rng)
    return spec, int(rng.random() < hateful_probability(*spec.cues))


def cells() -> list[tuple[int, int, float, float]]:
    """(t, v, P(cell), P(hateful | cell)) for the four cue cells; `random_spec` flips fair coins."""
    return [(t, v, 0.25, hateful_probability(t, v)) for t in (1, -1) for v in (1, -1)]


def discrete_auc(scored: list[tuple[float, float, float]]) -> float:
    """Exact AUC of a score taking finitely many values: `scored` holds (P(cell), P(positive | cell),
    score) per cell. Ties count half: P(s+ > s-) + 0.5 P(s+ = s-)."""
    pos = [w * p for w, p, _ in scored]
    neg = [w * (1 - p) for w, p, _ in scored]
    won = 0.0
    for i, (_, _, si) in enumerate(scored):
        for j, (_, _, sj) in enumerate(scored):
            won += pos[i] * neg[j] * (1.0 if si > sj + 1e-12 else 0.5 if abs(si - sj) <= 1e-12 else 0.0)
    return won / (sum(pos) * sum(neg))


def marginal(axis: int) -> dict[int, float]:
    """P(hateful | one cue) with the other unseen: axis 0 is t (text), 1 is v (image)."""
    rows = cells()
    return {
        value: sum(c[2] * c[3] for c in rows if c[axis] == value) / sum(c[2] for c in rows if c[axis] == value)
        for value in (1, -1)
    }


def best_additive() -> tuple[int, int]:
    """The direction (alpha, beta) whose score alpha * t + beta * v has the highest AUC.

    Two cells tie under alpha * t + beta * v only on the lines alpha = 0, beta = 0 or |alpha| =
    |beta|. The integer directions in [-2, 2]^2 lie on each of those rays and strictly inside each
    sector between them, so they realise every distinct ordering (ties included) of the cells, and
    any f(t) + g(v) is such a score since the cues are binary.
    """
    rows = cells()
    directions = [(a, b) for a in range(-2, 3) for b in range(-2, 3) if a or b]
    return max(directions, key=lambda d: discrete_auc([(w, p, d[0] * t + d[1] * v) for t, v, w, p in rows]))


def ceilings() -> dict[str, float]:
    """Exact Bayes AUCs of the label rule: "both" cues, "text" (t) or "image" (v) alone, and the
    best "additive" score f(t) + g(v) (`best_additive`)."""
    rows = cells()
    text, image = marginal(0), marginal(1)
    alpha, beta = best_additive()
    return {
        "both": discrete_auc([(w, p, p) for _, _, w, p in rows]),
        "text": discrete_auc([(w, p, text[t]) for t, _, w, p in rows]),
        "image": discrete_auc([(w, p, image[v]) for _, v, w, p in rows]),
        "additive": discrete_auc([(w, p, alpha * t + beta * v) for t, v, w, p in rows]),
    }


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
            spec, label = labelled_spec(rng)
            name = f"img/{next_id}.png"
            draw(spec, rng, image_size).save(tmp / name)
            lines.append({"id": next_id, "img": name, "label": label, "text": spec.text})
            next_id += 1
        (tmp / file).write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    tmp.rename(folder)
    return folder
