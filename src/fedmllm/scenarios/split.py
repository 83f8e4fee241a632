"""Building a scenario's client shards from a config, and writing/reading them as JSON lines.

The materialised shards are written once into the run folder (`clients/client_<k>.jsonl`), so
they can be inspected, and each client reads only its own file.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from fedmllm.config import RunConfig
from fedmllm.data.jsonl import read_jsonl
from fedmllm.data.sample import Sample
from fedmllm.errors import FedmllmError
from fedmllm.scenarios import modality, partition

log = logging.getLogger(__name__)


def build(samples: list[Sample], cfg: RunConfig, text_samples: list[Sample] | None = None) -> list[list[Sample]]:
    """Client shards for the scenario. `text_samples` (cross_task only) are the text clients' data."""
    if cfg.scenario == "cross_task":
        return cross_task(samples, text_samples or [], cfg)
    if partition_rule(samples, cfg) == "dirichlet":
        shards = partition.dirichlet(samples, cfg.num_clients, cfg.dirichlet_alpha, cfg.seed)
    else:
        shards = partition.iid(samples, cfg.num_clients, cfg.seed)
    if cfg.scenario == "missing":
        shards = modality.missing(shards, cfg.missing_rate, cfg.seed + 1)
    elif cfg.scenario == "cross_modality":
        shards = modality.cross_modality(shards, cfg.image_clients, cfg.seed + 1)
    elif cfg.scenario == "hybrid":
        shards = modality.hybrid(shards, cfg.hybrid_rate, cfg.seed + 1)
    return check_nonempty(shards, cfg.scenario)


def partition_rule(samples: list[Sample], cfg: RunConfig) -> str:
    """The partition a run uses: "auto" is Dirichlet label skew where the training samples have class
    labels (hateful_memes, crisismmd) and IID where they have none (the VQA and QA datasets). A set
    with some labels missing goes to Dirichlet, which names the first unlabelled sample."""
    labelled = any(s.label is not None for s in samples)
    if cfg.partition == "auto":
        rule = "dirichlet" if labelled else "iid"
        log.info(
            "partition auto: %s (dataset '%s' %s class labels)", rule, cfg.dataset, "has" if labelled else "has no"
        )
        return rule
    if cfg.partition == "dirichlet" and samples and not labelled:
        raise FedmllmError(
            f"partition = 'dirichlet': dataset '{cfg.dataset}' has no class labels for label skew; "
            "use partition = 'iid' (or 'auto', which picks iid for it)"
        )
    return cfg.partition


def cross_task(image_samples: list[Sample], text_samples: list[Sample], cfg: RunConfig) -> list[list[Sample]]:
    """Clients drawn as holding images get an IID share of the image task (e.g. VQA-RAD), those
    holding text an IID share of the text task (e.g. MedAlpaca); a client can hold both."""
    presence = modality.presence_hybrid(cfg.num_clients, cfg.hybrid_rate, cfg.seed + 1)
    shards: list[list[Sample]] = [[] for _ in range(cfg.num_clients)]
    for index, pool in ((0, image_samples), (1, text_samples)):
        holders = [k for k, has in enumerate(presence) if has[index]]
        if holders:
            for k, part in zip(holders, partition.iid(pool, len(holders), cfg.seed), strict=True):
                shards[k].extend(part)
    return check_nonempty(shards, cfg.scenario)


def check_nonempty(shards: list[list[Sample]], scenario: str) -> list[list[Sample]]:
    for k, shard in enumerate(shards):
        if not shard:
            raise FedmllmError(f"client {k} has no samples after scenario '{scenario}'")
    return shards


def shard_path(folder: Path, client: int) -> Path:
    return Path(folder) / f"client_{client}.jsonl"


def write(shards: list[list[Sample]], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, shard in enumerate(shards):
        rows = [
            {
                "id": s.id,
                "image": str(s.image) if s.image else None,
                "text": s.text,
                "question": s.question,
                "answer": s.answer,
                "options": list(s.options) if s.options else None,
                "label": s.label,
                "task": s.task,
                "answer_type": s.answer_type,
            }
            for s in shard
        ]
        shard_path(folder, k).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def read(path: Path) -> list[Sample]:
    return [
        Sample(
            id=row["id"],
            image=Path(row["image"]) if row["image"] else None,
            text=row["text"],
            question=row["question"],
            answer=row["answer"],
            options=tuple(row["options"]) if row["options"] else None,
            label=row["label"],
            task=row["task"],
            answer_type=row.get("answer_type"),
        )
        for _, row in read_jsonl(Path(path))
    ]


def describe(shards: list[list[Sample]]) -> list[dict]:
    """Per client: sample count, label counts and modality counts (written to the run folder)."""
    return [
        {
            "client": k,
            "samples": len(shard),
            "labels": dict(sorted(Counter(s.label for s in shard if s.label is not None).items())),
            "modalities": dict(sorted(Counter(s.modality for s in shard).items())),
        }
        for k, shard in enumerate(shards)
    ]
