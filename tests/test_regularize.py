import math

import pytest
import torch

from fedmllm.fl.regularize import Proximal, adaptive_window, grad_ratio, layer_of, prox_weights

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


def test_fedprox_alone_covers_every_tensor():
    weights = prox_weights(NAMES, fedprox_mu=0.01, adaptive_mu=None, language_model=LM, num_layers=12, skip=4)
    assert weights == {n: 0.01 for n in NAMES}  # projector included


def test_adaptive_term_replaces_fedprox_as_in_the_authors_code():
    """FedProx (mu = 0.01) with adaptive regularization (mu * mu_w = 0.001): 0.001 on layers 4-7,
    nothing on the other layers or the projector, not 0.011 inside and 0.01 outside."""
    both = prox_weights(NAMES, fedprox_mu=0.01, adaptive_mu=0.001, language_model=LM, num_layers=12, skip=4)
    assert both == {NAMES[i]: 0.001 for i in (4, 5, 6, 7)}
    off = prox_weights(NAMES, fedprox_mu=0.01, adaptive_mu=0.0, language_model=LM, num_layers=12, skip=4)
    assert off == {}  # mu_w = 0 turns the term off, FedProx's too


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        self.b = torch.nn.Parameter(torch.tensor([0.5]))


def test_proximal_value_and_gradient_match_numerics():
    model = Tiny()
    global_params = {"a": torch.tensor([0.0, 1.0]), "b": torch.tensor([2.0])}
    term = Proximal(model, global_params, {"a": 0.2, "b": 0.0})
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


def test_closed_form_gradient_equals_autograd():
    model = Tiny()
    global_params = {"a": torch.tensor([0.0, 1.0]), "b": torch.tensor([2.0])}
    term = Proximal(model, global_params, {"a": 0.2, "b": 0.5})
    term(model).backward()
    grads = term.gradients()
    assert torch.allclose(grads["a"], torch.tensor([0.2, -0.6])) and torch.allclose(grads["b"], torch.tensor([-0.75]))
    assert torch.allclose(grads["a"], model.a.grad) and torch.allclose(grads["b"], model.b.grad)


def test_grad_ratio_hand_values():
    """Task loss 3·a0 + 4·b0 (gradient a = [3, 0], b = [4]: norm 5); term 0.2/2·|a - [0, 1]|² at
    a = [1, -2] (gradient 0.2·[1, -3] = [0.2, -0.6]: norm √0.4). Ratio √0.4 / 5."""
    model = Tiny()
    term = Proximal(model, {"a": torch.tensor([0.0, 1.0]), "b": torch.tensor([2.0])}, {"a": 0.2})
    loss = 3 * model.a[0] + 4 * model.b[0] + term(model)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grad_ratio(grads, term.gradients()) == pytest.approx(0.4**0.5 / 5, rel=1e-6)
    # a tensor without a gradient counts as zero; no task gradient at all: undefined
    assert grad_ratio({"a": None, "b": torch.tensor([4.0])}, {}) == 0.0
    assert grad_ratio({"a": torch.tensor([0.2, -0.6])}, {"a": torch.tensor([0.2, -0.6])}) is None


def test_client_ratio_is_the_mean_of_defined_steps():
    from fedmllm.fl.client import mean_ratio

    assert mean_ratio([None, 0.5, 0.25]) == pytest.approx(0.375)  # the first step's task gradient was zero
    assert math.isnan(mean_ratio([None]))
