"""The built-in tiny MLLM: a LLaVA built from a config, so CPU runs and tests need no download.

It is saved with `save_pretrained` into the cache and then loaded back through exactly the Auto
classes a hub checkpoint goes through (see `model/load.py`), so the tiny model exercises the real
loading path. LLaVA is the family with the least special-casing: one `<image>` placeholder
expanded to a fixed number of patch tokens, and a plain CLIP vision tower.
"""

from __future__ import annotations

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

from fedmllm.errors import FedmllmError
from fedmllm.model import tiny_corpus, tiny_pretrain
from fedmllm.model.train_loop import reproducible
from fedmllm.paths import cache_dir

log = logging.getLogger(__name__)

NAME = "tiny"
# Bump when the architecture, the pretraining recipe or its frozen text (model/tiny_corpus.py)
# changes: the cache name holds nothing else, so a stale build is otherwise reused silently.
VERSION = 6
IMAGE_SIZE, PATCH = 32, 8
LAYERS = 4
PRETRAIN_STEPS, PRETRAIN_SAMPLES = 1000, 2000
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
    """A folder per (recipe version, seed). The recipe's text is frozen in model/tiny_corpus.py,
    not read from the data registry, so registering a dataset does not rebuild everyone's model
    (its words the tokenizer lacks fall back to byte-level BPE)."""
    return cache_dir() / "models" / f"tiny-llava-v{VERSION}-seed{seed}"


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
    tok.train_from_iterator(tiny_corpus.tokenizer_corpus(), trainer=trainer)
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


def ensure(
    folder: Path | None = None,
    seed: int = 0,
    steps: int = PRETRAIN_STEPS,
    n_samples: int = PRETRAIN_SAMPLES,
    *,
    quiet: bool = False,
) -> Path:
    """Build and save the tiny model into `folder` (the cache by default) unless it is there.

    The same bytes on every machine with the same packages and CPU instruction set, whatever its
    thread count (see `reproducible`). Written into a temporary sibling and renamed, so a killed
    build leaves nothing half-written. `steps` and `n_samples` shorten the recipe for tests.
    On a terminal the pretraining shows a progress bar, unless `quiet`.
    """
    if folder is None and (steps, n_samples) != (PRETRAIN_STEPS, PRETRAIN_SAMPLES):
        raise FedmllmError(f"tiny.ensure: a shortened recipe (steps={steps}, n_samples={n_samples}) needs a folder")
    folder = Path(folder) if folder else default_folder(seed)
    if (folder / "config.json").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("building the tiny model in %s (one-time pretraining, about 3 minutes on one thread)", folder)
    with reproducible(seed):
        model, processor = build(seed)
        loss = tiny_pretrain.pretrain(
            model,
            processor,
            tmp / "pretrain-data",
            list(tiny_corpus.PRETRAIN_LINES),
            steps=steps,
            seed=seed,
            n_samples=n_samples,
            quiet=quiet,
        )
    shutil.rmtree(tmp / "pretrain-data")
    log.info("tiny model pretrained: final loss %.3f", loss)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(folder)
    return folder
