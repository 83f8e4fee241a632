"""The five datasets as Hugging Face Hub copies hold them: parquet or arrow files with an Image
column (hub_files.py finds and reads the files), read into the same Samples as the native loaders.

Each dataset has one small table: the fields it reads ("roles") and the Hub column names each is
found under, the first one present winning; `data_columns` ("image=img,question=q") names other
columns. Splits are found by their Hub names (hub_files.SPLIT_NAMES). The rows then follow the
native loaders' rules:
- VQA-RAD, SLAKE: question and answer normalised as vqa_rad.py does; the answer type from an
  `answer_type` column where the copy has one, else closed exactly when the answer is yes or no
  (the Hub copies drop the column; every closed VQA-RAD answer is yes or no). SLAKE keeps rows
  whose `q_lang` is "en" where that column exists. Without an id column, ids are "<split>-<row>".
- Hateful Memes: label 0 or 1 (1 = hateful), text stripped.
- CrisisMMD: the label is the image's (`label_image`) where the copy has it, else `label`; class
  names as crisismmd.py matches them, or an integer of a `datasets` ClassLabel (by its names, so a
  copy's own class order is honoured); tweet text cleaned as crisismmd.py cleans it.
- MedAlpaca: `input` is the question, `output` the answer, `instruction` optional. A copy with only
  a train split gets the native seeded 10% test split, with the native ids.
Repeated ids keep their first row. Errors name the file, the row (0-based, as `datasets` counts)
and the column.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from fedmllm.config_domains import parse_columns
from fedmllm.data import crisismmd, hateful_memes, medalpaca, slake, vqa_rad
from fedmllm.data import hub_files as files
from fedmllm.data.jsonl import MAX_LINE_BYTES, clip
from fedmllm.data.sample import Sample
from fedmllm.errors import FedmllmError


@dataclass
class Row:
    """One row of a Hub file, its cells read by role with errors naming file, row and column."""

    values: dict[str, Any]  # cell by column name
    columns: dict[str, str]  # role -> column name
    loc: str  # "<file> [row <n>]"
    index: int  # position in its split over all files (ids, held-out draws)
    split: str
    folder: Path
    allow_external: bool
    class_names: dict[str, list[str] | None] = field(default_factory=dict)  # role -> ClassLabel names

    def has(self, role: str) -> bool:
        return role in self.columns

    def where(self, role: str) -> str:
        return f"{self.loc}: column '{self.columns[role]}'"

    def get(self, role: str, kinds: tuple[type, ...]) -> Any:
        """The cell, checked as jsonl.require checks a field: its type (a bool is no int), a float
        finite, a text no longer than a native annotation line."""
        value = self.values[self.columns[role]]
        if value is None:
            raise FedmllmError(f"{self.where(role)} is null")
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = "/".join(k.__name__ for k in kinds)
            raise FedmllmError(f"{self.where(role)} should be {names}, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise FedmllmError(f"{self.where(role)} is {value}, expected a finite number")
        if isinstance(value, str) and len(value) > MAX_LINE_BYTES:
            raise FedmllmError(f"{self.where(role)} is longer than {MAX_LINE_BYTES} characters; not read")
        return value

    def text(self, role: str) -> str:
        return self.get(role, (str,))

    def ident(self) -> str:
        if not self.has("id"):
            return f"{self.split}-{self.index}"
        text = str(self.get("id", (int, str))).strip()
        if not text:
            raise FedmllmError(f"{self.where('id')} is empty")
        return text

    def image(self) -> Path:
        return files.image_file(
            self.values[self.columns["image"]], self.where("image"), self.folder, self.allow_external
        )


# --- one builder per kind of dataset --------------------------------------------------------------


def vqa_sample(row: Row) -> Sample:
    """VQA-RAD and SLAKE, with vqa_rad.vqa_sample's normalisation."""
    answer_type = None
    if row.has("answer_type"):
        raw = row.text("answer_type")
        answer_type = raw.strip().lower()
        if answer_type not in vqa_rad.ANSWER_TYPES:
            raise FedmllmError(f"{row.where('answer_type')} is {clip(raw)!r}, expected OPEN or CLOSED")
    sample_id = row.ident()
    question = " ".join(row.text("question").split())
    if not question:
        raise FedmllmError(f"{row.where('question')} is empty")
    raw_answer = row.get("answer", (str, int, float))
    if isinstance(raw_answer, float) and raw_answer.is_integer():
        raw_answer = int(raw_answer)
    answer = " ".join(str(raw_answer).split())
    if not answer:
        raise FedmllmError(f"{row.where('answer')} is empty")
    yes_no = answer.lower() in ("yes", "no")
    answer_type = answer_type or ("closed" if yes_no else "open")
    if answer_type == "closed" and yes_no:
        answer = answer.lower()
    return Sample(sample_id, row.image(), None, question, answer, task="vqa", answer_type=answer_type)


