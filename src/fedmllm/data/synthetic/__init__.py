"""Offline generators that write the published layouts of the benchmark's datasets."""

from __future__ import annotations

import shutil
from pathlib import Path


def staging(folder: Path) -> tuple[Path, Path]:
    """(folder, an empty temporary sibling to write into). Generators write there and rename it
    to `folder` when done, so an interrupted generation never leaves a half-written dataset."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)  # leftovers of an interrupted generation
    tmp.mkdir(parents=True)
    return folder, tmp
