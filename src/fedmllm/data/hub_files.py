"""The files of a Hugging Face Hub dataset snapshot (what their rows mean is hub.py's): a folder as
`huggingface_hub` downloads a dataset repository (`data/train-00000-of-00001.parquet`, the parquet
converter's `default/train/0000.parquet`) or as `save_to_disk` writes one (`train/*.arrow`);
`hf://OWNER/NAME` is looked up in the local Hub cache, never downloaded. A snapshot is untrusted
input: a shard set must be complete (a partial download stops the run instead of training on
less), an image cell is checked as data/images.py checks a file, and a path cell must resolve
inside the snapshot unless `allow_external`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from fedmllm.data.images import IMAGE_ERRORS, check_image, check_inside
from fedmllm.data.jsonl import clip
from fedmllm.errors import FedmllmError
from fedmllm.paths import cache_dir

SCHEME = "hf://"
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # OWNER/NAME, as the Hub spells repository ids
SUFFIXES = (".parquet", ".arrow")
MAX_DEPTH = 3  # default/train/0000.parquet is the deepest layout the Hub writes
# data/train-00000-of-00002.parquet; older uploads add a content hash (-1508d9e5032c2c1f)
SHARD = re.compile(r"(?P<split>.+?)-(?P<index>\d+)-of-(?P<total>\d+)(?:-[0-9a-f]+)?")
# fedmllm split -> its Hub names, by preference (Hateful Memes' labelled test_seen before test)
SPLIT_NAMES = {
    "train": ("train", "training"),
    "dev": ("dev_seen", "validation", "valid", "val", "dev"),
    "test": ("test_seen", "test", "testing"),
}
BATCH_ROWS = 256  # rows decoded at a time: an image-heavy file never sits in memory whole
ARROW_ERRORS = (pa.ArrowException, OSError, ValueError, UnicodeDecodeError)


def resolve_uri(uri: str) -> Path:
    """The local snapshot folder of `hf://OWNER/NAME[@REVISION]` (also `hf://datasets/OWNER/NAME`),
    from the Hub cache ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo, _, revision = uri[len(SCHEME) :].removeprefix("datasets/").partition("@")
    if not REPO_ID.fullmatch(repo):
        raise FedmllmError(f"{uri}: expected hf://OWNER/NAME (a Hub dataset id, optionally @REVISION)")
    cache = hub_cache()
    try:  # local_files_only: the cache is read and the network never touched
        folder = snapshot_download(
            repo, repo_type="dataset", revision=revision or None, cache_dir=cache, local_files_only=True
        )
    except LocalEntryNotFoundError:
        raise FedmllmError(
            f"{uri}: not in the local Hugging Face Hub cache {cache} (fedmllm never downloads data). Get it "
            f"first with `hf download {repo} --repo-type dataset`"
            f"{f' --revision {revision}' if revision else ''} (or huggingface_hub.snapshot_download("
            f"'{repo}', repo_type='dataset')), or pass the snapshot's folder as --data-dir"
        ) from None
    return Path(folder)


