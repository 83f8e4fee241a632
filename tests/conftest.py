"""Shared fixtures. The built-in tiny model is built once into the fedmllm cache
($FEDMLLM_CACHE, default ~/.cache/fedmllm) and reused by every test and later runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedmllm.data.sample import Sample
from fedmllm.data.synthetic import memes


@pytest.fixture(scope="session")
def tiny_session():
    from fedmllm.model.load import ModelSpec, session

    return session(ModelSpec(lora_dropout=0.0))


@pytest.fixture(scope="session")
def memes_dir(tmp_path_factory) -> Path:
    """A small synthetic Hateful Memes folder in the published layout."""
    return memes.write(tmp_path_factory.mktemp("hm") / "memes", {"train": 60, "dev": 10, "test": 20}, seed=3)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def meme(i: int, image: Path | None, text: str | None, label: int) -> Sample:
    return Sample(
        str(i),
        image,
        text,
        "Is this meme hateful?",
        ("not-hateful", "hateful")[label],
        ("not-hateful", "hateful"),
        label,
    )
