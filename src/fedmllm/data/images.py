"""Checking image files when a dataset is loaded, so a broken one stops the run before any
round with a message naming the file and the line that points at it.

An image path comes from an untrusted annotation file and ends up in the client shards, so by
default it must resolve (symlinks followed) inside the dataset folder: an absolute path, a '..'
escape or a symlink to elsewhere is an error unless the user sets allow_external_paths."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from fedmllm.data.jsonl import clip
from fedmllm.errors import FedmllmError

# what PIL raises for broken files, found by tests/test_fuzz_loaders.py (a broken PNG chunk is a
# SyntaxError, a cut zlib stream a zlib.error, ...)
IMAGE_ERRORS = (
    UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
    Image.DecompressionBombError,
)  # fmt: skip


def dataset_image(folder: Path, path: Path, value: str, loc: str, allow_external: bool = False) -> Path:
    """`path`, built from the annotation's `value`, checked to stay inside `folder` (see
    check_inside) and to be a readable image (see check_image)."""
    check_inside(folder, path, value, loc, allow_external)
    return check_image(path, loc)


def check_inside(folder: Path, path: Path, value: str, loc: str, allow_external: bool = False) -> None:
    """An error unless `path` resolves inside `folder` (or `allow_external`). Checked before the
    file is looked at, so a hostile line cannot even probe whether a file exists elsewhere."""
    if "\x00" in value:  # no file system accepts it; Path.resolve() would raise a raw ValueError
        raise FedmllmError(f"{loc}: {clip(value)!r} contains a NUL character")
    if allow_external:
        return
    try:
        root, target = Path(folder).resolve(), Path(path).resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop (Python < 3.13)
        raise FedmllmError(f"{loc}: {clip(value)!r} cannot be resolved ({e})") from None
    if not target.is_relative_to(root):
        raise FedmllmError(
            f"{loc}: {clip(value)!r} resolves outside the dataset folder {folder} "
            f"(to {clip(target)}; pass allow_external_paths = true to accept it)"
        )


def is_file(path: Path, loc: str) -> bool:
    """Path.is_file(), except that a name too long for the file system or a directory that may not
    be read is an error naming the line, not a raw OSError."""
    try:
        return path.is_file()
    except OSError as e:
        raise FedmllmError(f"{loc}: cannot access image file {clip(path)} ({e.strerror})") from None


def check_image(path: Path, loc: str) -> Path:
    """Read the header only (cheap): the file exists, is an image PIL knows, and is not a
    decompression bomb (more pixels than PIL's Image.MAX_IMAGE_PIXELS). Truncated pixel data is
    caught when the image is decoded, with the same kind of message."""
    if not is_file(path, loc):
        raise FedmllmError(f"{loc}: image file not found: {clip(path)}")
    try:
        with Image.open(path) as img:
            width, height = img.size
    except IMAGE_ERRORS as e:
        raise FedmllmError(f"{loc}: {path} is not a readable image ({type(e).__name__}: {e})") from None
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise FedmllmError(
            f"{loc}: {path} is {width}x{height} pixels, over the decompression-bomb limit of {limit} "
            "(PIL.Image.MAX_IMAGE_PIXELS)"
        )
    return path
