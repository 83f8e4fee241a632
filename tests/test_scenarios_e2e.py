"""Every scenario federates two rounds end to end on the synthetic twins (real Flower simulation)."""

import json

import pytest

from fedmllm.cli import main

TINY = [
    "--num-clients",
    "4",
    "--clients-per-round",
    "2",
    "--rounds",
    "2",
    "--synthetic-train",
    "96",
    "--synthetic-test",
    "16",
    "--local-steps",
    "2",
    "--no-generate-eval",
]

CASES = {
    "missing": (["--dataset", "hateful_memes", "--scenario", "missing", "--missing-rate", "0.4"], "auc"),
    "cross_modality": (
        ["--dataset", "crisismmd", "--partition", "iid", "--scenario", "cross_modality", "--image-clients", "1"],
        "macro_f1",
    ),
    "hybrid": (
        [
            "--dataset",
            "crisismmd",
            "--partition",
            "iid",
            "--scenario",
            "hybrid",
            "--hybrid-rate",
            "0.4",
            "--prompt-augmentation",
        ],
        "macro_f1",
    ),
    "cross_task": (["--dataset", "vqa_rad", "--scenario", "cross_task", "--ood-dataset", "slake"], "closed_accuracy"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_scenario_federates(tmp_path, name):
    args, metric = CASES[name]
    out = tmp_path / name
    assert main(["run", *TINY, *args, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2 and 0.0 <= summary["final"][metric] <= 1.0
    shards = json.loads((out / "clients" / "summary.json").read_text())
    mixes = [set(row["modalities"]) for row in shards]
    if name == "cross_modality":
        assert sorted(map(sorted, mixes)) == [["image"], ["text"], ["text"], ["text"]]
    if name == "cross_task":
        assert "ood_overall" in summary["final"] and "open_recall" in summary["final"]
    if name in ("cross_modality", "hybrid"):  # per-modality breakdown of the full-modality test items
        assert {"image_only_accuracy", "text_only_accuracy"} <= summary["final"].keys()
