"""Every tested model family is found, loads, trains, evaluates and federates through fedmllm's real path.

Each test builds a tiny random checkpoint of one family (tests/family_fixtures.py), saves it with
`save_pretrained`, and loads it back only through fedmllm's loading path (Auto classes and
processor), exactly as a hub checkpoint would be loaded. The fast tests check what discovery finds
(against the hand-written table below), one training and evaluation pass, and that batching leaves
each sample's likelihood unchanged; the slow ones federate one round with the real CLI and load
the adapter with plain peft.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForImageTextToText

from fedmllm.data.batching import batches
from fedmllm.data.sample import Sample
from fedmllm.errors import FedmllmError
from fedmllm.evaluation.scoring import evaluate_choice
from fedmllm.fl.client import answer_loss, train
from fedmllm.model import families
from fedmllm.model.collate import collate, encode, open_image, prompt_text
from fedmllm.model.families import find_family
from fedmllm.model.load import ModelSpec, check_model, session, trainable_state
from fedmllm.scenarios.prompts import target_text

sys.path.insert(0, str(Path(__file__).parent))
from family_fixtures import BUILDERS, FAMILIES, VISION_TOWER, build_family_checkpoint, family_parts  # noqa: E402

ATTENTION = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"}
MERGERS = ("model.visual.merger", "model.visual.deepstack_merger_list.0", "model.visual.deepstack_merger_list.1")
# family -> (the language model's path, LoRA targets within a decoder layer, projectors, number of
# LoRA-wrapped Linear layers), by reading each family's modeling file: what discovery must find
EXPECTED: dict[str, tuple[str, set[str], tuple[str, ...], int]] = {
    "llava": ("model.language_model", ATTENTION, ("model.multi_modal_projector",), 2 * 4),
    "llava_onevision": ("model.language_model", ATTENTION, ("model.multi_modal_projector",), 2 * 4),
    "llava_next": ("model.language_model", ATTENTION, ("model.multi_modal_projector",), 2 * 4),
    "qwen2_vl": ("model.language_model", ATTENTION, ("model.visual.merger",), 2 * 4),
    "qwen2_5_vl": ("model.language_model", ATTENTION, ("model.visual.merger",), 2 * 4),
    "qwen3_vl": ("model.language_model", ATTENTION, MERGERS, 2 * 4),  # DeepStack: one merger per tapped layer
    "idefics2": ("model.text_model", ATTENTION, ("model.connector",), 2 * 4),  # MLP + perceiver resampler
    "idefics3": ("model.text_model", ATTENTION, ("model.connector",), 2 * 4),
    "smolvlm": ("model.text_model", ATTENTION, ("model.connector",), 2 * 4),
    "internvl": ("model.language_model", ATTENTION, ("model.multi_modal_projector",), 2 * 4),
    "gemma3": ("model.language_model", ATTENTION, ("model.multi_modal_projector",), 2 * 4),
    "paligemma": ("model.language_model", ATTENTION, ("model.multi_modal_projector",), 2 * 4),
    "mistral3": ("model.language_model", ATTENTION, ("model.multi_modal_projector",), 2 * 4),
    # layer 0 self-attends, layer 1 cross-attends to the image: both are attention
    "mllama": (
        "model.language_model",
        ATTENTION | {a.replace("self_attn", "cross_attn") for a in ATTENTION},
        ("model.multi_modal_projector",),
        2 * 4,
    ),
    # layer 0 is a Gated DeltaNet (no attention module), layer 1 attention; `vit_merger` belongs to the ViT
    "minicpmv4_6": ("model.language_model", ATTENTION, ("model.merger",), 1 * 4),
    "qwen3_5": ("model.language_model", ATTENTION, ("model.visual.merger",), 1 * 4),  # layer 0: DeltaNet
    "vipllava": ("model.language_model", ATTENTION, ("model.multi_modal_projector",), 2 * 4),
}


def test_every_tested_family_has_a_fixture_and_an_expectation() -> None:
    assert set(families.TESTED) == set(BUILDERS) == set(EXPECTED) == set(VISION_TOWER)
    assert len(families.TESTED) >= 15
    assert not set(families.TESTED) & set(families.NOT_WORKING)


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


def answer_logprobs(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each row's summed log-likelihood of its answer tokens."""
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    picked = logits.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * (labels != -100)).sum(-1)


def assert_batching_keeps_likelihoods(sess, samples: list[Sample]) -> None:
    """A sample's answer likelihood is the same alone and in a batch that mixes image sizes,
    samples with and without an image, and padding (images are padded or packed as the model reads them).

    Except Mllama's samples without an image: in a batch with images, the model's cross-attention
    gives their rows a blank image to attend to (as in its processor's own batches), alone none."""
    items = [encode(sess.processor, s, target_text(s)) for s in samples]
    pad_id = sess.processor.tokenizer.pad_token_id
    sess.model.eval()
    with torch.no_grad():
        together = answer_logprobs(sess.model, collate(items, pad_id))
        alone = torch.cat([answer_logprobs(sess.model, collate([item], pad_id)) for item in items])
    sess.model.train()
    rows = [i for i, s in enumerate(samples) if s.image is not None or not items[i].rule.per_row_images]
    assert len(rows) >= 2
    torch.testing.assert_close(together[rows], alone[rows], rtol=1e-4, atol=1e-4)
    assert len(set(alone.tolist())) == len(samples)  # each sample's own input reaches its answer