def meme_sample(row: Row) -> Sample:
    label = row.get("label", (int,))
    if label not in (0, 1):
        raise FedmllmError(f"{row.where('label')} is {label}, expected 0 or 1")
    text = row.text("text").strip() or None
    options = hateful_memes.OPTIONS
    return Sample(row.ident(), row.image(), text, hateful_memes.QUESTION, options[label], options, label)


CRISIS_INDEX = {name: i for i, name in enumerate(crisismmd.CLASSES)}


def crisis_sample(row: Row) -> Sample:
    raw = row.get("label", (str, int))
    name = raw
    if isinstance(raw, int):  # a ClassLabel: its names say which class, in the copy's own order
        names = row.class_names.get("label")
        if names is None:
            raise FedmllmError(
                f"{row.where('label')} holds integers but the file declares no class names (a datasets "
                "ClassLabel); map a column of class names with --data-columns label=COLUMN"
            )
        if not 0 <= raw < len(names):
            raise FedmllmError(f"{row.where('label')} is {raw}, outside its {len(names)} ClassLabel names")
        name = names[raw]
    label = CRISIS_INDEX.get(crisismmd.normalise_label(name))
    if label is None:
        raise FedmllmError(
            f"{row.where('label')} has unknown label {clip(name)!r} (expected one of {list(crisismmd.CLASSES)})"
        )
    text = crisismmd.clean_text(row.text("text")) or None
    options = crisismmd.OPTIONS
    return Sample(row.ident(), row.image(), text, crisismmd.QUESTION, options[label], options, label)


def flashcard_sample(row: Row) -> Sample:
    """As medalpaca.load builds one: the question is the text modality, the instruction the task."""
    instruction = row.text("instruction").strip() if row.has("instruction") else ""
    question = row.text("question").strip()
    answer = row.text("answer").strip()
    if not answer:
        raise FedmllmError(f"{row.where('answer')} is empty")
    question = question or instruction
    if not question:
        raise FedmllmError(f"{row.where('question')} and the instruction are both empty")
    instruction = (instruction if question != instruction else "") or medalpaca.INSTRUCTION
    return Sample(f"medalpaca-{row.index}", None, question, instruction, answer, task="qa")


# --- one table per dataset ------------------------------------------------------------------------


@dataclass(frozen=True)
class Schema:
    columns: dict[str, tuple[str, ...]]  # role -> Hub column names it is read from, the first present wins
    required: tuple[str, ...]
    build: Callable[[Row], Sample]
    splits: tuple[str, ...]  # the native loader's
    held_out: Callable[[int], set[int]] | None = None  # the native test draw, for a copy with train only


