"""A synthetic medical-VQA twin, written in both the VQA-RAD and the SLAKE published layouts.

Each "scan" is a `memes.draw` image: a pale, speckled grey background with one coloured shape,
the "lesion". The built-in tiny model was pretrained to name the colour of exactly such a shape,
so the colour questions are learnable by a short federated fine-tune; shape questions are
harder (the model learned shapes less well). Every scan gets one open and one closed question
(so the set is half open, half closed):
- open: "What colour is the lesion?" -> "red" (three times in four), "What shape is the lesion?"
  -> "circle" otherwise;
- closed: "Is the lesion red?" or "Is the lesion warm-coloured?" / "... cool-coloured?", the
  answer "Yes" or "No" drawn as a fair coin first, so yes and no are balanced.
`sizes[split]` counts questions (English ones for SLAKE); a split with an odd count ends on a
scan with a single question. Test scans are never reused in training.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from fedmllm.data.synthetic import memes, staging

COLOURS = sorted({**memes.WARM, **memes.COOL})
OPEN_COLOUR = "What colour is the lesion?"
OPEN_SHAPE = "What shape is the lesion?"
CLOSED_COLOUR = "Is the lesion {colour}?"
CLOSED_WARMTH = "Is the lesion {warmth}-coloured?"
ZH_COLOURS = {"red": "红色", "orange": "橙色", "yellow": "黄色", "blue": "蓝色", "green": "绿色", "purple": "紫色"}
ZH_CLOSED = "病灶是{colour}的吗?"
ORGANS = {"HEAD": ("Brain", "MRI"), "CHEST": ("Lung", "X-Ray"), "ABD": ("Abdomen", "CT")}
VQA_RAD_FILE = "VQA_RAD Dataset Public.json"
VQA_RAD_IMAGES = "VQA_RAD Image Folder"
SLAKE_FILES = {"train": "train.json", "dev": "validate.json", "test": "test.json"}


def vocabulary() -> list[str]:
    """Every fixed question the twin asks (the colour names are also pretraining words)."""
    return [
        OPEN_COLOUR,
        OPEN_SHAPE,
        *(CLOSED_COLOUR.format(colour=c) for c in COLOURS),
        CLOSED_WARMTH.format(warmth="warm"),
        CLOSED_WARMTH.format(warmth="cool"),
    ]


def scan_spec(rng: random.Random) -> memes.MemeSpec:
    """A lesion's colour and shape; the caption fields of MemeSpec are unused by `memes.draw`."""
    spec = memes.random_spec(rng)
    return memes.MemeSpec(spec.colour, spec.shape, "", "", 0)


def open_question(spec: memes.MemeSpec, rng: random.Random) -> dict[str, str]:
    if rng.random() < 0.75:
        return {"question": OPEN_COLOUR, "answer": spec.colour, "answer_type": "OPEN", "kind": "colour"}
    return {"question": OPEN_SHAPE, "answer": spec.shape, "answer_type": "OPEN", "kind": "shape"}


def closed_question(spec: memes.MemeSpec, rng: random.Random) -> dict[str, str]:
    yes = rng.random() < 0.5
    if rng.random() < 0.5:
        asked = spec.colour if yes else rng.choice([c for c in COLOURS if c != spec.colour])
        question = CLOSED_COLOUR.format(colour=asked)
    else:
        warm = spec.warm if yes else not spec.warm
        question = CLOSED_WARMTH.format(warmth="warm" if warm else "cool")
    return {"question": question, "answer": "Yes" if yes else "No", "answer_type": "CLOSED", "kind": "colour"}


def scan_questions(spec: memes.MemeSpec, count: int, rng: random.Random) -> list[dict[str, str]]:
    """One open and one closed question in random order, or a single one of either kind."""
    pair = [open_question(spec, rng), closed_question(spec, rng)]
    rng.shuffle(pair)
    return pair[:count]


def _scans(n_questions: int, rng: random.Random):
    """(spec, questions) per scan until `n_questions` questions are drawn."""
    left = n_questions
    while left > 0:
        spec = scan_spec(rng)
        questions = scan_questions(spec, min(2, left), rng)
        left -= len(questions)
        yield spec, questions


