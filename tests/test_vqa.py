import json
import random
import re
from pathlib import Path

import pytest
from PIL import Image

from fedmllm.data import slake, vqa_rad
from fedmllm.data.synthetic import medvqa, memes
from fedmllm.errors import FedmllmError

# --- fixtures in the published layouts -------------------------------------------------------------


def save_scan(path: Path, colour: str = "red", seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    memes.draw(memes.MemeSpec(colour, "circle", "", "", 0), random.Random(seed), size=16).save(path, format="PNG")


def rad_item(qid, image, question, answer, answer_type, phrase_type=None) -> dict:
    item = {
        "qid": qid,
        "image_name": image,
        "image_case_url": "https://medpix.nlm.nih.gov/case?id=x",
        "image_organ": "CHEST",
        "evaluation": "given",
        "question": question,
        "question_type": "PRES",
        "answer": answer,
        "answer_type": answer_type,
    }
    if phrase_type is not None:
        item["phrase_type"] = phrase_type
    return item


# the published file's quirks: int/float answers, stray spaces, mixed case, repeated qids
RAD_ITEMS = [
    rad_item(1, "synpic1.jpg", "Is there a mass? ", "Yes ", "CLOSED", "freeform"),
    rad_item(2, "synpic1.jpg", "How many  masses are there?", 2, "OPEN", "freeform"),
    rad_item(3, "synpic2.jpg", "Where is the mass?", "  Left  Lung ", "open", "para"),
    rad_item(4, "synpic2.jpg", "Is this normal?", "no", "CLOSED ", "freeform"),
    rad_item(4, "synpic2.jpg", "Is this normal? (repeated qid)", "yes", "CLOSED", "freeform"),
    rad_item(5, "synpic3.jpg", "Is the heart enlarged?", "YES", "closed", "test_freeform"),
    rad_item(6, "synpic3.jpg", "What does the image show?", "Yes", "OPEN", "test_para"),
    rad_item(7, "synpic1.jpg", "How many masses?", 2.0, "OPEN", "para"),
    rad_item(8, "synpic4.jpg", "Is there a fracture?", "No", "CLOSED", "test_freeform"),
    rad_item(9, "synpic4.jpg", "What modality is this?", "CT", "OPEN", "freeform"),
    rad_item(10, "synpic5.jpg", "Which side is the lesion on?", "Left", "CLOSED", "freeform"),
    rad_item(11, "synpic5.jpg", "What organ is shown?", "brain", "OPEN", "test_freeform"),
]


def write_rad(
    folder: Path, items: list, images: str = "VQA_RAD Image Folder", file: str = vqa_rad.DEFAULT_FILE
) -> Path:
    """The JSON list plus one scan per image name of the well-formed fixture `items`."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {item.get("image_name") for item in items} - {None, "nope.jpg"}
    for i, name in enumerate(sorted(names)):
        save_scan(folder / images / name, seed=i)
    (folder / file).write_text(json.dumps(items, indent=1), encoding="utf-8")
    return folder


def slake_item(qid, img_id, question, answer, answer_type, lang="en") -> dict:
    return {
        "img_id": img_id,
        "img_name": f"xmlab{img_id}/source.jpg",
        "question": question,
        "answer": answer,
        "q_lang": lang,
        "location": "Lung",
        "modality": "CT",
        "answer_type": answer_type,
        "base_type": "vqa",
        "content_type": "Abnormality",
        "triple": ["vhead", "_", "_"],
        "qid": qid,
    }


SLAKE_FILES = {
    "train.json": [
        slake_item(0, 1, "Is the lung healthy?", "No ", "CLOSED"),
        slake_item(1, 1, "肺部健康吗?", "否", "CLOSED", lang="zh"),
        slake_item(2, 1, "What modality is used?", "CT", "OPEN"),
        slake_item(3, 2, "Where is the liver?", "Left  ", "open"),
        slake_item(4, 2, "这是什么器官?", "肝脏", "OPEN", lang="zh"),
        slake_item(3, 2, "Where is the liver? (repeated qid)", "Right", "OPEN"),
        slake_item(5, 2, "How many kidneys?", 2, "OPEN"),
    ],
    "validate.json": [
        slake_item(100, 3, "Does the picture contain the heart?", "yes", "closed "),
        slake_item(101, 3, "图片中有心脏吗?", "是", "CLOSED", lang="zh"),
    ],
    "test.json": [
        slake_item(200, 4, "Is this an MRI?", "YES", "CLOSED"),
        slake_item(201, 4, "Which organ is abnormal?", "Brain", "OPEN"),
    ],
}


def write_slake(folder: Path, files: dict | None = None) -> Path:
    files = files or SLAKE_FILES
    folder.mkdir(parents=True, exist_ok=True)
    for name, items in files.items():
        for item in items:
            save_scan(folder / "imgs" / item["img_name"], seed=item["img_id"])
        (folder / name).write_text(json.dumps(items, ensure_ascii=False, indent=1), encoding="utf-8")
    return folder


def as_tuples(samples):
    return [(s.id, s.question, s.answer, s.answer_type, s.image.name) for s in samples]


# --- VQA-RAD ----------------------------------------------------------------------------------------


def test_vqa_rad_official_split_and_normalisation(tmp_path):
    folder = write_rad(tmp_path / "rad", RAD_ITEMS)
    train, test = vqa_rad.load(folder, "train"), vqa_rad.load(folder, "test")
    assert as_tuples(train) == [
        ("1", "Is there a mass?", "yes", "closed", "synpic1.jpg"),
        ("2", "How many masses are there?", "2", "open", "synpic1.jpg"),
        ("3", "Where is the mass?", "Left Lung", "open", "synpic2.jpg"),  # open answers keep case
        ("4", "Is this normal?", "no", "closed", "synpic2.jpg"),  # the repeated qid 4 is dropped
        ("7", "How many masses?", "2", "open", "synpic1.jpg"),
        ("9", "What modality is this?", "CT", "open", "synpic4.jpg"),
        ("10", "Which side is the lesion on?", "Left", "closed", "synpic5.jpg"),  # not yes/no: case kept
    ]
    assert as_tuples(test) == [
        ("5", "Is the heart enlarged?", "yes", "closed", "synpic3.jpg"),
        ("6", "What does the image show?", "Yes", "open", "synpic3.jpg"),
        ("8", "Is there a fracture?", "no", "closed", "synpic4.jpg"),
        ("11", "What organ is shown?", "brain", "open", "synpic5.jpg"),
    ]
    s = train[0]
    assert (s.task, s.text, s.options, s.label, s.modality) == ("vqa", None, None, None, "image")
    assert s.image == folder / "VQA_RAD Image Folder" / "synpic1.jpg"


def test_vqa_rad_seeded_split_by_image(tmp_path):
    # no phrase_type: 10 images with 1-3 questions each, in images/ under a renamed JSON file
    rng = random.Random(7)
    items, qid = [], 0
    for image in range(10):
        for _ in range(rng.randint(1, 3)):
            items.append(rad_item(qid, f"img{image}.jpg", f"Question {qid}?", "yes", "CLOSED"))
            qid += 1
    folder = write_rad(tmp_path / "rad", items, images="images", file="vqa_rad_public.json")
    train, test = vqa_rad.load(folder, "train"), vqa_rad.load(folder, "test")
    assert sorted(int(s.id) for s in train + test) == list(range(qid))
    train_images, test_images = {s.image for s in train}, {s.image for s in test}
    assert len(test_images) == 2 and len(train_images) == 8 and not train_images & test_images
    assert all(s.image.parent == folder / "images" for s in train + test)
    # deterministic: same answer on a second read, and on a copy with the items shuffled
    assert as_tuples(vqa_rad.load(folder, "test")) == as_tuples(test)
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    again = write_rad(tmp_path / "rad2", shuffled, images="images", file="vqa_rad_public.json")
    assert {s.image.name for s in vqa_rad.load(again, "test")} == {p.name for p in test_images}


def test_held_out_images_is_twenty_percent_never_all():
    assert vqa_rad.held_out_images(["a"]) == set()
    assert len(vqa_rad.held_out_images(["a", "b"])) == 1
    assert len(vqa_rad.held_out_images([f"i{k}" for k in range(100)] * 3)) == 20


def test_vqa_rad_json_file_choice(tmp_path):
    folder = write_rad(tmp_path / "rad", RAD_ITEMS)
    (folder / "notes.json").write_text("[]")
    assert vqa_rad.find_json(folder) == folder / vqa_rad.DEFAULT_FILE  # the published name wins
    (folder / vqa_rad.DEFAULT_FILE).rename(folder / "other.json")
    with pytest.raises(FedmllmError, match=r"2 \*.json files \(notes.json, other.json\)"):
        vqa_rad.load(folder, "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FedmllmError, match=f"{re.escape(str(empty))}: no 'VQA_RAD Dataset Public.json' and no other"):
        vqa_rad.load(empty, "train")
    with pytest.raises(FedmllmError, match=r"vqa_rad: unknown split 'dev' \(choose from \['train', 'test'\]\)"):
        vqa_rad.load(folder, "dev")


RAD_FILE = re.escape(vqa_rad.DEFAULT_FILE)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"answer": None}, "[item 3]: missing field 'answer'"),
        ({"qid": None}, "[item 3]: missing field 'qid'"),
        ({"image_name": None}, "[item 3]: missing field 'image_name'"),
        ({"phrase_type": None}, "[item 3]: missing field 'phrase_type'"),
        ({"answer_type": "MAYBE"}, "[item 3]: field 'answer_type' is 'MAYBE', expected OPEN or CLOSED"),
        ({"answer_type": 1}, "[item 3]: field 'answer_type' should be str, got int"),
        ({"answer": ["yes"]}, "[item 3]: field 'answer' should be str/int/float, got list"),
        ({"answer": "  "}, "[item 3]: field 'answer' is empty"),
        ({"question": ""}, "[item 3]: field 'question' is empty"),
        ({"qid": True}, "[item 3]: field 'qid' should be int/str, got bool"),
        ({"image_name": "nope.jpg"}, "[item 3]: field 'image_name': image file not found: 'nope.jpg'"),
    ],
)
def test_vqa_rad_bad_items_name_file_item_and_field(tmp_path, change, message):
    items = [dict(item) for item in RAD_ITEMS]
    for key, value in change.items():
        if value is None:
            del items[3][key]
        else:
            items[3][key] = value
    folder = write_rad(tmp_path / "rad", items)
    with pytest.raises(FedmllmError, match=RAD_FILE + " " + re.escape(message)):
        vqa_rad.load(folder, "train")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"qid": 1,\n "answer": "yes"', RAD_FILE + r":2: invalid JSON"),
        ('{"qid": 1}', RAD_FILE + ": expected a JSON list of objects, got dict"),
        ('[{"qid": 1}, 5]', RAD_FILE + r" \[item 1\]: expected a JSON object"),
    ],
)
def test_vqa_rad_bad_json_names_file(tmp_path, text, message):
    folder = write_rad(tmp_path / "rad", RAD_ITEMS)
    (folder / vqa_rad.DEFAULT_FILE).write_text(text)
    with pytest.raises(FedmllmError, match=message):
        vqa_rad.load(folder, "test")


def test_vqa_rad_missing_image_folder_names_both_places(tmp_path):
    folder = write_rad(tmp_path / "rad", RAD_ITEMS)
    (folder / "VQA_RAD Image Folder").rename(folder / "pictures")
    with pytest.raises(FedmllmError, match=r"\[item 0\]: field 'image_name': image file not found: 'synpic1.jpg'") as e:
        vqa_rad.load(folder, "train")
    assert "VQA_RAD Image Folder" in str(e.value) and "images" in str(e.value)


# --- SLAKE ------------------------------------------------------------------------------------------


def test_slake_reads_english_splits(tmp_path):
    folder = write_slake(tmp_path / "slake")
    assert [(s.id, s.question, s.answer, s.answer_type) for s in slake.load(folder, "train")] == [
        ("0", "Is the lung healthy?", "no", "closed"),
        ("2", "What modality is used?", "CT", "open"),
        ("3", "Where is the liver?", "Left", "open"),  # the repeated qid 3 is dropped
        ("5", "How many kidneys?", "2", "open"),
    ]
    (dev,) = slake.load(folder, "dev")  # validate.json
    assert (dev.id, dev.answer, dev.answer_type, dev.task) == ("100", "yes", "closed", "vqa")
    assert dev.image == folder / "imgs" / "xmlab3" / "source.jpg"
    assert [(s.id, s.answer) for s in slake.load(folder, "test")] == [("200", "yes"), ("201", "Brain")]


def test_slake_language_filter(tmp_path):
    folder = write_slake(tmp_path / "slake")
    assert [(s.id, s.answer) for s in slake.load(folder, "train", language="zh")] == [("1", "否"), ("4", "肝脏")]
    assert [s.id for s in slake.load(folder, "train", language=None)] == ["0", "1", "2", "3", "4", "5"]
    with pytest.raises(FedmllmError, match=r"slake: unknown language 'fr'"):
        slake.load(folder, "train", language="fr")
    with pytest.raises(FedmllmError, match=r"test.json: no 'zh' samples"):
        slake.load(folder, "test", language="zh")
    with pytest.raises(FedmllmError, match=r"slake: unknown split 'validate'"):
        slake.load(folder, "validate")


def test_slake_other_languages_are_skipped_unchecked(tmp_path):
    files = {name: [dict(item) for item in items] for name, items in SLAKE_FILES.items()}
    del files["train.json"][1]["answer"]  # a broken Chinese row
    folder = write_slake(tmp_path / "slake", files)
    assert len(slake.load(folder, "train")) == 4
    with pytest.raises(FedmllmError, match=r"train.json \[item 1\]: missing field 'answer'"):
        slake.load(folder, "train", language=None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"q_lang": None}, "[item 0]: missing field 'q_lang'"),
        ({"img_name": None}, "[item 0]: missing field 'img_name'"),
        ({"question": None}, "[item 0]: missing field 'question'"),
        ({"answer_type": "Yes/No"}, "[item 0]: field 'answer_type' is 'Yes/No', expected OPEN or CLOSED"),
        ({"answer": {"a": 1}}, "[item 0]: field 'answer' should be str/int/float, got dict"),
        ({"img_name": "xmlab9/source.jpg"}, "[item 0]: field 'img_name': image file not found: "),
    ],
)
def test_slake_bad_items_name_file_item_and_field(tmp_path, change, message):
    folder = write_slake(tmp_path / "slake")
    items = json.loads((folder / "test.json").read_text())
    for key, value in change.items():
        if value is None:
            del items[0][key]
        else:
            items[0][key] = value
    (folder / "test.json").write_text(json.dumps(items))
    with pytest.raises(FedmllmError, match="test.json " + re.escape(message)):
        slake.load(folder, "test")


def test_slake_invalid_json_and_missing_file(tmp_path):
    folder = write_slake(tmp_path / "slake")
    (folder / "validate.json").write_text('[\n{"qid": 1,,}\n]')
    with pytest.raises(FedmllmError, match=r"validate.json:2: invalid JSON"):
        slake.load(folder, "dev")
    (folder / "test.json").unlink()
    with pytest.raises(FedmllmError, match=r"test.json: file not found"):
        slake.load(folder, "test")


# --- the synthetic twins ------------------------------------------------------------------------------


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_twin_samples(samples):
    """Values the generator promises: answers of the question's kind, open colour answers naming
    the drawn scan's colour but for the rule's annotation noise (medvqa.OPEN_NOISE, 10%)."""
    drawn = []
    for s in samples:
        assert s.task == "vqa" and s.image.is_file()
        if s.answer_type == "closed":
            assert s.answer in ("yes", "no")
        elif s.question == medvqa.OPEN_COLOUR:
            fill = {**memes.WARM, **memes.COOL}[s.answer]
            drawn.append(fill in {c for _, c in Image.open(s.image).convert("RGB").getcolors(4096)})
        else:
            assert (s.question, s.answer in memes.SHAPES) == (medvqa.OPEN_SHAPE, True)
    assert len(drawn) >= 5 and sum(drawn) >= 2 / 3 * len(drawn)


SIZES = {"train": 40, "dev": 6, "test": 11}


def test_vqa_rad_twin_deterministic_and_readable(tmp_path):
    a = medvqa.write_vqa_rad(tmp_path / "a", SIZES, seed=2, image_size=32)
    b = medvqa.write_vqa_rad(tmp_path / "b", SIZES, seed=2, image_size=32)
    c = medvqa.write_vqa_rad(tmp_path / "c", SIZES, seed=3, image_size=32)
    assert tree_bytes(a) == tree_bytes(b)
    assert (a / vqa_rad.DEFAULT_FILE).read_bytes() != (c / vqa_rad.DEFAULT_FILE).read_bytes()
    assert not (tmp_path / "a.partial").exists()
    assert all("phrase_type" in item for item in json.loads((a / vqa_rad.DEFAULT_FILE).read_text()))
    train, test = vqa_rad.load(a, "train"), vqa_rad.load(a, "test")  # the official phrase_type split
    assert (len(train), len(test)) == (40, 11)
    assert not {s.image for s in train} & {s.image for s in test}
    assert sum(s.answer_type == "open" for s in train) == 20
    closed = [s.answer for s in train + test if s.answer_type == "closed"]
    assert 0.3 < closed.count("yes") / len(closed) < 0.7
    check_twin_samples(train + test)


def test_slake_twin_deterministic_readable_with_chinese_rows(tmp_path):
    a = medvqa.write_slake(tmp_path / "a", SIZES, seed=2, image_size=32)
    b = medvqa.write_slake(tmp_path / "b", SIZES, seed=2, image_size=32)
    assert tree_bytes(a) == tree_bytes(b)
    assert not (tmp_path / "a.partial").exists()
    raw = json.loads((a / "train.json").read_text(encoding="utf-8"))
    assert {item["q_lang"] for item in raw} == {"en", "zh"}
    splits = {split: slake.load(a, split) for split in ("train", "dev", "test")}
    assert {k: len(v) for k, v in splits.items()} == SIZES  # English questions only
    images = [{s.image for s in v} for v in splits.values()]
    assert not (images[0] & images[1] or images[0] & images[2] or images[1] & images[2])
    assert len(slake.load(a, "train", language=None)) == len(raw) > 40
    check_twin_samples([s for v in splits.values() for s in v])


def test_vocabulary_covers_twin_questions_and_closed_answers():
    words = vqa_rad.vocabulary()
    assert {"yes", "no", medvqa.OPEN_COLOUR, "Is the lesion red?", "Is the lesion warm-coloured?"} <= set(words)
    assert slake.vocabulary() == words
