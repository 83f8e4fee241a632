import pytest
import torch

from fedmllm.fl.regularize import adaptive_window, layer_of, prox_weights, proximal

LM = "language_model"
NAMES = [f"base_model.model.model.{LM}.layers.{i}.self_attn.q_proj.lora_A.default.weight" for i in range(12)]
NAMES += ["base_model.model.model.multi_modal_projector.modules_to_save.default.linear_1.weight"]


def test_window_and_clamping():
    assert adaptive_window(32, 4) == (4, 27)  # paper: layers [s, L-1-s]
    assert adaptive_window(4, 4) == (1, 2)  # shallow model: s clamps to (L-1)//2
    assert adaptive_window(3, 4) == (1, 1)
    assert adaptive_window(1, 4) == (0, 0)


def test_adaptive_term_touches_exactly_the_window_layers():
    weights = prox_weights(NAMES, fedprox_mu=0.0, adaptive_mu=0.001, language_model=LM, num_layers=12, skip=4)
    assert sorted(layer_of(n, LM) for n in weights) == [4, 5, 6, 7]
    assert set(weights.values()) == {0.001}
    both = prox_weights(NAMES, fedprox_mu=0.01, adaptive_mu=0.001, language_model=LM, num_layers=12, skip=4)
    assert len(both) == len(NAMES)  # FedProx covers every trainable tensor, projector included
    assert both[NAMES[5]] == pytest.approx(0.011) and both[NAMES[0]] == pytest.approx(0.01)


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        self.b = torch.nn.Parameter(torch.tensor([0.5]))


def test_proximal_value_and_gradient_match_numerics():
    model = Tiny()
    global_params = {"a": torch.tensor([0.0, 1.0]), "b": torch.tensor([2.0])}
    term = proximal(model, global_params, {"a": 0.2, "b": 0.0})
    value = term(model)
    assert value.item() == pytest.approx(0.5 * 0.2 * (1.0 + 9.0))  # b has weight 0
    value.backward()
    assert torch.allclose(model.a.grad, 0.2 * (model.a.detach() - global_params["a"]))
    # central finite differences on each coordinate of a
    eps = 1e-3
    for i in range(2):
        with torch.no_grad():
            model.a[i] += eps
            up = term(model).item()
            model.a[i] -= 2 * eps
            down = term(model).item()
            model.a[i] += eps
        assert (up - down) / (2 * eps) == pytest.approx(model.a.grad[i].item(), rel=1e-3)
