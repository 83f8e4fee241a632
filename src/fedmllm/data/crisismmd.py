"""CrisisMMD v2.0 (Alam et al. 2018), humanitarian task, agreed labels, as published.

The dataset folder is the extracted `CrisisMMD_v2.0/`: images under `data_image/<event>/<date>/`
and the split files under `crisismmd_datasplit_agreed_label/`, one tab-separated file per split
with the header `event_name tweet_id image_id tweet_text image label label_text label_image
label_text_image`. `image` is relative to the dataset folder and must resolve inside it unless
`allow_external` (see images.check_inside). The published split files are
named `task_humanitarian_text_img_agreed_lab_{train,dev,test}.tsv`; the shorter
`task_humanitarian_text_img_{split}.tsv` (the name used by the `crisismmd_datasplit_all`
release) is accepted in the same folder as a fallback.

The files are not CSV-quoted: tweets contain bare `"` characters, so each line is split on tabs
and nothing else. Tweet text is lightly cleaned: HTML entities (`&amp;`) are unescaped, URLs
(`http...`, mostly t.co links that carry no meaning) are removed and runs of whitespace collapse
to one space; emoji, @mentions, hashtags and `RT` are kept. Rows repeating a (tweet_id, image_id)
pair are skipped (the first is kept). Label strings are matched ignoring case and surrounding
whitespace, with inner spaces or hyphens read as underscores.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from fedmllm.data.images import dataset_image
from fedmllm.data.jsonl import read_lines
from fedmllm.data.sample import Sample
from fedmllm.errors import FedmllmError, where

FOLDER = "crisismmd_datasplit_agreed_label"
SPLITS = ("train", "dev", "test")
FILE = "task_humanitarian_text_img_agreed_lab_{split}.tsv"  # as published
FALLBACK_FILE = "task_humanitarian_text_img_{split}.tsv"
REQUIRED_FILE = f"{FOLDER}/{FILE.format(split='train')}"  # for the registry's folder check
COLUMNS = (
    "event_name",
    "tweet_id",
    "image_id",
    "tweet_text",
    "image",
    "label",
    "label_text",
    "label_image",
    "label_text_image",
)
LABEL_COLUMNS = ("label", "label_text", "label_image", "label_text_image")
LABEL_COLUMN = "label_image"  # the paper classifies by the image's label
CLASSES = (
    "affected_individuals",
    "infrastructure_and_utility_damage",
    "injured_or_dead_people",
    "missing_or_found_people",
    "rescue_volunteering_or_donation_effort",
    "vehicle_damage",
    "other_relevant_information",
    "not_humanitarian",
)
OPTIONS = tuple(name.replace("_", " ") for name in CLASSES)
QUESTION = "Which humanitarian category does this tweet belong to?"
LETTERS = "ABCDEFGH"
URL = re.compile(r"https?://\S+")


def vocabulary() -> list[str]:
    lines = [f"({letter}) {option}" for letter, option in zip(LETTERS, OPTIONS, strict=True)]
    return [QUESTION, *OPTIONS, *lines, " ".join(lines)]


def split_file(folder: Path, split: str) -> Path:
    """The split's TSV: the published name, else the shorter one, else an error naming both."""
    if split not in SPLITS:
        raise FedmllmError(f"crisismmd: unknown split '{split}' (choose from {list(SPLITS)})")
    base = Path(folder) / FOLDER
    for name in (FILE, FALLBACK_FILE):
        path = base / name.format(split=split)
        if path.is_file():
            return path
    raise FedmllmError(
        f"{base / FILE.format(split=split)}: file not found (nor {FALLBACK_FILE.format(split=split)} beside it)"
    )


def clean_text(text: str) -> str:
    """Unescape HTML entities, drop URLs and collapse whitespace; everything else is kept."""
    return " ".join(URL.sub(" ", html.unescape(text)).split())


def normalise_label(value: str) -> str:
    return re.sub(r"[\s\-]+", "_", value.strip().lower())


def read_tsv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and (line number, fields) of every non-blank line, split on tabs only; lines
    are bounded and checked as UTF-8 by read_lines."""
    rows = [(number, text.split("\t")) for number, text in read_lines(path) if text.strip()]
    if not rows:
        raise FedmllmError(f"{path}: empty file (expected a header line)")
    _, header = rows[0]
    return [name.strip() for name in header], rows[1:]


def load(folder: Path, split: str, label_column: str = LABEL_COLUMN, *, allow_external: bool = False) -> list[Sample]:
    """Read one split; every image must exist (inside `folder` unless `allow_external`) and every
    label must be one of the 8 classes."""
    if label_column not in LABEL_COLUMNS:
        raise FedmllmError(f"crisismmd: label column '{label_column}' is not one of {list(LABEL_COLUMNS)}")
    path = split_file(folder, split)
    header, rows = read_tsv(path)
    for name in ("tweet_id", "image_id", "tweet_text", "image", label_column):
        if name not in header:
            raise FedmllmError(f"{where(path, 1)}: missing column '{name}' (header has {header})")
    col = {name: header.index(name) for name in header}
    index = {name: i for i, name in enumerate(CLASSES)}
    samples, seen = [], set()
    for number, fields in rows:
        loc = where(path, number)
        if len(fields) != len(header):
            raise FedmllmError(
                f"{loc}: expected {len(header)} tab-separated columns as in the header, got {len(fields)}"
            )
        raw_label = fields[col[label_column]]
        label = index.get(normalise_label(raw_label))
        if label is None:
            raise FedmllmError(
                f"{loc}: column '{label_column}' has unknown label '{raw_label}' (expected one of {list(CLASSES)})"
            )
        key = (fields[col["tweet_id"]].strip(), fields[col["image_id"]].strip())
        for name, value in zip(("tweet_id", "image_id"), key, strict=True):
            if not value:
                raise FedmllmError(f"{loc}: column '{name}' is empty")
        if key in seen:  # a few (tweet, image) pairs are listed twice; keep the first
            continue
        seen.add(key)
        relative = fields[col["image"]].strip()
        if not relative:
            raise FedmllmError(f"{loc}: column 'image' is empty")
        image = dataset_image(folder, Path(folder) / relative, relative, f"{loc}: column 'image'", allow_external)
        samples.append(
            Sample(
                id=key[1],
                image=image,
                text=clean_text(fields[col["tweet_text"]]) or None,
                question=QUESTION,
                answer=OPTIONS[label],
                options=OPTIONS,
                label=label,
            )
        )
    if not samples:
        raise FedmllmError(f"{path}: no samples")
    return samples
