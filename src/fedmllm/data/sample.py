"""The one sample type every loader yields; it knows nothing of models or prompts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One example. `image` and `text` are the two modalities; either may be missing.

    `question` is the task's instruction ("Is this meme hateful?"), `options` the answer choices
    of a multiple-choice task (None for open QA), `answer` the target text and `label` its index
    in `options`. `task` is "classification" (multiple choice), "vqa" (visual question answering,
    `answer_type` "open" or "closed") or "qa" (text-only question answering).
    """

    id: str
    image: Path | None
    text: str | None
    question: str
    answer: str
    options: tuple[str, ...] | None = None
    label: int | None = None
    task: str = "classification"
    answer_type: str | None = None

    @property
    def modality(self) -> str:
        """'image+text', 'image', 'text' or 'none' (only the question is left)."""
        has = [name for name, v in (("image", self.image), ("text", self.text)) if v is not None]
        return "+".join(has) if has else "none"

    def drop(self, image: bool = False, text: bool = False) -> Sample:
        """A copy without the image and/or the text."""
        return replace(
            self,
            image=None if image else self.image,
            text=None if text else self.text,
        )
