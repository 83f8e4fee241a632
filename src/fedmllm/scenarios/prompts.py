"""Turning a Sample into the user's text and the target answer.

Every prompt is one of `VARIANTS` (docs/prompts.md shows each one's exact text):

- "modality" (the paper's baseline): the question is led by the modalities the sample still has
  ("Based on the image and the text, ...").
- "augmented" (the paper's prompt augmentation, placed as in the authors' code): no modality lead;
  ", without considering the modality" ends an instruction line that opens the prompt AND the
  question; the answer line is left as it is. Clients with different modality mixes then train on
  one prompt distribution.
- "augmented_answer_line": the same phrase on the question and on the answer line instead of an
  instruction line (fedmllm's earlier placement, kept for comparison).
- "full_modality": the image+text lead on every sample, whatever it holds (one prompt for all,
  but naming both modalities).

fedmllm's prompts have no instruction line of their own; "augmented" adds one because that is
where the authors put the phrase (their every prompt opens with one).
"""

from __future__ import annotations

from fedmllm.data.sample import Sample
from fedmllm.errors import FedmllmError

LETTERS = "ABCDEFGHIJ"
LEAD = {
    "image+text": "Based on the image and the text, ",
    "image": "Based on the image, ",
    "text": "Based on the text, ",
    "none": "",
}
AGNOSTIC = ", without considering the modality"
ANSWER_WITH_LETTER = "Answer with the option letter."
ANSWER_BRIEFLY = "Answer with a single word or phrase."  # VQA, as LLaVA's evaluation prompts
# the instruction line of "augmented" (multiple choice as the authors word it; open questions)
INSTRUCTION_CHOICE = "Select the best answer to the following multiple-choice question"
INSTRUCTION_OPEN = "Answer the following question"
VARIANTS = ("modality", "augmented", "augmented_answer_line", "full_modality")  # = config's, without "auto"
AUGMENTED = ("augmented", "augmented_answer_line")  # the variants that carry the phrase


def option_text(options: tuple[str, ...], index: int) -> str:
    """The answer form of an option: '(B) hateful'."""
    return f"({LETTERS[index]}) {options[index]}"


def _led(lead: str, question: str) -> str:
    if lead and question[1:2].islower():  # "Is there ..." -> "is there ...", but keep "MRI ..."
        question = question[0].lower() + question[1:]
    return lead + question


def _agnostic(question: str) -> str:
    """'Is this meme hateful?' -> 'Is this meme hateful, without considering the modality?'"""
    end = "?" if question.rstrip().endswith("?") else "."
    return question.rstrip(" ?.") + AGNOSTIC + end


def user_text(sample: Sample, variant: str = "modality") -> str:
    """The user's turn in prompt `variant`, without the image placeholder (the processor's chat
    template adds it)."""
    if variant not in VARIANTS:
        raise FedmllmError(f"unknown prompt variant {variant!r} (one of {list(VARIANTS)})")
    parts = []
    if variant == "augmented":
        parts.append((INSTRUCTION_CHOICE if sample.options else INSTRUCTION_OPEN) + AGNOSTIC + ".")
    if sample.text is not None:
        parts.append(f'Text: "{sample.text}"')
    if variant in AUGMENTED:
        parts.append(_agnostic(sample.question))
    else:
        parts.append(_led(LEAD["image+text" if variant == "full_modality" else sample.modality], sample.question))
    if sample.options:
        parts.append("Options: " + " ".join(option_text(sample.options, i) for i in range(len(sample.options))))
        parts.append(ANSWER_WITH_LETTER + (AGNOSTIC + "." if variant == "augmented_answer_line" else ""))
    elif sample.task == "vqa":
        parts.append(ANSWER_BRIEFLY)
    return "\n".join(parts)


def target_text(sample: Sample) -> str:
    """The answer the model is trained to produce."""
    if sample.options and sample.label is not None:
        return option_text(sample.options, sample.label)
    return sample.answer


def vocabulary() -> list[str]:
    """Fixed prompt text, so a locally trained tokenizer encodes it compactly."""
    return [*LEAD.values(), AGNOSTIC, ANSWER_WITH_LETTER, ANSWER_BRIEFLY, "Options: ", 'Text: "']
