"""The tiny model's frozen text: what its tokenizer learns and what its pretraining repeats.

A snapshot, taken for tiny.VERSION 6 (verbatim, duplicates and order included), of what the recipe
used to read at build time: the synthetic memes' caption templates and word lists, the prompts'
fixed instruction text (`scenarios.prompts.vocabulary()`), every registered dataset's vocabulary
(`data.registry.DATASETS`) and the pretraining's own questions. Frozen here so the recipe, and with
it the cache name `tiny-llava-v{VERSION}-seed{seed}`, stays put when a dataset is registered or a
synthetic twin's words change: every machine builds and shares one base model.

A dataset registered after this snapshot is not in it. Its words the tokenizer lacks are encoded by
byte-level BPE (a few tokens per word, never <unk>), and pretraining does not repeat its prompt
text, so its option words start from their initial output embeddings. To take it in, regenerate
this file and bump tiny.VERSION (every machine then rebuilds once).
"""

from __future__ import annotations

# memes.TEMPLATES: the captions the tokenizer learns are every template x word x noun
TEMPLATES = (
    "look at this {adj} {noun}",
    "such a {adj} {noun} today",
    "every {noun} here is {adj}",
    "my {noun} is so {adj}",
    "when the {noun} is {adj}",
)
# memes.KIND + MOCKING + NOUNS + the warm and cool colour names, put in the {adj} slot
WORDS = (
    "lovely",
    "friendly",
    "wonderful",
    "gentle",
    "cheerful",
    "brilliant",
    "disgusting",
    "filthy",
    "worthless",
    "pathetic",
    "stupid",
    "ugly",
    "neighbor",
    "crowd",
    "family",
    "visitor",
    "team",
    "teacher",
    "driver",
    "student",
    "red",
    "orange",
    "yellow",
    "blue",
    "green",
    "purple",
)
NOUNS = (
    "neighbor",
    "crowd",
    "family",
    "visitor",
    "team",
    "teacher",
    "driver",
    "student",
)
# the answer options of pretraining's questions: memes.random_spec draws from exactly these
COLOURS = (
    "blue",
    "green",
    "orange",
    "purple",
    "red",
    "yellow",
)
SHAPES = (
    "circle",
    "square",
    "triangle",
)
# prompts.vocabulary()
PROMPT_LINES = (
    "Based on the image and the text, ",
    "Based on the image, ",
    "Based on the text, ",
    "",
    ", without considering the modality",
    "Answer with the option letter.",
    "Answer with a single word or phrase.",
    "Options: ",
    'Text: "',
)
# the pretraining's own questions and answers
PRETRAIN_VOCABULARY = (
    "What colour is the shape?",
    "Is the tone of the text kind or mocking?",
    "kind",
    "mocking",
    *COLOURS,
    *SHAPES,
    "Describe the image.",
    "a red circle",
    "Repeat the text.",
)
# the tokenizer's lines besides the captions: the above, the chat roles and the option letters
TOKENIZER_LINES = (*PROMPT_LINES, *PRETRAIN_VOCABULARY, "USER: ASSISTANT: (A) (B) (C) (D) (E) (F) (G) (H) yes no")
# crisismmd's, hateful_memes' and medalpaca's vocabulary, in name order
_DATASETS = (
    "Which humanitarian category does this tweet belong to?",
    "affected individuals",
    "infrastructure and utility damage",
    "injured or dead people",
    "missing or found people",
    "rescue volunteering or donation effort",
    "vehicle damage",
    "other relevant information",
    "not humanitarian",
    "(A) affected individuals",
    "(B) infrastructure and utility damage",
    "(C) injured or dead people",
    "(D) missing or found people",
    "(E) rescue volunteering or donation effort",
    "(F) vehicle damage",
    "(G) other relevant information",
    "(H) not humanitarian",
    "(A) affected individuals (B) infrastructure and utility damage (C) injured or dead people"
    " (D) missing or found people (E) rescue volunteering or donation effort (F) vehicle damage"
    " (G) other relevant information (H) not humanitarian",
    "Is this meme hateful?",
    "not-hateful",
    "hateful",
    "(A) not-hateful",
    "(B) hateful",
    "not-hateful (B) hateful",
    "Answer this question truthfully",
)
# slake's vocabulary, which is also vqa_rad's (one twin writes both)
_MEDVQA = (
    "yes",
    "no",
    "What colour is the lesion?",
    "What shape is the lesion?",
    "Is the lesion blue?",
    "Is the lesion green?",
    "Is the lesion orange?",
    "Is the lesion purple?",
    "Is the lesion red?",
    "Is the lesion yellow?",
    "Is the lesion warm-coloured?",
    "Is the lesion cool-coloured?",
)
# what pretraining's "Repeat the text." samples draw from: prompts.vocabulary(), every dataset's
# vocabulary in name order (slake's and vqa_rad's are the same lines, so those are drawn twice as
# often) and the pretraining's own vocabulary
PRETRAIN_LINES = (*PROMPT_LINES, *_DATASETS, *_MEDVQA, *_MEDVQA, *PRETRAIN_VOCABULARY)


def tokenizer_corpus() -> list[str]:
    """The tokenizer's training text, exactly as the recipe built it at the snapshot."""
    captions = [t.format(adj=a, noun=n) for t in TEMPLATES for a in WORDS for n in NOUNS]
    # x4 as at the snapshot: scaling every count alike leaves BPE's merges unchanged
    return (captions + list(TOKENIZER_LINES)) * 4
