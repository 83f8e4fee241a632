"""The bench matrix (parsing, expansion, presets) and the report built from cell folders."""

import csv
import json

import pytest

from fedmllm.bench import matrix, report
from fedmllm.bench.runner import DONE, FAILED, cell_record
from fedmllm.cli import main
from fedmllm.errors import FedmllmError

BASE = {
    "algorithms": ["local", "centralized", "fedavg"],
    "strategies": ["none", "prompt_aug", "adaptive_reg", "both"],
    "seeds": [0, 1],
    "settings": {"rounds": 3},
    "scenarios": {"missing": {"scenario": "missing", "missing_rate": [0.3, 0.5]}},
}


def test_expand_skips_adaptive_regularization_without_a_global_model():
    cells = matrix.expand(matrix.parse(BASE, "m.toml"))
    per_column_seed = [(c.algorithm, c.strategy) for c in cells if c.value == 0.3 and c.seed == 0]
    assert per_column_seed == [
        ("local", "none"), ("local", "prompt_aug"), ("centralized", "none"), ("centralized", "prompt_aug"),
        ("fedavg", "none"), ("fedavg", "prompt_aug"), ("fedavg", "adaptive_reg"), ("fedavg", "both"),
    ]  # fmt: skip
    assert len(cells) == 2 * 2 * 8
    both = next(c for c in cells if c.strategy == "both")
    assert both.config.prompt_augmentation and both.config.adaptive_regularization
    assert both.config.missing_rate == 0.3 and both.config.rounds == 3 and both.config.scenario == "missing"


def test_precedence_and_scenario_fixing_the_dataset():
    data = {
        **BASE,
        "algorithms": ["fedavg", "fedadam"],
        "strategies": ["none"],
        "seeds": [4],
        "datasets": ["hateful_memes", "crisismmd"],
        "dataset_settings": {"crisismmd": {"rounds": 7}},
        "algorithm_settings": {"fedadam": {"server-lr": 0.05}},
        "scenarios": {
            "missing": {"scenario": "missing", "missing_rate": [0.5]},
            "cross_task": {"scenario": "cross_task", "dataset": "vqa_rad", "hybrid_rate": [0.3]},
        },
    }
    cells = matrix.expand(matrix.parse(data, "m.toml"))
    assert [(c.dataset, c.algorithm) for c in cells] == [
        ("hateful_memes", "fedavg"), ("hateful_memes", "fedadam"),
        ("crisismmd", "fedavg"), ("crisismmd", "fedadam"),
        ("vqa_rad", "fedavg"), ("vqa_rad", "fedadam"),
    ]  # fmt: skip
    rounds = {c.dataset: c.config.rounds for c in cells}
    assert rounds == {"hateful_memes": 3, "crisismmd": 7, "vqa_rad": 3}
    assert {c.algorithm: c.config.server_lr for c in cells} == {"fedavg": 0.0, "fedadam": 0.05}
    assert all(c.config.seed == 4 for c in cells)
    assert cells[-1].path.as_posix() == "cells/tiny/vqa_rad/cross_task-0.3/fedadam-none-seed4"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"algoritms": ["fedavg"]}, "unknown matrix key 'algoritms'"),
        ({"algorithms": ["fedavgg"]}, "matrix key 'algorithms': 'fedavgg'"),
        ({"strategies": ["prompt"]}, "matrix key 'strategies': 'prompt'"),
        ({"seeds": 3}, "matrix key 'seeds' must be a list"),
        ({"settings": {"rounds": "ten"}}, "config key 'rounds' should be int"),
        ({"settings": {"round": 3}}, "[settings]: unknown config key 'round'"),
        ({"settings": {"algorithm": "fedprox"}}, "'algorithm' is set by the matrix axes"),
        ({"settings": {"rounds": [1, 2]}}, "config key 'rounds' takes one value here"),
        ({"scenarios": {"m": {"missing_rate": [0.1], "dirichlet_alpha": [1.0]}}}, "[scenarios.m]: exactly one key"),
        ({"scenarios": {"m": {"missing_rate": 0.1}}}, "[scenarios.m]: exactly one key"),
        ({"scenarios": {"m": {"missing_rate": [1.5]}}}, "config key 'missing_rate': must be in [0, 1]"),
        ({"scenarios": {}}, "at least one [scenarios.<name>] table"),
        ({"algorithm_settings": {"fedadam": 3}}, "'fedadam' must be a table"),
        ({"dataset_settings": {"memes": {"rounds": 2}}}, "matrix key 'dataset_settings': 'memes'"),
    ],
)
def test_malformed_matrix_names_the_key(change, message):
    with pytest.raises(FedmllmError) as error:
        matrix.parse({**BASE, **change}, "m.toml")
    assert message in str(error.value) and "m.toml" in str(error.value)


