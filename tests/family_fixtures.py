"""Tiny random checkpoints of every supported model family, built locally (no hub download).

`build_family_checkpoint(family, folder)` writes a config + random weights + processor (a locally
trained byte-level BPE tokenizer with the family's special tokens, the family's `...Pil` image
processor, a chat template) with `save_pretrained`, so that fedmllm loads it back through exactly
the path a hub checkpoint goes through.

Processors with a `video_processor` slot (LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL, SmolVLM) cannot be
constructed without torchvision; they are built through `fedmllm.model.compat`'s image-only
subclasses, which save under the original class name.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from fedmllm.model import families
from fedmllm.scenarios import prompts

FAMILIES = tuple(families.FAMILIES)  # every family fedmllm lists: one without a fixture below fails
# module-name fragment of each family's vision encoder (the projector is excluded separately)
VISION_TOWER = {
    "llava": "vision_tower",
    "llava_onevision": "vision_tower",
    "qwen2_vl": "visual",
    "qwen2_5_vl": "visual",
    "idefics3": "vision_model",
    "smolvlm": "vision_model",
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


BUILDERS = {
    "llava": _llava,
    "llava_onevision": _llava_onevision,
    "qwen2_vl": lambda: _qwen("2"),
    "qwen2_5_vl": lambda: _qwen("2.5"),
    "idefics3": lambda: _idefics(smol=False),
    "smolvlm": lambda: _idefics(smol=True),
}


def build_family_checkpoint(family: str, folder: Path, seed: int = 0) -> Path:
    """Build a tiny random `family` model + processor and `save_pretrained` both into `folder`."""
    from transformers import AutoModelForImageTextToText

    if family not in BUILDERS:
        raise KeyError(f"unknown family {family!r} (known: {sorted(BUILDERS)})")
    config, processor = BUILDERS[family]()
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
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
