"""Metrics as plain functions on lists: AUC, accuracy, macro-F1."""

from __future__ import annotations


def accuracy(y_true: list[int], y_pred: list[int]) -> float:
    if not y_true:
        raise ValueError("accuracy of an empty set")
    return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)


def roc_auc(y_true: list[int], score: list[float]) -> float:
    """Area under the ROC curve for binary labels (Mann-Whitney U, ties counted half)."""
    ranked = sorted(zip(score, y_true, strict=True))
    n_pos = sum(y_true)
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum, i = 0.0, 0
    while i < len(ranked):  # average ranks over runs of tied scores
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mean_rank = (i + 1 + j) / 2
        rank_sum += mean_rank * sum(label for _, label in ranked[i:j])
        i = j
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def macro_f1(y_true: list[int], y_pred: list[int], num_classes: int) -> float:
    scores = []
    for c in range(num_classes):
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred, strict=True))
        fp = sum(t != c and p == c for t, p in zip(y_true, y_pred, strict=True))
        fn = sum(t == c and p != c for t, p in zip(y_true, y_pred, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / num_classes
