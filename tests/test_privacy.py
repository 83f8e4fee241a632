"""Fixed-clipping DP: agreement with Flower's own functions, and the noise scale in server_update."""

import numpy as np
import pytest
import torch
from flwr.supercore.differential_privacy import compute_clip_model_update, compute_stdv

from fedmllm.config import RunConfig
from fedmllm.errors import FedmllmError
from fedmllm.fl import privacy
from fedmllm.fl.screen import ClientUpdate
from fedmllm.fl.server import server_update
from fedmllm.fl.state import ServerState


def test_clipping_agrees_with_flower():
    g = torch.Generator().manual_seed(0)
    ref = {"a": torch.randn(4, 3, generator=g), "b": torch.randn(5, generator=g)}
    new = {n: t + torch.randn(t.shape, generator=g) for n, t in ref.items()}  # norm ~4
    for clip in (0.5, 2.0, 100.0):
        ours = privacy.clip_update(new, ref, clip)
        theirs = [new[n].numpy().copy() for n in ref]
        compute_clip_model_update(theirs, [ref[n].numpy() for n in ref], clip)
        for n, t in zip(ref, theirs, strict=True):
            np.testing.assert_allclose(ours[n].numpy(), t, rtol=1e-5, atol=1e-6)
        assert privacy.update_norm(ours, ref) == pytest.approx(min(clip, privacy.update_norm(new, ref)), rel=1e-5)
    assert privacy.clip_update(ref, ref, 1.0) is ref  # a zero update (Flower's version divides by 0)
    assert privacy.noise_std(1.2, 0.5, 3) == pytest.approx(compute_stdv(1.2, 0.5, 3))


def test_server_update_noise_has_the_expected_scale():
    """The DP aggregate differs from the plain one by Gaussian noise of std sigma*C/m."""
    zeros = {"w": torch.zeros(20_000)}
    updates = [ClientUpdate(k, {"w": torch.full((20_000,), 0.001 * (k + 1))}, 10, 0.0) for k in range(4)]
    plain, private = ServerState.start(dict(zeros), 0), ServerState.start(dict(zeros), 0)
    server_update(RunConfig(num_clients=4, clients_per_round=4), plain, updates, lr=0.1)
    cfg = RunConfig(num_clients=4, clients_per_round=4, dp="server", dp_noise_multiplier=2.0, dp_clipping_norm=10.0)
    server_update(cfg, private, updates, lr=0.1)
    diff = private.global_params["w"] - plain.global_params["w"]  # clipping is inactive (norms < 10)
    assert diff.std().item() == pytest.approx(2.0 * 10.0 / 4, rel=0.03)
    assert abs(diff.mean().item()) < 0.05
    again = ServerState.start(dict(zeros), 0)
    server_update(cfg, again, updates, lr=0.1)
    assert torch.equal(again.global_params["w"], private.global_params["w"])  # seeded: reproducible


def test_server_side_clipping_bounds_each_update():
    start = {"w": torch.zeros(3)}
    big = ClientUpdate(0, {"w": torch.tensor([30.0, 40.0, 0.0])}, 1, 0.0)  # norm 50
    cfg = RunConfig(num_clients=1, clients_per_round=1, dp="server", dp_noise_multiplier=0.0, dp_clipping_norm=5.0)
    state = ServerState.start(dict(start), 0)
    server_update(cfg, state, [big], lr=0.1)
    assert state.global_params["w"].tolist() == pytest.approx([3.0, 4.0, 0.0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dp": "server", "algorithm": "local"}, "'dp': the local baseline"),
        ({"dp_clipping_norm": 0.0}, "'dp_clipping_norm' > 0"),
        ({"min_clients": 4}, "'min_clients': must be in [1, clients sampled per round = 3]"),
        ({"client_data": "node", "algorithm": "centralized"}, "centralized needs it pooled"),
    ],
)
def test_bad_privacy_and_federation_keys(change, message):
    with pytest.raises(FedmllmError, match="config key|config keys") as error:
        RunConfig(**change)
    assert message in str(error.value)
