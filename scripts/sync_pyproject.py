"""Rewrite [tool.flwr.app.config] in pyproject.toml from RunConfig's defaults (run after adding a
config field; tests/test_config.py checks they agree)."""

import json
from pathlib import Path

from fedmllm.config import RunConfig

path = Path(__file__).resolve().parents[1] / "pyproject.toml"
text = path.read_text()
head = text[: text.index('model = "tiny"')]
path.write_text(head + "".join(f"{k} = {json.dumps(v)}\n" for k, v in RunConfig().to_dict().items()))
