"""The server's side of a round, next to the client's (fl/client.py): the jobs it sends, the screen
of the replies, and the step that turns accepted updates into the new server state. The rules
themselves are pure functions (fl/rules.py); the algorithm's record (fl/algorithms.py) says what
it sends, keeps and reads."""

from __future__ import annotations

from dataclasses import fields, replace

from fedmllm.config import TYPES, RunConfig
from fedmllm.errors import FedmllmError
from fedmllm.fl import privacy, rules
from fedmllm.fl.screen import ClientUpdate, Rejection, Rules, params_problem, screen
from fedmllm.fl.state import ServerState
from fedmllm.transport import RoundResult, TrainJob


def hyper(cfg: RunConfig) -> rules.ServerHyper:
    """The rules' hyper-parameters: the config's fields of the same names, the eta in force (for a
    rule with a server step) and the momentum beta."""
    same = {f.name for f in fields(rules.ServerHyper)} & set(TYPES) - {"server_lr"}
    step = {"server_lr": cfg.eta} if cfg.algo.default_lr is not None else {}
    return rules.ServerHyper(momentum=cfg.server_momentum, **step, **{name: getattr(cfg, name) for name in same})


def jobs_for(cfg: RunConfig, state: ServerState, chosen: list[int], sizes: list[int] | None) -> list[TrainJob]:
    """Each chosen client's job; `sizes` are the shards' sample counts where the server wrote them."""
    known = (lambda k: sizes[k]) if sizes is not None else (lambda k: None)
    if cfg.algo.per_client_models:  # each client continues its own model
        return [TrainJob(k, state.client_models.get(k, state.global_params), None, known(k)) for k in chosen]
    if cfg.algo.correction:  # each client also gets its correction c - c_k
        c = state.control
        return [
            TrainJob(k, state.global_params, {n: c[n] - state.client_control(k)[n] for n in c}, known(k))
            for k in chosen
        ]
    return [TrainJob(k, state.global_params, None, known(k)) for k in chosen]


def screen_round(cfg: RunConfig, state: ServerState, result: RoundResult, recent_norms: list[float]) -> None:
    """Drop the round's unusable updates (fl/screen.py) into `result.rejected`. A secure sum has
    no single updates to judge: only its tensors are checked, and a bad sum drops the round's."""
    if result.contributors is not None:
        for u in result.updates:
            problem = params_problem(u.params, state.global_params)
            if problem:
                reason, detail = problem
                result.rejected.append(Rejection(-1, reason, f"secure aggregate of {result.contributors}: {detail}"))
                result.updates = []
        return
    rules_in_force = Rules(
        batch_size=cfg.batch_size,
        local_steps=cfg.local_steps,
        reject_norm_factor=cfg.reject_norm_factor,
        max_weight_share=cfg.max_weight_share,
        check_norms=not cfg.algo.per_client_models,  # such clients start from their own models
    )
    result.updates, rejected, notes = screen(result.updates, state.global_params, rules_in_force, recent_norms)
    result.rejected += rejected
    result.notes += notes


def server_update(cfg: RunConfig, state: ServerState, updates: list[ClientUpdate], lr: float) -> None:
    """Apply the algorithm's server rule to `state`; with DP, clip the updates (dp = "server";
    "client": the clients did) and noise the result."""
    algo = cfg.algo
    if cfg.dp == "server":
        clip = cfg.dp_clipping_norm
        updates = [replace(u, params=privacy.clip_update(u.params, state.global_params, clip)) for u in updates]
    if algo.per_client_models:
        for u in updates:
            state.client_models[u.partition] = u.params
        return
    if algo.pools_data:  # one pooled "client": its model is the model
        state.global_params = updates[0].params
        return
    if algo.correction:
        update_controls(cfg, state, updates, lr)
    models, weights = [u.params for u in updates], [u.num_samples for u in updates]
    rule = algo.server_rule()
    state.global_params, state.buffers = rule(state.buffers, state.global_params, models, weights, hyper(cfg))
    if cfg.dp != "none":  # seeded by run and round (state.round is the last finished one)
        std = privacy.noise_std(cfg.dp_noise_multiplier, cfg.dp_clipping_norm, sum(u.clients for u in updates))
        state.global_params = privacy.add_noise(state.global_params, std, cfg.seed * 1_000_003 + state.round + 1)


def update_controls(cfg: RunConfig, state: ServerState, updates: list[ClientUpdate], lr: float) -> None:
    """SCAFFOLD: c_k+ = c_k - c + (w - w_k) / (K * lr), computed here from what each client sent,
    then the server's c from the changes."""
    c, deltas = state.control, []
    for u in updates:
        c_k = state.client_control(u.partition)
        new = rules.scaffold_client_control(c_k, c, state.global_params, u.params, u.steps, lr)
        deltas.append({n: new[n] - c_k[n] for n in new})
        state.client_controls[u.partition] = new
    state.control = rules.scaffold_controls(c, deltas, cfg.num_clients)


def apply_round(cfg: RunConfig, state: ServerState, updates: list[ClientUpdate], lr: float, rnd: int) -> None:
    """The server rule on the screened updates. Every update has passed the screen, so a failure
    here is the server's own: the run stops, resumable from the last round's checkpoint."""
    try:
        server_update(cfg, state, updates, lr)
    except Exception as e:
        raise FedmllmError(
            f"round {rnd}: the server's {cfg.algorithm} update failed ({type(e).__name__}: {e}); the run folder "
            f"holds round {rnd - 1}'s checkpoint: fix the cause and resume it (fedmllm run --resume)"
        ) from e
