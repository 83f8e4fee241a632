"""What fedmllm needs to know about each model family, keyed by `config.model_type`.

Adding a family is one line: where its language model and its multimodal projector live in the
module tree. Everything else goes through the Auto classes and the processor.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedmllm.errors import FedmllmError


@dataclass(frozen=True)
class Family:
    language_model: str  # module-name fragment of the decoder stack
    projector: str  # module name (suffix) of the vision-to-text projector, trained in full


FAMILIES: dict[str, Family] = {
    "llava": Family("language_model", "multi_modal_projector"),
    "llava_onevision": Family("language_model", "multi_modal_projector"),
    "qwen2_vl": Family("language_model", "merger"),
    "qwen2_5_vl": Family("language_model", "merger"),
    "idefics3": Family("text_model", "connector"),
    "smolvlm": Family("text_model", "connector"),
}


def family_of(model_type: str, source: str) -> Family:
    if model_type not in FAMILIES:
        raise FedmllmError(
            f"{source}: model type '{model_type}' is not supported yet "
            f"(supported: {sorted(FAMILIES)}; add one line to fedmllm/model/families.py)"
        )
    return FAMILIES[model_type]


def attention_pattern(family: Family) -> str:
    """A peft `target_modules` regex for the language model's q/k/v/o projections only.

    A plain list ["q_proj", ...] would also match the vision tower's attention.
    """
    return rf".*{family.language_model}\..*\.(q_proj|k_proj|v_proj|o_proj)"
