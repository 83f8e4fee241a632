"""Updates on the wire: float32 exactly, 16-bit as rounded differences from the sent model."""

import pytest
import torch

from fedmllm.config import RunConfig
from fedmllm.engine.records import from_update, to_update
from fedmllm.errors import FedmllmError


def params(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"lora_A": torch.randn(256, 64, generator=g), "proj.bias": torch.randn(4096, generator=g)}


def test_float32_updates_travel_exactly():
    start, trained = params(0), params(1)
    back = from_update(to_update(trained, start, "float32"), start, "float32")
    assert all(torch.equal(back[n], trained[n]) for n in trained)


@pytest.mark.parametrize(("dtype", "mantissa_bits"), [("bfloat16", 8), ("float16", 11)])
def test_16_bit_updates_halve_the_bytes_and_round_only_the_difference(dtype, mantissa_bits):
    start = params(0)
    delta = {n: 1e-3 * t for n, t in params(1).items()}  # a typical update: small against the weights
    trained = {n: start[n] + delta[n] for n in start}
    full, half = to_update(trained, start, "float32"), to_update(trained, start, dtype)
    assert 0.5 * full.count_bytes() <= half.count_bytes() <= 0.51 * full.count_bytes()
    back = from_update(half, start, dtype)
    for n in trained:
        assert back[n].dtype == torch.float32
        error = (back[n] - trained[n]).abs()
        # relative to the update, not to the weights: rounding the weights would cost ~1e-3 of |w|
        assert (error <= delta[n].abs() * 2.0**-mantissa_bits + 1e-7).all()
        assert error.max() < 1e-5


def test_secagg_refuses_16_bit_updates():
    with pytest.raises(FedmllmError, match="update_dtype"):
        RunConfig(secagg=True, update_dtype="float16")
