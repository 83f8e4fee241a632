"""Tiny random checkpoints of every tested model family, built locally (no hub download).

`build_family_checkpoint(family, folder)` writes a config + random weights + processor (a locally
trained byte-level BPE tokenizer with the family's special tokens, the family's `...Pil` image
processor, a chat template in the family's turn format; PaliGemma's none, as on the Hub) with
`save_pretrained`, so that fedmllm loads it back through exactly the path a hub checkpoint goes
through. `family_parts(family)` gives the config and processor without saving.

Processors with a `video_processor` slot (LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL,
MiniCPM-V 4.6, SmolVLM) cannot be constructed without torchvision; they are built through
`fedmllm.model.compat`'s image-only subclasses, which save under the original class name (and
PixtralProcessor through `compat.pixtral_processor`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from fedmllm.model import families
from fedmllm.scenarios import prompts

FAMILIES = tuple(families.TESTED)  # every family fedmllm lists: one without a fixture below fails
# module-name fragment of each family's vision encoder (the projector is excluded separately)
VISION_TOWER = {
    "llava": "vision_tower",
    "llava_onevision": "vision_tower",
    "qwen2_vl": "visual",
    "qwen2_5_vl": "visual",
    "idefics3": "vision_model",
    "smolvlm": "vision_model",
    "llava_next": "vision_tower",
    "qwen3_vl": "visual",
    "idefics2": "vision_model",
    "internvl": "vision_tower",
    "gemma3": "vision_tower",
    "paligemma": "vision_tower",
    "mistral3": "vision_tower",
    "mllama": "vision_model",
    "minicpmv4_6": "vision_tower",
    "qwen3_5": "visual",
    "vipllava": "vision_tower",
}
TEXT_LAYERS = 2
HIDDEN = 64

_CORPUS = prompts.vocabulary() + [
    "USER: ASSISTANT: User: Assistant: user assistant system (A) (B) not-hateful hateful",
    "Based on the image and the text, is this meme hateful? Answer with the option letter.",
    "a cat on a mat, a dog in the fog, people at the beach",
]


def _tokenizer(
    special: list[str],
    *,
    pad: str,
    eos: str,
    bos: str | None = None,
    extra: dict[str, str] | None = None,
    vocab_size: int = 400,
) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", *special],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token=pad,
        eos_token=eos,
        bos_token=bos,
        extra_special_tokens=extra or {},
    )


def _template(user: str, image: str, end: str, assistant: str) -> str:
    """A chat template: `user` opens a user turn, `image` stands for each image part, `end` closes a
    turn, `assistant` opens the assistant's turn (a literal newline after a {% %} tag is eaten by
    Jinja, hence the {{ '\\n' }} escapes in the arguments)."""
    return (
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}" + user + "{% else %}" + assistant + "{% endif %}"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for part in message['content'] %}"
        "{% if part['type'] == 'image' %}" + image + "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
        "{% endfor %}{% endif %}" + end + "{% endfor %}"
        "{% if add_generation_prompt %}" + assistant.rstrip() + "{% endif %}"
    )


def _llama(tokenizer, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **extra,
    )


# ---------------------------------------------------------------------------------- LLaVA
def _llava():
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, LlavaConfig, LlavaProcessor

    tok = _tokenizer(
        ["<pad>", "<s>", "</s>", "<image>"], pad="<pad>", eos="</s>", bos="<s>", extra={"image_token": "<image>"}
    )
    size, patch = 32, 8
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
        tokenizer=tok,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=_template("USER: ", "<image>{{ '\\n' }}", "{{ '\\n' }}", "ASSISTANT: "),
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=size,
            patch_size=patch,
        ),
        text_config=_llama(tok),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    return config, processor


# ---------------------------------------------------------------------- LLaVA-OneVision
def _llava_onevision():
    from transformers import LlavaOnevisionConfig, LlavaOnevisionImageProcessorPil, Qwen2Config, SiglipVisionConfig

    from fedmllm.model.compat import ImageOnlyLlavaOnevisionProcessor

    tok = _tokenizer(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
        pad="<|endoftext|>",
        eos="<|im_end|>",
        extra={"image_token": "<image>", "video_token": "<video>"},
    )
    size, patch = 32, 8
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": size, "width": size},
        image_grid_pinpoints=[[size, size], [size, 2 * size], [2 * size, size], [2 * size, 2 * size]],
    )
    processor = ImageOnlyLlavaOnevisionProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        num_image_tokens=(size // patch) ** 2,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
        chat_template=_template(
            "<|im_start|>user{{ '\\n' }}",
            "<image>{{ '\\n' }}",
            "<|im_end|>{{ '\\n' }}",
            "<|im_start|>assistant{{ '\\n' }}",
        ),
    )
    text = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=size,
            patch_size=patch,
        ),
        text_config=text,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        video_token_id=tok.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=image_processor.image_grid_pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
    )
    return config, processor


# ---------------------------------------------------------------------- Qwen2-VL / Qwen2.5-VL
QWEN_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _qwen(version: str):
    from transformers import Qwen2VLImageProcessorPil

    from fedmllm.model import compat

    tok = _tokenizer(
        QWEN_SPECIAL,
        pad="<|endoftext|>",
        eos="<|im_end|>",
        extra={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    patch, merge = 8, 2
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=patch,
        merge_size=merge,
        temporal_patch_size=2,
        size={"shortest_edge": 32 * 32, "longest_edge": 48 * 48},
    )
    cls = compat.ImageOnlyQwen2VLProcessor if version == "2" else compat.ImageOnlyQwen2_5_VLProcessor
    processor = cls(
        image_processor=image_processor,
        tokenizer=tok,
        chat_template=_template(
            "<|im_start|>user{{ '\\n' }}",
            "<|vision_start|><|image_pad|><|vision_end|>",
            "<|im_end|>{{ '\\n' }}",
            "<|im_start|>assistant{{ '\\n' }}",
        ),
    )
    head_dim = HIDDEN // 4
    text = dict(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16],
        },
    )
    ids = dict(
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
    )
    if version == "2":
        from transformers import Qwen2VLConfig

        vision = dict(
            depth=2,
            embed_dim=32,
            hidden_size=HIDDEN,
            mlp_ratio=2,
            num_heads=2,
            patch_size=patch,
            spatial_merge_size=merge,
            temporal_patch_size=2,
        )
        config = Qwen2VLConfig(vision_config=vision, text_config=text, **ids)
    else:
        from transformers import Qwen2_5_VLConfig

        vision = dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=HIDDEN,
            patch_size=patch,
            spatial_merge_size=merge,
            temporal_patch_size=2,
            window_size=2 * patch * merge,
            fullatt_block_indexes=[1],
        )
        config = Qwen2_5_VLConfig(vision_config=vision, text_config=text, **ids)
    return config, processor


# ---------------------------------------------------------------------- Idefics3 / SmolVLM
IDEFICS_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]


def _idefics(smol: bool):
    size, patch, scale = 32, 8, 2
    image_seq_len = (size // patch) ** 2 // scale**2
    template = _template("User:", "<image>", "<end_of_utterance>{{ '\\n' }}", "Assistant: ")
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=size,
        patch_size=patch,
    )
    extra = {
        "image_token": "<image>",
        "fake_image_token": "<fake_token_around_image>",
        "end_of_utterance_token": "<end_of_utterance>",
        "global_image_token": "<global-img>",
    }
    if smol:
        from transformers import SmolVLMConfig, SmolVLMImageProcessorPil, SmolVLMVisionConfig

        from fedmllm.model.compat import ImageOnlySmolVLMProcessor

        tok = _tokenizer(
            [*IDEFICS_SPECIAL, "<video>"],
            pad="<|endoftext|>",
            eos="<end_of_utterance>",
            bos="<|im_start|>",
            extra={**extra, "video_token": "<video>"},
        )
        image_processor = SmolVLMImageProcessorPil(
            size={"longest_edge": 2 * size}, max_image_size={"longest_edge": size}, do_image_splitting=True
        )
        processor = ImageOnlySmolVLMProcessor(
            image_processor=image_processor, tokenizer=tok, image_seq_len=image_seq_len, chat_template=template
        )
        config = SmolVLMConfig(
            vision_config=SmolVLMVisionConfig(**vision),
            text_config=_llama(tok),
            scale_factor=scale,
            image_token_id=tok.convert_tokens_to_ids("<image>"),
        )
    else:
        from transformers import Idefics3Config, Idefics3ImageProcessorPil, Idefics3Processor, Idefics3VisionConfig

        tok = _tokenizer(
            IDEFICS_SPECIAL, pad="<|endoftext|>", eos="<end_of_utterance>", bos="<|im_start|>", extra=extra
        )
        image_processor = Idefics3ImageProcessorPil(
            size={"longest_edge": 2 * size}, max_image_size={"longest_edge": size}, do_image_splitting=True
        )
        processor = Idefics3Processor(
            image_processor=image_processor, tokenizer=tok, image_seq_len=image_seq_len, chat_template=template
        )
        config = Idefics3Config(
            vision_config=Idefics3VisionConfig(**vision),
            text_config=_llama(tok),
            scale_factor=scale,
            image_token_id=tok.convert_tokens_to_ids("<image>"),
        )
    return config, processor


# ---------------------------------------------------------------------------------- LLaVA-NeXT
def _llava_next():
    from transformers import CLIPVisionConfig, LlavaNextConfig, LlavaNextImageProcessorPil, LlavaNextProcessor

    tok = _tokenizer(
        ["<pad>", "<s>", "</s>", "<image>"], pad="<pad>", eos="</s>", bos="<s>", extra={"image_token": "<image>"}
    )
    size, patch = 32, 8
    pinpoints = [[size, size], [size, 2 * size], [2 * size, size], [2 * size, 2 * size]]
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=_template("[INST] ", "<image>{{ '\\n' }}", " [/INST]", "ASSISTANT: "),
    )
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(**_vision(size, patch)),
        text_config=_llama(tok),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    return config, processor


def _vision(size: int, patch: int) -> dict:
    """A two-layer ViT of width 32 on `size` px images cut into `patch` px patches."""
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=size,
        patch_size=patch,
    )


# ---------------------------------------------------------------------------------- Idefics2
def _idefics2():
    from transformers import (
        Idefics2Config,
        Idefics2ImageProcessorPil,
        Idefics2PerceiverConfig,
        Idefics2Processor,
        Idefics2VisionConfig,
        MistralConfig,
    )

    special = ["<|endoftext|>", "<s>", "</s>", "<fake_token_around_image>", "<image>", "<end_of_utterance>"]
    extra = {"image_token": "<image>", "image_boundary_token": "<fake_token_around_image>"}
    tok = _tokenizer(special, pad="<|endoftext|>", eos="<end_of_utterance>", bos="<s>", extra=extra)
    size, patch, latents = 32, 8, 4
    processor = Idefics2Processor(
        image_processor=Idefics2ImageProcessorPil(
            size={"shortest_edge": size, "longest_edge": 2 * size}, do_image_splitting=False
        ),
        tokenizer=tok,
        image_seq_len=latents,
        chat_template=_template("User:", "<image>", "<end_of_utterance>{{ '\\n' }}", "Assistant: "),
    )
    text = MistralConfig(**_llama(tok).to_dict() | {"model_type": "mistral", "sliding_window": None})
    config = Idefics2Config(
        vision_config=Idefics2VisionConfig(**_vision(2 * size, patch)),
        perceiver_config=Idefics2PerceiverConfig(
            hidden_size=HIDDEN,
            resampler_n_latents=latents,
            resampler_depth=1,
            resampler_n_heads=2,
            resampler_head_dim=16,
            num_key_value_heads=1,
        ),
        text_config=text,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    return config, processor


# ---------------------------------------------------------------------------------- Gemma 3
def _gemma3():
    from transformers import (
        Gemma3Config,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )

    special = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"]
    special += ["<start_of_image>", "<end_of_image>", "<image_soft_token>"]
    extra = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tok = _tokenizer(special, pad="<pad>", eos="<end_of_turn>", bos="<bos>", extra=extra)
    size, patch, tokens = 32, 8, 4  # 4x4 patches pooled to 2x2 image tokens
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": size, "width": size}),
        tokenizer=tok,
        image_seq_length=tokens,
        chat_template=_template(
            "<start_of_turn>user{{ '\\n' }}",
            "<start_of_image>",
            "<end_of_turn>{{ '\\n' }}",
            "<start_of_turn>model{{ '\\n' }}",
        ),
    )
    text = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],  # the full layer sees the image from the answer
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    config = Gemma3Config(
        text_config=text,
        vision_config=SiglipVisionConfig(**_vision(size, patch)),
        mm_tokens_per_image=tokens,
        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"),
    )
    return config, processor


# ---------------------------------------------------------------------------------- InternVL
def _internvl():
    from transformers import GotOcr2ImageProcessorPil, InternVLConfig, InternVLVisionConfig

    from fedmllm.model.compat import ImageOnlyInternVLProcessor

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
    extra = {
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    }
    tok = _tokenizer(special, pad="<|endoftext|>", eos="<|im_end|>", extra=extra)
    size, patch = 32, 8
    processor = ImageOnlyInternVLProcessor(
        image_processor=GotOcr2ImageProcessorPil(
            size={"height": size, "width": size}, crop_to_patches=True, min_patches=1, max_patches=4
        ),
        tokenizer=tok,
        image_seq_length=(size // patch) ** 2 // 4,  # pixel shuffle at downsample ratio 0.5
        chat_template=_template(
            "<|im_start|>user{{ '\\n' }}",
            "<IMG_CONTEXT>{{ '\\n' }}",
            "<|im_end|>{{ '\\n' }}",
            "<|im_start|>assistant{{ '\\n' }}",
        ),
    )
    vision = _vision(size, patch) | {"image_size": [size, size], "patch_size": [patch, patch]}
    config = InternVLConfig(
        vision_config=InternVLVisionConfig(**vision),
        text_config=_qwen2(tok),
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=processor.image_seq_length,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
    )
    return config, processor


def _qwen2(tokenizer):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


# ---------------------------------------------------------------------------------- Mistral 3
def _mistral3():
    from transformers import Mistral3Config, MistralConfig, PixtralImageProcessorPil, PixtralVisionConfig

    from fedmllm.model.compat import pixtral_processor

    special = ["<pad>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"]
    tok = _tokenizer(special, pad="<pad>", eos="</s>", bos="<s>")
    patch, merge = 8, 2
    processor = pixtral_processor()(
        image_processor=PixtralImageProcessorPil(size={"longest_edge": 64}, patch_size=patch),
        tokenizer=tok,
        patch_size=patch,
        spatial_merge_size=merge,
        chat_template=_template("[INST]", "[IMG]", "", "[/INST]"),
    )
    text = MistralConfig(**_llama(tok).to_dict() | {"model_type": "mistral", "sliding_window": None})
    config = Mistral3Config(
        vision_config=PixtralVisionConfig(**_vision(64, patch) | {"head_dim": 16}),
        text_config=text,
        image_token_index=tok.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=merge,
        vision_feature_layer=-1,
    )
    return config, processor


# ---------------------------------------------------------------------------------- Qwen3-VL
def _qwen3_vl():
    from transformers import Qwen3VLConfig

    from fedmllm.model.compat import ImageOnlyQwen3VLProcessor

    tok, image_processor, ids = _qwen_parts()
    processor = ImageOnlyQwen3VLProcessor(
        image_processor=image_processor, tokenizer=tok, chat_template=_qwen_template()
    )
    head_dim = HIDDEN // 4
    text = dict(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=head_dim,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16],
            "mrope_interleaved": True,
        },
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=image_processor.patch_size,
        spatial_merge_size=image_processor.merge_size,
        temporal_patch_size=2,
        out_hidden_size=HIDDEN,
        num_position_embeddings=16,
        deepstack_visual_indexes=[0, 1],  # both layers feed the decoder through their own mergers
    )
    config = Qwen3VLConfig(vision_config=vision, text_config=text, **ids)
    return config, processor


def _qwen_parts():
    """The tokenizer, image processor and token ids the Qwen-VL families share."""
    from transformers import Qwen2VLImageProcessorPil

    tok = _tokenizer(
        QWEN_SPECIAL,
        pad="<|endoftext|>",
        eos="<|im_end|>",
        extra={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
    )
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=8, merge_size=2, temporal_patch_size=2, size={"shortest_edge": 32 * 32, "longest_edge": 48 * 48}
    )
    ids = dict(
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"),
    )
    return tok, image_processor, ids


def _qwen_template() -> str:
    return _template(
        "<|im_start|>user{{ '\\n' }}",
        "<|vision_start|><|image_pad|><|vision_end|>",
        "<|im_end|>{{ '\\n' }}",
        "<|im_start|>assistant{{ '\\n' }}",
    )


# ---------------------------------------------------------------------------------- PaliGemma
def _paligemma():
    """As on the Hub: a processor without a chat template (fedmllm supplies PaliGemma's prompt
    format) that refuses text without an image."""
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
        SiglipVisionConfig,
    )

    tok = _tokenizer(["<pad>", "<eos>", "<bos>", "<image>"], pad="<pad>", eos="<eos>", bos="<bos>",
                     extra={"image_token": "<image>"})  # fmt: skip
    size, patch = 32, 8
    image_processor = SiglipImageProcessorPil(size={"height": size, "width": size})
    image_processor.image_seq_length = (size // patch) ** 2
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)  # adds 1152 <loc>/<seg> tokens
    tok = processor.tokenizer
    text = GemmaConfig(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    config = PaliGemmaConfig(
        vision_config=SiglipVisionConfig(**_vision(size, patch)),
        text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vocab_size=len(tok),
        projection_dim=HIDDEN,
        hidden_size=HIDDEN,
    )
    return config, processor


# ---------------------------------------------------------------------------------- Mllama
def _mllama():
    """Llama 3.2 Vision's layout: the decoder's layer 1 cross-attends to the image tiles."""
    from transformers import (
        MllamaConfig,
        MllamaImageProcessorPil,
        MllamaProcessor,
        MllamaTextConfig,
        MllamaVisionConfig,
    )

    special = ["<|finetune_right_pad_id|>", "<|begin_of_text|>", "<|eot_id|>", "<|image|>", "<|python_tag|>"]
    special += ["<|start_header_id|>", "<|end_header_id|>"]
    tok = _tokenizer(special, pad="<|finetune_right_pad_id|>", eos="<|eot_id|>", bos="<|begin_of_text|>",
                     extra={"image_token": "<|image|>"})  # fmt: skip
    size, patch, tiles = 32, 8, 4
    processor = MllamaProcessor(
        image_processor=MllamaImageProcessorPil(size={"height": size, "width": size}, max_image_tiles=tiles),
        tokenizer=tok,
        chat_template=_template(
            "<|start_header_id|>user<|end_header_id|>{{ '\\n\\n' }}",
            "<|image|>",
            "<|eot_id|>",
            "<|start_header_id|>assistant<|end_header_id|>{{ '\\n\\n' }}",
        ),
    )
    vision = MllamaVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_global_layers=1,
        attention_heads=2,
        image_size=size,
        patch_size=patch,
        max_num_tiles=tiles,
        intermediate_layers_indices=[0],
        vision_output_dim=2 * 32,  # the last hidden state and layer 0's, concatenated
    )
    text = MllamaTextConfig(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=TEXT_LAYERS,
        cross_attention_layers=[1],
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    config = MllamaConfig(
        vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<|image|>")
    )
    return config, processor


# ---------------------------------------------------------------------------------- MiniCPM-V 4.6
def _minicpmv4_6():
    """The paper's family, natively: a Qwen3.5 language model (one Gated DeltaNet layer, one
    attention layer: LoRA goes on the latter) behind a sliced-image SigLIP-style encoder."""
    from transformers import MiniCPMV4_6Config, MiniCPMV4_6ImageProcessorPil, MiniCPMV4_6VisionConfig

    from fedmllm.model.compat import ImageOnlyMiniCPMV4_6Processor

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "</image>", "<slice>", "</slice>"]
    special += ["<image_id>", "</image_id>", "<|image_pad|>", "<|video_pad|>"]
    extra = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "image_start_token": "<image>"}
    extra |= {"image_end_token": "</image>", "slice_start_token": "<slice>", "slice_end_token": "</slice>"}
    extra |= {"image_id_start_token": "<image_id>", "image_id_end_token": "</image_id>"}
    tok = _tokenizer(special, pad="<|endoftext|>", eos="<|im_end|>", extra=extra)
    size, patch = 32, 8
    image_processor = MiniCPMV4_6ImageProcessorPil(scale_resolution=size, patch_size=patch, max_slice_nums=4)
    processor = ImageOnlyMiniCPMV4_6Processor(
        image_processor=image_processor,
        tokenizer=tok,
        chat_template=_template(
            "<|im_start|>user{{ '\\n' }}",
            "<|image_pad|>{{ '\\n' }}",
            "<|im_end|>{{ '\\n' }}",
            "<|im_start|>assistant{{ '\\n' }}",
        ),
    )
    text = dict(
        model_type="qwen3_5_text",
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=TEXT_LAYERS,
        layer_types=["linear_attention", "full_attention"],
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    vision = MiniCPMV4_6VisionConfig(**_vision(4 * size, patch), insert_layer_id=0)
    config = MiniCPMV4_6Config(
        text_config=text,
        vision_config=vision,
        insert_layer_id=0,
        image_size=size,
        image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
    )
    return config, processor


# ---------------------------------------------------------------------------------- Qwen3.5
def _qwen3_5():
    """Qwen3.5's hybrid decoder (Gated DeltaNet + gated attention) behind Qwen3-VL's vision."""
    from transformers import Qwen3_5Config

    from fedmllm.model.compat import ImageOnlyQwen3VLProcessor

    tok, image_processor, ids = _qwen_parts()
    processor = ImageOnlyQwen3VLProcessor(
        image_processor=image_processor, tokenizer=tok, chat_template=_qwen_template()
    )
    text = dict(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=TEXT_LAYERS,
        layer_types=["linear_attention", "full_attention"],
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,  # rotary on a quarter: 8 dims, 4 frequencies for (t, h, w)
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "partial_rotary_factor": 0.25,
            "mrope_section": [2, 1, 1],
            "mrope_interleaved": True,
        },
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=image_processor.patch_size,
        spatial_merge_size=image_processor.merge_size,
        temporal_patch_size=2,
        out_hidden_size=HIDDEN,
        num_position_embeddings=16,
    )
    return Qwen3_5Config(vision_config=vision, text_config=text, **ids), processor


# ---------------------------------------------------------------------------------- VipLLaVA
def _vipllava():
    """LLaVA's layout with features from several vision layers, concatenated before the projector."""
    from transformers import CLIPVisionConfig, VipLlavaConfig

    config, processor = _llava()
    vision = CLIPVisionConfig(**_vision(32, 8) | {"num_hidden_layers": 3})
    config = VipLlavaConfig(
        vision_config=vision,
        text_config=config.text_config,
        image_token_index=config.image_token_id,
        vision_feature_layers=[-2, -1],
    )
    return config, processor


