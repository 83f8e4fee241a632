"""End-to-end: the real CLI, Flower's Simulation Engine (Ray), transformers and peft, small."""

import json

import pytest
from peft import PeftModel
from transformers import AutoModelForImageTextToText

from fedmllm.cli import main
from fedmllm.data.synthetic import memes
from fedmllm.model import tiny

SMALL = [
    "--num-clients",
    "4",
    "--clients-per-round",
    "2",
    "--rounds",
    "5",
    "--lr",
    "1e-3",
    "--synthetic-train",
    "1000",
    "--synthetic-test",
    "400",
    "--batch-size",
    "8",
    "--local-steps",
    "12",
    "--client-cpus",
    "1",
]


def run(out, *extra):
    assert main(["run", *SMALL, "--out", str(out), *extra]) == 0
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_federated_run_learns_and_writes_run_folder(tmp_path):
    out = tmp_path / "run"
    summary = run(out)
    zero, final = summary["zero_shot"], summary["final"]
    # the twin's Bayes ceiling bounds what any model can reach (docs/twins.md); 400 test items
    # put the AUC's standard error near 0.025
    assert zero["auc"] + 0.05 < final["auc"] < memes.ceilings()["both"] + 0.05
    assert 0.0 <= final["gen_parse_failure"] <= 1.0
    assert summary["rounds"] == 5 and summary["client_model_loads"] == 1 and summary["server_model_loads"] == 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2, 3, 4, 5] and all(len(r["clients"]) == 2 for r in rows)
    # only LoRA + projector travel: bytes per message = 4 bytes x trainable parameters (+ small headers)
    per_message = rows[0]["bytes_sent"] / 2
    assert summary["trainable_parameters"] * 4 <= per_message < summary["trainable_parameters"] * 4 * 1.05
    assert (out / "metrics.png").stat().st_size > 10_000
    assert "rounds = 5" in (out / "config.toml").read_text()
    assert len(list((out / "clients").glob("client_*.jsonl"))) == 4
    # the adapter loads with plain peft and reproduces the run's final AUC inputs
    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(tiny.ensure()), out / "adapter")
    assert any("lora_A" in n for n, _ in model.named_parameters())

    again = run(tmp_path / "again")  # same seed, same metrics
    rows2 = [json.loads(line) for line in (tmp_path / "again" / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(rows, rows2, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        assert a["auc"] == pytest.approx(b["auc"], abs=1e-6)
    assert again["final"] == pytest.approx(final, abs=1e-6)


@pytest.mark.slow
def test_bad_data_dir_fails_cleanly(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *SMALL, "--out", str(out), "--data-dir", str(tmp_path)]) == 2
    assert "no train.jsonl found" in capsys.readouterr().err
    assert not out.exists()  # nothing half-written for a rerun to trip over


def test_existing_run_folder_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    assert main(["run", "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == "{}"


def test_model_folder_without_config_fails_before_anything_starts(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--model", str(tmp_path)]) == 2
    assert f"{tmp_path}: not a model folder (config.json not found)" in capsys.readouterr().err
    assert not out.exists()
