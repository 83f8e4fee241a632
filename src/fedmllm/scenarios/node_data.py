"""Which samples a client trains on, chosen where it runs: its shard of the server's split
(simulation, benchmarks), or, with client_data = "node", the data its own node config names.
Each file is read once per process."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fedmllm.data import registry
from fedmllm.data.sample import Sample
from fedmllm.errors import FedmllmError
from fedmllm.scenarios import split

_READ: dict[Path, list[Sample]] = {}  # per process: a shard or a dataset is read once
DROPS = {"image+text": {}, "image": {"text": True}, "text": {"image": True}}  # node `modality` -> dropped


def node_flag(node: Mapping[str, Any], key: str) -> bool:
    """A true/false node-config key (absent: false); anything else is an error, never a guess."""
    value = node.get(key, False)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if not isinstance(value, bool):
        raise FedmllmError(f"node config '{key}': {value!r} is not true or false")
    return value


def read_once(path: Path, read: Callable[[Path], list[Sample]]) -> list[Sample]:
    if path not in _READ:
        _READ[path] = read(path)
    return _READ[path]


def node_samples(run: Mapping[str, Any], node: Mapping[str, Any], partition: int) -> list[Sample]:
    """This client's training data. With client_data = "split", the shard the server wrote under
    `run["shard_dir"]`; with "node", its node config's `shard = "/path/client_3.jsonl"` (a file
    written by `fedmllm data prepare`) or `data-dir = "/path/to/dataset"` (the dataset as
    published), with an optional `modality = "image" | "text"` (the site holds only that one)."""
    if run["client_data"] == "split":
        return read_once(split.shard_path(Path(str(run["shard_dir"])), partition), split.read)
    if "shard" in node:
        return read_once(Path(str(node["shard"])), split.read)
    if "data-dir" not in node:
        raise FedmllmError(f"partition {partition}: node config needs 'shard' or 'data-dir' (client_data = 'node')")
    folder, kind = Path(str(node["data-dir"])), str(node.get("modality", "image+text"))
    if kind not in DROPS:
        raise FedmllmError(f"partition {partition}: node config 'modality' = {kind!r}, not one of {list(DROPS)}")
    # the node's own files: only its own config may let their image paths leave its folder
    outside = node_flag(node, "allow-external-paths")
    samples = read_once(folder, lambda f: registry.load_split(str(run["dataset"]), f, "train", allow_external=outside))
    return [s.drop(**DROPS[kind]) for s in samples] if DROPS[kind] else samples
