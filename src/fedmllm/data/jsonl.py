"""Reading dataset text files (JSON lines, JSON lists, tab-separated lines) with errors that point at
the file and line.

A dataset folder is untrusted input, so what one line or file can cost is bounded: a line is at most
MAX_LINE_BYTES, a whole-file JSON list at most MAX_JSON_FILE_BYTES, an integer at most MAX_INT_DIGITS
digits. Anything else the parser rejects (nesting deeper than Python's recursion limit, bytes that
are not UTF-8, a value of the wrong type) is a FedmllmError naming the file and line, never a raw
RecursionError or ValueError.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fedmllm.errors import FedmllmError, where

# a published annotation line (one meme, one tweet) is under 2 KB; 1 MiB is generous and still
# bounds the memory and time one line can take
MAX_LINE_BYTES = 1 << 20
# the largest published JSON list read here (MedAlpaca's flashcards) is about 10 MB; a JSON object
# takes ~20x its text in memory, so this bounds a hostile file to a few GB at most
MAX_JSON_FILE_BYTES = 128 << 20
# ids, labels and numeric answers are a few digits; a long digit run costs quadratic time to
# convert, and past 4300 digits Python refuses with a ValueError
MAX_INT_DIGITS = 100
WHITESPACE = re.compile(r"[ \t\n\r]*")  # what JSON itself counts as whitespace


class _LongInteger(Exception):
    """Raised from inside the JSON parser, which knows no position; decode() adds the line."""


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _LongInteger(f"an integer with {digits} digits (more than {MAX_INT_DIGITS})")
    return int(text)


DECODER = json.JSONDecoder(parse_int=_parse_int)


def clip(text: object, limit: int = 200) -> str:
    """str(text), cut to `limit` characters for an error message (a field may be a megabyte)."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def decode(text: str, start: int, path: Path, line: int, item: int | None = None) -> tuple[Any, int]:
    """The JSON value starting at text[start] and the index just after it. Errors name the file,
    the line (`line` is the line `start` is on) and the list item being parsed, if any."""
    context = "" if item is None else f", in item {item}"
    try:
        return DECODER.raw_decode(text, start)
    except json.JSONDecodeError as e:
        at = line + text.count("\n", start, e.pos)
        raise FedmllmError(f"{where(path, at)}: invalid JSON ({e.msg}, column {e.colno}{context})") from None
    except RecursionError:
        raise FedmllmError(f"{where(path, line)}: invalid JSON (nested too deeply to parse{context})") from None
    except _LongInteger as e:
        raise FedmllmError(f"{where(path, line)}: invalid JSON ({e}{context})") from None


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, text without the line break) for every line, each checked to be UTF-8
    (a BOM on the first line is dropped) and at most MAX_LINE_BYTES long."""
    path = Path(path)
    if not path.is_file():
        raise FedmllmError(f"{path}: file not found")
    try:
        f = path.open("rb")
    except OSError as e:
        raise FedmllmError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        number = 0
        while raw := _read_line(f, path, number + 1):
            number += 1
            content = raw[:-1] if raw.endswith(b"\n") else raw
            if len(content) > MAX_LINE_BYTES:
                raise FedmllmError(f"{where(path, number)}: line longer than {MAX_LINE_BYTES} bytes; not read")
            try:
                text = content.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise FedmllmError(f"{where(path, number)}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            yield number, text.rstrip("\r")


def _read_line(f: Any, path: Path, number: int) -> bytes:
    # one byte over the limit tells a too-long line from one exactly at it
    try:
        return f.readline(MAX_LINE_BYTES + 1)
    except OSError as e:
        raise FedmllmError(f"{where(path, number)}: cannot read ({e.strerror})") from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; stop on the first malformed one."""
    for number, line in read_lines(path):
        if not line.strip():
            continue
        obj, end = decode(line, WHITESPACE.match(line).end(), path, number)
        end = WHITESPACE.match(line, end).end()
        if end != len(line):
            raise FedmllmError(f"{where(path, number)}: invalid JSON (extra data after the value, column {end + 1})")
        if not isinstance(obj, dict):
            raise FedmllmError(f"{where(path, number)}: expected a JSON object, got {type(obj).__name__}")
        yield number, obj


