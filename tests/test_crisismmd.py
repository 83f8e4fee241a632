import random
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from fedmllm.data import crisismmd
from fedmllm.data.synthetic import crisis, memes
from fedmllm.errors import FedmllmError

HEADER = "\t".join(crisismmd.COLUMNS)
TWEET = 917791044158185473


def image_path(event: str, tweet: int, k: int = 0) -> str:
    return f"data_image/{event}/10_10_2017/{tweet}_{k}.jpg"


def row(tweet: int, text: str, label_image: str, k: int = 0, label_text: str | None = None) -> str:
    event = "california_wildfires"
    label_text = label_image if label_text is None else label_text
    fields = [event, str(tweet), f"{tweet}_{k}", text, image_path(event, tweet, k)]
    return "\t".join(fields + [label_image, label_text, label_image, "Positive"])


def write_split(folder: Path, lines: list[str], split: str = "train", name: str = crisismmd.FILE) -> Path:
    """The split file (header first) and a drawn JPEG for every row's image column."""
    rng = random.Random(0)
    for line in lines:
        fields = line.split("\t")
        if len(fields) > 4 and fields[4].startswith("data_image/"):
            path = folder / fields[4]
            path.parent.mkdir(parents=True, exist_ok=True)
            memes.draw(memes.random_spec(rng), rng, 32).save(path, format="JPEG")
    path = folder / crisismmd.FOLDER / name.format(split=split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + "\n" for line in [HEADER, *lines]).encode("utf-8"))
    return path


# a dozen rows with the published files' quirks
ROWS = [
    row(
        TWEET,
        'RT @CALFIRE_News: Evacuations in #Napa 🔥 "stay safe" https://t.co/Xy12AbCd  ',
        "infrastructure_and_utility_damage",
    ),
    row(TWEET, "the same tweet and image again, skipped", "not_humanitarian"),
    row(TWEET, "second image of the same tweet", "vehicle_damage", k=1),
    row(TWEET + 1, "  Firefighters &amp; volunteers   at the shelter  ", " Rescue Volunteering or Donation Effort "),
    row(TWEET + 2, "https://t.co/onlyALink", "NOT_HUMANITARIAN"),
    row(TWEET + 3, "@KTVU family searching for grandpa", "missing_or_found_people", label_text="affected_individuals"),
    row(TWEET + 4, "2 dead, 5 injured in Santa Rosa", "injured_or_dead_people"),
    row(TWEET + 5, "Thousands displaced by the fires", "affected_individuals"),
    row(TWEET + 6, "Fire map update http://bit.ly/2xyz", "other_relevant_information"),
    row(TWEET + 7, "Burned cars on Highway 12", "vehicle-damage"),
    row(TWEET + 8, "Power lines down across Sonoma", "infrastructure_and_utility_damage"),
    row(TWEET + 9, "Donate to @RedCross now 🙏", "rescue_volunteering_or_donation_effort"),
]


def test_loader_reads_published_fields(tmp_path):
    write_split(tmp_path, ROWS)
    samples = crisismmd.load(tmp_path, "train")
    assert len(samples) == 11  # the repeated (tweet_id, image_id) pair is skipped
    first, second, third, url_only = samples[:4]
    assert first.id == f"{TWEET}_0" and first.image == tmp_path / image_path("california_wildfires", TWEET)
    assert first.text == 'RT @CALFIRE_News: Evacuations in #Napa 🔥 "stay safe"'  # URL gone; RT, @, emoji kept
    assert (first.label, first.answer) == (1, "infrastructure and utility damage")
    assert (second.id, second.label, second.text) == (f"{TWEET}_1", 5, "second image of the same tweet")
    assert (third.label, third.text) == (4, "Firefighters & volunteers at the shelter")
    assert (url_only.label, url_only.text) == (7, None)
    assert [s.label for s in samples[4:]] == [3, 2, 0, 6, 5, 1, 4]
    assert samples[7].text == "Fire map update"
    assert all(s.options == crisismmd.OPTIONS and s.task == "classification" for s in samples)
    assert all(s.question == "Which humanitarian category does this tweet belong to?" for s in samples)
    assert crisismmd.OPTIONS[0] == "affected individuals" and crisismmd.OPTIONS[7] == "not humanitarian"


def test_label_column_is_configurable(tmp_path):
    write_split(tmp_path, ROWS)
    by_image = crisismmd.load(tmp_path, "train")
    by_text = crisismmd.load(tmp_path, "train", label_column="label_text")
    assert (by_image[4].label, by_text[4].label) == (3, 0)  # missing_or_found vs affected_individuals
    with pytest.raises(FedmllmError, match=r"train.tsv:2: column 'label_text_image' has unknown label 'Positive'"):
        crisismmd.load(tmp_path, "train", label_column="label_text_image")
    with pytest.raises(FedmllmError, match="label column 'tweet_text' is not one of"):
        crisismmd.load(tmp_path, "train", label_column="tweet_text")


def test_short_file_name_is_accepted_and_missing_split_named(tmp_path):
    write_split(tmp_path, ROWS[:1], split="dev", name=crisismmd.FALLBACK_FILE)
    (s,) = crisismmd.load(tmp_path, "dev")
    assert s.id == f"{TWEET}_0"
    with pytest.raises(FedmllmError, match=r"task_humanitarian_text_img_agreed_lab_test.tsv: file not found"):
        crisismmd.load(tmp_path, "test")
    with pytest.raises(FedmllmError, match=r"unknown split 'val'"):
        crisismmd.load(tmp_path, "val")


