"""Small things a user notices: the default partition per dataset, progress bars on the model
builds, whole-number round ticks in the plots."""

from __future__ import annotations

import io
import logging
import sys

import matplotlib.pyplot as plt
import pytest
import torch

from conftest import meme
from fedmllm.bench.plots import curves_figure
from fedmllm.config import RunConfig
from fedmllm.data import registry
from fedmllm.data.sample import Sample
from fedmllm.errors import FedmllmError
from fedmllm.evaluation.plots import rounds_figure
from fedmllm.model import tiny, tiny_corpus, tiny_pretrain, train_loop
from fedmllm.model.collate import encode
from fedmllm.scenarios import partition, split
from fedmllm.scenarios.prompts import target_text

# --- partition = "auto" -----------------------------------------------------------------------


def unlabelled(n: int) -> list[Sample]:
    return [Sample(f"v{i}", None, None, "What colour?", "red", task="vqa", answer_type="open") for i in range(n)]


def test_auto_is_the_default_and_means_dirichlet_on_labelled_data():
    samples = [meme(i, None, f"t{i}", i % 2) for i in range(60)]
    cfg = RunConfig(scenario="none")
    assert cfg.partition == "auto"
    auto = split.build(samples, cfg)
    assert auto == split.build(samples, cfg.replace(partition="dirichlet"))
    assert auto == partition.dirichlet(samples, 10, 0.5, 0)


def test_auto_means_iid_on_unlabelled_data():
    samples = unlabelled(25)
    auto = split.build(samples, RunConfig(scenario="none"))
    assert auto == split.build(samples, RunConfig(scenario="none", partition="iid"))
    assert [len(s) for s in auto] == [3] * 5 + [2] * 5  # np.array_split of 25 over 10
    assert sorted(s.id for shard in auto for s in shard) == sorted(s.id for s in samples)


def test_explicit_dirichlet_on_unlabelled_data_stays_an_error():
    with pytest.raises(FedmllmError) as e:
        split.build(unlabelled(25), RunConfig(dataset="vqa_rad", scenario="none", partition="dirichlet"))
    assert str(e.value) == (
        "partition = 'dirichlet': dataset 'vqa_rad' has no class labels for label skew; "
        "use partition = 'iid' (or 'auto', which picks iid for it)"
    )


def test_auto_on_partly_labelled_data_names_the_unlabelled_sample():
    samples = [meme(i, None, f"t{i}", i % 2) for i in range(40)] + unlabelled(1)
    with pytest.raises(FedmllmError, match="sample v0: Dirichlet label skew needs labelled samples"):
        split.build(samples, RunConfig(scenario="none"))


@pytest.mark.parametrize(
    ("dataset", "rule"),
    [("hateful_memes", "dirichlet"), ("crisismmd", "dirichlet"), ("vqa_rad", "iid"), ("slake", "iid"),
     ("medalpaca", "iid")],
)  # fmt: skip
def test_auto_per_dataset_on_its_synthetic_twin(tmp_path, dataset, rule):
    spec = registry.get(dataset)
    folder = spec.write_synthetic(tmp_path / dataset, {"train": 30, "dev": 5, "test": 5}, 0)
    train = registry.load_split(dataset, folder, "train")
    assert split.partition_rule(train, RunConfig(dataset=dataset)) == rule


def test_cross_task_ignores_the_partition_field():
    vqa, qa = unlabelled(30), [Sample(f"q{i}", None, f"q {i}", "Answer", "a", task="qa") for i in range(30)]
    cfg = RunConfig(scenario="cross_task", dataset="vqa_rad")
    assert split.build(vqa, cfg, qa) == split.build(vqa, cfg.replace(partition="iid"), qa)


# --- progress of the model builds ---------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_a_terminal_the_build_logs_every_log_every_steps(monkeypatch, caplog):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    caplog.set_level(logging.INFO, logger="fedmllm.model.train_loop")
    with train_loop.step_progress("build", 250, log_every=100) as report:
        for step in range(250):
            report(step, step / 1000)
    assert [r.getMessage() for r in caplog.records] == [
        "build step 1/250 loss 0.000",
        "build step 101/250 loss 0.100",
        "build step 201/250 loss 0.200",
        "build step 250/250 loss 0.249",
    ]
    assert sys.stderr.getvalue() == ""


