"""Which model families fedmllm trains, and the few facts it cannot read from a model itself.

Any model type that transformers maps to AutoModelForImageTextToText is tried: discover.py finds
its language model's decoder layers, their attention projections (LoRA) and the multimodal
projector (trained in full) from the module tree. This module holds what the structure does not
say: the families the tests build and federate (TESTED), the ones known not to work and why
(NOT_WORKING), and per-processor prompt exceptions (PROMPT_RULES).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from fedmllm.errors import FedmllmError
from fedmllm.model import discover


@dataclass(frozen=True)
class Family:
    model_type: str
    language_model: str  # module path holding the decoder `layers` (regularize.layer_of reads `<it>.layers.N.`)
    targets: str  # peft `target_modules` regex: the attention projections of those layers, nothing else
    projectors: tuple[str, ...]  # module paths of the vision-to-text projector(s), trained in full


# model type -> what its tiny checkpoint in tests/family_fixtures.py exercises; each is built, saved,
# loaded back through the Auto classes, trained, evaluated and federated by tests/test_families.py
TESTED: dict[str, str] = {
    "llava": "Llama + CLIP",
    "llava_onevision": "Qwen2 + SigLIP, anyres tiles",
    "llava_next": "Llama + CLIP, anyres tiles",
    "qwen2_vl": "Qwen2-VL, merger in the vision tower",
    "qwen2_5_vl": "Qwen2.5-VL, window attention",
    "qwen3_vl": "Qwen3-VL, merger + DeepStack mergers",
    "idefics2": "Mistral + perceiver resampler",
    "idefics3": "Llama, image splitting",
    "smolvlm": "Llama, image splitting",
    "internvl": "Qwen2 + InternViT, tiles, pixel shuffle",
    "gemma3": "Gemma 3 (sliding + full attention) + SigLIP",
    "paligemma": "Gemma + SigLIP, no chat template, prefix-LM mask",
    "mistral3": "Mistral + Pixtral, native image sizes",
    "mllama": "Llama 3.2 Vision: cross-attention layers, tiles",
    "minicpmv4_6": "MiniCPM-V 4.6: Qwen3.5 (DeltaNet + attention), sliced images",
    "qwen3_5": "Qwen3.5: DeltaNet + gated attention, Qwen3-VL vision",
    "vipllava": "Llama + CLIP, features of several vision layers",
}

ENCODER_DECODER = "encoder-decoder: fedmllm puts LoRA on a decoder-only language model"
# model type -> why fedmllm cannot train it (each reason checked on the installed transformers)
NOT_WORKING: dict[str, str] = {
    "instructblipvideo": "video-only: its processor has a video processor and no image processor",
    "blip": "its text decoder is a BERT with cross-attention: no decoder `layers` list for LoRA",
    "git": "its text decoder is a BERT-style encoder stack: no decoder `layers` list for LoRA",
    "idefics": "images enter through gated cross-attention layers: there is no projector module to train",
    "mistral4": "text-only: the class it maps to (Mistral4ForCausalLM) has no vision tower",
    "evolla": "protein-text, not image-text: its processor takes protein sequences",
    "pi0": "a vision-language-action model: it predicts robot actions, not text",
    "florence2": ENCODER_DECODER,
    "pix2struct": ENCODER_DECODER,
    "pp_formulanet": ENCODER_DECODER,
    "t5gemma2": ENCODER_DECODER,
    "udop": ENCODER_DECODER,
    "vision-encoder-decoder": ENCODER_DECODER,
}


@dataclass(frozen=True)
class PromptRule:
    """How fedmllm prompts a processor that is not a plain chat-template processor."""

    chat_template: str | None = None  # used when the checkpoint ships none
    text_only_by_tokenizer: bool = False  # the processor refuses text without an image
    target_token_type: int = 0  # token_type_ids of the answer tokens (PaliGemma: 1 = suffix, causal)
    # image tensors hold one row per sample, as the model needs them: a sample without an image
    # gets the processor's padding (zeros, and a 1 in the first entry of `absent_first_one`'s)
    per_row_images: bool = False
    per_token_images: tuple[str, ...] = ()  # image tensors with one entry per token (dim 1)
    absent_first_one: tuple[str, ...] = ()
    packed_images: tuple[str, ...] = ()  # one row for the whole batch, joined along the last dim (NaViT)


# PaliGemma's own format (big_vision): "<image>"s, then BOS, the prefix and "\n"; its processor adds
# the BOS and the "\n" after an image, so the template writes them only for a text-only prompt
PALIGEMMA_TEMPLATE = (
    "{%- set ns = namespace(image=false) -%}"
    "{%- for message in messages if message['role'] == 'user' and message['content'] is not string -%}"
    "{%- for part in message['content'] if part['type'] == 'image' -%}<image>{%- set ns.image = true -%}"
    "{%- endfor -%}{%- endfor -%}"
    "{%- if not ns.image -%}{{ bos_token }}{%- endif -%}"
    "{%- for message in messages if message['role'] == 'user' -%}"
    "{%- if message['content'] is string -%}{{ message['content'] }}{%- else -%}"
    "{%- for part in message['content'] if part['type'] == 'text' -%}{{ part['text'] }}{%- endfor -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if not ns.image -%}{{ '\\n' }}{%- endif -%}"
)

# processor class name -> its exception (collate.py only sees the processor)
PROMPT_RULES: dict[str, PromptRule] = {
    "PaliGemmaProcessor": PromptRule(
        chat_template=PALIGEMMA_TEMPLATE, text_only_by_tokenizer=True, target_token_type=1
    ),
    # a text-only row of a mixed batch gets no image and a zero cross-attention mask, as the
    # processor pads it (MllamaImageProcessor: the first tile of a padded image is unmasked)
    "MllamaProcessor": PromptRule(
        per_row_images=True, per_token_images=("cross_attention_mask",), absent_first_one=("aspect_ratio_mask",)
    ),
    "MiniCPMV4_6Processor": PromptRule(packed_images=("pixel_values",)),  # the model reads pixel_values[:1]
}


def check_model_type(config: object, name: str) -> str:
    """The config's model type, if fedmllm may try it; else a FedmllmError naming type and reason."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    model_type = config.model_type
    where = f"model '{name}' (model type '{model_type}')"
    if model_type in NOT_WORKING:
        raise FedmllmError(f"{where}: not supported: {NOT_WORKING[model_type]} (see `fedmllm models`)")
    if getattr(config, "is_encoder_decoder", False) or getattr(config.get_text_config(), "is_encoder_decoder", False):
        raise FedmllmError(f"{where}: not supported: {ENCODER_DECODER}")
    auto_map = getattr(config, "auto_map", None) or {}
    if model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and "AutoModelForImageTextToText" not in auto_map:
        raise FedmllmError(
            f"{where}: not an image-text-to-text model (transformers maps no AutoModelForImageTextToText "
            "class to it; `fedmllm models` lists the tested families)"
        )
    return model_type


def find_family(model: nn.Module, name: str) -> Family:
    """Discover where `model` keeps its decoder layers, attention projections and projector."""
    config = model.config
    model_type = config.model_type
    where = f"model '{name}' (model type '{model_type}')"
    num_layers = getattr(config.get_text_config(), "num_hidden_layers", None)
    if not isinstance(num_layers, int):
        raise FedmllmError(f"{where}: its text config names no num_hidden_layers")
    language_model = discover.decoder_path(model, where)
    layers = discover.layers_path(model, language_model, num_layers, where)
    linears = discover.attention_linears(model, layers, where)
    targets = discover.target_pattern(model, layers, linears, where)
    projectors = discover.projector_paths(model, language_model, where)
    return Family(model_type, layers.rsplit(".", 1)[0], targets, tuple(projectors))


def prompt_rule(processor: object) -> PromptRule:
    return PROMPT_RULES.get(type(processor).__name__, PromptRule())
