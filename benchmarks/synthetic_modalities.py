"""How much each modality of the synthetic twins tells: the exact Bayes ceilings of each twin's
label rule (`ceilings()` in its generator) next to MEASURED ones, from plain scikit-learn models
trained on the twin's published files (train split) and scored on its test split:
- text: bag-of-words logistic regression;
- image: logistic regression on downsampled pixels + a colour histogram (+ one shape descriptor,
  `fill`, which only the open shape questions need);
- additive (memes): logistic regression on both feature sets, a score additive across them;
- both: gradient-boosted trees (HistGradientBoostingClassifier) on both feature sets.
"rule on test" scores the rule's own Bayes prediction, from cues read off the same test files
(caption words, the shape's colour): how far this test sample alone moves the ceiling.
Prints markdown tables; not a test.

    python benchmarks/synthetic_modalities.py [--train 20000] [--test 5000] [--seed 0]
    python benchmarks/synthetic_modalities.py --model-runs [--steps 300] [--train 1000] [--seed 0]

`--model-runs` (slow) instead fine-tunes the built-in tiny model with LoRA, centralised, on the
Hateful Memes twin's image+text, image only and text only, scored with the same modalities.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fedmllm.data import registry
from fedmllm.data.sample import Sample
from fedmllm.data.synthetic import crisis, medvqa, memes

PALETTE = {**memes.WARM, **memes.COOL}
THUMB = 4  # downsampled image side, pixels (8 lets the linear models fit position noise)
BINS = 4  # colour histogram bins per channel


def image_features(path: Path) -> np.ndarray:
    """Downsampled RGB pixels, a joint RGB histogram (fractions of the image) and the shape's
    bounding-box fill (a shape descriptor the thumbnail is too coarse to give), all in [0, 1]."""
    with Image.open(path) as img:
        rgb = img.convert("RGB")
        thumb = np.asarray(rgb.resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.float32) / 255
        pixels = np.asarray(rgb, dtype=np.int64)
    bins = pixels.reshape(-1, 3) * BINS // 256
    hist = np.bincount((bins[:, 0] * BINS + bins[:, 1]) * BINS + bins[:, 2], minlength=BINS**3)
    return np.concatenate([thumb.ravel(), hist / len(bins), [fill(pixels)]])


def fill(rgb: np.ndarray) -> float:
    """How much of its bounding box the saturated shape covers: square 1, circle pi/4, triangle 1/2."""
    mask = rgb.max(2) - rgb.min(2) > 80
    rows, cols = np.nonzero(mask)
    return float(mask.sum() / ((np.ptp(rows) + 1) * (np.ptp(cols) + 1))) if len(rows) else 0.0


def shape_colour(path: Path) -> str:
    """The palette colour nearest the mean of the image's saturated (shape) pixels."""
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"), dtype=np.float64).reshape(-1, 3)
    mean = pixels[pixels.max(1) - pixels.min(1) > 80].mean(0)
    return min(PALETTE, key=lambda c: float(((np.array(PALETTE[c]) - mean) ** 2).sum()))


def shape_name(path: Path) -> str:
    """circle, square or triangle, from how much of its bounding box the shape fills."""
    with Image.open(path) as img:
        ratio = fill(np.asarray(img.convert("RGB"), dtype=np.int64))
    return "square" if ratio > 0.9 else "circle" if ratio > 0.65 else "triangle"


class Features:
    """Text and image feature matrices of a train/test pair, the vocabulary fitted on train."""

    def __init__(self, train: list[Sample], test: list[Sample], text: Callable[[Sample], str]) -> None:
        words = CountVectorizer(binary=True, token_pattern=r"[A-Za-z-]+")
        self.text = (
            words.fit_transform([text(s) for s in train]).toarray(),
            words.transform([text(s) for s in test]).toarray(),
        )
        self.image = tuple(np.stack([image_features(s.image) for s in split]) for split in (train, test))

    def both(self, i: int) -> np.ndarray:
        return np.hstack([self.text[i], self.image[i]])


def linear() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))


def trees() -> object:
    # stopped on a held-out tenth of train: with 100 full rounds the trees fit the label noise
    return HistGradientBoostingClassifier(early_stopping=True, random_state=0)


def fitted_scores(model: object, train: tuple[np.ndarray, object], test: np.ndarray, proba: bool) -> np.ndarray:
    """The model fitted on (features, labels); then P(positive) on `test`, or its predictions."""
    model.fit(*train)
    return model.predict_proba(test)[:, 1] if proba else model.predict(test)


