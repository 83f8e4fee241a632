"""The synthetic twins' label rules: exact ceilings in their target ranges, the published files
following the rule at its stated rates, determinism, and the versioned cache folder."""

import json
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedmllm.data import crisismmd, hateful_memes, registry, vqa_rad
from fedmllm.data.synthetic import crisis, medvqa, memes

PALETTE = {**memes.WARM, **memes.COOL}


def shape_colour(path: Path) -> str:
    """The palette colour nearest the mean of the shape's saturated pixels (exact even on 16-pixel JPEGs)."""
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"), dtype=np.float64).reshape(-1, 3)
    mean = pixels[pixels.max(1) - pixels.min(1) > 80].mean(0)
    return min(PALETTE, key=lambda c: float(((np.array(PALETTE[c]) - mean) ** 2).sum()))


def assert_rate(hits: int, n: int, p: float) -> None:
    """`hits` of `n` within 4 binomial standard errors of probability `p` (a false alarm ~6e-5)."""
    assert n > 100
    assert abs(hits / n - p) <= 4 * math.sqrt(p * (1 - p) / n), (hits, n, p)


# --- ceilings, exact ---------------------------------------------------------------------------


def test_discrete_auc_counts_ties_half():
    # one positive-only and one negative-only cell: the score separates them, or ties them
    assert memes.discrete_auc([(0.5, 1.0, 2.0), (0.5, 0.0, 1.0)]) == 1.0
    assert memes.discrete_auc([(0.5, 1.0, 1.0), (0.5, 0.0, 1.0)]) == 0.5
    # P(+) = 0.5; pairs: (a+, b-) 0.5*0.25 wins, (a+, a-) and (b+, b-) tie, (b+, a-) loses
    auc = memes.discrete_auc([(0.5, 0.5, 1.0), (0.5, 0.5, 0.0)])
    assert auc == pytest.approx((0.25 * 0.25 + 0.5 * 2 * 0.25 * 0.25) / (0.5 * 0.5))


def test_memes_ceilings_in_target_ranges():
    c = memes.ceilings()
    assert 0.78 <= c["both"] <= 0.82 and 0.63 <= c["text"] <= 0.67 and 0.55 <= c["image"] <= 0.60
    assert c["text"] < c["additive"] < c["both"]
    assert c == pytest.approx({"both": 0.7984, "text": 0.6515, "image": 0.5784, "additive": 0.6907}, abs=1e-4)
    assert 0.4 <= sum(w * p for _, _, w, p in memes.cells()) <= 0.6
    # cell (mocking, warm): sigmoid(0.85 + 0.45 + 1.15), by hand
    assert memes.hateful_probability(1, 1) == pytest.approx(1 / (1 + math.exp(-2.45)))


def test_memes_additive_ceiling_is_the_best_of_all_directions():
    # an independent check of the enumeration: a fine sweep of angles finds nothing better
    rows = memes.cells()
    swept = max(
        memes.discrete_auc([(w, p, math.cos(a) * t + math.sin(a) * v) for t, v, w, p in rows])
        for a in np.linspace(0, 2 * math.pi, 3601)
    )
    assert swept == pytest.approx(memes.ceilings()["additive"], abs=1e-9)
    assert memes.best_additive() == (2, 1)  # mocking outranks warm: ++ > +- > -+ > --


def test_crisis_ceilings_in_target_ranges():
    c = crisis.ceilings()
    # by hand: both = P(colour agrees) P(topic agrees) = 0.85 * 0.85; image = 0.6*0.4*0.85 +
    # 0.4*0.4*0.85 (topic 0 per colour group); text = 0.6 * 0.85 (warm per topic)
    assert (c["both"], c["image"], c["text"], c["majority"]) == pytest.approx((0.7225, 0.34, 0.51, 0.24))
    assert 0.6 <= c["both"] <= 0.8
    for view in ("image", "text"):
        assert 1 / 8 + 0.1 < c[view] < c["both"] - 0.2
        assert c[f"{view}_f1"] < c["both_f1"]
    assert 0.6 < c["both_f1"] < 0.8


def test_crisis_macro_f1_by_hand():
    # two classes, half each; the classifier always says 0: F1 = (2*0.5/1.5 + 0) / 2
    assert crisis.macro_f1([[0.5, 0.0], [0.5, 0.0]]) == pytest.approx(1 / 3)


def test_medvqa_ceilings():
    c = medvqa.ceilings()
    # closed from the question: warmth form 0.3 * (0.9 * 0.9 + 0.1 * 0.1), colour form 0.7 * 0.5;
    # open from the question: a colour 1/6 (0.75 of them), a shape 1/3; with the scan: 1 - noise
    assert c == pytest.approx(
        {"closed_question": 0.596, "closed_both": 0.9, "open_question": 0.75 / 6 + 0.25 / 3, "open_both": 0.9}
    )
    assert 0.2 <= medvqa.WARMTH_SHARE <= 0.35  # the closed questions the wording answers


# --- the published files follow the rule --------------------------------------------------------