BUILDERS = {
    "llava": _llava,
    "llava_onevision": _llava_onevision,
    "qwen2_vl": lambda: _qwen("2"),
    "qwen2_5_vl": lambda: _qwen("2.5"),
    "idefics3": lambda: _idefics(smol=False),
    "smolvlm": lambda: _idefics(smol=True),
    "llava_next": _llava_next,
    "idefics2": _idefics2,
    "gemma3": _gemma3,
    "internvl": _internvl,
    "mistral3": _mistral3,
    "qwen3_vl": _qwen3_vl,
    "paligemma": _paligemma,
    "mllama": _mllama,
    "minicpmv4_6": _minicpmv4_6,
    "qwen3_5": _qwen3_5,
    "vipllava": _vipllava,
}


def _open_gates(model) -> None:
    """Mllama initialises its cross-attention gates at 0 (tanh(0) = 0: the image has no effect and
    the projector no gradient); a trained checkpoint's are open."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                param.fill_(0.5)


AFTER_INIT = {"mllama": _open_gates}


def family_parts(family: str) -> tuple:
    """The tiny config and processor of `family`."""
    if family not in BUILDERS:
        raise KeyError(f"unknown family {family!r} (known: {sorted(BUILDERS)})")
    return BUILDERS[family]()


def build_family_checkpoint(family: str, folder: Path, seed: int = 0) -> Path:
    """Build a tiny random `family` model + processor and `save_pretrained` both into `folder`."""
    from transformers import AutoModelForImageTextToText

    config, processor = family_parts(family)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    if family in AFTER_INIT:
        AFTER_INIT[family](model)
    tok = processor.tokenizer
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    if family in VIDEO_PROCESSOR:
        _add_video_processor(folder, VIDEO_PROCESSOR[family], processor.image_processor)
    return folder


# Hub checkpoints of these families carry a video processor, which cannot be built here without
# torchvision; its config is written by hand so that loading meets the same failure a real one does.
VIDEO_PROCESSOR = {
    "llava_onevision": "LlavaOnevisionVideoProcessor",
    "qwen2_vl": "Qwen2VLVideoProcessor",
    "qwen2_5_vl": "Qwen2VLVideoProcessor",
    "smolvlm": "SmolVLMVideoProcessor",
    "qwen3_vl": "Qwen3VLVideoProcessor",
    "internvl": "InternVLVideoProcessor",
    "minicpmv4_6": "MiniCPMV4_6VideoProcessor",
    "qwen3_5": "Qwen3VLVideoProcessor",
}


def _add_video_processor(folder: Path, class_name: str, image_processor) -> None:
    path = folder / "processor_config.json"
    config = json.loads(path.read_text())
    image = config.get("image_processor", {})
    video = {"video_processor_type": class_name}
    video.update(
        {
            k: image[k]
            for k in ("size", "patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std")
            if k in image
        }
    )
    config["video_processor"] = video
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
