"""The bench matrix (parsing, expansion, presets) and the report built from cell folders."""

import csv
import json

import pytest

from fedmllm.bench import matrix, report, stats, tuning
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
    for name, cells in (("quick", 60), ("standard", 360)):  # the counts their headers state
        laptop = matrix.read(matrix.preset_path(name))
        assert len(matrix.expand(laptop)) == cells and len(laptop.seeds) >= 3
        assert set(laptop.scenarios) == set(paper.scenarios) - {"cross_task"}
        assert laptop.models == ["tiny"] and all(c.config.data_dir == "" for c in matrix.expand(laptop))
        assert all(c.config.synthetic_test >= 1000 for c in matrix.expand(laptop))
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
    # mean ± t(1) * sd / sqrt(2): sd(0.9, 0.8) = 0.0707, so 12.706 * 0.05 = 0.635
    assert "| method | missing=0.3 | missing=0.5 |" in tables  # the overview: all columns
    assert "| fedavg | 0.850 ± 0.635 (n=2) | **0.750 ± 0.635 (n=2)** |" in tables
    assert "| method | 0.3 | 0.5 |" in tables
    assert "| zero-shot | 0.550 ± 0.635 (n=2) | 0.550 ± 0.635 (n=2) |" in tables  # once per column and seed
    assert "| local | 0.650 ± 0.635 (n=2) | 0.550 ± 0.635 (n=2) |" in tables  # a reference row: never bold
    # fedprox - fedavg at 0.3: +0.05, +0.15 -> 0.10 ± 0.635 includes 0: no dagger; one seed: no ±
    assert "| fedprox | **0.950 ± 0.000 (n=2)** | 0.600 (n=1) |" in tables
    assert "fedprox-none-seed1`: boom" in tables
    with (tmp_path / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 11 + 4  # 11 finished cells, zero-shot for 2 values x 2 seeds
    first = rows[0]
    assert first["algorithm"] == "local" and first["metric"] == "auc" and float(first["value"]) == 0.6
    assert (first["rounds"], first["bytes"], first["seconds"]) == ("3", "3000", "12.3")
    assert (first["phase"], first["eval_split"]) == ("main", "test")  # no [tuning]: no grid-key columns
    assert list(first)[-2:] == ["phase", "eval_split"]
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
    expected = {
        "algorithms.toml": 15, "scenario_sweep.toml": 12, "update_dtype.toml": 9, "group_by_length.toml": 6,
        "strategies_mu.toml": 12, "prompt_variants.toml": 12, "robust_attacks.toml": 28,
    }  # fmt: skip
    assert counts == expected


# statistics: 95% CIs over seeds and the paired comparison with FedAvg


def test_t_quantiles_and_intervals_by_hand():
    assert (stats.t95(1), stats.t95(2), stats.t95(30), stats.t95(31), stats.t95(200)) == (
        12.706, 4.303, 2.042, 1.96, 1.96
    )  # fmt: skip
    iv = stats.mean_ci([0.7, 0.8, 0.9])  # sd 0.1: 4.303 * 0.1 / sqrt(3) = 0.24844
    assert (iv.mean, iv.n) == (pytest.approx(0.8), 3) and iv.half == pytest.approx(0.248434, abs=1e-6)
    assert stats.mean_ci([0.6]) == stats.Interval(0.6, None, 1)
    # paired on the shared seeds only (seed 2 has no reference): diffs 0.10, 0.11 -> 0.105 ± 12.706 * 0.005
    diff = stats.paired_difference({0: 0.9, 1: 0.81, 2: 0.5}, {0: 0.8, 1: 0.7, 3: 0.1})
    assert diff.n == 2 and diff.mean == pytest.approx(0.105) and diff.half == pytest.approx(0.06353, abs=1e-5)
    assert diff.excludes_zero  # 0.105 > 0.0635
    assert stats.paired_difference({0: 0.9}, {1: 0.8}) is None


def rows_of(values: dict[tuple[str, str, int], float], metric="auc", column=0.3):
    """Long-format rows as collect() makes them: (algorithm, strategy, seed) -> value."""
    base = {"model": "tiny", "dataset": "hateful_memes", "scenario": "missing", "scenario_value": column}
    return [
        base | {"algorithm": a, "strategy": s, "seed": k, "metric": metric, "value": v}
        for (a, s, k), v in values.items()
    ]


def test_daggers_mark_rows_whose_paired_difference_from_fedavg_excludes_zero():
    m = matrix.parse({**BASE, "algorithms": ["local", "fedavg", "fedprox", "fedadam"], "seeds": [0, 1, 2]}, "m.toml")
    rows = rows_of({
        ("local", "none", 0): 0.60, ("local", "none", 1): 0.90, ("local", "none", 2): 0.95,
        ("fedavg", "none", 0): 0.80, ("fedavg", "none", 1): 0.70, ("fedavg", "none", 2): 0.75,
        # diffs +0.10, +0.11, +0.11: mean 0.10667, sd 0.005774, 4.303 * 0.005774 / sqrt(3) = 0.01434
        ("fedprox", "none", 0): 0.90, ("fedprox", "none", 1): 0.81, ("fedprox", "none", 2): 0.86,
        # diffs +0.05, -0.10, +0.05: mean 0, never excludes 0
        ("fedadam", "none", 0): 0.85, ("fedadam", "none", 1): 0.60, ("fedadam", "none", 2): 0.80,
        # diffs -0.20, -0.10 on the 2 shared seeds (seed 2 failed): -0.15 ± 12.706 * 0.05 = 0.635
        ("fedavg", "prompt_aug", 0): 0.60, ("fedavg", "prompt_aug", 1): 0.60,
        # diffs -0.30, -0.20, -0.25: mean -0.25, sd 0.05, 4.303 * 0.05 / sqrt(3) = 0.1242 -> excludes 0
        ("fedavg", "both", 0): 0.50, ("fedavg", "both", 1): 0.50, ("fedavg", "both", 2): 0.50,
    })  # fmt: skip
    tables = report.markdown(m, rows, [], cells=99, finished=14)
    assert "| fedavg | 0.750 ± 0.124 (n=3) |" in tables  # sd 0.05: 4.303 * 0.05 / sqrt(3) = 0.1242
    assert "| fedprox | **0.857 ± 0.112 (n=3)** † |" in tables  # sd 0.04509 -> 0.1120; best and marked
    assert "| fedadam | 0.750 ± 0.329 (n=3) |" in tables  # no mark
    assert "| fedavg + prompt_aug | 0.600 ± 0.000 (n=2) |" in tables  # CI of the diff includes 0
    assert "| fedavg + both | 0.500 ± 0.000 (n=3) † |" in tables  # worse, and surely so
    assert "| local | 0.817 ± 0.470 (n=3) |" in tables  # sd 0.1893; a reference row: never marked nor bold
    assert "- † : the row's difference from FedAvg (strategy none) in the same column, paired by seed" in tables
    assert "(t = 12.71 for n = 2, 4.30 for n = 3" in tables
    without_fedavg = [r for r in rows if not (r["algorithm"] == "fedavg" and r["strategy"] == "none")]
    assert "†" not in report.markdown(m, without_fedavg, [], cells=99, finished=11).split("\n\n", 3)[-1]


def test_tables_skip_metrics_the_runs_did_not_produce():
    m = matrix.parse(BASE, "m.toml")
    with_generation = rows_of({("fedavg", "none", 0): 0.7}) + rows_of({("fedavg", "none", 0): 0.6}, metric="gen_auc")
    with_generation += rows_of({("fedavg", "none", 0): 0.65}, metric="accuracy")
    assert report.table_metrics(m, "hateful_memes", with_generation) == ["auc", "accuracy", "gen_auc"]
    assert report.table_metrics(m, "hateful_memes", with_generation[:1]) == ["auc"]  # generate_eval off
    tables = report.markdown(m, with_generation, [], cells=1, finished=1)
    assert "missing (missing_rate) — gen_auc, n ≤ 1" in tables


# tuning: the grid in the matrix, the choice, the cells that run with it

TUNED = {
    **BASE,
    "algorithms": ["local", "fedavg", "fedadam"],
    "strategies": ["none", "prompt_aug"],
    "seeds": [3, 4],
    "tuning": {
        "grid": {"fedadam": {"server_lr": [1e-3, 1e-2, 1e-1]}, "fedavg": {"lr": [1e-4, 1e-3], "server-lr": [0.5, 1]}},
    },
}


def test_tuning_cells_score_the_dev_split_on_the_first_column():
    m = matrix.parse(TUNED, "m.toml")
    assert (m.tuning.seeds, m.tuning.scenario, m.tuning.metric_for("hateful_memes")) == ([3], "missing", "auc")
    grid = matrix.expand_tuning(m)
    assert [(c.algorithm, c.point) for c in grid] == [
        ("fedavg", (("lr", 1e-4), ("server_lr", 0.5))), ("fedavg", (("lr", 1e-4), ("server_lr", 1.0))),
        ("fedavg", (("lr", 1e-3), ("server_lr", 0.5))), ("fedavg", (("lr", 1e-3), ("server_lr", 1.0))),
        ("fedadam", (("server_lr", 1e-3),)), ("fedadam", (("server_lr", 1e-2),)), ("fedadam", (("server_lr", 1e-1),)),
    ]  # fmt: skip
    assert all(c.config.eval_split == "dev" and c.config.missing_rate == 0.3 and c.seed == 3 for c in grid)
    assert all(c.strategy == "none" and not c.config.prompt_augmentation for c in grid)
    assert grid[1].config.lr == 1e-4 and grid[1].config.server_lr == 1.0
    assert grid[1].path.as_posix() == "tuning/tiny/hateful_memes/missing-0.3/fedavg-lr=0.0001,server_lr=1.0-seed3"
    assert all(c.config.eval_split == "test" for c in matrix.expand(m))
    # chosen values override algorithm_settings, for every column and strategy of that key only
    m2 = matrix.parse({**TUNED, "algorithm_settings": {"fedadam": {"server_lr": 0.05, "tau": 0.01}}}, "m.toml")
    cells = matrix.expand(m2, {("tiny", "hateful_memes", "fedadam"): {"server_lr": 0.1}})
    adam = [c for c in cells if c.algorithm == "fedadam"]
    assert len(adam) == 2 * 2 * 2 and all(c.config.server_lr == 0.1 and c.config.tau == 0.01 for c in adam)
    assert all(c.config.server_lr == 0.0 for c in cells if c.algorithm == "fedavg")
    assert matrix.parse(m2.to_dict(), "matrix.json").tuning == m2.tuning  # matrix.json round trip


@pytest.mark.parametrize(
    ("tuning", "message"),
    [
        ({"grid": {"fedadam": {"server_rl": [0.1]}}}, "m.toml [tuning.grid.fedadam]: unknown config key 'server_rl'"),
        ({"grid": {"fedadam": {"server_lr": 0.1}}}, "[tuning.grid.fedadam]: 'server_lr' must be a non-empty list"),
        ({"grid": {"fedadam": {"server_lr": []}}}, "[tuning.grid.fedadam]: 'server_lr' must be a non-empty list"),
        ({"grid": {"fedadam": {"server_lr": ["big"]}}}, "config key 'server_lr' should be float, got str"),
        (
            {"grid": {"fedyogi": {"server_lr": [0.1]}}},
            "[tuning.grid.fedyogi]: algorithm 'fedyogi' is not in the matrix",
        ),
        ({"grid": {"fedadam": {"seed": [1, 2]}}}, "[tuning.grid.fedadam]: 'seed' is set by the matrix axes"),
        ({"grid": {"fedadam": {"missing_rate": [0.1]}}}, "'missing_rate' is a scenario's swept key"),
        ({"grid": {"fedadam": {}}}, "[tuning.grid.fedadam]: empty grid"),
        ({"grid": {}}, "[tuning]: needs at least one [tuning.grid.<algorithm>]"),
        ({"grid": {"fedadam": {"lr": [1e-3]}}, "seed": [0]}, "[tuning]: unknown key 'seed'"),
        ({"grid": {"fedadam": {"lr": [1e-3]}}, "seeds": 0}, "[tuning]: matrix key 'seeds' must be a list"),
        ({"grid": {"fedadam": {"lr": [1e-3]}}, "scenario": "hybrid"}, "'scenario' 'hybrid' is not one of the"),
        ({"grid": {"fedadam": {"lr": [1e-3]}}, "metric": 3}, "[tuning]: 'metric' must be a metric name"),
    ],
)
def test_malformed_tuning_names_the_key(tuning, message):
    with pytest.raises(FedmllmError) as error:
        matrix.parse({**BASE, "algorithms": ["fedavg", "fedadam"], "tuning": tuning}, "m.toml")
    assert message in str(error.value) and "m.toml" in str(error.value)


def test_tuning_refuses_a_dataset_without_a_dev_split_and_eval_split_in_tables():
    data = {**BASE, "datasets": ["vqa_rad"], "tuning": {"grid": {"fedavg": {"lr": [1e-3]}}}}
    with pytest.raises(FedmllmError, match="tuning cell .*config key 'eval_split': dataset 'vqa_rad' has no dev"):
        matrix.parse(data, "m.toml")
    with pytest.raises(FedmllmError, match=r"\[settings\]: 'eval_split' is set by the bench"):
        matrix.parse({**BASE, "settings": {"eval_split": "dev"}}, "m.toml")


def grid_score(point, scores, missing=()):
    return tuning.GridScore(point, dict(enumerate(scores)), list(missing))


def test_choose_the_best_mean_dev_score_first_on_ties():
    lrs = [(("server_lr", v),) for v in (1e-3, 1e-2, 1e-1)]
    assert (
        tuning.choose([grid_score(lrs[0], [0.5, 0.7]), grid_score(lrs[1], [0.8, 0.7]), grid_score(lrs[2], [0.9, 0.5])])
        == 1
    )
    assert tuning.choose([grid_score(lrs[0], [0.6]), grid_score(lrs[1], [0.7]), grid_score(lrs[2], [0.7])]) == 1
    assert tuning.choose([grid_score(lrs[0], [0.75, 0.65]), grid_score(lrs[1], [0.7, 0.7])]) == 0  # means equal
    assert tuning.choose([grid_score(lrs[0], [0.6]), grid_score(lrs[1], [0.9], missing=[1])]) is None
    assert tuning.choose([]) is None


def fake_tuning_cell(out, cell, auc, split="dev"):
    folder = out / cell.path
    folder.mkdir(parents=True)
    summary = {"final": {"auc": auc, "accuracy": 0.5}, "zero_shot": {"auc": 0.5}, "eval_split": split}
    summary |= {"rounds": 3, "bytes_per_round": 10.0, "seconds": 1.0}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / DONE).write_text(json.dumps(cell_record(cell)))


