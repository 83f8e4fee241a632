"""Hub copies of the five datasets: snapshots built here with `datasets` (nothing is downloaded),
in the layouts `huggingface_hub` downloads and `save_to_disk` writes, read into the same Samples as
the native loaders, with errors naming the file, the row and the column."""

import hashlib
import io
import json
import shutil
import time
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fedmllm.cli import main
from fedmllm.config import RunConfig, from_dict
from fedmllm.data import crisismmd, hub, hub_files, medalpaca, registry, vqa_rad
from fedmllm.data.synthetic import medvqa
from fedmllm.errors import FedmllmError
from fedmllm.model.collate import open_image

datasets.disable_progress_bars()
IMAGE = datasets.Image()
TEXT = datasets.Value("string")
YES_NO = ["yes", "no"]


@pytest.fixture(autouse=True)
def image_cache(tmp_path, monkeypatch):
    """Image cells become files in a cache of the test's own (the e2e test keeps the real cache,
    where the tiny model is)."""
    monkeypatch.setenv("FEDMLLM_CACHE", str(tmp_path / "cache"))


def png(colour: tuple[int, int, int], size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, "PNG")
    return buffer.getvalue()


def cell(data: bytes) -> dict:
    return {"bytes": data, "path": None}


def write(path: Path, columns: dict, features: dict) -> Path:
    """One parquet file as `datasets` uploads it (Dataset.to_parquet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    if len(dataset):
        dataset.to_parquet(str(path))
    else:  # to_parquet divides by the row count; an empty split is written as the table it is
        pq.write_table(dataset.data.table, path)
    return path


def vqa_columns(questions, answers, colours=None, **extra) -> dict:
    colours = colours or [(10 * i, 0, 0) for i in range(len(questions))]
    return {"image": [cell(png(c)) for c in colours], "question": questions, "answer": answers, **extra}


VQA_FEATURES = {"image": IMAGE, "question": TEXT, "answer": TEXT}


def vqa_snapshot(root: Path, train: dict, test: dict | None = None, features=None) -> Path:
    features = features or VQA_FEATURES
    write(root / "data" / "train-00000-of-00001.parquet", train, features)
    if test is not None:
        write(root / "data" / "test-00000-of-00001.parquet", test, features)
    return root


# --- VQA-RAD ----------------------------------------------------------------------------------


def test_vqa_rad_hub_copy_reads_like_the_native_loader(tmp_path):
    """The synthetic twin, rewritten in the Hub schema (image bytes, question, answer; no qid, no
    answer_type), gives the native samples: the same text, answers, answer types and image bytes."""
    native = medvqa.write_vqa_rad(tmp_path / "native", {"train": 24, "test": 8}, seed=1)
    snap = tmp_path / "snap"
    for split in ("train", "test"):
        samples = vqa_rad.load(native, split)
        columns = {
            "image": [cell(s.image.read_bytes()) for s in samples],
            "question": [s.question for s in samples],
            "answer": [s.answer for s in samples],
        }
        write(snap / "data" / f"{split}-00000-of-00001.parquet", columns, VQA_FEATURES)
    assert registry.resolve_folder("vqa_rad", str(snap), {}, 0) == snap
    for split in ("train", "test"):
        want, got = vqa_rad.load(native, split), registry.load_split("vqa_rad", snap, split)
        assert [s.id for s in got] == [f"{split}-{i}" for i in range(len(want))]
        strip = [(s.question, s.answer, s.answer_type, s.task, s.options, s.text) for s in want]
        assert [(s.question, s.answer, s.answer_type, s.task, s.options, s.text) for s in got] == strip
        assert [s.image.read_bytes() for s in got] == [s.image.read_bytes() for s in want]
    assert {s.answer_type for s in want} == {"open", "closed"}  # both kinds were compared


def test_vqa_answers_are_normalised_as_native(tmp_path):
    snap = vqa_snapshot(
        tmp_path / "s",
        vqa_columns(
            ["  Is there   a mass? ", "Where?", "Is it NO?", "Which side"], ["Yes ", " left  lobe", "NO", "Right"]
        ),
        vqa_columns(["q"], ["no"]),
    )
    got = registry.load_split("vqa_rad", snap, "train")
    assert [(s.question, s.answer, s.answer_type) for s in got] == [
        ("Is there a mass?", "yes", "closed"),
        ("Where?", "left lobe", "open"),
        ("Is it NO?", "no", "closed"),
        ("Which side", "Right", "open"),  # open answers keep their case
    ]
    image = Image.open(got[1].image)
    assert image.size == (8, 8) and image.getpixel((0, 0)) == (10, 0, 0)
    assert got[1].image.name == hashlib.sha256(png((10, 0, 0))).hexdigest() + ".png"
    assert got[1].image.is_relative_to(tmp_path / "cache" / "data" / "hub-images")


def test_an_answer_type_column_and_numeric_answers_are_read(tmp_path):
    features = {
        **VQA_FEATURES,
        "answer": datasets.Value("float64"),
        "answer_type": TEXT,
        "qid": datasets.Value("int64"),
    }
    train = vqa_columns(["How many?", "Count?", "Again?"], [2.0, 3.5, 7.0], answer_type=["OPEN", " closed ", "OPEN"])
    train["qid"] = [11, 12, 11]  # a repeated qid keeps its first row
    snap = vqa_snapshot(tmp_path / "s", train, features=features)
    got = registry.load_split("vqa_rad", snap, "train")
    assert [(s.id, s.answer, s.answer_type) for s in got] == [("11", "2", "open"), ("12", "3.5", "closed")]


# --- SLAKE --------------------------------------------------------------------------------------


def test_slake_keeps_english_rows_and_reads_validation_as_dev(tmp_path):
    features = {**VQA_FEATURES, "answer_type": TEXT, "q_lang": TEXT, "qid": datasets.Value("int64")}
    rows = {
        **vqa_columns(["Is this a CT?", "这是CT吗?", "Which organ?", "Is this a CT?"], ["Yes", "是", "Liver", "No"]),
        "answer_type": ["CLOSED", "CLOSED", "OPEN", "CLOSED"],
        "q_lang": ["en", "zh", " EN", "en"],
        "qid": [1, 2, 3, 1],
    }
    for split in ("train", "validation", "test"):
        write(tmp_path / "s" / "data" / f"{split}-00000-of-00001.parquet", rows, features)
    got = registry.load_split("slake", tmp_path / "s", "dev")
    assert [(s.id, s.question, s.answer, s.answer_type) for s in got] == [
        ("1", "Is this a CT?", "yes", "closed"),
        ("3", "Which organ?", "Liver", "open"),
    ]


# --- Hateful Memes -------------------------------------------------------------------------------

MEME_FEATURES = {
    "image": IMAGE,
    "text": TEXT,
    "label": datasets.ClassLabel(names=["not-hateful", "hateful"]),
    "id": datasets.Value("int64"),
}


def meme_rows(labels, ids=None, texts=None) -> dict:
    n = len(labels)
    return {
        "image": [cell(png((0, 30 * i, 0))) for i in range(n)],
        "text": texts or [f" meme {i} " for i in range(n)],
        "label": labels,
        "id": ids or list(range(100, 100 + n)),
    }


def test_hateful_memes_splits_labels_and_ids(tmp_path):
    snap = tmp_path / "s" / "data"
    write(snap / "train-00000-of-00002.parquet", meme_rows([0, 1]), MEME_FEATURES)
    write(snap / "train-00001-of-00002.parquet", meme_rows([1, 0], ids=[100, 7]), MEME_FEATURES)  # 100 again
    write(snap / "validation-00000-of-00001.parquet", meme_rows([1]), MEME_FEATURES)
    write(snap / "test-00000-of-00001.parquet", meme_rows([0, 0, 0]), MEME_FEATURES)
    write(snap / "test_seen-00000-of-00001.parquet", meme_rows([1, 0]), MEME_FEATURES)  # preferred to test
    train = registry.load_split("hateful_memes", tmp_path / "s", "train")
    assert [(s.id, s.text, s.answer, s.label, s.options) for s in train] == [
        ("100", "meme 0", "not-hateful", 0, ("not-hateful", "hateful")),
        ("101", "meme 1", "hateful", 1, ("not-hateful", "hateful")),
        ("7", "meme 1", "not-hateful", 0, ("not-hateful", "hateful")),
    ]
    assert train[0].question == "Is this meme hateful?" and train[0].task == "classification"
    assert [s.label for s in registry.load_split("hateful_memes", tmp_path / "s", "dev")] == [1]
    assert [s.label for s in registry.load_split("hateful_memes", tmp_path / "s", "test")] == [1, 0]


def test_image_paths_stay_inside_the_snapshot_unless_allowed(tmp_path):
    """A copy whose `img` column holds paths (the images beside the parquet files, as in the
    original release): read relative to the snapshot, and outside it only with allow_external."""
    snap = tmp_path / "s"
    (snap / "img").mkdir(parents=True)
    (snap / "img" / "1.png").write_bytes(png((1, 2, 3)))
    (tmp_path / "outside.png").write_bytes(png((4, 5, 6)))
    features = {"img": TEXT, "text": TEXT, "label": datasets.Value("int64"), "id": TEXT}
    rows = {"img": ["img/1.png", "../outside.png"], "text": ["a", ""], "label": [0, 1], "id": ["a1", "a2"]}
    write(snap / "data" / "train-00000-of-00001.parquet", rows, features)
    with pytest.raises(FedmllmError, match=r"\[row 1\]: column 'img': '../outside.png' resolves outside"):
        registry.load_split("hateful_memes", snap, "train")
    got = registry.load_split("hateful_memes", snap, "train", allow_external=True)
    assert [(s.image, s.text) for s in got] == [(snap / "img" / "1.png", "a"), (snap / "../outside.png", None)]


# --- CrisisMMD ------------------------------------------------------------------------------------

QCRI_NAMES = [  # QCRI/CrisisMMD's ClassLabel: alphabetical, not the native order
    "affected_individuals", "infrastructure_and_utility_damage", "injured_or_dead_people",
    "missing_or_found_people", "not_humanitarian", "other_relevant_information",
    "rescue_volunteering_or_donation_effort", "vehicle_damage",
]  # fmt: skip


def test_crisismmd_class_labels_map_by_name_and_text_is_cleaned(tmp_path):
    features = {
        "tweet_id": TEXT,
        "image_id": TEXT,
        "tweet_text": TEXT,
        "image": IMAGE,
        "label": datasets.ClassLabel(names=QCRI_NAMES),
    }
    rows = {
        "tweet_id": ["1", "2"],
        "image_id": ["1_0", "2_0"],
        "tweet_text": ["Help &amp; rescue https://t.co/x now", "RT @a  flood"],
        "image": [cell(png((5, 5, 5))), cell(png((6, 6, 6)))],
        "label": [4, 7],  # not_humanitarian, vehicle_damage
    }
    write(tmp_path / "humanitarian" / "train" / "0000.parquet", rows, features)  # the parquet converter's layout
    got = registry.load_split("crisismmd", tmp_path / "humanitarian", "train")
    assert [(s.id, s.text, s.label, s.answer) for s in got] == [
        ("1_0", "Help & rescue now", 7, "not humanitarian"),
        ("2_0", "RT @a flood", 5, "vehicle damage"),
    ]
    assert got[0].options == crisismmd.OPTIONS and got[0].question == crisismmd.QUESTION


def test_crisismmd_prefers_the_image_label_and_reads_class_names(tmp_path):
    features = {"image": IMAGE, "text": TEXT, "label": TEXT, "label_image": TEXT}
    rows = {
        "image": [cell(png((1, 1, 1)))],
        "text": ["t"],
        "label": ["not_humanitarian"],
        "label_image": ["Infrastructure and utility damage"],
    }
    write(tmp_path / "s" / "dev.parquet", rows, features)
    (got,) = registry.load_split("crisismmd", tmp_path / "s", "dev")
    assert (got.id, got.label) == ("dev-0", 1)


# --- MedAlpaca ------------------------------------------------------------------------------------


def test_medalpaca_train_only_copy_gets_the_native_split_and_ids(tmp_path):
    items = [
        {"instruction": "Answer this question truthfully", "input": f"What is {i}?", "output": f"It is {i}."}
        for i in range(25)
    ]
    items[3] = {"instruction": "What causes fever?", "input": "", "output": "Infection."}
    (tmp_path / "native").mkdir()
    (tmp_path / "native" / medalpaca.FILENAME).write_text(json.dumps(items))
    columns = {key: [item[key] for item in items] for key in ("instruction", "input", "output")}
    write(tmp_path / "s" / "default" / "train" / "0000.parquet", columns, dict.fromkeys(columns, TEXT))
    for split in ("train", "test"):
        assert registry.load_split("medalpaca", tmp_path / "s", split) == medalpaca.load(tmp_path / "native", split)
    test = registry.load_split("medalpaca", tmp_path / "s", "test")
    assert [s.id for s in test] == [f"medalpaca-{i}" for i in sorted(medalpaca.held_out_indices(25))]


def test_save_to_disk_arrow_files_read_like_parquet(tmp_path):
    rows = vqa_columns(["Is it red?", "What colour?"], ["Yes", "red"])
    features = datasets.Features(VQA_FEATURES)
    parts = {split: datasets.Dataset.from_dict(rows, features=features) for split in ("train", "test")}
    datasets.DatasetDict(parts).save_to_disk(str(tmp_path / "arrow"))
    vqa_snapshot(tmp_path / "parquet", rows, rows)
    assert (tmp_path / "arrow" / "train" / "data-00000-of-00001.arrow").is_file()
    got = registry.load_split("vqa_rad", registry.resolve_folder("vqa_rad", str(tmp_path / "arrow"), {}, 0), "test")
    assert got == registry.load_split("vqa_rad", tmp_path / "parquet", "test")
    assert [(s.id, s.answer, s.answer_type) for s in got] == [("test-0", "yes", "closed"), ("test-1", "red", "open")]
    table = parts["test"].data.table  # the same rows in arrow's IPC file format, not the stream
    (tmp_path / "ipc" / "test").mkdir(parents=True)
    with pa.ipc.new_file(str(tmp_path / "ipc" / "test" / "data-00000-of-00001.arrow"), table.schema) as sink:
        sink.write_table(table)
    assert registry.load_split("vqa_rad", tmp_path / "ipc", "test") == got


# --- data_columns ---------------------------------------------------------------------------------


def test_data_columns_maps_other_column_names(tmp_path):
    features = {"picture": IMAGE, "q": TEXT, "a": TEXT}
    rows = {"picture": [cell(png((9, 9, 9)))], "q": ["Is it grey?"], "a": ["yes"]}
    snap = vqa_snapshot(tmp_path / "s", rows, rows, features)
    path = snap / "data" / "train-00000-of-00001.parquet"
    with pytest.raises(FedmllmError, match=rf"^{path}: no image column \(looked for 'image' or 'img'; its columns are"):
        registry.load_split("vqa_rad", snap, "train")
    (got,) = registry.load_split("vqa_rad", snap, "train", columns="image=picture, question = q,answer=a")
    assert (got.question, got.answer, got.answer_type) == ("Is it grey?", "yes", "closed")
    with pytest.raises(FedmllmError, match=rf"^{path}: no column 'pic' \(data_columns: image=pic\)"):
        registry.load_split("vqa_rad", snap, "train", columns="image=pic")
    with pytest.raises(FedmllmError, match="config key 'data_columns': vqa_rad reads no label"):
        registry.load_split("vqa_rad", snap, "train", columns="label=a")


def test_data_columns_is_refused_for_a_native_layout(tmp_path):
    native = medvqa.write_vqa_rad(tmp_path / "native", {"train": 2, "test": 2}, seed=0)
    with pytest.raises(FedmllmError, match="config key 'data_columns': .* published layout"):
        registry.load_split("vqa_rad", native, "train", columns="image=img")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("image", "expected ROLE=COLUMN pairs"),
        ("image=a,", "expected ROLE=COLUMN pairs"),
        ("image=a=b", "expected ROLE=COLUMN pairs"),
        ("picture=a", "unknown role 'picture'"),
        ("image=a,image=b", "role 'image' is mapped twice"),
        ("image=a\nb", "must be printable text"),
    ],
)
def test_data_columns_config_values_are_checked(value, message):
    with pytest.raises(FedmllmError, match=f"^test: config key 'data_columns': {message}"):
        from_dict({"data_columns": value}, "test")


def test_data_columns_config_accepts_a_mapping():
    assert RunConfig(data_columns=" image = my img ,answer=a").data_columns == " image = my img ,answer=a"
    assert hub.parse_columns(" image = my img ,answer=a") == {"image": "my img", "answer": "a"}


# --- bad snapshots --------------------------------------------------------------------------------

TRAIN = "train-00000-of-00001.parquet"


def bad_vqa(tmp_path: Path, case: str) -> Path:
    """A VQA-RAD snapshot broken in one way."""
    snap, train = tmp_path / "s", vqa_columns(["a?", "b?"], YES_NO)
    test = vqa_columns(["c?"], ["no"])
    features = dict(VQA_FEATURES)
    if case == "missing column":
        del train["answer"], features["answer"]
    elif case == "wrong type":
        train["question"], features["question"] = [1, 2], datasets.Value("int64")
    elif case == "null cell":
        train["answer"] = ["yes", None]
    elif case == "corrupt image":
        train["image"][1] = cell(b"not a png")
    elif case == "truncated pixels":  # a valid header: only a full decode finds it
        train["image"][1] = cell(png((7, 7, 7), size=64)[:-30])
    elif case == "image of the wrong kind":
        train["image"], features["image"] = [3, 4], datasets.Value("int64")
    elif case == "empty text":
        train["question"] = ["a?", "   "]
    elif case == "empty split":
        test = {key: [] for key in test}
    write(snap / "data" / TRAIN, train, features)
    write(snap / "data" / "test-00000-of-00001.parquet", test, VQA_FEATURES)
    return snap


@pytest.mark.parametrize(
    ("case", "split", "message"),
    [
        ("missing column", "train", rf"data/{TRAIN}: no answer column \(looked for 'answer'"),
        ("wrong type", "train", rf"data/{TRAIN} \[row 0\]: column 'question' should be str, got int"),
        ("null cell", "train", rf"data/{TRAIN} \[row 1\]: column 'answer' is null"),
        ("corrupt image", "train", rf"data/{TRAIN} \[row 1\]: column 'image': 9 bytes that are not a readable image"),
        ("truncated pixels", "train", rf"data/{TRAIN} \[row 1\]: column 'image': \d+ bytes that are not a readable"),
        ("image of the wrong kind", "train", r"\[row 0\]: column 'image' should be an image .* got int"),
        ("empty text", "train", rf"data/{TRAIN} \[row 1\]: column 'question' is empty"),
        ("empty split", "test", r"no test samples in .*data/test-00000-of-00001.parquet"),
    ],
)
def test_bad_cells_name_file_row_and_column(tmp_path, case, split, message):
    with pytest.raises(FedmllmError, match=message):
        registry.load_split("vqa_rad", bad_vqa(tmp_path, case), split)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    snap = vqa_snapshot(tmp_path / "s", vqa_columns(["a?"], ["yes"]))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 63)  # the 8x8 image has 64
    with pytest.raises(FedmllmError, match=r"\[row 0\]: column 'image': an image of 8x8 pixels, over the decompr"):
        registry.load_split("vqa_rad", snap, "train")


def test_bad_labels_name_the_row(tmp_path):
    write(tmp_path / "m" / "train.parquet", meme_rows([0, 2]), {**MEME_FEATURES, "label": datasets.Value("int64")})
    with pytest.raises(FedmllmError, match=r"train.parquet \[row 1\]: column 'label' is 2, expected 0 or 1"):
        registry.load_split("hateful_memes", tmp_path / "m", "train")
    rows = {"image": [cell(png((1, 1, 1)))], "text": ["t"], "label": [3]}
    write(tmp_path / "c" / "train.parquet", rows, {"image": IMAGE, "text": TEXT, "label": datasets.Value("int64")})
    with pytest.raises(FedmllmError, match=r"\[row 0\]: column 'label' holds integers but the file declares no"):
        registry.load_split("crisismmd", tmp_path / "c", "train")
    rows["label"] = ["flooding"]
    write(tmp_path / "d" / "train.parquet", rows, {"image": IMAGE, "text": TEXT, "label": TEXT})
    with pytest.raises(FedmllmError, match=r"\[row 0\]: column 'label' has unknown label 'flooding'"):
        registry.load_split("crisismmd", tmp_path / "d", "train")


def test_broken_snapshots_are_named(tmp_path):
    rows = vqa_columns(["a?"], ["yes"])
    snap = vqa_snapshot(tmp_path / "s", rows)
    with pytest.raises(FedmllmError, match=r"no vqa_rad 'test' split in this Hub snapshot .*found: train\)"):
        registry.load_split("vqa_rad", snap, "test")
    write(snap / "data" / "test-00000-of-00003.parquet", rows, VQA_FEATURES)
    write(snap / "data" / "test-00002-of-00003.parquet", rows, VQA_FEATURES)
    with pytest.raises(FedmllmError, match=r"split 'test' is missing shard\(s\) \[1\] of 3 \(an incomplete download"):
        registry.load_split("vqa_rad", snap, "test")
    write(snap / "data" / "train-00000-of-00001-1508d9e5032c2c1f.parquet", rows, VQA_FEATURES)
    with pytest.raises(FedmllmError, match=r"shard 0 of 1 of split 'train' is in 2 files"):
        registry.load_split("vqa_rad", snap, "train")
    other = tmp_path / "configs"
    for config in ("a", "b"):
        write(other / config / "train" / "0000.parquet", rows, VQA_FEATURES)
    with pytest.raises(
        FedmllmError, match=r"split 'train' has files in 2 folders .*pass the one to read as --data-dir"
    ):
        registry.load_split("vqa_rad", other, "train")
    garbage = tmp_path / "g" / "data" / TRAIN
    garbage.parent.mkdir(parents=True)
    garbage.write_bytes(b"PAR1 not really")
    with pytest.raises(FedmllmError, match=rf"^{garbage}: not a readable parquet file"):
        registry.load_split("vqa_rad", tmp_path / "g", "train")


@pytest.fixture(scope="module")
def fuzz_sources(tmp_path_factory):
    """A VQA-RAD snapshot as parquet and as save_to_disk's arrow files."""
    root = tmp_path_factory.mktemp("fuzz")
    rows = vqa_columns(["Is it red?", "What colour?", "Is it big?"], ["Yes", "red", "no"])
    parts = {split: datasets.Dataset.from_dict(rows, features=datasets.Features(VQA_FEATURES)) for split in ("train",)}
    datasets.DatasetDict(parts).save_to_disk(str(root / "arrow"))
    vqa_snapshot(root / "parquet", rows)
    files = {"parquet": Path("data") / TRAIN, "arrow": Path("train") / "data-00000-of-00001.arrow"}
    return {kind: (root / kind, files[kind]) for kind in files}


