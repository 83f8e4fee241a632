"""Properties of the heterogeneity scenarios (the paper's §4)."""

import random

import pytest
from sklearn.metrics import f1_score, roc_auc_score

from conftest import meme
from fedmllm.config import RunConfig
from fedmllm.data.sample import Sample
from fedmllm.errors import FedmllmError
from fedmllm.evaluation import metrics
from fedmllm.evaluation.vqa import normalise, token_recall, vqa_scores
from fedmllm.scenarios import modality, partition, prompts, split


def full(n, tmp_path, labels=2):
    return [meme(i, tmp_path / f"{i}.png", f"t{i}", i % labels) for i in range(n)]


def test_iid_sizes_sum_and_balance(tmp_path):
    shards = partition.iid(full(103, tmp_path), 10, seed=0)
    assert sum(map(len, shards)) == 103 and {len(s) for s in shards} == {10, 11}
    assert sorted(s.id for sh in shards for s in sh) == sorted(str(i) for i in range(103))


def test_cross_modality_k_is_exact(tmp_path):
    for k in (3, 5, 7):
        cfg = RunConfig(scenario="cross_modality", image_clients=k, partition="iid")
        shards = split.build(full(200, tmp_path), cfg)
        kinds = [{s.modality for s in shard} for shard in shards]
        assert kinds.count({"image"}) == k and kinds.count({"text"}) == 10 - k


def test_hybrid_presence_reproducible_and_never_empty():
    a = modality.presence_hybrid(1000, 0.4, seed=3)
    assert a == modality.presence_hybrid(1000, 0.4, seed=3)
    assert a != modality.presence_hybrid(1000, 0.4, seed=4)
    assert all(img or txt for img, txt in a)
    # P(no image) = q minus the empty clients handed an image: q - q^2/2 = 0.32 for q = 0.4
    assert sum(not img for img, _ in a) / 1000 == pytest.approx(0.32, abs=0.04)


def test_hybrid_clients_hold_one_modality_mix_each(tmp_path):
    cfg = RunConfig(scenario="hybrid", hybrid_rate=0.4, partition="iid")
    shards = split.build(full(200, tmp_path), cfg)
    presence = modality.presence_hybrid(10, 0.4, cfg.seed + 1)
    for shard, (img, txt) in zip(shards, presence, strict=True):
        assert {s.modality for s in shard} == {"image+text" if img and txt else "image" if img else "text"}


def test_cross_task_gives_image_task_and_text_task(tmp_path):
    vqa = [
        Sample(f"v{i}", tmp_path / "x.png", None, "What colour?", "red", task="vqa", answer_type="open")
        for i in range(50)
    ]
    qa = [Sample(f"q{i}", None, f"question {i}", "Answer this question truthfully", "a", task="qa") for i in range(40)]
    cfg = RunConfig(scenario="cross_task", hybrid_rate=0.4)
    shards = split.build(vqa, cfg, qa)
    presence = modality.presence_hybrid(10, 0.4, cfg.seed + 1)
    for shard, (img, txt) in zip(shards, presence, strict=True):
        assert any(s.task == "vqa" for s in shard) == img and any(s.task == "qa" for s in shard) == txt
    assert sum(map(len, shards)) == 90


def test_dirichlet_refuses_unlabelled_data(tmp_path):
    vqa = [Sample(f"v{i}", tmp_path / "x.png", None, "q", "a", task="vqa") for i in range(50)]
    with pytest.raises(
        FedmllmError, match="dataset 'hateful_memes' has no class labels for label skew; use partition = 'iid'"
    ):
        split.build(vqa, RunConfig(scenario="none", partition="dirichlet"))


def test_prompt_augmentation_yields_one_instruction_form(tmp_path):
    samples = [s for x in full(8, tmp_path) for s in (x, x.drop(image=True), x.drop(text=True), x.drop(True, True))]
    forms = {prompts.user_text(s, "augmented").split("\n")[-3] for s in samples}
    assert forms == {"Is this meme hateful, without considering the modality?"}
    aware = {prompts.user_text(s).split("\n")[-3] for s in samples}
    assert len(aware) == 4


def test_vqa_prompt_and_metrics():
    s = Sample("1", None, None, "Is there a mass?", "yes", task="vqa", answer_type="closed")
    assert prompts.user_text(s).endswith("Answer with a single word or phrase.")
    assert normalise("The  Left lung.") == "left lung"
    assert token_recall("left upper lobe", "the left lobe") == 1.0
    assert token_recall("right", "left lobe") == 0.0
    scores = vqa_scores(
        ["Yes", "no", "left lung", "kidney"], ["yes", "yes", "left lobe", "liver"], ["closed", "closed", "open", "open"]
    )
    assert scores == pytest.approx({"closed_accuracy": 0.5, "open_recall": 0.25, "overall": (1 + 0.5) / 4})


def test_metrics_match_scikit_learn():
    rng = random.Random(0)
    y = [rng.randrange(2) for _ in range(300)]
    score = [round(rng.random(), 2) for _ in range(300)]  # rounded: plenty of ties
    assert metrics.roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    y8 = [rng.randrange(8) for _ in range(300)]
    p8 = [rng.randrange(8) for _ in range(300)]
    assert metrics.macro_f1(y8, p8, 8) == pytest.approx(f1_score(y8, p8, average="macro"), abs=1e-12)