def test_memes_files_follow_the_rule(tmp_path):
    folder = memes.write(tmp_path / "m", {"train": 4000, "dev": 0, "test": 0}, seed=11, image_size=16)
    counts: dict[tuple[int, int], list[int]] = {}
    for s in hateful_memes.load(folder, "train"):
        t = 1 if set(s.text.split()) & set(memes.MOCKING) else -1
        v = 1 if shape_colour(s.image) in memes.WARM else -1
        counts.setdefault((t, v), []).append(s.label)
    for (t, v), labels in counts.items():
        assert_rate(len(labels), 4000, 0.25)
        assert_rate(sum(labels), len(labels), memes.hateful_probability(t, v))


def test_crisis_files_follow_the_rule(tmp_path):
    folder = crisis.write(tmp_path / "c", {"train": 4000, "dev": 1, "test": 1}, seed=11, image_size=16)
    samples = crisismmd.load(folder, "train")
    classes = Counter(s.label for s in samples)
    for label in range(crisis.N_CLASSES):
        assert_rate(classes[label], len(samples), crisis.cue_probability(label, None, None))
    image_agrees = sum(int(shape_colour(s.image) in memes.COOL) == s.label // 4 for s in samples)
    text_agrees = sum(bool(set(crisis.TOPICS[s.label % 4]) & set(s.text.split())) for s in samples)
    assert_rate(image_agrees, len(samples), crisis.IMAGE_KEEP + (1 - crisis.IMAGE_KEEP) / 2)
    assert_rate(text_agrees, len(samples), crisis.TEXT_KEEP + (1 - crisis.TEXT_KEEP) / 4)


def test_medvqa_files_follow_the_rule(tmp_path):
    folder = medvqa.write_vqa_rad(tmp_path / "v", {"train": 8000, "test": 2}, seed=11, image_size=16)
    samples = vqa_rad.load(folder, "train")
    closed = [s for s in samples if s.answer_type == "closed"]
    warmth = [s for s in closed if "-coloured" in s.question]
    assert_rate(len(warmth), len(closed), medvqa.WARMTH_SHARE)
    # the warmth form's wording predicts yes; the colour form's answer needs the scan
    yes = medvqa.WARMTH_YES * (1 - medvqa.CLOSED_NOISE) + (1 - medvqa.WARMTH_YES) * medvqa.CLOSED_NOISE
    assert_rate(sum(s.answer == "yes" for s in warmth), len(warmth), yes)
    named = [s for s in closed if "-coloured" not in s.question]
    assert_rate(sum(s.answer == "yes" for s in named), len(named), 0.5)
    true = sum(
        (s.answer == "yes") == (s.question == medvqa.CLOSED_COLOUR.format(colour=shape_colour(s.image))) for s in named
    )
    assert_rate(true, len(named), 1 - medvqa.CLOSED_NOISE)
    colour = [s for s in samples if s.question == medvqa.OPEN_COLOUR]
    assert_rate(len(colour), len(samples) - len(closed), medvqa.OPEN_COLOUR_SHARE)
    assert_rate(sum(s.answer == shape_colour(s.image) for s in colour), len(colour), 1 - medvqa.OPEN_NOISE)
    shapes = Counter(s.answer for s in samples if s.question == medvqa.OPEN_SHAPE)
    assert set(shapes) == set(memes.SHAPES)


# --- determinism and the cache ------------------------------------------------------------------


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("write", [memes.write, crisis.write, medvqa.write_vqa_rad, medvqa.write_slake])
def test_same_seed_same_files(tmp_path, write):
    sizes = {"train": 30, "dev": 4, "test": 6}
    a, b = write(tmp_path / "a", sizes, seed=5, image_size=16), write(tmp_path / "b", sizes, seed=5, image_size=16)
    assert tree_bytes(a) == tree_bytes(b) and len(tree_bytes(a)) > 10
    assert tree_bytes(write(tmp_path / "c", sizes, seed=6, image_size=16)) != tree_bytes(a)


def test_labelled_spec_draws_its_own_label():
    # the label is drawn after the meme with the same rng: a fixed seed gives a fixed sequence,
    # and within a cue cell the labels vary (noise), unlike the old deterministic rule
    draws = [memes.labelled_spec(random.Random(i)) for i in range(400)]
    by_cell: dict[tuple[int, int], set[int]] = {}
    for spec, label in draws:
        by_cell.setdefault(spec.cues, set()).add(label)
    assert all(labels == {0, 1} for labels in by_cell.values()) and len(by_cell) == 4
    assert draws[:5] == [memes.labelled_spec(random.Random(i)) for i in range(5)]


@pytest.mark.parametrize(
    ("name", "module"), [("hateful_memes", memes), ("crisismmd", crisis), ("vqa_rad", medvqa), ("slake", medvqa)]
)
def test_cache_folder_names_the_version(tmp_path, monkeypatch, name, module):
    monkeypatch.setenv("FEDMLLM_CACHE", str(tmp_path))
    folder = registry.resolve_folder(name, "", {"train": 4, "dev": 2, "test": 2}, 3)
    assert module.VERSION == 2
    assert folder.name == f"synthetic-{name}-v2-dev2-test2-train4-seed3" and folder.is_dir()


def test_vqa_items_keep_the_published_fields(tmp_path):
    folder = medvqa.write_vqa_rad(tmp_path / "v", {"train": 6, "test": 2}, seed=1, image_size=16)
    items = json.loads((folder / medvqa.VQA_RAD_FILE).read_text())
    assert {"qid", "image_name", "question", "answer", "answer_type", "phrase_type"} <= set(items[0])
    assert {i["question"] for i in items} <= set(medvqa.vocabulary())