def table(title: str, metric: str, rows: list[tuple[str, float, float, float]]) -> None:
    print(f"\n### {title}\n")
    print(f"| view | computed {metric} | measured {metric} | difference | rule on test |")
    print("|---|---:|---:|---:|---:|")
    for view, computed, measured, rule in rows:
        print(f"| {view} | {computed:.3f} | {measured:.3f} | {measured - computed:+.3f} | {rule:.3f} |")


def load(name: str, sizes: dict[str, int], seed: int) -> tuple[list[Sample], list[Sample]]:
    folder = registry.resolve_folder(name, "", sizes, seed)
    return registry.load_split(name, folder, "train"), registry.load_split(name, folder, "test")


def memes_table(n_train: int, n_test: int, seed: int) -> None:
    train, test = load("hateful_memes", {"train": n_train, "dev": 100, "test": n_test}, seed)
    f = Features(train, test, lambda s: s.text or "")
    y, y_test = np.array([s.label for s in train]), np.array([s.label for s in test])
    models = {
        "text": (linear(), f.text),
        "image": (linear(), f.image),
        "additive": (linear(), (f.both(0), f.both(1))),
        "both": (trees(), (f.both(0), f.both(1))),
    }
    cues = [
        (1 if set(s.text.split()) & set(memes.MOCKING) else -1, 1 if shape_colour(s.image) in memes.WARM else -1)
        for s in test
    ]
    text, image, (alpha, beta) = memes.marginal(0), memes.marginal(1), memes.best_additive()
    rule = {
        "both": [memes.hateful_probability(t, v) for t, v in cues],
        "text": [text[t] for t, _ in cues],
        "image": [image[v] for _, v in cues],
        "additive": [alpha * t + beta * v for t, v in cues],
    }
    ceiling, rows = memes.ceilings(), []
    for view, (model, x) in models.items():
        score = fitted_scores(model, (x[0], y), x[1], proba=True)
        rows.append((view, ceiling[view], roc_auc_score(y_test, score), roc_auc_score(y_test, rule[view])))
    positives = float(np.mean(np.concatenate([y, y_test])))
    table(f"Hateful Memes twin (AUC; {len(train)} train, {len(test)} test, positive rate {positives:.3f})", "AUC", rows)


def crisis_table(n_train: int, n_test: int, seed: int) -> None:
    train, test = load("crisismmd", {"train": n_train, "dev": 100, "test": n_test}, seed)
    f = Features(train, test, lambda s: s.text or "")
    y, y_test = np.array([s.label for s in train]), np.array([s.label for s in test])
    models = {"text": (linear(), f.text), "image": (linear(), f.image), "both": (trees(), (f.both(0), f.both(1)))}
    cools = [int(shape_colour(s.image) in memes.COOL) for s in test]
    topics = [next(i for i, group in enumerate(crisis.TOPICS) if set(group) & set(s.text.split())) for s in test]
    seen = {"both": (True, True), "image": (True, False), "text": (False, True)}

    def rule(view: str) -> list[int]:
        image, text = seen[view]
        return [
            max(
                range(crisis.N_CLASSES),
                key=lambda c: crisis.cue_probability(c, k if image else None, t if text else None),
            )
            for k, t in zip(cools, topics, strict=True)
        ]

    ceiling, acc, f1 = crisis.ceilings(), [], []
    for view, (model, x) in models.items():
        predicted = fitted_scores(model, (x[0], y), x[1], proba=False)
        acc.append((view, ceiling[view], accuracy_score(y_test, predicted), accuracy_score(y_test, rule(view))))
        f1.append((view, ceiling[f"{view}_f1"], macro_f1(y_test, predicted), macro_f1(y_test, rule(view))))
    title = f"CrisisMMD twin ({len(train)} train, {len(test)} test; majority class {ceiling['majority']:.3f})"
    table(title + ": accuracy", "accuracy", acc)
    table(title + ": macro-F1", "macro-F1", f1)


def macro_f1(truth: np.ndarray, predicted: np.ndarray | list[int]) -> float:
    return float(f1_score(truth, predicted, average="macro", labels=range(crisis.N_CLASSES), zero_division=0))