@pytest.mark.parametrize("kind", ["parquet", "arrow"])
@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    how=st.sampled_from(["flip", "truncate", "insert", "delete"]),
    where=st.floats(0, 1),
    size=st.integers(1, 32),
    payload=st.binary(min_size=1, max_size=32),
)
def test_mutated_snapshot_files_load_or_fail_cleanly(kind, how, where, size, payload, fuzz_sources, tmp_path):
    """A corrupt file ends in valid samples or one FedmllmError, never a crash: arrow files are
    memory-mapped, and before every batch was validated a flipped offset crashed the process."""
    source, relative = fuzz_sources[kind]
    folder = tmp_path / f"{kind}-{how}-{where}-{size}"
    shutil.copytree(source, folder)
    data = (folder / relative).read_bytes()
    at = int(where * len(data))
    mutated = {
        "flip": data[:at] + bytes(b ^ 0xFF for b in data[at : at + size]) + data[at + size :],
        "truncate": data[:at],
        "insert": data[:at] + payload + data[at:],
        "delete": data[:at] + data[at + size :],
    }[how]
    (folder / relative).write_bytes(mutated)
    try:
        for sample in registry.load_split("vqa_rad", folder, "train"):
            assert sample.question and sample.answer
            open_image(sample)
    except FedmllmError as e:
        assert str(folder) in str(e)
    finally:
        shutil.rmtree(folder)


