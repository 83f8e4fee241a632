"""SLAKE (Liu et al. 2021) as published: train/validate/test JSON lists and `imgs/<img_name>`.

Items have {"img_id", "img_name", "question", "answer", "answer_type" (OPEN/CLOSED), "q_lang"
("en"/"zh"), "location", "modality", "content_type", "base_type", "qid", ...}; "img_name" is
relative to `imgs/` (e.g. "xmlab102/source.jpg") and must resolve inside the dataset folder unless
`allow_external` (see images.check_inside). Only English questions are read by default
(the benchmark uses the English part); rows in other languages are skipped before any other
check. Answers are normalised as for VQA-RAD (see `vqa_rad.read_answer`); repeated qids keep
their first item.
"""

from __future__ import annotations

from pathlib import Path

from fedmllm.data import vqa_rad
from fedmllm.data.images import dataset_image
from fedmllm.data.jsonl import read_json_list, require
from fedmllm.data.sample import Sample
from fedmllm.data.synthetic import medvqa
from fedmllm.errors import FedmllmError

SPLITS = medvqa.SLAKE_FILES  # "train", "dev" (validate.json), "test"
LANGUAGES = ("en", "zh")


def vocabulary() -> list[str]:
    return vqa_rad.vocabulary()


def load(folder: Path, split: str, language: str | None = "en", *, allow_external: bool = False) -> list[Sample]:
    """Read one split's questions in `language` ("en", "zh", or None for all); images must be
    inside `folder` unless `allow_external`."""
    if split not in SPLITS:
        raise FedmllmError(f"slake: unknown split '{split}' (choose from {list(SPLITS)})")
    if language is not None and language not in LANGUAGES:
        raise FedmllmError(f"slake: unknown language '{language}' (choose from {list(LANGUAGES)} or None for all)")
    folder = Path(folder)
    path = folder / SPLITS[split]
    samples, seen = [], set()
    for loc, obj in read_json_list(path):
        lang = require(obj, "q_lang", str, loc).strip().lower()
        if language is not None and lang != language:
            continue
        sample_id = vqa_rad.read_qid(obj, loc)
        img_name = require(obj, "img_name", str, loc).strip()
        image = dataset_image(folder, folder / "imgs" / img_name, img_name, f"{loc}: field 'img_name'", allow_external)
        sample = vqa_rad.vqa_sample(obj, image, loc)
        if sample_id in seen:
            continue
        seen.add(sample_id)
        samples.append(sample)
    if not samples:
        which = "" if language is None else f" '{language}'"
        raise FedmllmError(f"{path}: no{which} samples")
    return samples
