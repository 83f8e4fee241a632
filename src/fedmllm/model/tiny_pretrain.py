"""A short centralised pretraining of the tiny model, so federated LoRA is a true fine-tune.

Measured: a randomly initialised tiny LLaVA cannot learn the synthetic meme task through LoRA
and a trainable projector alone (test AUC stays at 0.5 after 600 steps). Real MLLMs arrive
knowing what images show and what words mean; this stage gives the tiny model the same footing
on synthetic data. In full-parameter training it learns to
- name the colour of a drawn image and describe it ("a red circle"),
- tell whether a caption's tone is kind or mocking,
- answer multiple-choice questions in the `(B) option` format,
- repeat the fixed instruction text of the task prompts (plain language modelling; it includes
  option words such as "not-hateful"). Without this, the output embeddings of words the model
  never produced keep their random initialisation, and LoRA alone raises them to ~3% probability.
It never sees the downstream rule (the hateful label), which federated fine-tuning must learn.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch

from fedmllm.data.sample import Sample
from fedmllm.data.synthetic import memes
from fedmllm.errors import FedmllmError
from fedmllm.model.collate import encode
from fedmllm.model.tiny_corpus import COLOURS, SHAPES
from fedmllm.model.train_loop import train_encoded
from fedmllm.scenarios.prompts import target_text

log = logging.getLogger(__name__)

QUESTIONS = {
    "colour": "What colour is the shape?",
    "tone": "Is the tone of the text kind or mocking?",
}
TONES = ("kind", "mocking")


def make_samples(folder: Path, n: int, seed: int, corpus: list[str]) -> list[Sample]:
    """`n` synthetic images with one question each about the image or the caption, or a line
    of `corpus` to repeat. The images come from the memes twin's drawing code; its colours and
    shapes must be the ones frozen with the recipe (model/tiny_corpus.py)."""
    rng = random.Random(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        spec = memes.random_spec(rng)
        if spec.colour not in COLOURS or spec.shape not in SHAPES:
            raise FedmllmError(
                f"memes.random_spec drew a {spec.colour} {spec.shape}, outside the tiny recipe's frozen "
                f"COLOURS/SHAPES in model/tiny_corpus.py: regenerate them and bump tiny.VERSION"
            )
        path = folder / "img" / f"{i}.png"
        memes.draw(spec, rng).save(path)
        kind = rng.choice([*QUESTIONS, "caption", "repeat"])
        if kind == "repeat":
            line = rng.choice(corpus)
            samples.append(Sample(f"pt{i}", None, line, "Repeat the text.", line, task="open"))
            continue
        # the other modality is present half the time, so the model learns to pick the one asked
        image = path if kind in ("colour", "caption") or rng.random() < 0.5 else None
        text = spec.text if kind == "tone" or rng.random() < 0.5 else None
        if kind == "caption":
            answer = f"a {spec.colour} {spec.shape}"
            samples.append(Sample(f"pt{i}", image, text, "Describe the image.", answer, task="open"))
            continue
        # Options in a fixed order, as in the downstream tasks: finding the answer's letter in a
        # shuffled list is a copying skill a model this small does not acquire in minutes.
        truth, options = {
            "colour": (spec.colour, COLOURS),
            "tone": (TONES[spec.mocking], TONES),
        }[kind]
        options = tuple(options)
        samples.append(Sample(f"pt{i}", image, text, QUESTIONS[kind], truth, options, options.index(truth)))
    return samples


def pretrain(
    model: torch.nn.Module,
    processor: object,
    workdir: Path,
    corpus: list[str],
    *,
    steps: int,
    seed: int,
    n_samples: int = 2000,
    batch_size: int = 16,
    lr: float = 1e-3,
    quiet: bool = False,
) -> float:
    """Full-parameter training on the synthetic caption/QA mix; returns the last 50 steps' loss.
    A progress bar on a terminal unless `quiet` (`train_loop.step_progress`)."""
    samples = make_samples(workdir, n_samples, seed, corpus)
    encoded = {s.id: encode(processor, s, target_text(s)) for s in samples}
    return train_encoded(
        model,
        processor,
        samples,
        encoded,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        weight_decay=0.01,
        label="tiny-model pretraining",
        quiet=quiet,
    )