@pytest.mark.parametrize("family_name", FAMILIES)
def test_family_structure_is_found(family_name: str) -> None:
    """Discovery finds the language model's layers, their attention projections and the projector
    from the module tree alone (no table entry), and nothing of the vision tower."""
    config, _ = family_parts(family_name)
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config)
    family = find_family(model, family_name)
    language_model, attention, projectors, count = EXPECTED[family_name]
    assert (family.model_type, family.language_model, family.projectors) == (family_name, language_model, projectors)
    targets = [name for name, _ in model.named_modules() if re.fullmatch(family.targets, name)]
    assert len(targets) == count
    assert all(isinstance(model.get_submodule(t), torch.nn.Linear) for t in targets)
    assert {re.sub(rf"^{re.escape(language_model)}\.layers\.\d+\.", "", t) for t in targets} == attention
    assert not [t for t in targets if VISION_TOWER[family_name] in t]


@pytest.mark.parametrize("family_name", FAMILIES)
def test_family_loads_trains_and_evaluates(family_name: str, tmp_path: Path) -> None:
    folder = build_family_checkpoint(family_name, tmp_path / family_name)
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == family_name

    sess = session(ModelSpec(name=str(folder), lora_dropout=0.0))

    # LoRA sits on the language model's attention only; projector trained in full; vision frozen
    family = sess.family
    names = dict(sess.model.named_parameters())
    lora = [n for n in names if "lora_" in n]
    assert lora, "no LoRA parameters"
    assert all(f"{family.language_model}.layers." in n for n in lora), [
        n for n in lora if family.language_model not in n
    ]
    vision = VISION_TOWER[family_name]
    assert not [n for n in lora if vision in n]
    projector = [n for n in names if any(f"{proj}.modules_to_save" in n for proj in family.projectors)]
    assert {proj for proj in family.projectors if any(f"{proj}.modules_to_save" in n for n in projector)} == set(
        family.projectors
    ), f"a projector of {family.projectors} is not wrapped for training"
    assert all(names[n].requires_grad for n in projector)
    tower = [n for n in names if vision in n and not any(proj in n for proj in family.projectors)]
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
    assert_batching_keeps_likelihoods(sess, samples[:4])
    before = trainable_state(sess.model)
    result = train(sess, samples, lr=1e-3, steps=2, batch_size=4, seed=0)
    assert math.isfinite(result.loss) and result.loss > 0
    assert result.steps == 2
    after = trainable_state(sess.model)
    assert before.keys() == after.keys()
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert {n for n in changed if "lora_B" in n}, "LoRA B matrices did not change"
    assert {n for n in changed if n in projector}, "projector did not change"

    metrics = evaluate_choice(sess, samples, batch_size=4, generate=True)  # greedy generation, left-padded
    assert set(metrics) == {"accuracy", "macro_f1", "auc", "gen_auc", "gen_accuracy", "gen_parse_failure"}
    for name, value in metrics.items():
        assert 0.0 <= value <= 1.0, (name, value)


def test_paligemma_prompt_is_the_processors_own_training_format(tmp_path: Path) -> None:
    """PaliGemma ships no chat template and its prefix attends both ways: fedmllm's encoding of
    prompt + answer equals the processor's own `suffix` encoding (ids, token types, labels), and
    a text-only prompt (the processor refuses one) gets BOS, the prefix and the newline."""
    sess = session(ModelSpec(name=str(build_family_checkpoint("paligemma", tmp_path / "pg")), lora_dropout=0.0))
    processor, samples = sess.processor, make_samples(tmp_path / "images")
    image, text_only = samples[0], samples[2]
    ours = encode(processor, image, target_text(image))
    theirs = processor(
        text=[prompt_text(processor, image, "modality")],
        images=[open_image(image)],
        suffix=[" " + target_text(image)],
        return_tensors="pt",
    )
    assert torch.equal(ours.tokens["input_ids"], theirs["input_ids"][0])
    assert torch.equal(ours.tokens["token_type_ids"], theirs["token_type_ids"][0])
    assert torch.equal(ours.labels, torch.as_tensor(theirs["labels"][0]))
    assert ours.tokens["token_type_ids"].sum() == (ours.labels != -100).sum()  # only the answer is causal
    prompt = prompt_text(processor, text_only, "modality")
    assert prompt.startswith("<bos>Text: ") and prompt.endswith("Answer with the option letter.\n")
    assert not encode(processor, text_only, None).images


