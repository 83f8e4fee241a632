"""Datasets by plain name. Adding one is a loader module plus one line in DATASETS (and a table in
hub.py for its Hub copies)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fedmllm.data import crisismmd, hateful_memes, hub, hub_files, medalpaca, slake, vqa_rad
from fedmllm.data.sample import Sample
from fedmllm.data.synthetic import crisis, medqa, medvqa, memes
from fedmllm.errors import FedmllmError
from fedmllm.paths import cache_dir


@dataclass(frozen=True)
class DatasetSpec:
    load: Callable[..., list[Sample]]  # (folder, split, *, allow_external) -> samples
    write_synthetic: Callable[..., Path]  # (folder, sizes, seed) -> folder
    marker: str  # glob of a file every real copy has, checked before loading
    # fixed prompt text (questions, option words, closed answers) the built-in tiny model's
    # tokenizer and pretraining should cover; never labels of particular samples
    vocabulary: Callable[[], list[str]]
    splits: tuple[str, ...]  # the splits of its published layout (the loader's SPLITS)
    # version of the synthetic twin's rule and draws: part of its cache folder's name, so a
    # changed generator never reuses files an older one wrote
    version: int = 1


DATASETS: dict[str, DatasetSpec] = {
    "hateful_memes": DatasetSpec(
        hateful_memes.load,
        memes.write,
        "train.jsonl",
        hateful_memes.vocabulary,
        tuple(hateful_memes.SPLITS),
        memes.VERSION,
    ),
    "crisismmd": DatasetSpec(
        crisismmd.load,
        crisis.write,
        f"{crisismmd.FOLDER}/task_humanitarian_text_img*_train.tsv",
        crisismmd.vocabulary,
        crisismmd.SPLITS,
        crisis.VERSION,
    ),
    "vqa_rad": DatasetSpec(
        vqa_rad.load, medvqa.write_vqa_rad, "*.json", vqa_rad.vocabulary, tuple(vqa_rad.SPLITS), medvqa.VERSION
    ),
    "slake": DatasetSpec(
        slake.load, medvqa.write_slake, "train.json", slake.vocabulary, tuple(slake.SPLITS), medvqa.VERSION
    ),
    "medalpaca": DatasetSpec(medalpaca.load, medqa.write, "*.json", medalpaca.vocabulary, medalpaca.SPLITS),
}


def get(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise FedmllmError(f"unknown dataset '{name}' (choose from {sorted(DATASETS)})")
    return DATASETS[name]


def resolve_folder(name: str, data_dir: str, sizes: dict[str, int], seed: int) -> Path:
    """The user's folder as given (its published layout, or a Hub snapshot of parquet or arrow
    files), `hf://OWNER/NAME` from the local Hub cache, or the synthetic twin (generated on first
    use) when empty."""
    spec = get(name)
    if data_dir:
        if data_dir.startswith(hub_files.SCHEME):
            folder = hub_files.resolve_uri(data_dir)
        else:
            folder = Path(data_dir).expanduser()
        if hub_files.is_snapshot(folder):
            return folder
        if not any(folder.glob(spec.marker)):
            raise FedmllmError(
                f"{folder}: not a {name} folder (no {spec.marker} found); nor a Hub snapshot "
                f"(no {' or '.join('*' + s for s in hub_files.SUFFIXES)} files)"
            )
        return folder
    tag = "-".join(f"{k}{v}" for k, v in sorted(sizes.items()))
    folder = cache_dir() / "data" / f"synthetic-{name}-v{spec.version}-{tag}-seed{seed}"
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        spec.write_synthetic(folder, sizes, seed)
    return folder


def load_split(name: str, folder: Path, split: str, *, allow_external: bool = False, columns: str = "") -> list[Sample]:
    """One split of a dataset. Image paths must resolve inside `folder` (symlinks followed) unless
    `allow_external` (the run's `allow_external_paths`): the folder is untrusted input, and the
    paths end up in the client shards. `columns` (the run's `data_columns`) maps a Hub snapshot's
    columns; a native layout has fixed fields, so it refuses one rather than ignore it."""
    if hub_files.is_snapshot(Path(folder)):
        return hub.load(name, Path(folder), split, allow_external=allow_external, columns=columns)
    if columns.strip():
        raise FedmllmError(
            f"config key 'data_columns': {columns!r} maps the columns of a Hub snapshot (parquet or arrow files), "
            f"but {folder} holds {name} in its published layout; leave data_columns empty"
        )
    return get(name).load(folder, split, allow_external=allow_external)
