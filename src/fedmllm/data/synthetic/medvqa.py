"""A synthetic medical-VQA twin, written in both the VQA-RAD and the SLAKE published layouts.

Each "scan" is a `memes.draw` image: a pale, speckled grey background with one coloured shape,
the "lesion". The built-in tiny model was pretrained to name the colour of exactly such a shape,
so the colour questions are learnable by a short federated fine-tune; shape questions are
harder (the model learned shapes less well). Every scan gets one open and one closed question
(so the set is half open, half closed):
- open: "What colour is the lesion?" (three times in four) or "What shape is the lesion?"; the
  answer is the scan's colour or shape, replaced by another value of the same kind with
  probability OPEN_NOISE (annotation noise);
- closed, the colour form "Is the lesion red?" (1 - WARMTH_SHARE of them): its true answer is
  a fair coin, so only the image tells it;
- closed, the warmth form "Is the lesion warm-coloured?" / "... cool-coloured?" (WARMTH_SHARE,
  30%): the question names the lesion's own colour group with probability WARMTH_YES, so the
  wording alone predicts "Yes", as language priors answer many real closed questions;
- every closed answer is flipped with probability CLOSED_NOISE.
Exact Bayes ceilings of accuracy (`ceilings()`): closed 0.596 from the question alone, 0.90 with
the image; open 0.21 from the question alone, 0.90 with the image. `sizes[split]` counts
questions (English ones for SLAKE); a split with an odd count ends on a scan with a single
question. Test scans are never reused in training.
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

VERSION = 2  # of the answer rule and the draws; the registry's cache folder names it
OPEN_COLOUR_SHARE = 0.75  # of open questions, the rest ask the shape
OPEN_NOISE = 0.1  # P(an open answer is another value of its kind, drawn uniformly)
WARMTH_SHARE = 0.3  # of closed questions, the warmth form; the rest name a colour
WARMTH_YES = 0.9  # P(a warmth question names the lesion's own colour group): its true answer
CLOSED_NOISE = 0.1  # P(a closed answer is flipped)


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


Outcomes = dict[tuple[str, str], float]  # (question, answer) -> probability


def _add(outcomes: Outcomes, question: str, answer: str, p: float) -> None:
    outcomes[question, answer] = outcomes.get((question, answer), 0.0) + p


def _add_open(outcomes: Outcomes, question: str, truth: str, values: list[str], p: float) -> None:
    """The true answer with probability 1 - OPEN_NOISE, else one of the other values uniformly."""
    _add(outcomes, question, truth, p * (1 - OPEN_NOISE))
    others = [v for v in values if v != truth]
    for other in others:
        _add(outcomes, question, other, p * OPEN_NOISE / len(others))


def _add_closed(outcomes: Outcomes, question: str, yes: bool, p: float) -> None:
    """The true answer with probability 1 - CLOSED_NOISE, else the other one."""
    _add(outcomes, question, "Yes" if yes else "No", p * (1 - CLOSED_NOISE))
    _add(outcomes, question, "No" if yes else "Yes", p * CLOSED_NOISE)


def open_outcomes(spec: memes.MemeSpec) -> Outcomes:
    """P(question, answer) of the open question asked about a scan with `spec`."""
    outcomes: Outcomes = {}
    _add_open(outcomes, OPEN_COLOUR, spec.colour, COLOURS, OPEN_COLOUR_SHARE)
    _add_open(outcomes, OPEN_SHAPE, spec.shape, memes.SHAPES, 1 - OPEN_COLOUR_SHARE)
    return outcomes


def closed_outcomes(spec: memes.MemeSpec) -> Outcomes:
    """P(question, answer) of the closed question asked about a scan with `spec`."""
    outcomes: Outcomes = {}
    own, other = ("warm", "cool") if spec.warm else ("cool", "warm")
    _add_closed(outcomes, CLOSED_WARMTH.format(warmth=own), True, WARMTH_SHARE * WARMTH_YES)
    _add_closed(outcomes, CLOSED_WARMTH.format(warmth=other), False, WARMTH_SHARE * (1 - WARMTH_YES))
    colour_share = 1 - WARMTH_SHARE
    _add_closed(outcomes, CLOSED_COLOUR.format(colour=spec.colour), True, colour_share / 2)
    others = [c for c in COLOURS if c != spec.colour]
    for asked in others:
        _add_closed(outcomes, CLOSED_COLOUR.format(colour=asked), False, colour_share / 2 / len(others))
    return outcomes


def _pick(outcomes: Outcomes, rng: random.Random) -> tuple[str, str]:
    """One (question, answer) drawn with a single rng.random(), in the outcomes' fixed order."""
    u, total = rng.random(), 0.0
    for outcome, p in outcomes.items():
        total += p
        if u < total:
            return outcome
    return outcome  # u within rounding of 1.0


def open_question(spec: memes.MemeSpec, rng: random.Random) -> dict[str, str]:
    question, answer = _pick(open_outcomes(spec), rng)
    kind = "colour" if question == OPEN_COLOUR else "shape"
    return {"question": question, "answer": answer, "answer_type": "OPEN", "kind": kind}


def closed_question(spec: memes.MemeSpec, rng: random.Random) -> dict[str, str]:
    question, answer = _pick(closed_outcomes(spec), rng)
    return {"question": question, "answer": answer, "answer_type": "CLOSED", "kind": "colour"}


def scan_distribution() -> list[tuple[memes.MemeSpec, float]]:
    """Every scan `scan_spec` draws, with its probability: `memes.random_spec` flips a fair coin
    for warm, then picks a colour of that group and a shape uniformly."""
    out = []
    for group in (memes.WARM, memes.COOL):
        for colour in sorted(group):
            for shape in memes.SHAPES:
                out.append((memes.MemeSpec(colour, shape, "", "", 0), 0.5 / len(group) / len(memes.SHAPES)))
    return out


def _bayes_accuracy(outcomes_of, see_image: bool) -> float:
    """Accuracy of answering each question (and, if `see_image`, each scan) with its most likely answer."""
    joint: dict[tuple, dict[str, float]] = {}
    for spec, p_spec in scan_distribution():
        for (question, answer), p in outcomes_of(spec).items():
            key = (spec, question) if see_image else (question,)
            answers = joint.setdefault(key, {})
            answers[answer] = answers.get(answer, 0.0) + p_spec * p
    return sum(max(answers.values()) for answers in joint.values())


def ceilings() -> dict[str, float]:
    """Exact Bayes accuracy of closed and open questions, from the question alone ("*_question")
    or with the scan ("*_both"). The scan fixes colour and shape, so "*_both" is 1 - noise."""
    return {
        "closed_question": _bayes_accuracy(closed_outcomes, see_image=False),
        "closed_both": _bayes_accuracy(closed_outcomes, see_image=True),
        "open_question": _bayes_accuracy(open_outcomes, see_image=False),
        "open_both": _bayes_accuracy(open_outcomes, see_image=True),
    }


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
                yes = rng.random() < 0.5  # the colour form's rule, in Chinese
                asked = spec.colour if yes else rng.choice([c for c in COLOURS if c != spec.colour])
                said = yes != (rng.random() < CLOSED_NOISE)
                rows.append(
                    (ZH_CLOSED.format(colour=ZH_COLOURS[asked]), "是" if said else "否", "CLOSED", "zh", "colour")
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