def test_mllama_batch_is_the_processors_own_batch(tmp_path: Path) -> None:
    """Mllama's image tensors align with the batch rows: a mixed batch collated by fedmllm equals
    the one its processor builds for the same prompts, image-less row included."""
    sess = session(ModelSpec(name=str(build_family_checkpoint("mllama", tmp_path / "m")), lora_dropout=0.0))
    processor, samples = sess.processor, make_samples(tmp_path / "images")
    image, text_only = samples[0], samples[2]
    ours = collate(
        [encode(processor, image, None), encode(processor, text_only, None)], processor.tokenizer.pad_token_id
    )
    processor.tokenizer.padding_side = "right"  # as collate pads for training
    theirs = processor(
        text=[prompt_text(processor, s, "modality") for s in (image, text_only)],
        images=[[open_image(image)], []],
        padding=True,
        return_tensors="pt",
    )
    assert set(ours) - {"labels"} == set(theirs)
    for key, tensor in theirs.items():
        assert torch.equal(ours[key], tensor.to(ours[key].dtype)), key
    assert ours["cross_attention_mask"][1].sum() == 0 and ours["aspect_ratio_mask"][1].tolist() == [[1, 0, 0, 0]]


@pytest.mark.parametrize(
    ("model_type", "reason"),
    [("florence2", "encoder-decoder"), ("udop", "encoder-decoder"), ("git", "BERT-style"), ("pi0", "robot actions")],
)
def test_a_family_known_not_to_work_stops_with_the_reason(model_type: str, reason: str, tmp_path: Path) -> None:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    CONFIG_MAPPING[model_type]().save_pretrained(tmp_path)
    with pytest.raises(FedmllmError, match=rf"model type '{model_type}'\): not supported: .*{reason}"):
        check_model(ModelSpec(name=str(tmp_path)))


def test_a_text_only_model_is_not_an_image_text_model(tmp_path: Path) -> None:
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4).save_pretrained(
        tmp_path
    )
    with pytest.raises(FedmllmError, match=r"model type 'llama'\): not an image-text-to-text model"):
        check_model(ModelSpec(name=str(tmp_path)))


def test_a_checkpoint_without_chat_template_stops_with_a_message(tmp_path: Path) -> None:
    folder = build_family_checkpoint("llava", tmp_path / "llava")
    (folder / "chat_template.jinja").unlink()
    with pytest.raises(FedmllmError, match=r"model type 'llava'\): its processor has no chat template"):
        session(ModelSpec(name=str(folder)))


def test_a_structure_discovery_cannot_read_stops_with_what_is_missing() -> None:
    """Fuyu feeds image patches through one Linear, with no projector-named module: discovery
    names the model type and what it did not find instead of failing somewhere inside peft."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    with torch.device("meta"):  # the default 8B-parameter config, with no memory behind it
        model = AutoModelForImageTextToText.from_config(CONFIG_MAPPING["fuyu"]())
    with pytest.raises(FedmllmError, match=r"model type 'fuyu'\): no multimodal projector"):
        find_family(model, "adept/fuyu-8b")


def test_models_command_lists_tested_and_not_working_families(capsys) -> None:
    from fedmllm.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"tested ({len(families.TESTED)})" in out and len(families.TESTED) >= 15
    for name, reason in families.NOT_WORKING.items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(reason)}$", out, re.MULTILINE), name
    for name in ("minicpmv4_6", "qwen3_vl", "gemma3", "internvl", "mistral3", "llava_next", "idefics2", "paligemma"):
        assert re.search(rf"^  {name} ", out, re.MULTILINE), name


@pytest.mark.slow
@pytest.mark.parametrize("family_name", FAMILIES)
def test_family_federates_and_its_adapter_loads_in_plain_peft(family_name: str, tmp_path: Path) -> None:
    """One federated round with the real CLI (Flower's simulation, two clients, the synthetic
    memes), then the run's adapter loaded with plain peft onto the base checkpoint."""
    from peft import PeftModel, get_peft_model_state_dict

    from fedmllm.cli import main

    folder = build_family_checkpoint(family_name, tmp_path / family_name)
    out = tmp_path / "run"
    args = ["run", "--model", str(folder), "--num-clients", "2", "--clients-per-round", "2", "--rounds", "1"]
    args += ["--local-steps", "1", "--batch-size", "2", "--synthetic-train", "16", "--synthetic-test", "8"]
    args += ["--partition", "iid", "--no-eval-views", "--client-cpus", "1", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["clients"] for r in rows] == [[0, 1]] and not rows[0]["failed"]
    assert 0.0 <= summary["final"]["auc"] <= 1.0 and 0.0 <= summary["final"]["gen_accuracy"] <= 1.0

    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(folder), out / "adapter")
    saved = load_file(out / "adapter" / "adapter_model.safetensors")
    loaded = get_peft_model_state_dict(model)  # under the names peft saves them
    assert saved.keys() == loaded.keys() and all(torch.equal(loaded[n], t) for n, t in saved.items())
    assert any(EXPECTED[family_name][2][0] + "." in n for n in saved)  # the projector travels with it
    assert any("lora_B" in n and t.abs().sum() > 0 for n, t in saved.items())  # trained, not the initial zeros
    expected_lora = 2 * EXPECTED[family_name][3]  # lora_A and lora_B per wrapped Linear
    assert sum("lora_" in n for n in saved) == expected_lora
