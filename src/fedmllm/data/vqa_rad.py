"""VQA-RAD (Lau et al. 2018) as published: one JSON list and a folder of radiology images.

Items have {"qid", "image_name", "question", "answer", "answer_type" (OPEN/CLOSED),
"question_type", "image_organ", ...}; only the first five are read, the rest are ignored. The
JSON file is `VQA_RAD Dataset Public.json`, or the only `*.json` in the folder; images are
found by name in `VQA_RAD Image Folder/` (the release) or `images/`, and must resolve inside the
dataset folder unless `allow_external` (see images.check_inside).

The published file is untidy, so answers are normalised: numbers become strings (2 -> "2"),
surrounding and repeated spaces go, and closed yes/no answers are lower-cased ("Yes " -> "yes");
open answers keep their case. answer_type is read case- and space-insensitively ("CLOSED ").
Repeated qids keep their first item.

Splits: "train" and "test" (VQA-RAD has no dev split). When items carry `phrase_type`, its
official split is used (values starting with "test" are test). Otherwise the images are split
80/20 with seed 0, so every question about an image lands in the same split.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from fedmllm.data.images import check_image, check_inside, is_file
from fedmllm.data.jsonl import find_json_file, read_json_list, require
from fedmllm.data.sample import Sample
from fedmllm.data.synthetic import medvqa
from fedmllm.errors import FedmllmError

DEFAULT_FILE = medvqa.VQA_RAD_FILE
IMAGE_DIRS = (medvqa.VQA_RAD_IMAGES, "images")
SPLITS = ("train", "test")
ANSWER_TYPES = ("open", "closed")
TEST_FRACTION, SPLIT_SEED = 0.2, 0


def vocabulary() -> list[str]:
    return ["yes", "no", *medvqa.vocabulary()]


# --- helpers shared with the SLAKE loader -------------------------------------------------------


def read_qid(obj: dict[str, Any], loc: str) -> str:
    qid = require(obj, "qid", (int, str), loc)
    text = str(qid).strip()
    if not text:
        raise FedmllmError(f"{loc}: field 'qid' is empty")
    return text


def read_question(obj: dict[str, Any], loc: str) -> str:
    question = " ".join(require(obj, "question", str, loc).split())
    if not question:
        raise FedmllmError(f"{loc}: field 'question' is empty")
    return question


def read_answer_type(obj: dict[str, Any], loc: str) -> str:
    """ "open" or "closed", whatever the case and surrounding spaces."""
    raw = require(obj, "answer_type", str, loc)
    value = raw.strip().lower()
    if value not in ANSWER_TYPES:
        raise FedmllmError(f"{loc}: field 'answer_type' is {raw!r}, expected OPEN or CLOSED")
    return value


def read_answer(obj: dict[str, Any], answer_type: str, loc: str) -> str:
    """The answer as a stripped string; closed yes/no lower-cased, open answers keep their case."""
    raw = require(obj, "answer", (str, int, float), loc)
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    answer = " ".join(str(raw).split())
    if not answer:
        raise FedmllmError(f"{loc}: field 'answer' is empty")
    if answer_type == "closed" and answer.lower() in ("yes", "no"):
        answer = answer.lower()
    return answer


def vqa_sample(obj: dict[str, Any], image: Path, loc: str) -> Sample:
    """A Sample from the fields VQA-RAD and SLAKE share (qid, question, answer, answer_type)."""
    answer_type = read_answer_type(obj, loc)
    return Sample(
        id=read_qid(obj, loc),
        image=image,
        text=None,
        question=read_question(obj, loc),
        answer=read_answer(obj, answer_type, loc),
        task="vqa",
        answer_type=answer_type,
    )


# --- VQA-RAD --------------------------------------------------------------------------------------


def find_json(folder: Path) -> Path:
    """`VQA_RAD Dataset Public.json`, or the folder's only JSON file."""
    return find_json_file(folder, DEFAULT_FILE)


def find_image(folder: Path, name: str, loc: str, allow_external: bool = False) -> Path:
    field = f"{loc}: field 'image_name'"
    for sub in IMAGE_DIRS:
        path = folder / sub / name
        check_inside(folder, path, name, field, allow_external)  # before is_file: never probe outside
        if is_file(path, field):
            return check_image(path, field)
    looked = " or ".join(f"'{folder / sub}'" for sub in IMAGE_DIRS)
    raise FedmllmError(f"{loc}: field 'image_name': image file not found: '{name}' (looked in {looked})")


def held_out_images(names: list[str]) -> set[str]:
    """A seeded 20% of the distinct images (at least one, and never all when there are two)."""
    distinct = sorted(set(names))
    random.Random(SPLIT_SEED).shuffle(distinct)
    n_test = round(len(distinct) * TEST_FRACTION)
    if len(distinct) >= 2:
        n_test = min(max(n_test, 1), len(distinct) - 1)
    return set(distinct[:n_test])


def load(folder: Path, split: str, *, allow_external: bool = False) -> list[Sample]:
    """Read one split; every image must exist (inside `folder` unless `allow_external`) and every
    answer_type be OPEN or CLOSED."""
    if split not in SPLITS:
        raise FedmllmError(f"vqa_rad: unknown split '{split}' (choose from {list(SPLITS)})")
    folder = Path(folder)
    path = find_json(folder)
    items = read_json_list(path)
    official = any("phrase_type" in obj for _, obj in items)
    rows, seen = [], set()  # (is test or None, image name, sample)
    for loc, obj in items:
        sample_id = read_qid(obj, loc)
        image_name = require(obj, "image_name", str, loc).strip()
        is_test = None
        if official:  # then every item must say which split it belongs to
            is_test = require(obj, "phrase_type", str, loc).strip().lower().startswith("test")
        sample = vqa_sample(obj, find_image(folder, image_name, loc, allow_external), loc)
        if sample_id in seen:  # the published file repeats a few qids; keep the first
            continue
        seen.add(sample_id)
        rows.append((is_test, image_name, sample))
    if not official:
        held_out = held_out_images([name for _, name, _ in rows])
        rows = [(name in held_out, name, sample) for _, name, sample in rows]
    samples = [sample for is_test, _, sample in rows if is_test == (split == "test")]
    if not samples:
        raise FedmllmError(f"{path}: no {split} samples")
    return samples
