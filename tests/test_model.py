import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForImageTextToText

from conftest import meme
from fedmllm.errors import FedmllmError
from fedmllm.fl import client
from fedmllm.model import tiny
from fedmllm.model.collate import IGNORE, PromptCache, collate, encode, nbytes
from fedmllm.model.load import ModelSpec, load_trainable, resolve_source, session, trainable_state
from fedmllm.scenarios.prompts import target_text


def test_tiny_model_round_trips_through_from_pretrained(tiny_session, tmp_path):
    folder = tiny.ensure()
    assert (folder / "model.safetensors").is_file() and (folder / "processor_config.json").is_file()
    a = AutoModelForImageTextToText.from_pretrained(folder)
    a.save_pretrained(tmp_path / "copy")
    b = AutoModelForImageTextToText.from_pretrained(tmp_path / "copy")
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert sum(p.numel() for p in a.parameters()) < 2_000_000


def test_lora_targets_language_attention_only(tiny_session):
    names = [n for n, p in tiny_session.model.named_parameters() if p.requires_grad]
    lora = [n for n in names if "lora_" in n]
    assert lora and all(".language_model." in n for n in lora)
    assert {n.split(".")[-4] for n in lora if "lora_A" in n} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert any("multi_modal_projector" in n for n in names)
    assert not any("vision_tower" in n for n in names)
    assert tiny_session.num_layers == tiny.LAYERS