def hub_cache() -> Path:
    """The Hub cache folder, read from the environment at call time (as huggingface_hub reads it
    at import)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if value := os.environ.get(var):
            return Path(value).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def data_files(folder: Path) -> list[Path]:
    """The parquet and arrow files up to MAX_DEPTH folders down, hidden folders skipped (a
    `local_dir` download keeps its bookkeeping under .cache/)."""
    found = []
    for depth in range(MAX_DEPTH):
        for suffix in SUFFIXES:
            pattern = "/".join(["*"] * depth + [f"*{suffix}"])
            found += [p for p in Path(folder).glob(pattern) if p.is_file() and not _hidden(p, folder)]
    return sorted(found)


def _hidden(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def is_snapshot(folder: Path) -> bool:
    return Path(folder).is_dir() and bool(data_files(folder))


def split_name(path: Path, folder: Path) -> str:
    """The Hub split a file belongs to: its name before the shard number (train-00000-of-00001),
    or its folder's name for save_to_disk's data-00000-of-00001.arrow and the parquet converter's
    0000.parquet ('' for such a file at the top, which names no split)."""
    stem = path.name[: -len(path.suffix)]
    match = SHARD.fullmatch(stem)
    name = match["split"] if match else stem
    if name == "data" or name.isdigit():
        name = path.parent.name if path.parent != Path(folder) else ""
    return name.lower()


def splits(folder: Path) -> dict[str, list[Path]]:
    """Hub split name -> its files."""
    found: dict[str, list[Path]] = {}
    for path in data_files(folder):
        found.setdefault(split_name(path, folder), []).append(path)
    return found


def split_files(name: str, folder: Path, split: str, draws_test: bool) -> tuple[str, list[Path], bool]:
    """(Hub split name, its files, whether `split` is drawn from train by the dataset's native rule:
    `draws_test`, and the snapshot has no test split)."""
    found = splits(folder)
    if draws_test and split in ("train", "test") and "train" in found and not set(found) & {*SPLIT_NAMES["test"]}:
        check_shards("train", found["train"])
        return "train", found["train"], True
    for hub_name in SPLIT_NAMES[split]:
        if hub_name in found:
            check_shards(hub_name, found[hub_name])
            return hub_name, found[hub_name], False
    named = ", ".join(sorted(n or "(files named by no split)" for n in found))
    raise FedmllmError(
        f"{folder}: no {name} '{split}' split in this Hub snapshot (looked for files of "
        f"{' / '.join(SPLIT_NAMES[split])}; found: {named})"
    )


def check_shards(split: str, files: list[Path]) -> None:
    """One folder per split (a second one is another config of the repository) and, for
    NAME-0000i-of-0000n files, every shard exactly once."""
    parents = sorted({str(p.parent) for p in files})
    if len(parents) > 1:
        raise FedmllmError(
            f"split '{split}' has files in {len(parents)} folders ({', '.join(parents)}): each is a different "
            "configuration of the dataset; pass the one to read as --data-dir"
        )
    shards: dict[tuple[int, int], list[Path]] = {}
    for path in files:
        if match := SHARD.fullmatch(path.name[: -len(path.suffix)]):
            shards.setdefault((int(match["index"]), int(match["total"])), []).append(path)
    for (index, total), paths in sorted(shards.items()):
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            raise FedmllmError(f"{parents[0]}: shard {index} of {total} of split '{split}' is in {len(paths)} files "
                               f"({names}); keep one")  # fmt: skip
    for total in {total for _, total in shards}:
        missing = [i for i in range(total) if (i, total) not in shards]
        if missing:
            raise FedmllmError(
                f"{parents[0]}: split '{split}' is missing shard(s) {clip(missing)} of {total} (an incomplete "
                "download? fetch the snapshot again)"
            )


def schema(path: Path) -> pa.Schema:
    try:
        if path.suffix == ".parquet":
            found = pq.read_schema(path)
        else:
            with pa.memory_map(str(path)) as source:
                found = _open_arrow(source).schema
        found.names  # noqa: B018 - decoded here, so a name that is not UTF-8 is this file's error
        return found
    except ARROW_ERRORS as e:
        raise FedmllmError(f"{path}: not a readable {path.suffix[1:]} file ({type(e).__name__}: {e})") from None


def rows(path: Path, columns: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row index in the file, {column: value}) of every row, `columns` only, a batch at a time."""
    number = 0
    batches = _batches(path, columns)
    while True:
        try:
            batch = next(batches, None)
            if batch is None:
                return
            batch = batch.select(columns)
            # an arrow file is mapped as it is: a corrupt offset would send to_pylist reading
            # outside its buffers (a crash, not an error) unless the batch is checked first
            batch.validate(full=True)
            values = batch.to_pylist()
        except ARROW_ERRORS as e:
            raise FedmllmError(
                f"{path}: cannot read the rows after row {number - 1} ({type(e).__name__}: {clip(e)})"
            ) from None
        for row in values:
            yield number, row
            number += 1


