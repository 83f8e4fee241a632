"""The built-in tiny model builds to the same bytes everywhere, and its cache name depends on its
recipe's version only."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tokenizers
import torch
import transformers
from safetensors.torch import load_file

from fedmllm.data import registry
from fedmllm.errors import FedmllmError
from fedmllm.model import tiny
from fedmllm.paths import cache_dir

# sha256 of the default tiny model's weights (see `weights_sha256`), as built on this platform.
# Float results differ between CPU instruction sets and library versions, so elsewhere the test
# skips; after a deliberate recipe change, bump tiny.VERSION and pin the new hash.
PINNED = {
    "torch": "2.13.0+cpu",
    "cpu_capability": "AVX512",
    "transformers": "5.24.0",
    "tokenizers": "0.23.3",
    "sha256": "9768f97eb993e6667129352d77158695cb83b564bbc964f9fd076c708e981a31",
}

# A short recipe (40 steps: without the pinned thread its weights differ between 1 and 2
# threads), built in a fresh process with the given thread count and hash seed.
SHORT_BUILD = """
import sys, torch
torch.set_num_threads(int(sys.argv[2]))
from fedmllm.model import tiny
tiny.ensure(sys.argv[1], seed=0, steps=40, n_samples=64)
print(torch.get_num_threads())
"""


def weights_sha256(folder: Path) -> str:
    """Over the tensors in name order (name, dtype, shape and raw bytes), not the file: the
    safetensors header's metadata may vary between writers."""
    digest = hashlib.sha256()
    state = load_file(str(folder / "model.safetensors"))
    for name in sorted(state):
        tensor = state[name].contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def short_build(folder: Path, threads: int) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONHASHSEED": str(threads)}
    out = subprocess.run(
        [sys.executable, "-c", SHORT_BUILD, str(folder), str(threads)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # the build pins one thread only while it runs: the caller's setting is back afterwards
    assert out.stdout.split()[-1] == str(threads)
    return weights_sha256(folder)


def test_thread_count_does_not_change_the_build(tmp_path):
    one, two = short_build(tmp_path / "one", 1), short_build(tmp_path / "two", 2)
    assert one == two
    assert (tmp_path / "one" / "tokenizer.json").read_bytes() == (tmp_path / "two" / "tokenizer.json").read_bytes()


def test_a_shortened_recipe_never_lands_in_the_shared_cache():
    with pytest.raises(FedmllmError, match="shortened recipe"):
        tiny.ensure(steps=20)


def test_default_model_weights_are_pinned():
    here = {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }
    pinned = {k: v for k, v in PINNED.items() if k != "sha256"}
    if here != pinned:
        pytest.skip(f"the tiny model's hash is pinned for {pinned}; this platform is {here}")
    assert weights_sha256(tiny.ensure()) == PINNED["sha256"]


def test_cache_name_ignores_the_data_registry(monkeypatch):
    before = tiny.default_folder(0)
    extra = registry.DatasetSpec(
        load=lambda folder, split: [],
        write_synthetic=lambda folder, sizes, seed: folder,
        marker="*.json",
        vocabulary=lambda: ["Which zebra crossed the quokka?", "zebra", "quokka"],
        splits=("train", "test"),
    )
    monkeypatch.setitem(registry.DATASETS, "zzz_new", extra)
    assert tiny.default_folder(0) == before == cache_dir() / "models" / f"tiny-llava-v{tiny.VERSION}-seed0"
    assert tiny.default_folder(3).name == f"tiny-llava-v{tiny.VERSION}-seed3"