def vqa_table(n_train: int, n_test: int, seed: int) -> None:
    # sizes count questions, half of them closed: twice the items gives n_train closed ones
    train, test = load("vqa_rad", {"train": 2 * n_train, "test": 2 * n_test}, seed)
    rows, n = [], {}
    ceiling = medvqa.ceilings()
    for kind in ("closed", "open"):
        tr = [s for s in train if s.answer_type == kind]
        te = [s for s in test if s.answer_type == kind]
        n[kind] = (len(tr), len(te))
        f = Features(tr, te, lambda s: s.question)
        y, y_test = [s.answer for s in tr], [s.answer for s in te]
        outcomes = medvqa.closed_outcomes if kind == "closed" else medvqa.open_outcomes
        views = {
            "question only": (linear(), f.text, False),
            "image + question": (trees(), (f.both(0), f.both(1)), True),
        }
        for view, (model, x, see_image) in views.items():
            measured = accuracy_score(y_test, fitted_scores(model, (x[0], y), x[1], proba=False))
            rule = accuracy_score(y_test, vqa_rule(te, outcomes, see_image))
            key = f"{kind}_both" if see_image else f"{kind}_question"
            rows.append((f"{kind}, {view}", ceiling[key], measured, rule))
    sizes = ", ".join(f"{k} {a} train / {b} test" for k, (a, b) in n.items())
    table(f"VQA-RAD / SLAKE twin (accuracy; {sizes})", "accuracy", rows)


def vqa_rule(samples: list[Sample], outcomes: Callable, see_image: bool) -> list[str]:
    """The rule's most likely answer per question, given the scan's colour and shape or not."""
    answers = []
    for s in samples:
        if see_image:
            spec = memes.MemeSpec(shape_colour(s.image), shape_name(s.image), "", "", 0)
            scans = [(spec, 1.0)]
        else:
            scans = medvqa.scan_distribution()
        votes: dict[str, float] = {}
        for spec, p in scans:
            for (question, answer), q in outcomes(spec).items():
                if question == s.question:
                    votes[answer] = votes.get(answer, 0.0) + p * q
        best = max(votes, key=votes.get)
        answers.append(best.lower() if best in ("Yes", "No") else best)  # the loader lower-cases yes/no
    return answers


def model_runs(args: argparse.Namespace) -> None:
    """Centralised LoRA fine-tuning of the tiny model per modality on the Hateful Memes twin."""
    import torch

    from fedmllm.evaluation.scoring import evaluate_choice
    from fedmllm.fl import client
    from fedmllm.model.load import ModelSpec, load_trainable, session

    torch.manual_seed(0)
    train, test = load("hateful_memes", {"train": args.train, "dev": 100, "test": 200}, args.seed)
    sess = session(ModelSpec(lora_dropout=0.0))
    views = {
        "image+text": lambda s: s,
        "image only": lambda s: s.drop(text=True),
        "text only": lambda s: s.drop(image=True),
    }
    print(f"| modalities | zero-shot AUC | AUC | accuracy | s/step |   ({args.steps} steps, batch 8)")
    print("|---|---|---|---|---|")
    for name, view in views.items():
        load_trainable(sess.model, sess.initial)
        tr, te = [view(s) for s in train], [view(s) for s in test]
        zero = evaluate_choice(sess, te, 32)
        start = time.perf_counter()
        client.train(sess, tr, lr=args.lr, steps=args.steps, batch_size=8, seed=0)
        per_step = (time.perf_counter() - start) / args.steps
        got = evaluate_choice(sess, te, 32)
        print(f"| {name} | {zero['auc']:.3f} | {got['auc']:.3f} | {got['accuracy']:.3f} | {per_step:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, help="training items per twin (20000; --model-runs: 1000)")
    parser.add_argument("--test", type=int, default=5000, help="test items per twin")
    parser.add_argument("--seed", type=int, default=0, help="the twins' generation seed")
    parser.add_argument("--model-runs", action="store_true", help="tiny-model LoRA runs instead (slow)")
    parser.add_argument("--steps", type=int, default=300, help="--model-runs: training steps per view")
    parser.add_argument("--lr", type=float, default=1e-3, help="--model-runs: learning rate")
    args = parser.parse_args()
    if args.model_runs:
        args.train = args.train or 1000
        model_runs(args)
        return
    args.train = args.train or 20000
    start = time.perf_counter()
    memes_table(args.train, args.test, args.seed)
    crisis_table(args.train, args.test, args.seed)
    vqa_table(args.train, args.test, args.seed)
    print(f"\n({time.perf_counter() - start:.0f} s; twins generated with seed {args.seed})")


if __name__ == "__main__":
    main()