def test_malformed_matrix_file_through_the_cli(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('algorithms = ["fedavg"]\n[scenarios.missing]\nmissing_rate = [0.3]\nmissing_rte = 2\n')
    assert main(["bench", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{path} [scenarios.missing]: unknown config key 'missing_rte'" in err
    assert not (tmp_path / "out").exists()


def test_presets_parse_and_have_the_papers_axes():
    paper = matrix.read(matrix.preset_path("paper"))
    assert len(matrix.expand(paper)) == 5184  # the count its header states
    assert set(paper.scenarios) == {"label_skew", "missing", "cross_modality", "hybrid", "cross_task"}
    quick = matrix.read(matrix.preset_path("quick"))
    assert set(quick.scenarios) == set(paper.scenarios)
    assert quick.models == ["tiny"] and all(c.config.data_dir == "" for c in matrix.expand(quick))
    with pytest.raises(FedmllmError, match="unknown preset 'fast'"):
        matrix.preset_path("fast")


def fake_cell(out, cell, final, zero, history=()):
    """A finished cell folder as the runner leaves it (only the files the report reads)."""
    folder = out / cell.path
    folder.mkdir(parents=True)
    summary = {"final": final, "zero_shot": zero, "rounds": 3, "bytes_per_round": 1000.0, "seconds": 12.34}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    (folder / DONE).write_text(json.dumps(cell_record(cell)))


def test_report_tables_by_hand(tmp_path):
    data = {**BASE, "algorithms": ["local", "fedavg", "fedprox"], "strategies": ["none"]}
    m = matrix.parse(data, "m.toml")
    (tmp_path / "matrix.json").write_text(json.dumps(m.to_dict()))
    auc = {  # (algorithm, value, seed) -> final auc; fedprox at 0.5 seed 1 failed
        ("local", 0.3, 0): 0.6, ("local", 0.3, 1): 0.7, ("local", 0.5, 0): 0.5, ("local", 0.5, 1): 0.6,
        ("fedavg", 0.3, 0): 0.9, ("fedavg", 0.3, 1): 0.8, ("fedavg", 0.5, 0): 0.7, ("fedavg", 0.5, 1): 0.8,
        ("fedprox", 0.3, 0): 0.95, ("fedprox", 0.3, 1): 0.95, ("fedprox", 0.5, 0): 0.6,
    }  # fmt: skip
    for cell in matrix.expand(m):
        key = (cell.algorithm, cell.value, cell.seed)
        if key in auc:
            history = [{"round": r, "auc": auc[key] * r / 3} for r in (1, 2, 3)]
            fake_cell(tmp_path, cell, {"auc": auc[key]}, {"auc": 0.5 + cell.seed / 10}, history)
        else:
            (tmp_path / cell.path).mkdir(parents=True)
            (tmp_path / cell.path / FAILED).write_text(json.dumps(cell_record(cell) | {"error": "boom"}))
    counts = report.write_report(tmp_path)
    assert counts == {"cells": 12, "finished": 11, "failed": 1}
    tables = (tmp_path / "tables.md").read_text()
    assert "| method | missing=0.3 | missing=0.5 |" in tables  # the overview: all columns, means only
    assert "| fedavg | 0.850 | 0.750 |" in tables
    assert "| method | 0.3 | 0.5 |" in tables
    assert "| zero-shot | 0.550 ± 0.071 | 0.550 ± 0.071 |" in tables  # zero-shot once per column and seed
    assert "| local | 0.650 ± 0.071 | 0.550 ± 0.071 |" in tables  # a reference row: never bold
    assert "| fedavg | 0.850 ± 0.071 | **0.750 ± 0.071** |" in tables
    assert "| fedprox | **0.950 ± 0.000** | 0.600 |" in tables  # one seed: no ± shown
    assert "fedprox-none-seed1`: boom" in tables
    with (tmp_path / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 11 + 4  # 11 finished cells, zero-shot for 2 values x 2 seeds
    first = rows[0]
    assert first["algorithm"] == "local" and first["metric"] == "auc" and float(first["value"]) == 0.6
    assert (first["rounds"], first["bytes"], first["seconds"]) == ("3", "3000", "12.3")
    assert json.loads((tmp_path / "results.json").read_text())["failed"][0]["error"] == "boom"
    assert (tmp_path / "plots" / "tiny" / "hateful_memes" / "missing.png").stat().st_size > 0
    assert (tmp_path / "plots" / "tiny" / "hateful_memes" / "missing-0.5-rounds.png").stat().st_size > 0
    before = tables
    report.write_report(tmp_path)
    assert (tmp_path / "tables.md").read_text() == before


def test_report_on_a_folder_that_is_not_a_bench(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a bench folder (no matrix.json" in capsys.readouterr().err


def test_shipped_benchmark_matrices_parse():
    from pathlib import Path

    folder = Path(__file__).parent.parent / "benchmarks"
    counts = {p.name: len(matrix.expand(matrix.read(p))) for p in sorted(folder.glob("*.toml"))}
    expected = {"algorithms.toml": 15, "scenario_sweep.toml": 12, "update_dtype.toml": 9, "group_by_length.toml": 6}
    assert counts == expected
