"""A synthetic CrisisMMD twin (humanitarian task, agreed labels): drawn images and short tweets.

The label needs BOTH modalities. The image attribute is whether the main shape is drawn in a
warm or a cool colour (2 values, the memes twin's primitives) and the text attribute is which of
4 topic keyword groups the tweet mentions; the 8 classes, in `crisismmd.CLASSES` order, are
`4 * image + topic` (warm = 0, cool = 1). Both attributes are uniform and independent, so the
image alone gives at best 1/4 accuracy, the text alone 1/2, and both together 1. Shape, event,
date, place, template, the "RT @user:" prefix and a trailing t.co URL (which the loader strips)
are distractors.

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
    def label(self) -> int:
        return 4 * self.cool + self.topic

    @property
    def text(self) -> str:
        return self.prefix + TEMPLATES[self.template].format(kw=self.keyword, place=self.place)


def random_spec(rng: random.Random) -> CrisisSpec:
    cool, topic = rng.randrange(2), rng.randrange(len(TOPICS))
    return CrisisSpec(
        colour=rng.choice(COLOURS[cool]),
        shape=rng.choice(memes.SHAPES),
        topic=topic,
        keyword=rng.choice(TOPICS[topic]),
        template=rng.randrange(len(TEMPLATES)),
        place=rng.choice(PLACES),
        prefix=rng.choice(PREFIXES),
    )


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
            spec = random_spec(rng)
            event = rng.choice(events)
            image = f"data_image/{event}/{rng.randint(1, 28)}_{EVENTS[event]}_2017/{tweet_id}_0.jpg"
            (tmp / image).parent.mkdir(parents=True, exist_ok=True)
            picture = memes.draw(memes.MemeSpec(spec.colour, spec.shape, "", "", 0), rng, image_size)
            picture.save(tmp / image, format="JPEG", quality=90)
            text = spec.text
            if rng.random() < 0.5:
                text += f" https://t.co/{rng.randrange(16**10):010x}"
            name = crisismmd.CLASSES[spec.label]
            lines.append("\t".join([event, str(tweet_id), f"{tweet_id}_0", text, image, name, name, name, name]))
        path = tmp / crisismmd.FOLDER / crisismmd.FILE.format(split=split)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.rename(folder)
    return folder
