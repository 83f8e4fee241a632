"""The built-in models, by name: each a module with `ensure(folder=None, seed=0) -> Path` that
builds the model once into the cache (no download) and returns its folder. Imported only when one
is built, so naming them (the CLI's choices, the config's help) loads no torch."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

BUILT_IN = {
    "tiny": "fedmllm.model.tiny",  # random-init, pretrained on the synthetic twins' prompts: CPU, tests
    "smol": "fedmllm.model.smol",  # SmolLM2-135M + a small vision tower, stage-1 aligned (optional extra)
}


def ensure(name: str, *args: Any, **kwargs: Any) -> Path:
    """The built-in model `name`'s folder, built on first use."""
    return importlib.import_module(BUILT_IN[name]).ensure(*args, **kwargs)
