"""Turning a Sample into the user's text and the target answer.

Prompts name the modalities a sample still has ("Based on the image and the text, ..."), as in
the paper's baseline. With `agnostic=True` (the paper's prompt augmentation) every sample gets
the same modality-agnostic instruction instead, so clients with different modality mixes train
on one prompt distribution.
"""

from __future__ import annotations

from fedmllm.data.sample import Sample

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


def option_text(options: tuple[str, ...], index: int) -> str:
    """The answer form of an option: '(B) hateful'."""
    return f"({LETTERS[index]}) {options[index]}"


def user_text(sample: Sample, agnostic: bool = False) -> str:
    """The user's turn, without the image placeholder (the processor's chat template adds it)."""
    question = sample.question
    if agnostic:
        lead = ""
        end = "?" if question.rstrip().endswith("?") else "."
        question = question.rstrip(" ?.") + AGNOSTIC + end
    else:
        lead = LEAD[sample.modality]
        if lead and question[1:2].islower():  # "Is there ..." -> "is there ...", but keep "MRI ..."
            question = question[0].lower() + question[1:]
    parts = []
    if sample.text is not None:
        parts.append(f'Text: "{sample.text}"')
    parts.append(lead + question)
    if sample.options:
        parts.append("Options: " + " ".join(option_text(sample.options, i) for i in range(len(sample.options))))
        parts.append(ANSWER_WITH_LETTER + (AGNOSTIC + "." if agnostic else ""))
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
