import math
import shutil
from pathlib import Path

import pytest

from conftest import write_jsonl
from fedmllm.data import hateful_memes, registry
from fedmllm.data.synthetic import memes
from fedmllm.errors import FedmllmError


def test_synthetic_twin_is_native_layout_and_deterministic(tmp_path):
    a = memes.write(tmp_path / "a", {"train": 20, "dev": 4, "test": 6}, seed=1)
    b = memes.write(tmp_path / "b", {"train": 20, "dev": 4, "test": 6}, seed=1)
    for name in ("train.jsonl", "dev_seen.jsonl", "test_seen.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "img" / "10000.png").read_bytes() == (b / "img" / "10000.png").read_bytes()
    train = hateful_memes.load(a, "train")
    assert len(train) == 20 and all(s.image.is_file() and s.text for s in train)
    assert {s.label for s in train} == {0, 1}
    assert not (tmp_path / "a.partial").exists()


def test_label_rule_reads_both_cues():
    # t = +1 for a mocking word, v = +1 for a warm colour; P(hateful) = sigmoid(a t + b v + c t v)
    assert memes.MemeSpec("red", "circle", "filthy", "team", 0).cues == (1, 1)
    assert memes.MemeSpec("blue", "circle", "lovely", "team", 0).cues == (-1, -1)
    assert memes.hateful_probability(-1, 1) == pytest.approx(1 / (1 + math.exp(0.85 - 0.45 + 1.15)))
    assert memes.hateful_probability(1, -1) == pytest.approx(1 / (1 + math.exp(-0.85 + 0.45 + 1.15)))


def test_loader_reads_published_fields(tmp_path):
    (tmp_path / "img").mkdir()
    memes.draw(memes.MemeSpec("red", "square", "lovely", "team", 0), __import__("random").Random(0)).save(
        tmp_path / "img" / "01235.png"
    )
    write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"id": 1235, "img": "img/01235.png", "label": 1, "text": "  its their character not their color  "},
            {"id": 1235, "img": "img/01235.png", "label": 1, "text": "duplicate id, skipped"},
        ],
    )
    (s,) = hateful_memes.load(tmp_path, "train")
    assert (s.id, s.label, s.answer, s.text) == ("1235", 1, "hateful", "its their character not their color")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": 1, "img": "img/10000.png", "label": 1, "text": "x"', "train.jsonl:2: invalid JSON"),
        ('{"id": 1, "img": "img/10000.png", "text": "x"}', "train.jsonl:2: missing field 'label'"),
        ('{"id": 1, "img": "img/10000.png", "label": "1", "text": "x"}', "train.jsonl:2: field 'label' should be int"),
        ('{"id": 1, "img": "img/10000.png", "label": 3, "text": "x"}', "train.jsonl:2: field 'label' is 3"),
        (
            '{"id": 1, "img": "img/nope.png", "label": 0, "text": "x"}',
            "train.jsonl:2: field 'img': image file not found",
        ),
        ("[1, 2]", "train.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_lines_name_file_and_line(memes_dir, tmp_path, line, message):
    folder = tmp_path / "bad"
    shutil.copytree(memes_dir, folder)
    good = (folder / "train.jsonl").read_text().splitlines()[0]
    write_jsonl(folder / "train.jsonl", [good, line])
    with pytest.raises(FedmllmError, match=message.replace("(", r"\(").replace("[", r"\[")):
        hateful_memes.load(folder, "train")


def test_folder_without_train_file(tmp_path):
    with pytest.raises(FedmllmError, match=r"not a hateful_memes folder \(no train.jsonl found\)"):
        registry.resolve_folder("hateful_memes", str(tmp_path), {}, 0)


def test_unknown_dataset():
    with pytest.raises(FedmllmError, match="unknown dataset 'mnist'"):
        registry.get("mnist")


def test_synthetic_generated_once_into_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDMLLM_CACHE", str(tmp_path))
    sizes = {"train": 10, "dev": 2, "test": 4}
    folder = registry.resolve_folder("hateful_memes", "", sizes, 5)
    assert folder.parent == tmp_path / "data"
    stamp = (folder / "train.jsonl").stat().st_mtime_ns
    assert registry.resolve_folder("hateful_memes", "", sizes, 5) == folder
    assert (folder / "train.jsonl").stat().st_mtime_ns == stamp
    assert isinstance(folder, Path)
