"""A synthetic CrisisMMD twin (humanitarian task, agreed labels): drawn images and short tweets.

Each modality carries PARTIAL signal about the class and both together carry more, with noise,
as in the real data. The 8 classes, in `crisismmd.CLASSES` order, are `4 * image + topic`: an
image part (0 warm, 1 cool) and one of 4 topics. A tweet's class is drawn first, the two parts
independently from IMAGE_PRIOR and TOPIC_PRIOR (imbalanced, like the real set; it also makes
each modality's Bayes classifier unique instead of a tie). Then its cues are drawn from it:
- the shape's colour group is the class's image part with probability IMAGE_KEEP, else a fair
  coin (so it agrees 85% of the time);
- the tweet's keyword comes from the class's topic group with probability TEXT_KEEP, else from a
  uniformly drawn group (agreeing 85% of the time).
Exact Bayes ceilings (`ceilings()`): accuracy 0.72 with both, 0.51 with the text alone, 0.34
with the image alone (the majority class is 0.24, uniform guessing 1/8). Shape, event, date,
place, template, the "RT @user:" prefix and a trailing t.co URL (which the loader strips) are
distractors.

The agreed-label files have text and image labels that agree, so the one label is written into
all four label columns (`label`, `label_text`, `label_image`, `label_text_image`); any
`label_column` of the loader reads the same classes. Images are JPEG, named like the real ones
(`data_image/<event>/<day>_<month>_<year>/<tweet_id>_0.jpg`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from fedmllm.data import crisismmd
from fedmllm.data.synthetic import memes, staging

TOPICS = (
    ("flooding", "rain", "water"),
    ("roads", "bridges", "power"),
    ("shelters", "donations", "volunteers"),
    ("traffic", "weather", "crowds"),
)
TEMPLATES = (
    "{kw} reported {place} today",
    "photos of the {kw} {place}",
    "latest news on {kw} {place}",
    "tweets about {kw} {place} right now",
)
PLACES = ("downtown", "on the coast", "in the valley", "near the river")
PREFIXES = ("", "RT @news: ")
EVENTS = {  # real CrisisMMD event names, with the month their images were posted
    "california_wildfires": 10,
    "hurricane_harvey": 8,
    "hurricane_irma": 9,
    "hurricane_maria": 9,
    "iraq_iran_earthquake": 11,
    "mexico_earthquake": 9,
    "srilanka_floods": 5,
}
COLOURS = (sorted(memes.WARM), sorted(memes.COOL))  # image attribute 0 (warm), 1 (cool)

VERSION = 2  # of the label rule and the draws; the registry's cache folder names it
IMAGE_PRIOR = (0.6, 0.4)  # P(class's image part): warm, cool
TOPIC_PRIOR = (0.4, 0.25, 0.2, 0.15)  # P(class's topic), in TOPICS order
IMAGE_KEEP = 0.7  # P(colour group copies the class's image part); else a fair coin
TEXT_KEEP = 0.8  # P(keyword group copies the class's topic); else a uniform group
N_CLASSES = len(IMAGE_PRIOR) * len(TOPICS)


@dataclass(frozen=True)
class CrisisSpec:
    """What one synthetic tweet shows; enough to redraw it."""

    colour: str
    shape: str
    topic: int
    keyword: str
    template: int
    place: str
    prefix: str

    @property
    def cool(self) -> int:
        return int(self.colour in memes.COOL)

    @property
    def cue_class(self) -> int:
        """The class the cues point to, `4 * image + topic`; the label agrees only in part."""
        return len(TOPICS) * self.cool + self.topic

    @property
    def text(self) -> str:
        return self.prefix + TEMPLATES[self.template].format(kw=self.keyword, place=self.place)


def labelled_spec(rng: random.Random) -> tuple[CrisisSpec, int]:
    """A tweet and its class: the class first, then its noisy cues, then the distractors."""
    image = rng.choices(range(len(IMAGE_PRIOR)), IMAGE_PRIOR)[0]
    topic = rng.choices(range(len(TOPICS)), TOPIC_PRIOR)[0]
    cool = image if rng.random() < IMAGE_KEEP else rng.randrange(len(IMAGE_PRIOR))
    shown = topic if rng.random() < TEXT_KEEP else rng.randrange(len(TOPICS))
    spec = CrisisSpec(
        colour=rng.choice(COLOURS[cool]),
        shape=rng.choice(memes.SHAPES),
        topic=shown,
        keyword=rng.choice(TOPICS[shown]),
        template=rng.randrange(len(TEMPLATES)),
        place=rng.choice(PLACES),
        prefix=rng.choice(PREFIXES),
    )
    return spec, len(TOPICS) * image + topic


def cue_probability(label: int, cool: int | None, topic: int | None) -> float:
    """P(class, shown cues) under the rule; a cue given as None is unobserved (summed out)."""
    image, true_topic = divmod(label, len(TOPICS))
    p = IMAGE_PRIOR[image] * TOPIC_PRIOR[true_topic]
    if cool is not None:
        p *= IMAGE_KEEP * (cool == image) + (1 - IMAGE_KEEP) / len(IMAGE_PRIOR)
    if topic is not None:
        p *= TEXT_KEEP * (topic == true_topic) + (1 - TEXT_KEEP) / len(TOPICS)
    return p


def bayes_confusion(cools: list[int | None], topics: list[int | None]) -> list[list[float]]:
    """Population confusion matrix [true][predicted] of the Bayes classifier seeing the cues
    ranging over `cools` x `topics` ([None] for an unseen modality); ties split evenly."""
    matrix = [[0.0] * N_CLASSES for _ in range(N_CLASSES)]
    for cool in cools:
        for topic in topics:
            joint = [cue_probability(c, cool, topic) for c in range(N_CLASSES)]
            best = [c for c in range(N_CLASSES) if joint[c] >= max(joint) - 1e-12]
            for true in range(N_CLASSES):
                for predicted in best:
                    matrix[true][predicted] += joint[true] / len(best)
    return matrix


def macro_f1(matrix: list[list[float]]) -> float:
    """Mean over classes of 2 TP / (predicted + true); a class never predicted nor seen scores 0."""
    scores = []
    for c in range(len(matrix)):
        predicted, true = sum(row[c] for row in matrix), sum(matrix[c])
        scores.append(2 * matrix[c][c] / (predicted + true) if predicted + true else 0.0)
    return sum(scores) / len(scores)


def ceilings() -> dict[str, float]:
    """Exact accuracy ("<view>") and macro-F1 ("<view>_f1") of the Bayes classifier for the views
    "both", "image" and "text"; plus the "majority" class's share."""
    cools, topics = list(range(len(IMAGE_PRIOR))), list(range(len(TOPICS)))
    views = {"both": (cools, topics), "image": (cools, [None]), "text": ([None], topics)}
    out: dict[str, float] = {}
    for view, (c, t) in views.items():
        matrix = bayes_confusion(c, t)
        out[view] = sum(matrix[k][k] for k in range(N_CLASSES))
        out[f"{view}_f1"] = macro_f1(matrix)
    out["majority"] = max(cue_probability(c, None, None) for c in range(N_CLASSES))
    return out


