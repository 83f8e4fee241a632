"""Where fedmllm keeps generated data and built models between runs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$FEDMLLM_CACHE, else $XDG_CACHE_HOME/fedmllm, else ~/.cache/fedmllm."""
    if env := os.environ.get("FEDMLLM_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fedmllm"
