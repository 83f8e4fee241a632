"""One client's round, whatever carries the message: start from the global tensors, add the
algorithm's term (FedProx's, or the adaptive window that replaces it, as in the authors' code),
train (fl/client.py), read the tensors back, and clip them when the client does the DP clipping.
The ClientApp (engine/client_app.py) only decodes the message, calls this, and encodes the reply."""

from __future__ import annotations

from typing import Any

import torch

from fedmllm.config import RunConfig
from fedmllm.data.sample import Sample
from fedmllm.fl import client, privacy
from fedmllm.fl.regularize import Proximal, prox_weights
from fedmllm.fl.rules import Params
from fedmllm.model.load import LOADS, load_trainable, model_spec, session, trainable_state


def client_round(
    cfg: RunConfig,
    samples: list[Sample],
    global_params: Params,
    correction: Params | None,
    *,
    lr: float,
    rnd: int,
    partition: int,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train from `global_params` on `samples`; returns the trained tensors (clipped when dp =
    "client") and the metrics the server reads (its screen checks every one of them)."""
    torch.set_num_threads(max(1, int(cfg.client_cpus)))
    sess = session(model_spec(cfg))  # the base model loads once per process
    sess.prompts.budget_mb = cfg.prompt_cache_mb
    load_trainable(sess.model, global_params)
    weights = prox_weights(  # the adaptive term, when on, replaces FedProx's (as the authors' code)
        list(global_params),
        fedprox_mu=cfg.prox_mu if cfg.algo.proximal else 0.0,
        adaptive_mu=cfg.prox_mu * cfg.adaptive_mu_weight if cfg.adaptive_regularization else None,
        language_model=sess.family.language_model,
        num_layers=sess.num_layers,
        skip=cfg.adaptive_skip_layers,
    )
    result = client.train(
        sess,
        samples,
        lr=lr,
        steps=cfg.local_steps,
        batch_size=cfg.batch_size,
        seed=client.seed_for(cfg.seed, rnd, partition),
        variant=cfg.prompt_form,
        group_by_length=cfg.group_by_length,
        regularizer=Proximal(sess.model, global_params, weights) if weights else None,
        correction=correction,
    )
    metrics: dict[str, Any] = {
        "partition-id": partition,
        "num-examples": result.num_samples,
        "train-loss": result.loss,
        "steps": result.steps,
        "model-loads": LOADS["count"],
    }
    if result.reg_grad_ratio is not None:  # only with a proximal/adaptive term
        metrics["reg-grad-ratio"] = result.reg_grad_ratio
    trained = trainable_state(sess.model)
    if cfg.dp == "client":  # the update leaves this node clipped (the server adds the noise)
        trained = privacy.clip_update(trained, global_params, cfg.dp_clipping_norm)
    return trained, metrics