def find_json_file(folder: Path, default: str) -> Path:
    """`default` in `folder`, else the folder's only *.json file (copies are often renamed)."""
    folder = Path(folder)
    if (folder / default).is_file():
        return folder / default
    found = sorted(p for p in folder.glob("*.json") if p.is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise FedmllmError(f"{folder}: no '{default}' and no other *.json file")
    names = ", ".join(p.name for p in found)
    raise FedmllmError(f"{folder}: no '{default}' and {len(found)} *.json files ({names}); keep only one")


def read_text(path: Path, limit: int) -> str:
    """The whole file as UTF-8 text (a leading BOM dropped), refused if over `limit` bytes."""
    if not path.is_file():
        raise FedmllmError(f"{path}: file not found")
    try:
        with path.open("rb") as f:
            raw = f.read(limit + 1)  # never more than the limit, whatever the file claims its size is
    except OSError as e:
        raise FedmllmError(f"{path}: cannot read ({e.strerror})") from None
    if len(raw) > limit:
        raise FedmllmError(f"{path}: file larger than {limit} bytes; not read")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise FedmllmError(f"{where(path, line)}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_json_list(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """A file holding one JSON list of objects, as (location, object) pairs; the location names
    the file and the item index for error messages. Items are parsed one at a time, so a parse
    error names the line and the item it is in."""
    path = Path(path)
    text = read_text(path, MAX_JSON_FILE_BYTES)
    items = []
    for index, line, obj in _list_items(text, path):
        loc = f"{path} [item {index}]"
        if not isinstance(obj, dict):
            raise FedmllmError(f"{loc}: expected a JSON object (line {line}), got {type(obj).__name__}")
        items.append((loc, obj))
    return items


class _LineCounter:
    """Line numbers of increasing positions in `text`, counting each newline once."""

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.line = text, 0, 1

    def at(self, pos: int) -> int:
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def _list_items(text: str, path: Path) -> Iterator[tuple[int, int, Any]]:
    """(index, first line, value) of each item of the JSON list `text` holds."""
    lines = _LineCounter(text)
    pos = WHITESPACE.match(text).end()
    if not text.startswith("[", pos):
        value, _ = decode(text, pos, path, lines.at(pos))  # a parse error, or a value of the wrong type
        raise FedmllmError(f"{path}: expected a JSON list of objects, got {type(value).__name__}")
    pos = WHITESPACE.match(text, pos + 1).end()
    index, more = 0, not text.startswith("]", pos)
    while more:
        value, end = decode(text, pos, path, lines.at(pos), index)
        yield index, lines.at(pos), value
        pos = WHITESPACE.match(text, end).end()
        more = text.startswith(",", pos)
        if not more and not text.startswith("]", pos):
            raise FedmllmError(f"{where(path, lines.at(pos))}: invalid JSON (expected ',' or ']' after item {index})")
        if more:
            pos, index = WHITESPACE.match(text, pos + 1).end(), index + 1
    end = WHITESPACE.match(text, pos + 1).end()
    if end != len(text):
        raise FedmllmError(f"{where(path, lines.at(end))}: invalid JSON (extra data after the list)")


def require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], loc: str) -> Any:
    """obj[key], checked for presence and type, or an error naming the location and key. A float
    must be finite (JSON parsers accept NaN, Infinity and 1e999) and a string valid Unicode (a
    JSON escape can make a lone surrogate, which no tokenizer or file system accepts)."""
    if key not in obj:
        raise FedmllmError(f"{loc}: missing field '{key}'")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python; a JSON `true` is never a valid id or label
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise FedmllmError(f"{loc}: field '{key}' should be {names}, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise FedmllmError(f"{loc}: field '{key}' is {value}, expected a finite number")
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise FedmllmError(f"{loc}: field '{key}' is not valid Unicode text ({e.reason} at {e.start})") from None
    return value