def test_report_of_a_tuned_bench(tmp_path):
    data = {**TUNED, "algorithms": ["fedavg", "fedadam"], "strategies": ["none"], "seeds": [0, 1]}
    data["tuning"] = {"seeds": [0, 1], "grid": {"fedadam": {"server_lr": [1e-3, 1e-2, 1e-1]}}}
    m = matrix.parse(data, "m.toml")
    (tmp_path / "matrix.json").write_text(json.dumps(m.to_dict()))
    dev = {(1e-3, 0): 0.55, (1e-3, 1): 0.65, (1e-2, 0): 0.70, (1e-2, 1): 0.74, (1e-1, 0): 0.80, (1e-1, 1): 0.60}
    grid = matrix.expand_tuning(m)
    for cell in grid[:-1]:  # the last grid cell (server_lr 0.1, seed 1) has not run
        fake_tuning_cell(tmp_path, cell, dev[cell.point[0][1], cell.seed])
    found = tuning.choices(m, tmp_path)
    assert found[0].chosen is None and tuning.waiting(found) == {("tiny", "hateful_memes", "fedadam")}
    counts = report.write_report(tmp_path)
    assert counts["waiting"] == 4 and counts["tuning_finished"] == 5  # fedadam: 2 columns x 2 seeds
    assert "Grid unfinished, so no choice and no cells yet: fedadam." in (tmp_path / "tables.md").read_text()

    fake_tuning_cell(tmp_path, grid[-1], dev[1e-1, 1])  # means 0.60, 0.72, 0.70: 1e-2 wins
    found = tuning.choices(m, tmp_path)
    assert found[0].chosen == 1 and tuning.tuned(found) == {("tiny", "hateful_memes", "fedadam"): {"server_lr": 0.01}}
    cells = matrix.expand(m, tuning.tuned(found))
    for cell in cells:
        value = 0.8 if cell.algorithm == "fedadam" else 0.7
        fake_cell(tmp_path, cell, {"auc": value + cell.seed / 100}, {"auc": 0.5}, [{"round": 3, "auc": value}])
    counts = report.write_report(tmp_path)
    assert counts == {"cells": 8, "finished": 8, "failed": 0, "tuning_cells": 6, "tuning_finished": 6, "waiting": 0}
    tables = (tmp_path / "tables.md").read_text()
    assert tables.index("## Tuning") < tables.index("## Overview")
    assert "### tiny · hateful_memes — dev auc" in tables
    assert "| fedadam | 0.001 | 0.600 ± 0.635 (n=2) |  |" in tables
    assert "| fedadam | 0.01 | 0.720 ± 0.254 (n=2) | ✓ |" in tables  # sd 0.02828 * 12.706 / sqrt(2)
    assert "| fedadam | 0.1 | 0.700 ± 1.271 (n=2) |  |" in tables
    # fedadam - fedavg: +0.10 on both seeds, an interval of width ~0: marked
    assert "| fedadam | **0.805 ± 0.064 (n=2)** † |" in tables
    with (tmp_path / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    grid_rows = [r for r in rows if r["phase"] == "tuning"]
    assert len(grid_rows) == 6 * 2 and {r["eval_split"] for r in grid_rows} == {"dev"}
    assert [(r["server_lr"], r["seed"], r["value"]) for r in grid_rows if r["metric"] == "auc"][:2] == [
        ("0.001", "0", "0.55"), ("0.001", "1", "0.65")
    ]  # fmt: skip
    adam = [r for r in rows if r["phase"] == "main" and r["algorithm"] == "fedadam"]
    assert {r["server_lr"] for r in adam} == {"0.01"} and {r["eval_split"] for r in adam} == {"test"}
    assert {r["server_lr"] for r in rows if r["algorithm"] in ("fedavg", "zero-shot")} == {""}
    saved = json.loads((tmp_path / "tuning.json").read_text())
    assert saved["choices"][0]["chosen"] == {"server_lr": 0.01} and saved["scenario_value"] == 0.3
    assert saved["choices"][0]["points"][1]["scores"] == [{"seed": 0, "value": 0.7}, {"seed": 1, "value": 0.74}]
    before = (tables, (tmp_path / "results.csv").read_text(), (tmp_path / "tuning.json").read_text())
    report.write_report(tmp_path)
    after = (tmp_path / "tables.md").read_text(), (tmp_path / "results.csv").read_text()
    assert after + ((tmp_path / "tuning.json").read_text(),) == before


def test_a_tuning_cell_that_scored_test_is_refused(tmp_path):
    m = matrix.parse({**BASE, "algorithms": ["fedavg"], "tuning": {"grid": {"fedavg": {"lr": [1e-3]}}}}, "m.toml")
    fake_tuning_cell(tmp_path, matrix.expand_tuning(m)[0], 0.7, split="test")
    with pytest.raises(FedmllmError, match="a tuning cell must score the dev split, it scored 'test'"):
        tuning.choices(m, tmp_path)


def test_prompt_variant_sweep_pairs_variants_with_their_strategy():
    data = {**BASE, "algorithms": ["fedavg"], "strategies": ["none", "prompt_aug"], "seeds": [0]}
    data["scenarios"] = {
        "prompt": {"prompt_variant": ["modality", "augmented_answer_line", "full_modality", "augmented"]}
    }
    cells = matrix.expand(matrix.parse(data, "m.toml"))
    assert [(c.value, c.strategy) for c in cells] == [
        ("modality", "none"), ("augmented_answer_line", "prompt_aug"),
        ("full_modality", "none"), ("augmented", "prompt_aug"),
    ]  # fmt: skip
    assert [c.config.prompt_form for c in cells] == [c.value for c in cells]
    from fedmllm.config import PROMPT_VARIANTS, RunConfig

    for variant in PROMPT_VARIANTS[1:]:  # matrix.AUGMENTED_VARIANTS agrees with RunConfig's rule
        assert RunConfig(prompt_variant=variant, prompt_augmentation=variant in matrix.AUGMENTED_VARIANTS)
    with pytest.raises(FedmllmError, match=r"\[scenarios.prompt\]: prompt_variant = 'augmented_answer_line' gives no"):
        matrix.parse({**data, "strategies": ["none"]}, "m.toml")
