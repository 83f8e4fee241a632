import json
from pathlib import Path

import pytest

from fedmllm.data import medalpaca
from fedmllm.data.synthetic import medqa
from fedmllm.errors import FedmllmError

INSTRUCTION = "Answer this question truthfully"

# a dozen items as published: a fixed instruction, the question as input, a sentence as output
ITEMS = [
    {
        "instruction": INSTRUCTION,
        "input": f"What is the first-line treatment for condition {i}?",
        "output": f" Drug {i}.\n",
    }
    for i in range(10)
] + [
    {"instruction": "What does the thyroid gland produce?", "input": "", "output": "Thyroid hormones (T3 and T4)."},
    {"instruction": INSTRUCTION, "input": "  What causes scurvy?  ", "output": "A lack of vitamin C."},
]


def write_items(folder: Path, items: list, name: str = medalpaca.FILENAME) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(items, indent=4), encoding="utf-8")
    return path


def test_loader_reads_published_fields_and_splits_deterministically(tmp_path):
    write_items(tmp_path, ITEMS)
    train, test = medalpaca.load(tmp_path, "train"), medalpaca.load(tmp_path, "test")
    assert (len(train), len(test)) == (11, 1)  # a seeded 10%, at least one item
    ids = sorted(int(s.id.removeprefix("medalpaca-")) for s in train + test)
    assert ids == list(range(12))
    assert [s.id for s in medalpaca.load(tmp_path, "test")] == [s.id for s in test]
    by_id = {s.id: s for s in train + test}
    first = by_id["medalpaca-0"]
    assert (first.text, first.answer) == ("What is the first-line treatment for condition 0?", "Drug 0.")
    assert (first.image, first.question, first.options, first.label, first.task) == (
        None,
        INSTRUCTION,
        None,
        None,
        "qa",
    )
    assert by_id["medalpaca-10"].text == "What does the thyroid gland produce?"  # empty input
    assert by_id["medalpaca-11"].text == "What causes scurvy?"
    assert medalpaca.vocabulary() == [INSTRUCTION]


def test_split_is_a_seeded_tenth():
    held_out = medalpaca.held_out_indices(1000)
    assert len(held_out) == 100 and held_out == medalpaca.held_out_indices(1000)
    assert medalpaca.held_out_indices(1) == set()


def test_any_single_json_is_accepted(tmp_path):
    write_items(tmp_path, ITEMS, name="medical_flashcards.json")
    assert len(medalpaca.load(tmp_path, "train")) == 11
    write_items(tmp_path, ITEMS[:3], name=medalpaca.FILENAME)  # the default name wins
    assert len(medalpaca.load(tmp_path, "train")) == 2


def test_no_or_several_json_files(tmp_path):
    with pytest.raises(FedmllmError, match=f"no '{medalpaca.FILENAME}' and no other"):
        medalpaca.load(tmp_path, "train")
    write_items(tmp_path, ITEMS, name="a.json")
    write_items(tmp_path, ITEMS, name="b.json")
    with pytest.raises(FedmllmError, match=r"2 \*.json files \(a.json, b.json\); keep only one"):
        medalpaca.load(tmp_path, "train")


def test_unknown_split(tmp_path):
    write_items(tmp_path, ITEMS)
    with pytest.raises(FedmllmError, match="medalpaca: unknown split 'dev'"):
        medalpaca.load(tmp_path, "dev")


GOOD = {"instruction": INSTRUCTION, "input": "q?", "output": "a"}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"instruction": INSTRUCTION, "input": "q?"}, r"\[item 2\]: missing field 'output'"),
        ({"instruction": INSTRUCTION, "output": "a"}, r"\[item 2\]: missing field 'input'"),
        ({"input": "q?", "output": "a"}, r"\[item 2\]: missing field 'instruction'"),
        ({**GOOD, "output": "  \n"}, r"\[item 2\]: field 'output' is empty"),
        ({**GOOD, "output": None}, r"\[item 2\]: field 'output' should be str, got NoneType"),
        ({**GOOD, "input": 3}, r"\[item 2\]: field 'input' should be str, got int"),
        (
            {"instruction": " ", "input": "", "output": "a"},
            r"\[item 2\]: fields 'input' and 'instruction' are both empty",
        ),
        (["q?", "a"], r"\[item 2\]: expected a JSON object"),
    ],
)
def test_bad_items_name_file_item_and_field(tmp_path, item, message):
    write_items(tmp_path, [GOOD, GOOD, item, GOOD])
    for split in medalpaca.SPLITS:  # every item is checked, whichever split it falls in
        with pytest.raises(FedmllmError, match=f"{medalpaca.FILENAME} {message}"):
            medalpaca.load(tmp_path, split)


def test_bad_file_names_file_and_line(tmp_path):
    path = write_items(tmp_path, ITEMS)
    path.write_text('[\n  {"instruction": "x",\n   "input": "y" "output": "z"}\n]\n', encoding="utf-8")
    with pytest.raises(FedmllmError, match=f"{medalpaca.FILENAME}:3: invalid JSON"):
        medalpaca.load(tmp_path, "train")
    path.write_text(json.dumps({"data": ITEMS}), encoding="utf-8")
    with pytest.raises(FedmllmError, match="expected a JSON list of objects, got dict"):
        medalpaca.load(tmp_path, "train")


def test_synthetic_twin_is_native_format_and_deterministic(tmp_path):
    sizes = {"train": 90, "dev": 5, "test": 10}
    a = medqa.write(tmp_path / "a", sizes, seed=1)
    b = medqa.write(tmp_path / "b", sizes, seed=1)
    assert (a / medalpaca.FILENAME).read_bytes() == (b / medalpaca.FILENAME).read_bytes()
    assert (medqa.write(tmp_path / "c", sizes, seed=2) / medalpaca.FILENAME).read_bytes() != (
        a / medalpaca.FILENAME
    ).read_bytes()
    assert not (tmp_path / "a.partial").exists()
    rows = json.loads((a / medalpaca.FILENAME).read_text(encoding="utf-8"))
    assert len(rows) == 100 and all(set(r) == {"instruction", "input", "output"} for r in rows)
    assert {r["instruction"] for r in rows} == {INSTRUCTION}
    train, test = medalpaca.load(a, "train"), medalpaca.load(a, "test")
    assert (len(train), len(test)) == (90, 10)
    facts = dict(medqa.facts())
    assert all(facts[s.text] == s.answer for s in train + test)
    assert facts["Which colour group does red belong to?"] == "warm"
    assert facts["What shape has three corners?"] == "triangle"
    assert facts["Is the word filthy kind or mocking?"] == "mocking"
    assert len({s.text for s in train}) > 20
