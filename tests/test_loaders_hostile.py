"""Hostile dataset folders: image paths that leave the folder, and annotation text built to crash
or exhaust the parser. Every loader must end with one FedmllmError naming the file, the line (or
item) and the field, never a raw exception, and must not accept a path outside the folder unless
the caller passes allow_external=True."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from fedmllm.data import crisismmd, jsonl, registry, vqa_rad
from fedmllm.errors import FedmllmError

RECORD = 1  # the record (0-based) each test makes hostile


@dataclass(frozen=True)
class Layout:
    annotation: str  # the train split's annotation file, relative to the dataset folder
    field: str  # the field (TSV: column) holding the image path
    base: str  # the folder that path is relative to, relative to the dataset folder
    kind: str  # "jsonl", "tsv" or "json" (one JSON list)


LAYOUTS = {
    "hateful_memes": Layout("train.jsonl", "img", "", "jsonl"),
    "crisismmd": Layout(f"{crisismmd.FOLDER}/{crisismmd.FILE.format(split='train')}", "image", "", "tsv"),
    "vqa_rad": Layout(vqa_rad.DEFAULT_FILE, "image_name", vqa_rad.IMAGE_DIRS[0], "json"),
    "slake": Layout("train.json", "img_name", "imgs", "json"),
}
IMAGE_LOADERS = list(LAYOUTS)


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> dict[str, Path]:
    """One small synthetic folder per dataset, in its native published layout."""
    root = tmp_path_factory.mktemp("valid")
    return {
        name: spec.write_synthetic(root / name, {"train": 6, "dev": 2, "test": 2}, 0)
        for name, spec in registry.DATASETS.items()
    }


def copy(valid: dict[str, Path], name: str, tmp_path: Path) -> Path:
    folder = tmp_path / "ds"
    shutil.copytree(valid[name], folder)
    return folder


def outside_image(folder: Path, tmp_path: Path) -> Path:
    """A readable image outside the dataset folder (a copy of one inside it)."""
    inside = first_image(folder)
    target = tmp_path / "outside" / f"secret{inside.suffix}"
    target.parent.mkdir()
    shutil.copy(inside, target)
    return target


def first_image(folder: Path) -> Path:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".png", ".jpg"))[0]


def set_image(name: str, folder: Path, value: str) -> tuple[str, str]:
    """Point record RECORD's image field at `value`; returns (how an error names that record's
    field, the value it held before)."""
    layout = LAYOUTS[name]
    path = folder / layout.annotation
    if layout.kind == "json":
        items = json.loads(path.read_text(encoding="utf-8"))
        old, items[RECORD][layout.field] = items[RECORD][layout.field], value
        path.write_text(json.dumps(items, indent=1), encoding="utf-8")
        return f"{path} [item {RECORD}]: field '{layout.field}'", old
    lines = path.read_text(encoding="utf-8").splitlines()
    if layout.kind == "jsonl":  # record k is line k + 1
        row = json.loads(lines[RECORD])
        old, row[layout.field] = row[layout.field], value
        lines[RECORD] = json.dumps(row)
        where = f"{path}:{RECORD + 1}: field '{layout.field}'"
    else:  # TSV: the header is line 1, record k is line k + 2
        column = lines[0].split("\t").index(layout.field)
        fields = lines[RECORD + 1].split("\t")
        old, fields[column] = fields[column], value
        lines[RECORD + 1] = "\t".join(fields)
        where = f"{path}:{RECORD + 2}: column '{layout.field}'"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return where, old


def hostile_value(how: str, name: str, folder: Path, outside: Path) -> str:
    """An image field naming `outside`: absolutely, through '..', or through a symlink inside."""
    base = folder / LAYOUTS[name].base
    if how == "absolute":
        return str(outside)
    if how == "dotdot":
        value = os.path.relpath(outside, base)
        assert value.startswith("../")
        return value
    (base / "evil.png").symlink_to(outside)
    return "evil.png"


# --- image paths that leave the folder ------------------------------------------------------------


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
@pytest.mark.parametrize("name", IMAGE_LOADERS)
def test_path_outside_the_folder_is_refused(valid, tmp_path, name, how):
    folder = copy(valid, name, tmp_path)
    outside = outside_image(folder, tmp_path)
    value = hostile_value(how, name, folder, outside)
    where, _ = set_image(name, folder, value)
    with pytest.raises(FedmllmError) as e:
        registry.load_split(name, folder, "train")
    assert str(e.value) == (
        f"{where}: {value!r} resolves outside the dataset folder {folder} "
        f"(to {outside.resolve()}; pass allow_external_paths = true to accept it)"
    )


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
@pytest.mark.parametrize("name", IMAGE_LOADERS)
def test_path_outside_the_folder_loads_when_allowed(valid, tmp_path, name, how):
    folder = copy(valid, name, tmp_path)
    outside = outside_image(folder, tmp_path)
    set_image(name, folder, hostile_value(how, name, folder, outside))
    samples = registry.load_split(name, folder, "train", allow_external=True)
    assert len(samples) == len(registry.load_split(name, valid[name], "train"))
    assert sum(s.image.resolve() == outside.resolve() for s in samples) == 1


@pytest.mark.parametrize("name", IMAGE_LOADERS)
def test_symlink_inside_the_folder_is_accepted(valid, tmp_path, name):
    folder = copy(valid, name, tmp_path)
    target = first_image(folder)
    (folder / LAYOUTS[name].base / "alias.png").symlink_to(target)
    set_image(name, folder, "alias.png")
    samples = registry.load_split(name, folder, "train")
    assert len(samples) == len(registry.load_split(name, valid[name], "train"))
    assert sum(s.image.name == "alias.png" and s.image.resolve() == target.resolve() for s in samples) == 1


@pytest.mark.parametrize("name", IMAGE_LOADERS)
def test_dotdot_that_comes_back_inside_is_accepted(valid, tmp_path, name):
    folder = copy(valid, name, tmp_path)
    base = folder / LAYOUTS[name].base
    _, old = set_image(name, folder, "placeholder")
    set_image(name, folder, f"../{base.name}/{old}")  # up out of the base folder and back in
    samples = registry.load_split(name, folder, "train")
    assert len(samples) == len(registry.load_split(name, valid[name], "train"))
    assert sum(s.image.resolve() == (base / old).resolve() for s in samples) >= 1


def test_symlinked_dataset_folder_is_accepted(valid, tmp_path):
    """A data_dir that is itself a symlink (data on another disk) is the folder images resolve in."""
    folder = copy(valid, "hateful_memes", tmp_path)
    link = tmp_path / "link"
    link.symlink_to(folder)
    samples = registry.load_split("hateful_memes", link, "train")
    assert [s.image for s in samples[:2]] == [link / "img" / "10000.png", link / "img" / "10001.png"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("img/\x00.png", "'img/\\x00.png' contains a NUL character"),
        ("img/" + "x" * 5000 + ".png", "cannot access image file"),
        ("loop.png", "'loop.png' cannot be resolved"),
    ],
)
def test_unusable_path_names_line_and_field(valid, tmp_path, value, message):
    folder = copy(valid, "hateful_memes", tmp_path)
    (folder / "loop.png").symlink_to(folder / "loop2.png")
    (folder / "loop2.png").symlink_to(folder / "loop.png")
    where, _ = set_image("hateful_memes", folder, value)
    with pytest.raises(FedmllmError) as e:
        registry.load_split("hateful_memes", folder, "train")
    assert str(e.value).startswith(f"{where}: {message}")
    assert len(str(e.value)) < 600  # a 5,000-character name is clipped in the message


def test_symlink_loop_when_allowed_is_a_missing_image(valid, tmp_path):
    folder = copy(valid, "hateful_memes", tmp_path)
    (folder / "loop.png").symlink_to(folder / "loop2.png")
    (folder / "loop2.png").symlink_to(folder / "loop.png")
    where, _ = set_image("hateful_memes", folder, "loop.png")
    with pytest.raises(FedmllmError) as e:
        registry.load_split("hateful_memes", folder, "train", allow_external=True)
    assert str(e.value) == f"{where}: image file not found: {folder / 'loop.png'}"


# --- annotation text built to crash or exhaust the parser -----------------------------------------

DEEP_LIST = b"[" * 100_000
DEEP_OBJECT = b'{"a": ' * 50_000
LONG_INT = b'{"qid": ' + b"9" * 5000 + b"}"
NOT_UTF8 = b'{"question": "caf\xe9"}'  # Latin-1 e-acute
JSON_PAYLOADS = [
    (DEEP_LIST, "invalid JSON (nested too deeply to parse"),
    (DEEP_OBJECT, "invalid JSON (nested too deeply to parse"),
    (LONG_INT, "invalid JSON (an integer with 5000 digits (more than 100)"),
    (NOT_UTF8, "not UTF-8 text (invalid continuation byte at byte "),
]
LONG_LINE = b'{"text": "' + b"a" * jsonl.MAX_LINE_BYTES + b'"}'
LONG_LINE_ERROR = f"line longer than {jsonl.MAX_LINE_BYTES} bytes; not read"


def replace_line(path: Path, number: int, payload: bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[number - 1] = payload
    path.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize(
    ("payload", "message"), [*JSON_PAYLOADS, (LONG_LINE, LONG_LINE_ERROR), (b"5", "expected a JSON object, got int")]
)
def test_hostile_jsonl_line_names_file_and_line(valid, tmp_path, payload, message):
    folder = copy(valid, "hateful_memes", tmp_path)
    path = folder / "train.jsonl"
    replace_line(path, 2, payload)
    with pytest.raises(FedmllmError) as e:
        registry.load_split("hateful_memes", folder, "train")
    assert str(e.value).startswith(f"{path}:2: {message}")


@pytest.mark.parametrize(("payload", "message"), JSON_PAYLOADS)
@pytest.mark.parametrize("name", ["vqa_rad", "slake", "medalpaca"])
def test_hostile_json_list_item_names_file_and_line(valid, tmp_path, name, payload, message):
    folder = copy(valid, name, tmp_path)
    path = jsonl.find_json_file(folder, {"slake": "train.json"}.get(name, "none"))
    first = json.dumps(json.loads(path.read_text(encoding="utf-8"))[0]).encode()
    path.write_bytes(b"[\n" + first + b",\n" + payload + b"\n]\n")  # the payload is item 1, on line 3
    with pytest.raises(FedmllmError) as e:
        registry.load_split(name, folder, "train")
    assert str(e.value).startswith(f"{path}:3: {message}")
    if message.startswith("invalid JSON"):
        assert str(e.value).endswith(", in item 1)")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (DEEP_OBJECT, ":1: invalid JSON (nested too deeply to parse)"),
        (b'{"qid": 1}', ": expected a JSON list of objects, got dict"),
        (b"[\n{},\n{}\n", ":4: invalid JSON (expected ',' or ']' after item 1)"),
        (b"[\n{}\n]\n[]", ":4: invalid JSON (extra data after the list)"),
        (b"[\n{},\n]", ":3: invalid JSON (Expecting value, column 1, in item 1)"),
    ],
)
def test_malformed_json_list_file_names_file_and_line(valid, tmp_path, text, message):
    folder = copy(valid, "slake", tmp_path)
    path = folder / "train.json"
    path.write_bytes(text)
    with pytest.raises(FedmllmError) as e:
        registry.load_split("slake", folder, "train")
    assert str(e.value) == f"{path}{message}"


def test_json_list_file_over_the_size_limit_is_not_read(valid, tmp_path, monkeypatch):
    folder = copy(valid, "medalpaca", tmp_path)
    path = jsonl.find_json_file(folder, "none")
    monkeypatch.setattr(jsonl, "MAX_JSON_FILE_BYTES", path.stat().st_size - 1)
    with pytest.raises(FedmllmError) as e:
        registry.load_split("medalpaca", folder, "train")
    assert str(e.value) == f"{path}: file larger than {path.stat().st_size - 1} bytes; not read"


@pytest.mark.parametrize(("payload", "message"), [(NOT_UTF8, JSON_PAYLOADS[3][1]), (LONG_LINE, LONG_LINE_ERROR)])
def test_hostile_tsv_line_names_file_and_line(valid, tmp_path, payload, message):
    folder = copy(valid, "crisismmd", tmp_path)
    path = folder / LAYOUTS["crisismmd"].annotation
    replace_line(path, 3, payload)
    with pytest.raises(FedmllmError) as e:
        registry.load_split("crisismmd", folder, "train")
    assert str(e.value).startswith(f"{path}:3: {message}")


def test_line_limit_is_exact(tmp_path, monkeypatch):
    """A line of exactly MAX_LINE_BYTES (without its line break) is read; one byte more is not."""
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 8)
    path = tmp_path / "lines.txt"
    path.write_bytes(b"1234567\r\n" + b"12345678\n" + b"123456789\n")
    lines = jsonl.read_lines(path)
    assert next(lines) == (1, "1234567")  # the '\r' of a Windows line break is not part of the text
    assert next(lines) == (2, "12345678")
    with pytest.raises(FedmllmError, match=r"lines.txt:3: line longer than 8 bytes; not read"):
        next(lines)


@pytest.mark.parametrize(("answer", "shown"), [(float("nan"), "nan"), (float("inf"), "inf"), (-1e999, "-inf")])
def test_non_finite_number_field_is_refused(valid, tmp_path, answer, shown):
    """JSON parsers accept NaN, Infinity and 1e999; a numeric answer must be a finite number."""
    folder = copy(valid, "vqa_rad", tmp_path)
    path = folder / vqa_rad.DEFAULT_FILE
    items = json.loads(path.read_text(encoding="utf-8"))
    items[RECORD]["answer"] = answer
    path.write_text(json.dumps(items), encoding="utf-8")  # writes NaN / Infinity / -Infinity
    with pytest.raises(FedmllmError) as e:
        registry.load_split("vqa_rad", folder, "train")
    assert str(e.value) == f"{path} [item {RECORD}]: field 'answer' is {shown}, expected a finite number"


def test_lone_surrogate_in_text_is_refused(valid, tmp_path):
    folder = copy(valid, "hateful_memes", tmp_path)
    path = folder / "train.jsonl"
    replace_line(path, 2, b'{"id": 5, "img": "img/10001.png", "label": 0, "text": "a\\ud800b"}')
    with pytest.raises(FedmllmError) as e:
        registry.load_split("hateful_memes", folder, "train")
    assert str(e.value) == f"{path}:2: field 'text' is not valid Unicode text (surrogates not allowed at 1)"


def test_bom_on_first_line_is_dropped(valid, tmp_path):
    """Files saved on Windows often start with a UTF-8 BOM; it is not part of the first record."""
    folder = copy(valid, "hateful_memes", tmp_path)
    path = folder / "train.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert len(registry.load_split("hateful_memes", folder, "train")) == 6
