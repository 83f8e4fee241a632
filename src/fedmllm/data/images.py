"""Checking image files when a dataset is loaded, so a broken one stops the run before any
round with a message naming the file and the line that points at it."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from fedmllm.errors import FedmllmError

# what PIL raises for broken files, found by tests/test_fuzz_loaders.py (a broken PNG chunk is a
# SyntaxError, a cut zlib stream a zlib.error, ...)
IMAGE_ERRORS = (
    UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
    Image.DecompressionBombError,
)  # fmt: skip


def check_image(path: Path, loc: str) -> Path:
    """Read the header only (cheap): the file exists, is an image PIL knows, and is not a
    decompression bomb (more pixels than PIL's Image.MAX_IMAGE_PIXELS). Truncated pixel data is
    caught when the image is decoded, with the same kind of message."""
    if not path.is_file():
        raise FedmllmError(f"{loc}: image file not found: {path}")
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