def test_a_folder_that_is_neither_layout(tmp_path):
    with pytest.raises(FedmllmError, match=r"not a vqa_rad folder \(no \*.json found\); nor a Hub snapshot"):
        registry.resolve_folder("vqa_rad", str(tmp_path), {}, 0)


# --- hf://OWNER/NAME ------------------------------------------------------------------------------


def test_hf_ids_resolve_through_the_local_hub_cache_only(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "datasets--someone--vqa-rad"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snap = vqa_snapshot(repo / "snapshots" / "0123abcd", vqa_columns(["a?"], ["yes"]), vqa_columns(["b?"], ["no"]))
    for uri in ("hf://someone/vqa-rad", "hf://datasets/someone/vqa-rad"):
        assert registry.resolve_folder("vqa_rad", uri, {}, 0) == snap
    assert [s.answer for s in registry.load_split("vqa_rad", snap, "test")] == ["no"]
    # a copy whose image column holds paths: in the cache they are symlinks into the repo's blobs/
    memes = tmp_path / "hub" / "datasets--someone--memes"
    (memes / "refs").mkdir(parents=True)
    (memes / "refs" / "main").write_text("89ef")
    (memes / "blobs").mkdir()
    (memes / "blobs" / "5d41").write_bytes(png((1, 2, 3)))
    image = memes / "snapshots" / "89ef" / "img" / "1.png"
    image.parent.mkdir(parents=True)
    image.symlink_to(Path("..") / ".." / ".." / "blobs" / "5d41")
    rows = {"img": ["img/1.png"], "text": ["t"], "label": [1], "id": [5]}
    features = {"img": TEXT, "text": TEXT, "label": datasets.Value("int64"), "id": datasets.Value("int64")}
    write(memes / "snapshots" / "89ef" / "data" / TRAIN, rows, features)
    folder = registry.resolve_folder("hateful_memes", "hf://someone/memes", {}, 0)
    (got,) = registry.load_split("hateful_memes", folder, "train")
    assert got.image == image and Image.open(got.image).getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(FedmllmError) as missing:
        registry.resolve_folder("vqa_rad", "hf://someone/slake", {}, 0)
    assert str(missing.value).startswith(f"hf://someone/slake: not in the local Hugging Face Hub cache {tmp_path}/hub")
    assert "never downloads" in str(missing.value) and "`hf download someone/slake --repo-type dataset`" in str(
        missing.value
    )
    with pytest.raises(FedmllmError, match="not in the local .* --revision v2"):
        registry.resolve_folder("vqa_rad", "hf://someone/vqa-rad@v2", {}, 0)
    with pytest.raises(FedmllmError, match=r"^hf://vqa-rad: expected hf://OWNER/NAME"):
        registry.resolve_folder("vqa_rad", "hf://vqa-rad", {}, 0)
    assert hub_files.hub_cache() == tmp_path / "hub"


# --- the done-when: a Hub-schema VQA-RAD snapshot through data prepare and run ----------------------


def twin_snapshot(root: Path) -> Path:
    native = medvqa.write_vqa_rad(root / "native", {"train": 64, "test": 16}, seed=0)
    for split in ("train", "test"):
        samples = vqa_rad.load(native, split)
        columns = {
            "image": [cell(s.image.read_bytes()) for s in samples],
            "question": [s.question for s in samples],
            "answer": [s.answer for s in samples],
        }
        write(root / "snap" / "data" / f"{split}-00000-of-00001.parquet", columns, VQA_FEATURES)
    return root / "snap"


@pytest.mark.slow
def test_a_hub_vqa_rad_snapshot_prepares_and_federates(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FEDMLLM_CACHE")  # the real cache: the tiny model is built there once
    snap = twin_snapshot(tmp_path)
    data = ["--dataset", "vqa_rad", "--data-dir", str(snap), "--partition", "iid", "--num-clients", "4"]
    assert main(["data", "prepare", *data, "--out", str(tmp_path / "prep")]) == 0
    shards = json.loads((tmp_path / "prep" / "clients" / "summary.json").read_text())
    assert [row["samples"] for row in shards] == [16, 16, 16, 16]
    assert "test sets: test 16" in capsys.readouterr().out
    start = time.perf_counter()
    small = ["--clients-per-round", "2", "--rounds", "2", "--local-steps", "2", "--no-generate-eval"]
    assert main(["run", *data, *small, "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["rounds"] == 2 and 0.0 <= summary["final"]["closed_accuracy"] <= 1.0
    assert f'data_dir = "{snap}"' in (tmp_path / "run" / "config.toml").read_text()
    print(f"hub vqa_rad run: {time.perf_counter() - start:.1f} s")
