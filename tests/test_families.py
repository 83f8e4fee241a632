"""Every supported model family loads, trains and evaluates through fedmllm's real loading path.

Each test builds a tiny random checkpoint of one family (tests/family_fixtures.py), saves it with
`save_pretrained`, and loads it back only through `fedmllm.model.load.session`, exactly as a
hub checkpoint would be loaded.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoConfig

from fedmllm.data.batching import batches
from fedmllm.data.sample import Sample
from fedmllm.evaluation.scoring import evaluate_choice
from fedmllm.fl.client import answer_loss, train
from fedmllm.model.collate import collate, encode
from fedmllm.model.load import ModelSpec, session, trainable_state
from fedmllm.scenarios.prompts import target_text

sys.path.insert(0, str(Path(__file__).parent))
from family_fixtures import FAMILIES, VISION_TOWER, build_family_checkpoint  # noqa: E402

QUESTION = "Is this meme hateful?"
OPTIONS = ("not-hateful", "hateful")


def make_samples(folder: Path) -> list[Sample]:
    """Eight samples, two of each modality mix, both labels; images of two different sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(8):
        has_image, has_text = i % 4 in (0, 1), i % 4 in (0, 2)
        image = None
        if has_image:
            image = folder / f"img{i}.png"
            size = (64, 16) if i % 2 else (48, 48)  # (w, h): a wide image gets fewer crops/tiles
            Image.new("RGB", size, ((37 * i) % 256, (91 * i) % 256, 200)).save(image)
        label = i % 2
        samples.append(
            Sample(
                id=f"s{i}",
                image=image,
                text=f"a cat on a mat number {i}" if has_text else None,
                question=QUESTION,
                answer=OPTIONS[label],
                options=OPTIONS,
                label=label,
            )
        )
    assert {s.modality for s in samples} == {"image+text", "image", "text", "none"}
    return samples


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and OpenMP threads spinning against other processes
    on a small shared machine made these tests 30-60x slower (2 s instead of 50 ms per step)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_weights_loaded(model: torch.nn.Module, folder: Path) -> None:
    """The PEFT-wrapped model holds every saved tensor (not a fresh random init).

    Matched by value, not by name: transformers 5 renames keys between the checkpoint and the
    module tree for some families (e.g. Qwen2-VL saves `model.layers.*`, loads `model.language_model.layers.*`).
    """
    saved = load_file(folder / "model.safetensors")
    pool: dict[tuple, list[torch.Tensor]] = {}
    for name, tensor in model.get_base_model().state_dict().items():
        if "lora_" not in name and ".modules_to_save." not in name:
            pool.setdefault(tuple(tensor.shape), []).append(tensor)
    missing = []
    for name, tensor in saved.items():
        candidates = pool.get(tuple(tensor.shape), [])
        match = next((i for i, c in enumerate(candidates) if torch.equal(c, tensor)), None)
        if match is None:
            missing.append(name)
        else:
            candidates.pop(match)
    assert not missing, f"saved tensors not found in the loaded model: {missing[:5]}"


def assert_answer_loss_is_model_loss(sess, samples: list[Sample]) -> None:
    """The loss with the LM head at the answer positions only equals the model's own loss, and
    so do the gradients."""
    model = sess.model
    batch = collate([encode(sess.processor, s, target_text(s)) for s in samples], sess.processor.tokenizer.pad_token_id)
    labelled = (batch["labels"][:, 1:] != -100).any(dim=0).sum().item()
    assert 0 < labelled < batch["labels"].shape[1] - 1  # the LM head really runs on fewer positions
    losses, grads = [], []
    for loss_fn in (lambda: model(**batch).loss, lambda: answer_loss(model, batch)):
        model.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    model.zero_grad(set_to_none=True)
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_loads_trains_and_evaluates(family: str, tmp_path: Path) -> None:
    folder = build_family_checkpoint(family, tmp_path / family)
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == family

    sess = session(ModelSpec(name=str(folder), lora_dropout=0.0))

    # LoRA sits on the language model's attention only; projector trained in full; vision frozen
    names = dict(sess.model.named_parameters())
    lora = [n for n in names if "lora_" in n]
    assert lora, "no LoRA parameters"
    assert all(sess.family.language_model in n for n in lora), [n for n in lora if sess.family.language_model not in n]
    vision = VISION_TOWER[family]
    assert not [n for n in lora if vision in n]
    projector = [n for n, p in names.items() if f"{sess.family.projector}.modules_to_save" in n]
    assert projector, f"projector '{sess.family.projector}' is not wrapped for training"
    assert all(names[n].requires_grad for n in projector)
    tower = [n for n in names if vision in n and sess.family.projector not in n]
    assert tower, f"no vision-tower parameters under '{vision}'"
    assert not [n for n in tower if names[n].requires_grad]
    trainable = {n for n, p in names.items() if p.requires_grad}
    assert trainable == set(lora) | set(projector), sorted(trainable - set(lora) - set(projector))[:5]
    assert sess.num_layers == config.get_text_config().num_hidden_layers
    assert_weights_loaded(sess.model, folder)

    samples = make_samples(tmp_path / "images")
    # the two training batches mix samples with and without an image, and cover all four mixes
    used = [b for b, _ in zip(batches(samples, 4, 0), range(2), strict=False)]
    assert all({s.image is None for s in b} == {True, False} for b in used)
    assert {s.modality for b in used for s in b} == {"image+text", "image", "text", "none"}
    assert_answer_loss_is_model_loss(sess, samples[:4])
    before = trainable_state(sess.model)
    result = train(sess, samples, lr=1e-3, steps=2, batch_size=4, seed=0)
    assert math.isfinite(result.loss) and result.loss > 0
    assert result.steps == 2
    after = trainable_state(sess.model)
    assert before.keys() == after.keys()
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert {n for n in changed if "lora_B" in n}, "LoRA B matrices did not change"
    assert {n for n in changed if n in projector}, "projector did not change"

    metrics = evaluate_choice(sess, samples, batch_size=4)
    assert set(metrics) == {"accuracy", "macro_f1", "auc"}
    for name, value in metrics.items():
        assert 0.0 <= value <= 1.0, (name, value)
