"""How much each modality of the synthetic Hateful Memes twin tells: centralised LoRA fine-tuning
of the built-in tiny model on image+text, image only and text only, scored on the test set with
the same modalities. Prints one table; not a test.

    python benchmarks/synthetic_modalities.py [--steps 300] [--train 1000]
"""

from __future__ import annotations

import argparse
import time

import torch

from fedmllm.data import registry
from fedmllm.evaluation.scoring import evaluate_choice
from fedmllm.fl import client
from fedmllm.model.load import ModelSpec, load_trainable, session


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    folder = registry.resolve_folder("hateful_memes", "", {"train": args.train, "dev": 100, "test": 200}, 0)
    train = registry.load_split("hateful_memes", folder, "train")
    test = registry.load_split("hateful_memes", folder, "test")
    sess = session(ModelSpec(lora_dropout=0.0))
    views = {
        "image+text": lambda s: s,
        "image only": lambda s: s.drop(text=True),
        "text only": lambda s: s.drop(image=True),
    }
    print(f"| modalities | zero-shot AUC | AUC | accuracy | s/step |   ({args.steps} steps, batch 8)")
    print("|---|---|---|---|---|")
    for name, view in views.items():
        load_trainable(sess.model, sess.initial)
        tr, te = [view(s) for s in train], [view(s) for s in test]
        zero = evaluate_choice(sess, te, 32)
        start = time.perf_counter()
        client.train(sess, tr, lr=args.lr, steps=args.steps, batch_size=8, seed=0)
        per_step = (time.perf_counter() - start) / args.steps
        got = evaluate_choice(sess, te, 32)
        print(f"| {name} | {zero['auc']:.3f} | {got['auc']:.3f} | {got['accuracy']:.3f} | {per_step:.3f} |")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