def test_answer_only_loss_mask(tiny_session, memes_dir):
    from fedmllm.data import hateful_memes

    sample = hateful_memes.load(memes_dir, "train")[0]
    enc = encode(tiny_session.processor, sample, target_text(sample))
    tok = tiny_session.processor.tokenizer
    answer = enc.labels[enc.labels != IGNORE].tolist()
    assert answer == tok(" " + target_text(sample), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert enc.tokens["input_ids"][-len(answer) :].tolist() == answer  # the mask covers exactly the tail
    assert (enc.labels[: -len(answer)] == IGNORE).all()


def test_prompt_cache_gives_the_same_tensors_and_keeps_to_its_budget(tiny_session, memes_dir):
    from fedmllm.data import hateful_memes

    proc = tiny_session.processor
    samples = hateful_memes.load(memes_dir, "train")[:6]
    cache = PromptCache(budget_mb=1)
    for _ in range(2):
        for s in samples:
            a, b = encode(proc, s, target_text(s), cache=cache), encode(proc, s, target_text(s))
            assert torch.equal(a.labels, b.labels) and a.tokens.keys() == b.tokens.keys()
            assert all(torch.equal(a.tokens[k], b.tokens[k]) for k in a.tokens)
            assert all(torch.equal(a.images[k], b.images[k]) for k in b.images) and a.images.keys() == b.images.keys()
    assert (cache.misses, cache.hits) == (6, 6)  # each image decoded and processed once
    assert encode(proc, samples[0], None, "augmented", cache=cache) is not cache.get(proc, samples[0], "modality")
    size = nbytes(cache.get(proc, samples[0], "modality"))
    small = PromptCache(budget_mb=1)
    small.budget_mb = 2.5 * size / 2**20  # room for two entries
    for s in samples[:3]:
        small.get(proc, s, "modality")
    assert len(small.entries) == 2 and small.bytes == 2 * size  # the oldest went first
    assert [k[1] for k in small.entries] == samples[1:3]


def test_mixed_batch_with_text_only_and_empty_samples(tiny_session, memes_dir):
    from fedmllm.data import hateful_memes

    base = hateful_memes.load(memes_dir, "train")[:4]
    samples = [base[0], base[1].drop(image=True), base[2].drop(text=True), base[3].drop(image=True, text=True)]
    items = [encode(tiny_session.processor, s, target_text(s)) for s in samples]
    batch = collate(items, tiny_session.processor.tokenizer.pad_token_id)
    assert batch["pixel_values"].shape[0] == 2  # only the two samples with an image
    loss = tiny_session.model(**batch).loss
    assert torch.isfinite(loss)
    # a text-only batch (no pixel_values at all) trains too
    before = trainable_state(tiny_session.model)
    result = client.train(tiny_session, [s.drop(image=True) for s in base], lr=1e-3, steps=2, batch_size=2, seed=0)
    after = trainable_state(tiny_session.model)
    assert result.steps == 2 and torch.isfinite(torch.tensor(result.loss))
    assert any(not torch.equal(before[k], after[k]) for k in before)
    load_trainable(tiny_session.model, before)


def test_adapter_round_trip_through_peft(tiny_session, memes_dir, tmp_path):
    from fedmllm.data import hateful_memes

    start = trainable_state(tiny_session.model)
    samples = hateful_memes.load(memes_dir, "train")[:8]
    client.train(tiny_session, samples, lr=1e-2, steps=3, batch_size=4, seed=0)
    tiny_session.model.save_pretrained(tmp_path / "adapter")
    batch = collate(
        [encode(tiny_session.processor, s, target_text(s)) for s in samples[:2]],
        tiny_session.processor.tokenizer.pad_token_id,
    )
    with torch.no_grad():
        expected = tiny_session.model(**batch).logits
    base = AutoModelForImageTextToText.from_pretrained(tiny.ensure())
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        got = loaded(**batch).logits
    assert torch.allclose(expected, got, atol=1e-5)
    load_trainable(tiny_session.model, start)


def test_base_model_loaded_once_per_process(tiny_session):
    from fedmllm.model.load import LOADS

    count = LOADS["count"]
    assert session(ModelSpec(lora_dropout=0.0)) is tiny_session
    assert LOADS["count"] == count


def test_folder_without_config(tmp_path):
    with pytest.raises(FedmllmError, match="not a model folder \\(config.json not found\\)"):
        resolve_source(str(tmp_path))


def test_unknown_model_family(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
    ).save_pretrained(tmp_path)
    with pytest.raises(FedmllmError, match=str(tmp_path)):
        session(ModelSpec(name=str(tmp_path)))


def test_unreadable_image_names_file(tiny_session, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(FedmllmError, match="broken.png: cannot read image of sample 7"):
        encode(tiny_session.processor, meme(7, bad, "x", 0), None)


def test_adaptive_window_on_the_tiny_model(tiny_session):
    from fedmllm.fl.regularize import layer_of, prox_weights

    names = list(trainable_state(tiny_session.model))
    lm = tiny_session.family.language_model
    weights = prox_weights(
        names, fedprox_mu=0.0, adaptive_mu=1e-3, language_model=lm, num_layers=tiny_session.num_layers, skip=4
    )
    assert {layer_of(n, lm) for n in weights} == {1, 2}  # 4 layers, s clamped to 1
    assert len(weights) == 2 * 4 * 2  # 2 layers x q/k/v/o x lora_A/lora_B


def test_group_by_length_trains_on_batches_of_one_length(tiny_session, memes_dir):
    """With half the samples text-only (16 image tokens shorter), grouped batches are
    one modality each; training runs and reaches other weights than plain batches."""
    from fedmllm.data import hateful_memes
    from fedmllm.data.batching import batches

    base = hateful_memes.load(memes_dir, "train")[:8]
    samples = base[:4] + [s.drop(image=True) for s in base[4:]]
    lengths = [encode(tiny_session.processor, s, target_text(s)).labels.shape[0] for s in samples]
    assert min(lengths[:4]) > max(lengths[4:])
    grouped = list(zip(range(2), batches(samples, 4, 0, lengths), strict=False))
    assert all(len({s.image is None for s in b}) == 1 for _, b in grouped)

    start = trainable_state(tiny_session.model)
    finals = {}
    for flag in (False, True):
        load_trainable(tiny_session.model, start)
        result = client.train(tiny_session, samples, lr=1e-2, steps=2, batch_size=4, seed=0, group_by_length=flag)
        assert result.steps == 2 and torch.isfinite(torch.tensor(result.loss))
        finals[flag] = trainable_state(tiny_session.model)
    load_trainable(tiny_session.model, start)
    assert any(not torch.equal(finals[True][k], start[k]) for k in start)
    assert any(not torch.equal(finals[True][k], finals[False][k]) for k in start)