@pytest.mark.parametrize(
    ("header", "line", "message"),
    [
        (HEADER.replace("\tlabel_image", ""), None, r"train.tsv:1: missing column 'label_image'"),
        (
            HEADER,
            row(TWEET + 1, "x", "flood_damage"),
            r"train.tsv:3: column 'label_image' has unknown label 'flood_damage'",
        ),
        (HEADER, row(TWEET + 1, "x", ""), r"train.tsv:3: column 'label_image' has unknown label ''"),
        (HEADER, row(TWEET + 1, "x", "vehicle_damage"), r"train.tsv:3: column 'image': image file not found: .*_0.jpg"),
        (HEADER, row(TWEET + 1, "x\ty", "vehicle_damage"), r"train.tsv:3: expected 9 tab-separated columns .* got 10"),
        (HEADER, "\t".join(row(TWEET + 1, "x", "vehicle_damage").split("\t")[:8]), r"train.tsv:3: expected 9 .* got 8"),
        (
            HEADER,
            row(TWEET + 1, "x", "vehicle_damage").replace(f"\t{TWEET + 1}\t", "\t\t"),
            r"train.tsv:3: column 'tweet_id'",
        ),
    ],
)
def test_bad_rows_name_file_line_and_column(tmp_path, header, line, message):
    path = write_split(tmp_path, ROWS[:1])  # only the first row's image exists
    path.write_text("\n".join([header, ROWS[0], *([line] if line else [])]) + "\n", encoding="utf-8")
    with pytest.raises(FedmllmError, match=message):
        crisismmd.load(tmp_path, "train")


def test_invalid_utf8_names_line(tmp_path):
    path = write_split(tmp_path, ROWS[:1])
    path.write_bytes(path.read_bytes() + row(TWEET + 1, "caf\xe9", "vehicle_damage").encode("latin-1") + b"\n")
    with pytest.raises(FedmllmError, match=r"train.tsv:3: not UTF-8 text"):
        crisismmd.load(tmp_path, "train")


def test_vocabulary_has_question_and_lettered_options():
    vocab = crisismmd.vocabulary()
    assert crisismmd.QUESTION in vocab and "(A) affected individuals" in vocab and "(H) not humanitarian" in vocab
    assert "rescue volunteering or donation effort" in vocab


SIZES = {"train": 300, "dev": 8, "test": 16}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return crisis.write(tmp_path_factory.mktemp("crisis") / "crisis", SIZES, seed=4)


def test_synthetic_twin_is_native_layout_and_deterministic(synthetic, tmp_path):
    small = {"train": 6, "dev": 2, "test": 3}
    a, b = crisis.write(tmp_path / "a", small, seed=1), crisis.write(tmp_path / "b", small, seed=1)
    for split in crisismmd.SPLITS:
        name = f"{crisismmd.FOLDER}/task_humanitarian_text_img_agreed_lab_{split}.tsv"
        assert (a / name).read_bytes() == (b / name).read_bytes()
    images = sorted(p.relative_to(a) for p in (a / "data_image").rglob("*.jpg"))
    assert len(images) == 11 and all((a / p).read_bytes() == (b / p).read_bytes() for p in images)
    assert crisis.write(tmp_path / "c", small, seed=2).joinpath(name).read_bytes() != (a / name).read_bytes()
    assert not (tmp_path / "a.partial").exists()
    header = (a / name).read_text(encoding="utf-8").splitlines()[0]
    assert header.split("\t") == list(crisismmd.COLUMNS)
    for split, n in SIZES.items():
        samples = crisismmd.load(synthetic, split)
        assert len(samples) == n and all(s.image.is_file() and s.image.suffix == ".jpg" and s.text for s in samples)
        assert all("http" not in s.text for s in samples)
    assert crisismmd.load(synthetic, "test", label_column="label_text") == crisismmd.load(synthetic, "test")


def test_synthetic_labels_cover_all_classes(synthetic):
    # imbalanced like the real set: class 0 (warm, topic 0) has prior 0.6 * 0.4, class 7 0.4 * 0.15
    counts = Counter(s.label for s in crisismmd.load(synthetic, "train"))
    assert sorted(counts) == list(range(8)) and min(counts.values()) >= 10
    assert counts.most_common(1)[0][0] == 0


def cool_image(path: Path) -> int:
    """1 if the drawn shape is cool-coloured: its saturated pixels have little red."""
    with Image.open(path) as img:
        pixels = [p for p in img.convert("RGB").getdata() if max(p) - min(p) > 80]
    return int(sum(p[0] for p in pixels) / len(pixels) < 180)


def text_topic(text: str) -> int:
    (topic,) = {i for i, words in enumerate(crisis.TOPICS) for w in words if w in text.split()}
    return topic


def test_label_follows_each_modality_in_part(synthetic):
    samples = crisismmd.load(synthetic, "train")
    image_attr = [cool_image(s.image) for s in samples]
    text_attr = [text_topic(s.text) for s in samples]
    # the cues name the label's class 0.85 * 0.85 of the time (noise), not always
    agree = sum(4 * i + t == s.label for i, t, s in zip(image_attr, text_attr, samples, strict=True)) / len(samples)
    assert 0.6 < agree < 0.85

    def best_accuracy(attr: list[int]) -> float:  # predict the most common label per attribute value
        groups: dict[int, Counter] = {}
        for a, s in zip(attr, samples, strict=True):
            groups.setdefault(a, Counter())[s.label] += 1
        return sum(c.most_common(1)[0][1] for c in groups.values()) / len(samples)

    # each modality alone beats the majority class (0.24) and falls short of both (ceilings 0.34, 0.51)
    assert 0.26 < best_accuracy(image_attr) < 0.45 < best_accuracy(text_attr) < 0.6
    spec = crisis.CrisisSpec("red", "circle", 2, "shelters", 0, "downtown", "")
    assert spec.cue_class == 2 and crisis.CrisisSpec("blue", "circle", 2, "shelters", 0, "downtown", "").cue_class == 6