def _dump(path: Path, items: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps(items, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def write_vqa_rad(folder: Path, sizes: dict[str, int], seed: int = 0, image_size: int = 64) -> Path:
    """Write `VQA_RAD Dataset Public.json` and `VQA_RAD Image Folder/` into `folder`.

    VQA-RAD has no dev split: only sizes["train"] and sizes["test"] are used. Every item carries
    `phrase_type` ("freeform" / "test_freeform"), so the loader takes the official test split.
    Deterministic given (sizes, seed, image_size); written into a sibling and renamed.
    """
    folder, tmp = staging(folder)
    (tmp / VQA_RAD_IMAGES).mkdir()
    rng = random.Random(seed)
    items: list[dict[str, Any]] = []
    image_number = 1000
    for split in ("train", "test"):
        for spec, questions in _scans(sizes[split], rng):
            image_name = f"synpic{image_number}.png"
            memes.draw(spec, rng, image_size).save(tmp / VQA_RAD_IMAGES / image_name)
            organ = rng.choice(sorted(ORGANS))
            for q in questions:
                qid = len(items) + 1
                items.append(
                    {
                        "qid": qid,
                        "phrase_type": "test_freeform" if split == "test" else "freeform",
                        "qid_linked_id": f"{image_number:05d}{qid:03d}",
                        "image_case_url": "",
                        "image_name": image_name,
                        "image_organ": organ,
                        "evaluation": "given",
                        "question": q["question"],
                        "question_rephrase": "NULL",
                        "question_relation": "NULL",
                        "question_frame": "NULL",
                        "question_type": "COLOR" if q["kind"] == "colour" else "ATTRIB",
                        "answer": q["answer"],
                        "answer_type": q["answer_type"],
                    }
                )
            image_number += 1
    _dump(tmp / VQA_RAD_FILE, items)
    tmp.rename(folder)
    return folder


def write_slake(folder: Path, sizes: dict[str, int], seed: int = 0, image_size: int = 64) -> Path:
    """Write `train.json`, `validate.json`, `test.json` and `imgs/xmlab<N>/source.png`.

    sizes["train"], sizes["dev"] (validate.json) and sizes["test"] count English questions; every
    fourth scan also gets a Chinese (q_lang "zh") closed question, which the loader filters out
    by default. Deterministic given (sizes, seed, image_size); written into a sibling and renamed.
    """
    folder, tmp = staging(folder)
    rng = random.Random(seed)
    img_id, qid = 0, 0
    for split, file in SLAKE_FILES.items():
        items: list[dict[str, Any]] = []
        for index, (spec, questions) in enumerate(_scans(sizes[split], rng)):
            img_name = f"xmlab{img_id}/source.png"
            (tmp / "imgs" / f"xmlab{img_id}").mkdir(parents=True)
            memes.draw(spec, rng, image_size).save(tmp / "imgs" / img_name)
            location, modality = ORGANS[rng.choice(sorted(ORGANS))]
            rows = [(q["question"], q["answer"], q["answer_type"], "en", q["kind"]) for q in questions]
            if index % 4 == 0:
                yes = rng.random() < 0.5
                asked = spec.colour if yes else rng.choice([c for c in COLOURS if c != spec.colour])
                rows.append(
                    (ZH_CLOSED.format(colour=ZH_COLOURS[asked]), "是" if yes else "否", "CLOSED", "zh", "colour")
                )
            for question, answer, answer_type, lang, kind in rows:
                items.append(
                    {
                        "img_id": img_id,
                        "img_name": img_name,
                        "question": question,
                        "answer": answer,
                        "q_lang": lang,
                        "location": location,
                        "modality": modality,
                        "answer_type": answer_type,
                        "base_type": "vqa",
                        "content_type": "Color" if kind == "colour" else "Shape",
                        "triple": ["vhead", "_", "_"],
                        "qid": qid,
                    }
                )
                qid += 1
            img_id += 1
        _dump(tmp / file, items)
    tmp.rename(folder)
    return folder
