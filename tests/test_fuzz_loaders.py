"""Hostile input: every native loader fed mutated copies of a valid folder ends with valid samples
or one FedmllmError naming the problem — never another exception, never a hang."""

import shutil
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedmllm.data import registry
from fedmllm.errors import FedmllmError
from fedmllm.model.collate import open_image

OUTCOMES: Counter = Counter()
KINDS = ["truncate", "delete", "insert", "flip", "replace_line", "duplicate_line", "empty", "swap_lines"]


@pytest.fixture(scope="module")
def valid_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("valid")
    return {
        name: spec.write_synthetic(root / name, {"train": 6, "dev": 2, "test": 2}, 0)
        for name, spec in registry.DATASETS.items()
    }


mutations = st.tuples(
    st.sampled_from(KINDS),
    st.floats(0, 1),  # where
    st.integers(1, 64),  # how much
    st.binary(min_size=1, max_size=24),  # what to insert
    st.booleans(),  # mutate an image instead of the annotation file
)


def mutate(data: bytes, kind: str, where: float, size: int, payload: bytes) -> bytes:
    at = int(where * len(data))
    lines = data.split(b"\n")
    line = min(int(where * len(lines)), len(lines) - 1)
    if kind == "truncate":
        return data[:at]
    if kind == "delete":
        return data[:at] + data[at + size :]
    if kind == "insert":
        return data[:at] + payload + data[at:]
    if kind == "flip":
        return data[:at] + bytes(b ^ 0xFF for b in data[at : at + size]) + data[at + size :]
    if kind == "replace_line":
        return b"\n".join(lines[:line] + [payload] + lines[line + 1 :])
    if kind == "duplicate_line":
        return b"\n".join(lines[: line + 1] + lines[line:])
    if kind == "swap_lines":
        other = (line + size) % len(lines)
        lines[line], lines[other] = lines[other], lines[line]
        return b"\n".join(lines)
    return b""  # empty


def annotation_file(name: str, folder: Path) -> Path:
    return sorted(folder.glob(registry.DATASETS[name].marker))[0]


@pytest.mark.parametrize("name", list(registry.DATASETS))
@settings(max_examples=100, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=mutations)
def test_mutated_folders_load_or_fail_cleanly(name, mutation, valid_folders, tmp_path_factory):
    kind, where, size, payload, on_image = mutation
    folder = tmp_path_factory.mktemp("fuzz") / name
    shutil.copytree(valid_folders[name], folder)
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    target = images[int(where * len(images)) % len(images)] if on_image and images else annotation_file(name, folder)
    target.write_bytes(mutate(target.read_bytes(), kind, where, size, payload))
    try:
        samples = registry.load_split(name, folder, "train")
        for sample in samples:  # what training would do with them
            assert isinstance(sample.id, str) and sample.question
            if sample.image is not None:
                open_image(sample)
    except FedmllmError as e:
        message = str(e)
        assert message and "Traceback" not in message
        assert str(folder) in message or name in message  # it names the file (or the dataset)
        OUTCOMES[name, "clean error"] += 1
    else:
        OUTCOMES[name, "valid samples"] += 1


def test_report_fuzz_outcomes():
    """Prints how the mutated inputs ended (run with -s); fails if none ran."""
    if not OUTCOMES:
        pytest.skip("run together with test_mutated_folders_load_or_fail_cleanly")
    for (name, outcome), count in sorted(OUTCOMES.items()):
        print(f"fuzz {name:14s} {outcome:14s} {count}")
    assert sum(OUTCOMES.values()) >= 5 * 100