VQA = {"image": ("image", "img"), "question": ("question",), "answer": ("answer",), "answer_type": ("answer_type",)}
VQA_IDS = {"id": ("qid", "id")}
SCHEMAS = {
    "vqa_rad": Schema({**VQA, **VQA_IDS}, ("image", "question", "answer"), vqa_sample, vqa_rad.SPLITS),
    "slake": Schema(
        {**VQA, **VQA_IDS, "language": ("q_lang",)}, ("image", "question", "answer"), vqa_sample, tuple(slake.SPLITS)
    ),
    "hateful_memes": Schema(
        {"image": ("img", "image"), "text": ("text",), "label": ("label",), "id": ("id",)},
        ("image", "text", "label"),
        meme_sample,
        tuple(hateful_memes.SPLITS),
    ),
    "crisismmd": Schema(
        {
            "image": ("image", "img", "image_path"),
            "text": ("tweet_text", "text"),
            "label": (crisismmd.LABEL_COLUMN, "label"),
            "id": ("image_id", "id"),
        },
        ("image", "text", "label"),
        crisis_sample,
        crisismmd.SPLITS,
    ),
    "medalpaca": Schema(
        {"question": ("input",), "answer": ("output",), "instruction": ("instruction",)},
        ("question", "answer"),
        flashcard_sample,
        medalpaca.SPLITS,
        medalpaca.held_out_indices,
    ),
}


def load(name: str, folder: Path, split: str, *, allow_external: bool = False, columns: str = "") -> list[Sample]:
    """One split of dataset `name` from the Hub snapshot `folder`; `columns` is the run's
    data_columns ("role=column,..."), checked against the dataset's roles."""
    schema = SCHEMAS[name]
    if split not in schema.splits:
        raise FedmllmError(f"{name}: unknown split '{split}' (choose from {list(schema.splits)})")
    override = parse_columns(columns)
    if unknown := sorted(set(override) - set(schema.columns)):
        raise FedmllmError(
            f"config key 'data_columns': {name} reads no {', '.join(unknown)} (its roles: {', '.join(schema.columns)})"
        )
    folder = Path(folder)
    hub_split, paths, derived = files.split_files(name, folder, split, schema.held_out is not None)
    samples, seen, index = [], set(), 0
    for path in paths:
        for row in file_rows(path, schema, override, folder, allow_external, hub_split, index):
            index = row.index + 1
            if row.has("language") and row.text("language").strip().lower() != "en":
                continue  # before any other check, as slake.load skips other languages
            sample_id = row.ident()
            if row.has("id") and sample_id in seen:
                continue
            seen.add(sample_id)
            samples.append((row.index, schema.build(row)))
    if derived:  # the native draw over every row of the copy's train split
        held_out = schema.held_out(index)
        samples = [(i, s) for i, s in samples if (i in held_out) == (split == "test")]
    if not samples:
        raise FedmllmError(f"{folder}: no {split} samples in {', '.join(str(p) for p in paths)}")
    return [sample for _, sample in samples]


def file_rows(
    path: Path,
    schema: Schema,
    override: dict[str, str],
    folder: Path,
    allow_external: bool,
    split: str,
    start: int,
) -> Iterator[Row]:
    file_schema = files.schema(path)
    columns = column_roles(path, file_schema, schema, override)
    names = {}
    if "label" in columns and pa.types.is_integer(file_schema.field(columns["label"]).type):
        names["label"] = files.class_names(path, file_schema, columns["label"])
    for number, values in files.rows(path, list(dict.fromkeys(columns.values()))):
        yield Row(values, columns, f"{path} [row {number}]", start + number, split, folder, allow_external, names)


def column_roles(path: Path, file_schema: pa.Schema, schema: Schema, override: dict[str, str]) -> dict[str, str]:
    """role -> the file's column holding it: data_columns' choice, else the first known name."""
    present = file_schema.names
    chosen = {}
    for role, candidates in schema.columns.items():
        if role in override:
            if override[role] not in present:
                raise FedmllmError(
                    f"{path}: no column '{override[role]}' (data_columns: {role}={override[role]}); "
                    f"its columns are {clip(present)}"
                )
            chosen[role] = override[role]
        elif column := next((c for c in candidates if c in present), None):
            chosen[role] = column
        elif role in schema.required:
            looked = " or ".join(f"'{c}'" for c in candidates)
            raise FedmllmError(
                f"{path}: no {role} column (looked for {looked}; its columns are {clip(present)}); "
                f"name it with --data-columns {role}=COLUMN"
            )
    if twice := sorted({c for c in chosen.values() if present.count(c) > 1}):
        raise FedmllmError(f"{path}: column(s) {twice} appear more than once; which one to read is unclear")
    return chosen
