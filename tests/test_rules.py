import pytest
import torch

from fedmllm.fl import rules
from fedmllm.fl.schedule import cosine_lr


def test_fedavg_is_sample_weighted_mean():
    w = {"a": torch.tensor([0.0, 0.0]), "b": torch.tensor([[1.0]])}
    c1 = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([[3.0]])}
    c2 = {"a": torch.tensor([4.0, -1.0]), "b": torch.tensor([[0.0]])}
    out = rules.fedavg(w, [c1, c2], [1, 3])
    assert torch.allclose(out["a"], torch.tensor([(1 + 12) / 4, (2 - 3) / 4]), atol=1e-6)
    assert torch.allclose(out["b"], torch.tensor([[3 / 4]]), atol=1e-6)


def test_fedavg_equal_weights_three_rounds():
    w = {"x": torch.tensor([1.0])}
    for expected, clients in ((2.0, [3.0, 1.0, 2.0]), (0.0, [0.0, -3.0, 3.0]), (5.0, [5.0, 5.0, 5.0])):
        w = rules.fedavg(w, [{"x": torch.tensor([c])} for c in clients], [10, 10, 10])
        assert w["x"].item() == pytest.approx(expected, abs=1e-6)


def test_fedavg_rejects_mismatched_names():
    with pytest.raises(ValueError, match="names"):
        rules.fedavg({"x": torch.zeros(1)}, [{"y": torch.zeros(1)}], [1])


def test_cosine_schedule():
    assert cosine_lr(0, 10, 1.0, warmup=0.0) == pytest.approx(1.0)
    assert cosine_lr(5, 10, 1.0, warmup=0.0) == pytest.approx(0.5)
    # 10% warm-up of 20 rounds = 2 rounds: 0.5, 1.0, then cosine from the peak
    assert [cosine_lr(r, 20, 1.0, warmup=0.1) for r in range(3)] == pytest.approx([0.5, 1.0, 1.0])
