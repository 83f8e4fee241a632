from collections import Counter

import pytest

from conftest import meme
from fedmllm.config import RunConfig
from fedmllm.errors import FedmllmError
from fedmllm.scenarios import modality, partition, prompts, split


def labelled(n_per_label: int, labels: int = 2):
    return [meme(i, None, f"t{i}", i % labels) for i in range(n_per_label * labels)]


def test_dirichlet_every_client_every_label_and_no_loss():
    samples = labelled(100)
    shards = partition.dirichlet(samples, 10, 0.5, seed=0)
    assert sorted(s.id for shard in shards for s in shard) == sorted(s.id for s in samples)
    assert all({s.label for s in shard} == {0, 1} for shard in shards)


def test_dirichlet_is_seeded_and_alpha_controls_skew():
    samples = labelled(500)
    assert partition.dirichlet(samples, 10, 0.5, 1) == partition.dirichlet(samples, 10, 0.5, 1)

    def skew(alpha):  # mean |share of label 1 - 0.5| over clients
        shards = partition.dirichlet(samples, 10, alpha, 2)
        return sum(abs(sum(s.label for s in sh) / len(sh) - 0.5) for sh in shards) / 10

    assert skew(0.1) > skew(100.0) + 0.1


def test_dirichlet_needs_enough_samples_per_label():
    with pytest.raises(FedmllmError, match="label 1 has 3 samples, fewer than num_clients=10"):
        partition.dirichlet(
            [meme(i, None, "t", 0) for i in range(20)] + [meme(i, None, "t", 1) for i in range(3)], 10, 0.5, 0
        )


def test_missing_modality_rates(tmp_path):
    img = tmp_path / "x.png"
    samples = [meme(i, img, "text", 0) for i in range(4000)]
    (out,) = modality.missing([samples], 0.3, seed=0)
    counts = Counter(s.modality for s in out)
    assert sum(s.image is None for s in out) / 4000 == pytest.approx(0.3, abs=0.03)
    assert sum(s.text is None for s in out) / 4000 == pytest.approx(0.3, abs=0.03)
    assert counts["none"] / 4000 == pytest.approx(0.09, abs=0.02)  # both lost: 0.3 * 0.3


def test_shards_round_trip_through_files(tmp_path):
    cfg = RunConfig(num_clients=4, missing_rate=0.5)
    shards = split.build([meme(i, tmp_path / f"{i}.png", f"t{i}", i % 2) for i in range(40)], cfg)
    split.write(shards, tmp_path / "clients")
    assert [split.read(split.shard_path(tmp_path / "clients", k)) for k in range(4)] == shards
    described = split.describe(shards)
    assert sum(d["samples"] for d in described) == 40


def test_prompts_name_modalities_unless_agnostic(tmp_path):
    full = meme(1, tmp_path / "a.png", "so lovely", 1)
    assert "Based on the image and the text, is this meme hateful?" in prompts.user_text(full)
    assert "Based on the image, " in prompts.user_text(full.drop(text=True))
    assert 'Text: "so lovely"' in prompts.user_text(full.drop(image=True))
    assert prompts.user_text(full.drop(image=True, text=True)).startswith("Is this meme hateful?")
    agnostic = {
        prompts.user_text(s, agnostic=True).split("\n")[-3] for s in (full, full.drop(text=True), full.drop(image=True))
    }
    assert agnostic == {"Is this meme hateful, without considering the modality?"}
    assert prompts.target_text(full) == "(B) hateful"
