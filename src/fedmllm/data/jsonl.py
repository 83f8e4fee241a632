"""Reading JSON files with errors that point at the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fedmllm.errors import FedmllmError, where


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; stop on the first malformed one."""
    if not path.is_file():
        raise FedmllmError(f"{path}: file not found")
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise FedmllmError(f"{where(path, number)}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise FedmllmError(f"{where(path, number)}: invalid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise FedmllmError(f"{where(path, number)}: expected a JSON object")
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


def read_json_list(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """A file holding one JSON list of objects, as (location, object) pairs; the location names
    the file and the item index for error messages."""
    path = Path(path)
    if not path.is_file():
        raise FedmllmError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FedmllmError(f"{where(path, e.lineno)}: invalid JSON ({e.msg}, column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise FedmllmError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not isinstance(data, list):
        raise FedmllmError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    items = []
    for index, obj in enumerate(data):
        loc = f"{path} [item {index}]"
        if not isinstance(obj, dict):
            raise FedmllmError(f"{loc}: expected a JSON object")
        items.append((loc, obj))
    return items


def require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], loc: str) -> Any:
    """obj[key], checked for presence and type, or an error naming the location and key."""
    if key not in obj:
        raise FedmllmError(f"{loc}: missing field '{key}'")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python; a JSON `true` is never a valid id or label
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise FedmllmError(f"{loc}: field '{key}' should be {names}, got {type(value).__name__}")
    return value
