import math

import pytest

from fedmllm.evaluation import metrics


def test_auc_hand_computed():
    # positives score 0.8, 0.4; negatives 0.5, 0.1: pairs (0.8>0.5, 0.8>0.1, 0.4<0.5, 0.4>0.1) -> 3/4
    assert metrics.roc_auc([1, 0, 1, 0], [0.8, 0.5, 0.4, 0.1]) == pytest.approx(0.75)


def test_auc_ties_count_half():
    assert metrics.roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.roc_auc([1, 1, 0], [0.9, 0.5, 0.5]) == pytest.approx(0.75)


def test_auc_single_class_is_nan():
    assert math.isnan(metrics.roc_auc([1, 1], [0.2, 0.3]))


def test_accuracy_and_macro_f1():
    y, p = [0, 0, 1, 1, 2], [0, 1, 1, 1, 0]
    assert metrics.accuracy(y, p) == pytest.approx(3 / 5)
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: tp0 fp0 fn1 -> 0
    assert metrics.macro_f1(y, p, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_generation_metrics_from_parsed_hard_labels():
    from fedmllm.evaluation.scoring import generation_metrics

    # labels 1 1 0 0 0, parsed 1 None 0 1 None; failures scored as the wrong class: 1 0 0 1 1
    # positives {1, 0} vs negatives {0, 1, 1}: 1>0 (1), 1=1 (0.5) x2, 0=0 (0.5), 0<1 x2 -> 2.5 / 6
    result = generation_metrics([1, 1, 0, 0, 0], [1, None, 0, 1, None], 2)
    assert result["gen_auc"] == pytest.approx(2.5 / 6)
    assert result["gen_accuracy"] == pytest.approx(2 / 5)
    assert result["gen_parse_failure"] == pytest.approx(2 / 5)
    perfect = generation_metrics([0, 1, 1], [0, 1, 1], 2)
    assert (perfect["gen_auc"], perfect["gen_accuracy"]) == (1.0, 1.0)
    assert "gen_auc" not in generation_metrics([0, 2], [0, 1], 3)  # AUC is for binary tasks
