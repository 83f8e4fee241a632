from collections import Counter
from pathlib import Path

import pytest

from conftest import meme
from fedmllm.config import PROMPT_VARIANTS, RunConfig
from fedmllm.data.sample import Sample
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


def test_prompts_name_modalities_unless_augmented(tmp_path):
    full = meme(1, tmp_path / "a.png", "so lovely", 1)
    assert "Based on the image and the text, is this meme hateful?" in prompts.user_text(full)
    assert "Based on the image, " in prompts.user_text(full.drop(text=True))
    assert 'Text: "so lovely"' in prompts.user_text(full.drop(image=True))
    assert prompts.user_text(full.drop(image=True, text=True)).startswith("Is this meme hateful?")
    augmented = {
        prompts.user_text(s, "augmented").split("\n")[-3] for s in (full, full.drop(text=True), full.drop(image=True))
    }
    assert augmented == {"Is this meme hateful, without considering the modality?"}
    assert prompts.target_text(full) == "(B) hateful"


def test_augmented_prompt_places_the_phrase_as_the_authors():
    """On the instruction line and the question, never on the answer line."""
    full = meme(1, None, "so lovely", 1)
    assert prompts.user_text(full, "augmented").split("\n") == [
        "Select the best answer to the following multiple-choice question, without considering the modality.",
        'Text: "so lovely"',
        "Is this meme hateful, without considering the modality?",
        "Options: (A) not-hateful (B) hateful",
        "Answer with the option letter.",
    ]
    assert prompts.user_text(full, "augmented_answer_line").split("\n") == [
        'Text: "so lovely"',
        "Is this meme hateful, without considering the modality?",
        "Options: (A) not-hateful (B) hateful",
        "Answer with the option letter., without considering the modality.",
    ]
    vqa = Sample("v", None, None, "Is there a mass?", "yes", task="vqa")
    assert prompts.user_text(vqa, "augmented").split("\n") == [
        "Answer the following question, without considering the modality.",
        "Is there a mass, without considering the modality?",
        "Answer with a single word or phrase.",
    ]


def test_full_modality_prompt_names_both_modalities_for_every_sample(tmp_path):
    full = meme(1, tmp_path / "a.png", "so lovely", 1)
    for s in (full, full.drop(text=True), full.drop(image=True), full.drop(True, True)):
        assert "Based on the image and the text, is this meme hateful?" in prompts.user_text(s, "full_modality")
    assert prompts.user_text(full, "full_modality") == prompts.user_text(full, "modality")


def test_prompt_variants_agree_with_the_config_and_unknown_ones_stop():
    assert ("auto", *prompts.VARIANTS) == PROMPT_VARIANTS
    with pytest.raises(FedmllmError, match="unknown prompt variant 'agnostic'"):
        prompts.user_text(meme(1, None, "t", 0), "agnostic")


def test_prompt_vocabulary_is_unchanged():
    """The tiny model's frozen corpus holds these strings (its tokenizer and pretraining learned
    them): the prompts must keep using exactly them."""
    from fedmllm.model.tiny_corpus import PROMPT_LINES

    assert (
        prompts.vocabulary()
        == list(PROMPT_LINES)
        == [
            "Based on the image and the text, ",
            "Based on the image, ",
            "Based on the text, ",
            "",
            ", without considering the modality",
            "Answer with the option letter.",
            "Answer with a single word or phrase.",
            "Options: ",
            'Text: "',
        ]
    )


def test_docs_show_the_exact_prompts():
    """docs/prompts.md holds user_text's real output for each variant and modality mix."""
    from fedmllm.data.hateful_memes import OPTIONS, QUESTION

    doc = (Path(__file__).resolve().parents[1] / "docs" / "prompts.md").read_text()
    full = Sample("42", Path("img/42.png"), "a picture of my dog on the beach", QUESTION, "hateful", OPTIONS, 1)
    mixes = {
        "image+text": full,
        "image": full.drop(text=True),
        "text": full.drop(image=True),
        "none": full.drop(True, True),
    }
    for variant in prompts.VARIANTS:
        section = doc.split(f"### `{variant}`\n")[1].split("\n### ")[0]
        for mix, sample in mixes.items():
            assert f"{mix}:\n```text\n{prompts.user_text(sample, variant)}\n```" in section, (variant, mix)