def write(folder: Path, sizes: dict[str, int], seed: int = 0, image_size: int = 64) -> Path:
    """Write `crisismmd_datasplit_agreed_label/*.tsv` and `data_image/**.jpg` into `folder`.

    Deterministic given (sizes, seed, image_size). Written into a temporary sibling and renamed,
    so an interrupted generation never leaves a half-written dataset behind.
    """
    folder, tmp = staging(folder)
    (tmp / crisismmd.FOLDER).mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    tweet_id = 900_000_000_000_000_000 + rng.randrange(10**16)
    events = sorted(EVENTS)
    for split in crisismmd.SPLITS:
        lines = ["\t".join(crisismmd.COLUMNS)]
        for _ in range(sizes[split]):
            tweet_id += rng.randrange(1, 10**12)  # increasing, hence unique, like real ids
            spec, label = labelled_spec(rng)
            event = rng.choice(events)
            image = f"data_image/{event}/{rng.randint(1, 28)}_{EVENTS[event]}_2017/{tweet_id}_0.jpg"
            (tmp / image).parent.mkdir(parents=True, exist_ok=True)
            picture = memes.draw(memes.MemeSpec(spec.colour, spec.shape, "", "", 0), rng, image_size)
            picture.save(tmp / image, format="JPEG", quality=90)
            text = spec.text
            if rng.random() < 0.5:
                text += f" https://t.co/{rng.randrange(16**10):010x}"
            name = crisismmd.CLASSES[label]
            lines.append("\t".join([event, str(tweet_id), f"{tweet_id}_0", text, image, name, name, name, name]))
        path = tmp / crisismmd.FOLDER / crisismmd.FILE.format(split=split)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.rename(folder)
    return folder
