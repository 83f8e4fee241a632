"""VQA metrics: closed accuracy (normalised exact match) and open recall (token recall)."""

from __future__ import annotations

import re
import string

ARTICLES = {"a", "an", "the"}
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalise(text: str) -> str:
    """Lower case, punctuation to spaces, articles dropped, whitespace collapsed."""
    words = text.lower().translate(_PUNCT).split()
    return " ".join(w for w in words if w not in ARTICLES)


def exact_match(prediction: str, reference: str) -> float:
    return float(normalise(prediction) == normalise(reference))


def token_recall(prediction: str, reference: str) -> float:
    """Share of the reference's tokens that appear in the prediction (the paper's open recall)."""
    ref = normalise(reference).split()
    if not ref:
        return float(not normalise(prediction))
    pred = set(normalise(prediction).split())
    return sum(t in pred for t in ref) / len(ref)


def vqa_scores(predictions: list[str], references: list[str], answer_types: list[str | None]) -> dict[str, float]:
    """closed_accuracy over closed items, open_recall over open ones, overall over all of them."""
    closed, opened = [], []
    for pred, ref, kind in zip(predictions, references, answer_types, strict=True):
        (closed if kind == "closed" else opened).append(
            exact_match(pred, ref) if kind == "closed" else token_recall(pred, ref)
        )
    scores = {"overall": (sum(closed) + sum(opened)) / max(1, len(closed) + len(opened))}
    if closed:
        scores["closed_accuracy"] = sum(closed) / len(closed)
    if opened:
        scores["open_recall"] = sum(opened) / len(opened)
    return scores


def first_line(text: str) -> str:
    """Generated answers often run on; the answer is the first line."""
    return re.split(r"[\n]", text.strip(), maxsplit=1)[0] if text.strip() else ""