def test_on_a_terminal_the_build_shows_a_bar_instead(monkeypatch, caplog):
    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setenv("TERM", "xterm")
    caplog.set_level(logging.INFO, logger="fedmllm.model.train_loop")
    assert train_loop.shows_bar() and not train_loop.shows_bar(quiet=True)
    with train_loop.step_progress("build", 3, log_every=1) as report:
        for step in range(3):
            report(step, 0.25)
    shown = sys.stderr.getvalue()
    assert "build" in shown and "3/3" in shown and "loss 0.250" in shown
    assert caplog.records == []


def test_quiet_means_no_bar_and_the_bench_log_level_keeps_it(monkeypatch, caplog):
    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setenv("TERM", "xterm")
    caplog.set_level(logging.WARNING, logger="fedmllm")  # as `fedmllm bench` without --verbose
    with train_loop.step_progress("build", 3, log_every=1, quiet=True) as report:
        report(2, 0.5)
    assert sys.stderr.getvalue() == "" and caplog.records == []
    with train_loop.step_progress("build", 3, log_every=1) as report:
        report(2, 0.5)
    assert "3/3" in sys.stderr.getvalue() and caplog.records == []


def short_training(tmp_path, quiet: bool) -> tuple[float, dict[str, torch.Tensor]]:
    with train_loop.reproducible(0):
        model, processor = tiny.build(0)
        samples = tiny_pretrain.make_samples(tmp_path, 16, 0, list(tiny_corpus.PRETRAIN_LINES))
        encoded = {s.id: encode(processor, s, target_text(s)) for s in samples}
        loss = train_loop.train_encoded(
            model, processor, samples, encoded, steps=3, batch_size=4, lr=1e-3, seed=0, quiet=quiet
        )
    return loss, {k: v.clone() for k, v in model.state_dict().items()}


def test_the_bar_does_not_change_the_training(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setenv("TERM", "xterm")
    logging.getLogger("fedmllm.model.train_loop").setLevel(logging.INFO)
    try:
        with_bar = short_training(tmp_path / "bar", quiet=False)
        assert "training" in sys.stderr.getvalue() and "3/3" in sys.stderr.getvalue()
        quiet = short_training(tmp_path / "quiet", quiet=True)
    finally:
        logging.getLogger("fedmllm.model.train_loop").setLevel(logging.NOTSET)
    assert with_bar[0] == quiet[0]
    assert with_bar[1].keys() == quiet[1].keys()
    assert all(torch.equal(with_bar[1][k], quiet[1][k]) for k in quiet[1])


# --- whole-number round ticks -------------------------------------------------------------------


def x_tick_labels(fig) -> list[str]:
    """The labels of the x ticks inside the axis' limits, as drawn."""
    fig.canvas.draw()
    (ax,) = fig.axes
    low, high = ax.get_xlim()
    labels = [t.get_text() for t, x in zip(ax.get_xticklabels(), ax.get_xticks(), strict=True) if low <= x <= high]
    plt.close(fig)
    return labels


@pytest.mark.parametrize(("rounds", "ticks"), [(3, "0 1 2 3"), (20, "0 5 10 15 20"), (50, "0 10 20 30 40 50")])
def test_round_plot_ticks_are_whole_rounds(rounds, ticks):
    history = [{"round": r, "auc": 0.5 + r / 100} for r in range(1, rounds + 1)]
    assert " ".join(x_tick_labels(rounds_figure(history, {"auc": 0.5}))) == ticks


@pytest.mark.parametrize(("rounds", "ticks"), [(3, "0 1 2 3"), (20, "0 5 10 15 20"), (50, "0 10 20 30 40 50")])
def test_bench_curves_ticks_are_whole_rounds(rounds, ticks):
    seeds = [[{"round": r, "auc": 0.5 + r / 100 + seed / 1000} for r in range(rounds + 1)] for seed in range(2)]
    assert " ".join(x_tick_labels(curves_figure({"fedavg": seeds}, "auc", "t"))) == ticks