def _batches(path: Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
    if path.suffix == ".parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns)
        return
    with pa.memory_map(str(path)) as source:
        reader = _open_arrow(source)
        if isinstance(reader, pa.ipc.RecordBatchFileReader):
            yield from (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            yield from reader


def _open_arrow(source: pa.MemoryMappedFile) -> Any:
    """The IPC stream format, as `save_to_disk` and the datasets cache write it, else the IPC
    file format."""
    try:
        return pa.ipc.open_stream(source)
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_file(source)


def class_names(path: Path, file_schema: pa.Schema, column: str) -> list[str] | None:
    """The names of a `datasets` ClassLabel column, from the schema metadata `datasets` writes
    (None when the column is not declared a ClassLabel)."""
    raw = (file_schema.metadata or {}).get(b"huggingface")
    if raw is None:
        return None
    try:
        feature = json.loads(raw)["info"]["features"].get(column, {})
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise FedmllmError(f"{path}: unreadable 'huggingface' schema metadata ({type(e).__name__}: {e})") from None
    names = feature.get("names") if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" else None
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise FedmllmError(f"{path}: column '{column}' declares ClassLabel names that are not a list of strings")
    return names


def image_file(value: Any, field: str, folder: Path, allow_external: bool) -> Path:
    """The image of one cell as a file: a `datasets` Image struct {bytes, path} (its bytes, or its
    path when it has none), raw bytes, or a path string. A path is taken relative to the
    snapshot `folder` and must stay inside it unless `allow_external`."""
    if isinstance(value, dict) and set(value) <= {"bytes", "path"}:
        value = value.get("bytes") if value.get("bytes") is not None else value.get("path")
    if isinstance(value, bytes):
        return stored_image(value, field)
    if isinstance(value, str):
        name = value.strip()
        if not name:
            raise FedmllmError(f"{field} is empty")
        path = Path(folder) / name
        check_inside(cache_repo(folder), path, name, field, allow_external)  # before any look at the file
        return check_image(path, field)
    what = "null" if value is None else type(value).__name__
    raise FedmllmError(f"{field} should be an image (a datasets Image struct, bytes or a path), got {what}")


def cache_repo(folder: Path) -> Path:
    """What a path cell must stay inside: the snapshot, or in the Hub cache (datasets--OWNER--NAME/
    snapshots/REVISION) its repository folder, as the snapshot's files are symlinks into its blobs/."""
    folder = Path(folder)
    in_cache = folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("datasets--")
    return folder.parent.parent if in_cache else folder


def image_store() -> Path:
    """Where image cells become files, named by their content (a repeated image is one file)."""
    return cache_dir() / "data" / "hub-images"


def stored_image(data: bytes, field: str) -> Path:
    """`data` checked as check_image checks a file (an image PIL knows, within PIL's
    decompression-bomb limit) and written once under image_store(), after a full decode: a cell's
    broken pixel data is then this row's error, not a later one that names only the cached file."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as img:
            (width, height), kind = img.size, (img.format or "img").lower()
            limit = Image.MAX_IMAGE_PIXELS
            if limit and width * height > limit:
                raise FedmllmError(
                    f"{field}: an image of {width}x{height} pixels, over the decompression-bomb limit of {limit} "
                    "(PIL.Image.MAX_IMAGE_PIXELS)"
                )
            path = image_store() / digest[:2] / f"{digest}.{kind}"
            if not path.is_file():  # a stored file was decoded when it was written
                img.load()
    except IMAGE_ERRORS as e:
        raise FedmllmError(
            f"{field}: {len(data)} bytes that are not a readable image ({type(e).__name__}: {e})"
        ) from None
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{digest}.{os.getpid()}.partial")
            partial.write_bytes(data)
            partial.replace(path)  # atomic: a concurrent reader sees the whole file or none
        except OSError as e:
            raise FedmllmError(f"{field}: cannot write its image to {path.parent} ({e.strerror})") from None
    return path
