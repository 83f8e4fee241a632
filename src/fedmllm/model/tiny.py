"""The built-in tiny MLLM: a LLaVA built from a config, so CPU runs and tests need no download.

It is saved with `save_pretrained` into the cache and then loaded back through exactly the Auto
classes a hub checkpoint goes through (see `model/load.py`), so the tiny model exercises the real
loading path. LLaVA is the family with the least special-casing: one `<image>` placeholder
expanded to a fixed number of patch tokens, and a plain CLIP vision tower.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from fedmllm.model import tiny_pretrain
from fedmllm.paths import cache_dir

log = logging.getLogger(__name__)

NAME = "tiny"
VERSION = 5  # bump when the architecture or the pretraining recipe changes (the corpus is hashed)
IMAGE_SIZE, PATCH = 32, 8
LAYERS = 4
PRETRAIN_STEPS = 1000
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]

# One template for every family's processor: a user turn holding the image (if any) and the
# text, then the assistant's turn. A literal newline after a {% %} tag would be eaten, hence
# the {{ '\n' }}.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{{ '\n' }}{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{{ '\n' }}"
    "{% else %}ASSISTANT: "
    "{% for part in message['content'] %}{{ part['text'] }}{% endfor %}</s>{{ '\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def default_folder(seed: int = 0) -> Path:
    """A folder per (recipe version, text corpus, seed): registering a dataset with new prompt
    words builds a new tiny model instead of reusing one whose tokenizer lacks them."""
    digest = hashlib.sha256("\n".join(_corpus() + prompts_corpus()).encode()).hexdigest()[:8]
    return cache_dir() / "models" / f"tiny-llava-v{VERSION}-{digest}-seed{seed}"


def _corpus() -> list[str]:
    """Text the tokenizer should cover compactly; byte-level BPE still encodes anything else."""
    from fedmllm.data.synthetic import memes
    from fedmllm.scenarios import prompts

    words = memes.KIND + memes.MOCKING + memes.NOUNS + list(memes.WARM) + list(memes.COOL)
    lines = [t.format(adj=a, noun=n) for t in memes.TEMPLATES for a in words for n in memes.NOUNS]
    lines += (
        prompts.vocabulary() + tiny_pretrain.vocabulary() + ["USER: ASSISTANT: (A) (B) (C) (D) (E) (F) (G) (H) yes no"]
    )
    return lines * 4


def prompts_corpus() -> list[str]:
    """The fixed instruction text of every task prompt, repeated in pretraining."""
    from fedmllm.data.registry import DATASETS
    from fedmllm.scenarios import prompts

    datasets = [line for name in sorted(DATASETS) for line in DATASETS[name].vocabulary()]
    return prompts.vocabulary() + datasets + tiny_pretrain.vocabulary()


def build_tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )


def build(seed: int = 0, layers: int = LAYERS, hidden: int = 128) -> tuple[torch.nn.Module, LlavaProcessor]:
    """A randomly initialised tiny LLaVA and its processor, deterministic given `seed`."""
    tokenizer = build_tokenizer()
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
        chat_template=CHAT_TEMPLATE,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=PATCH,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden * 4,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, processor


def ensure(folder: Path | None = None, seed: int = 0) -> Path:
    """Build and save the tiny model into `folder` (the cache by default) unless it is there.

    Written into a temporary sibling and renamed, so a killed build leaves nothing half-written.
    """
    folder = Path(folder) if folder else default_folder(seed)
    if (folder / "config.json").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model, processor = build(seed)
    log.info("building the tiny model in %s (one-time pretraining, about 2 minutes on 2 cores)", folder)
    corpus = prompts_corpus()
    loss = tiny_pretrain.pretrain(model, processor, tmp / "pretrain-data", corpus, steps=PRETRAIN_STEPS, seed=seed)
    shutil.rmtree(tmp / "pretrain-data")
    log.info("tiny model pretrained: final loss %.3f", loss)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(folder)
    return folder
