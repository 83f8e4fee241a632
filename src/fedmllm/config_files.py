"""Config files and presets: TOML/YAML read as flat mappings, then layered
(defaults < preset < file < command-line flags) into one RunConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib

from fedmllm.config import RunConfig, from_dict
from fedmllm.errors import FedmllmError


def read_file(path: Path) -> dict[str, Any]:
    """A TOML or YAML config file as a flat mapping (a [fedmllm] table is also accepted)."""
    path = Path(path)
    if not path.is_file():
        raise FedmllmError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise FedmllmError(f"{path}: config files must end in .toml, .yaml or .yml")
    except tomllib.TOMLDecodeError as e:
        raise FedmllmError(f"{path}: invalid TOML ({e})") from None
    except Exception as e:  # yaml.YAMLError; yaml is imported lazily
        if type(e).__module__.startswith("yaml"):
            raise FedmllmError(f"{path}: invalid YAML ({e})") from None
        raise
    if not isinstance(data, dict):
        raise FedmllmError(f"{path}: expected a mapping of config keys")
    return data.get("fedmllm", data)


RUN_PRESETS = ("smol",)


def preset_path(name: str) -> Path:
    """A run config shipped with fedmllm (`fedmllm run --preset NAME`)."""
    from importlib import resources

    if name not in RUN_PRESETS:
        raise FedmllmError(f"unknown run preset '{name}' (choose from {list(RUN_PRESETS)})")
    return Path(str(resources.files("fedmllm") / "presets" / f"{name}.toml"))


def load(path: Path | None = None, overrides: dict[str, Any] | None = None, preset: str | None = None) -> RunConfig:
    """Defaults, then the preset (if any), then the file (if any), then command-line overrides."""
    values: dict[str, Any] = {}
    for source in [preset_path(preset) if preset else None, path]:
        if source is not None:
            raw = read_file(source)
            from_dict(raw, str(source))  # errors name the file
            values.update({k.replace("-", "_"): v for k, v in raw.items()})
    values.update(overrides or {})
    return from_dict(values, "command line")
