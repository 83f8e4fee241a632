"""RunConfig: every setting of a run, typed, validated once, flowing down from the CLI.

One flat frozen dataclass, because Flower's run config is a flat key/value map and the CLI's
flags are too: each field is `--field-name` on the command line, `field_name` in a TOML/YAML
file, and `field-name` in `[tool.flwr.app.config]`. Defaults are the embedded CPU default
(tiny model, synthetic Hateful Memes); the paper's value is given in the help where it differs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any

from fedmllm.config_domains import (
    FLOAT_DOMAINS,
    INT_DOMAINS,
    MAX_CUDA_INDEX,
    MODULE,
    RAY_STEP,
    TEXT_FIELDS,
    check_text,
    device_ok,
    finite,
    parse_columns,
    show,
)
from fedmllm.data.registry import DATASETS
from fedmllm.errors import FedmllmError
from fedmllm.fl import algorithms
from fedmllm.fl.algorithms import ALGORITHMS

DATASET_NAMES = tuple(DATASETS)
# "auto" + scenarios.prompts.VARIANTS (tests/test_scenarios.py keeps them equal)
PROMPT_VARIANTS = ("auto", "modality", "augmented", "augmented_answer_line", "full_modality")
ATTACKS = (
    "none", "sign_flip", "scale", "gaussian", "nan", "malformed", "weight_inflation", "identity_spoof",
)  # fmt: skip
NO_DEV_SPLIT = tuple(name for name, spec in DATASETS.items() if "dev" not in spec.splits)  # train and test only


def _f(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class RunConfig:
    # model
    model: str = _f("tiny", "'tiny' (built-in, CPU), a Hugging Face hub id, or a local model folder")
    trust_remote_code: bool = _f(False, "allow custom model code from the checkpoint (off by default)")
    device: str = _f("auto", "'auto' (cuda if present), 'cpu', 'cuda', 'cuda:N' (N in 0..127) or 'mps'")
    dtype: str = _f("auto", "compute dtype", ("auto", "float32", "bfloat16", "float16"))
    lora_r: int = _f(8, "LoRA rank")
    lora_alpha: int = _f(8, "LoRA alpha")
    lora_dropout: float = _f(0.05, "LoRA dropout")
    # data
    dataset: str = _f("hateful_memes", "dataset name", DATASET_NAMES)
    data_dir: str = _f(
        "",
        "folder of the dataset as published, or a Hugging Face Hub snapshot of it (parquet or arrow files), "
        "or hf://OWNER/NAME from the local Hub cache (never downloaded); empty = offline synthetic twin",
    )
    data_columns: str = _f(
        "",
        "Hub snapshots: the columns holding each field, 'role=column,...' (roles: id, image, text, question, "
        "answer, answer_type, language, label, instruction); empty = the dataset's known Hub column names",
    )
    synthetic_train: int = _f(1000, "training samples of the synthetic twin")
    synthetic_test: int = _f(1000, "test samples of the synthetic twin")
    synthetic_dev: int = _f(500, "dev (tuning) samples of the synthetic twin, where the dataset has a dev split")
    synthetic_seed: int = _f(0, "seed of the synthetic twin's content (fixed, like a published dataset)")
    # heterogeneity scenario
    num_clients: int = _f(10, "number of clients")
    partition: str = _f(
        "auto",
        "how training samples are split over clients: dirichlet = label skew (datasets with class labels), "
        "iid = a seeded even split, auto = dirichlet where the training samples have class labels "
        "(hateful_memes, crisismmd), else iid (vqa_rad, slake, medalpaca)",
        ("auto", "dirichlet", "iid"),
    )
    dirichlet_alpha: float = _f(0.5, "Dirichlet label-skew concentration (lower = more skewed)")
    scenario: str = _f("missing", "modality scenario", ("none", "missing", "cross_modality", "hybrid", "cross_task"))
    missing_rate: float = _f(0.3, "missing: per-sample chance to lose the image, and (independently) the text")
    image_clients: int = _f(5, "cross_modality: clients holding image-only data (the rest hold text-only)")
    hybrid_rate: float = _f(0.3, "hybrid/cross_task: per-client chance to lack images, and (independently) text")
    text_dataset: str = _f("medalpaca", "cross_task: dataset of the text clients", DATASET_NAMES)
    text_data_dir: str = _f("", "cross_task: folder of text_dataset; empty = synthetic twin")
    ood_dataset: str = _f("", "an extra out-of-domain test set (cross_task: 'slake'); empty = none")
    ood_data_dir: str = _f("", "folder of ood_dataset; empty = synthetic twin")
    prompt_augmentation: bool = _f(False, "one modality-agnostic prompt for every sample (paper's strategy 1)")
    prompt_variant: str = _f(
        "auto",
        "prompt wording (docs/prompts.md): auto = augmented with prompt_augmentation, else modality; "
        "modality: the lead names the sample's modalities; augmented: the authors' ', without considering "
        "the modality' on an instruction line and the question; augmented_answer_line: on the question and "
        "the answer line; full_modality: the image+text lead on every sample",
        PROMPT_VARIANTS,
    )
    # federation
    algorithm: str = _f(
        "fedavg",
        f"FL algorithm or baseline, one of {', '.join(ALGORITHMS)} or a plugin's (zero-shot is reported by every run)",
    )
    plugins: str = _f(
        "",
        "comma-separated Python modules imported first, each registering its own algorithms "
        "(fedmllm.fl.algorithms.register); a deployed node imports only those its node config allows",
    )
    adaptive_regularization: bool = _f(False, "proximal term on the middle decoder layers only (paper's strategy 2)")
    prox_mu: float = _f(0.01, "mu of FedProx's (mu/2)|w - w_global|^2, and of the adaptive term")
    adaptive_mu_weight: float = _f(0.1, "mu_w: the adaptive term's weight is mu * mu_w (paper: 0.1)")
    adaptive_skip_layers: int = _f(4, "s: the adaptive window is layers [s, L-1-s], s clamped to (L-1)//2 (paper: 4)")
    server_lr: float = _f(
        0.0,
        "server learning rate eta (fedavg/fedprox w <- w + eta*Delta, fedavgm, adaptive ones, scaffold's eta_g); "
        "0 = the algorithm's default (1.0; adaptive ones 1e-3; damped fedavgm 1 - beta); fedmedian, "
        "fedtrimmedavg, krum, local and centralized have no server step and refuse a value",
    )
    server_momentum: float = _f(0.9, "FedAvgM momentum beta")
    server_momentum_damped: bool = _f(
        False, "FedAvgM: server_lr 0 means eta = 1 - beta, so the steady step equals FedAvg's (as OpenFedLLM's)"
    )
    beta1: float = _f(0.9, "FedAdagrad/FedAdam/FedYogi first-moment beta1")
    beta2: float = _f(0.99, "FedAdam/FedYogi second-moment beta2")
    tau: float = _f(1e-3, "FedAdagrad/FedAdam/FedYogi adaptivity tau")
    adaptive_moment: str = _f(
        "delta",
        "FedAdam/FedYogi second moment: delta = from Delta^2 (Reddi et al.); momentum = from m^2, m updated "
        "first (the FedMLLM authors' / OpenFedLLM's code)",
        ("delta", "momentum"),
    )
    trim_fraction: float = _f(0.2, "FedTrimmedAvg: fraction cut at each end")
    krum_byzantine: int = _f(1, "Krum: number of Byzantine clients tolerated (f; needs f + 2 clients per round)")
    rounds: int = _f(20, "federated rounds (paper: 25 Hateful Memes, 40 CrisisMMD, 50 medical)")
    clients_per_round: int = _f(3, "clients sampled per round (paper: 2 of 10)")
    client_fraction: float = _f(0.0, "if > 0, sample this fraction of the clients per round instead")
    local_steps: int = _f(0, "local optimiser steps per round; 0 = one local epoch")
    batch_size: int = _f(8, "local batch size (paper: effective 4)")
    group_by_length: bool = _f(
        False,
        "batch samples of similar token length together (HF's group_by_length, LLaVA's group_by_modality_length): "
        "less padding, batches less mixed",
    )
    lr: float = _f(1e-3, "client AdamW peak learning rate (paper: 2e-5 for real checkpoints)")
    warmup: float = _f(0.01, "fraction of rounds of linear warm-up before the cosine decay")
    reject_norm_factor: float = _f(
        10.0,
        "reject an update whose norm |w_k - w| is this many times the median of the others (0 = off); NaN/Inf always",
    )
    min_clients: int = _f(1, "a round completes if at least this many sampled clients reply (lost nodes are logged)")
    round_timeout: float = _f(0.0, "seconds to wait for a round's replies; 0 = until each replies or is reported lost")
    client_data: str = _f(
        "split",
        "split: the server splits `dataset` into client shards; node: each SuperNode reads its own data "
        "named by its node config (`shard` or `data-dir`), the server holds only the test set",
        ("split", "node"),
    )
    dp: str = _f(
        "none",
        "differential privacy: clip updates on the client or on the server, then add "
        "Gaussian noise to the aggregate (Flower's fixed-clipping DP)",
        ("none", "client", "server"),
    )
    dp_noise_multiplier: float = _f(1.0, "DP: noise std = noise_multiplier * clipping_norm / sampled clients")
    dp_clipping_norm: float = _f(1.0, "DP: L2 bound of each client's update (w_k - w)")
    dp_delta: float = _f(1e-5, "DP: the delta of the (epsilon, delta) reported each round; keep it below 1/num_clients")
    dp_target_epsilon: float = _f(
        0.0,
        "DP: stop before the round that would take the cumulative epsilon (at dp_delta) above this; 0 = no target",
    )
    secagg: bool = _f(False, "aggregate with Flower's SecAgg+: the server sees only the sum of masked updates")
    update_dtype: str = _f(
        "float32",
        "dtype of the updates clients send: bfloat16/float16 send w_k - w in 16 bits (half the bytes up); "
        "the server adds them to the fp32 model it sent",
        ("float32", "bfloat16", "float16"),
    )
    prompt_cache_mb: int = _f(
        1024, "processed prompts and images kept per process, reused across rounds (least recently used out; 0 = off)"
    )
    client_cpus: float = _f(1.0, "CPU cores reserved per simulated client (Ray actor)")
    client_gpus: float = _f(0.0, "GPUs reserved per simulated client (e.g. 0.5 shares one GPU by two)")
    # untrusted clients (docs/robustness.md)
    max_weight_share: float = _f(
        0.5,
        "client_data = node: the largest share of a round's total weight one client's num-examples may claim "
        "(capped, and logged); with split shards the server knows every count and rejects a larger claim",
    )
    allow_external_paths: bool = _f(
        False, "data loaders: accept image paths that resolve outside the dataset folder (absolute, '..', symlinks)"
    )
    attack: str = _f(
        "none",
        "simulated Byzantine clients: what the attackers send (sign_flip, scale, gaussian, nan, malformed replies, "
        "weight_inflation = 10^12 examples, identity_spoof = another partition's id)",
        ATTACKS,
    )
    attackers: int = _f(0, "how many partitions attack (which ones: drawn from the run seed)")
    attack_scale: float = _f(10.0, "scale: the update times this; gaussian: noise std = this x the update's RMS")
    # evaluation and output
    eval_split: str = _f(
        "test",
        "the split every evaluation scores (main and ood_dataset): test, or dev to tune hyper-parameters "
        "without looking at the test set",
        ("test", "dev"),
    )
    eval_every: int = _f(1, "evaluate the global model every N rounds (the last round always)")
    eval_batch_size: int = _f(32, "evaluation batch size")
    generate_eval: bool = _f(True, "also score by greedy generation + option-letter parsing (zero-shot and final)")
    eval_views: bool = _f(True, "also score the test set with the image only and the text only (zero-shot and final)")
    seed: int = _f(0, "seed of data, partition, sampling and training")
    out: str = _f("", "run folder; empty = runs/<timestamp>")

    def __post_init__(self) -> None:
        for f in fields(self):  # kinds first: no later comparison may meet a str, a bool or a NaN
            _check_kind(f.name, getattr(self, f.name))
        self._check_dp_bounds()  # before the one-key domains, so the DP message names both of its keys
        for f in fields(self):
            _check_domain(f.name, getattr(self, f.name))
        algorithms.import_plugins(self.plugins, "config")  # they may register the algorithm named
        self._check_algorithm()
        self._check_counts()
        self._check_attack()
        self._check_resources()
        self._check_combinations()
        self._check_prompt_variant()
        self._check_server_step()
        self._check_dp_budget()

    def _check_dp_bounds(self) -> None:
        if self.dp_noise_multiplier < 0 or self.dp_clipping_norm <= 0:
            raise FedmllmError(
                "config keys 'dp_noise_multiplier' >= 0 and 'dp_clipping_norm' > 0 (noise std = their product / "
                f"sampled clients), got {self.dp_noise_multiplier} and {self.dp_clipping_norm}"
            )

    @property
    def algo(self) -> algorithms.Algorithm:
        """The record of `algorithm` (fl/algorithms.py): what it reads, sends and keeps."""
        return algorithms.get(self.algorithm)

    def _check_algorithm(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise FedmllmError(f"config key 'algorithm': {show(self.algorithm)} is not one of {list(ALGORITHMS)}")
        if self.algo.check is not None:
            self.algo.check(self)

    def _check_counts(self) -> None:
        """Client counts against each other: the sample, the quorum, and what Krum needs."""
        if self.clients_per_round > self.num_clients:
            raise FedmllmError(
                f"config keys 'clients_per_round' and 'num_clients': {self.clients_per_round} clients per round "
                f"> num_clients {self.num_clients}"
            )
        if self.scenario == "cross_modality" and self.image_clients > self.num_clients:
            raise FedmllmError(f"config key 'image_clients': must be in [0, num_clients={self.num_clients}]")
        if self.min_clients > self.sampled_per_round and self.algo.federated:
            raise FedmllmError(
                f"config key 'min_clients': must be in [1, clients sampled per round = {self.sampled_per_round}]"
            )

    def _check_attack(self) -> None:
        """The simulated attack. A kind with 0 attackers is allowed: a sweep's no-attack column."""
        if self.attack == "none" and self.attackers > 0:
            raise FedmllmError(
                f"config keys 'attackers' and 'attack': {self.attackers} attackers but attack = 'none'; "
                f"set attack to one of {list(ATTACKS[1:])}, or attackers = 0"
            )
        if self.attackers > 0 and self.secagg:
            raise FedmllmError(
                "config keys 'attack' and 'secagg': the simulated attacks send single updates; "
                "under SecAgg+ the server sees only their masked sum (set secagg = false)"
            )
        if self.attackers >= self.num_clients:
            raise FedmllmError(
                f"config keys 'attackers' and 'num_clients': attackers must be below num_clients (at least one "
                f"honest client), got {self.attackers} of {self.num_clients}"
            )

    def _check_resources(self) -> None:
        if 0 < self.client_gpus < RAY_STEP:
            raise FedmllmError(
                f"config key 'client_gpus': must be 0 or at least {RAY_STEP} (Ray's resource precision), "
                f"got {self.client_gpus}"
            )

    def _check_combinations(self) -> None:
        """Settings that contradict each other (or the dataset's published splits)."""
        if self.dp != "none" and not self.algo.federated:
            raise FedmllmError(f"config key 'dp': the {self.algorithm} baseline has no aggregate to make private")
        if self.secagg and (not self.algo.mean_based or self.dp == "server" or self.sampled_per_round < 2):
            mean_based = ", ".join(a.name for a in ALGORITHMS.values() if a.mean_based)
            raise FedmllmError(
                f"config key 'secagg': needs an algorithm that uses only the weighted mean ({mean_based}), "
                "at least 2 clients per round, and dp 'none' or 'client' (the server never sees single updates)"
            )
        if self.secagg and self.update_dtype != "float32":
            raise FedmllmError("config key 'update_dtype': SecAgg+ sends its own quantised integers; use float32")
        if self.client_data == "node" and self.algo.pools_data:
            raise FedmllmError("config key 'client_data': 'node' keeps data on the nodes; centralized needs it pooled")
        for name in ("dataset", "ood_dataset"):  # a dev-split run must never fall back to the test set
            if self.eval_split == "dev" and getattr(self, name) in NO_DEV_SPLIT:
                raise FedmllmError(
                    f"config key 'eval_split': {name} '{getattr(self, name)}' has no dev split in its published "
                    "layout (only train and test); tune on a dataset that has one, or use eval_split = 'test'"
                )

    def _check_dp_budget(self) -> None:
        """A privacy target needs DP with noise, and must allow at least the first round (its
        epsilon is known before any round: q = clients per round / num_clients)."""
        if self.dp_target_epsilon == 0:
            return
        if self.dp == "none" or self.dp_noise_multiplier == 0:
            raise FedmllmError(
                "config keys 'dp_target_epsilon', 'dp' and 'dp_noise_multiplier': a privacy target needs dp = "
                f"'client' or 'server' with dp_noise_multiplier > 0 (got dp = {self.dp!r}, dp_noise_multiplier = "
                f"{self.dp_noise_multiplier}: no finite epsilon); set dp_target_epsilon = 0 for none"
            )
        from fedmllm.fl import accountant  # here only: it loads dp-accounting (~0.8 s)

        rate = accountant.sampling_rate(self.sampled_per_round, self.num_clients)
        first = accountant.epsilon([rate], self.dp_noise_multiplier, self.dp_delta)
        if first > self.dp_target_epsilon:
            raise FedmllmError(
                f"config key 'dp_target_epsilon': {self.dp_target_epsilon:g} is below the first round's epsilon "
                f"{first:.3f} (q = {rate:g}, dp_noise_multiplier = {self.dp_noise_multiplier:g}, dp_delta = "
                f"{self.dp_delta:g}), so no round could run; raise it, or the noise multiplier"
            )

    def _check_prompt_variant(self) -> None:
        augmented = self.prompt_variant in ("augmented", "augmented_answer_line")
        if self.prompt_variant != "auto" and augmented != self.prompt_augmentation:
            raise FedmllmError(
                f"config keys 'prompt_variant' and 'prompt_augmentation': '{self.prompt_variant}' is "
                f"{'' if augmented else 'not '}a prompt augmentation, but prompt_augmentation = "
                f"{str(self.prompt_augmentation).lower()} (use prompt_variant = 'auto', or set both alike)"
            )

    def _check_server_step(self) -> None:
        """The server-step options: none is set where the algorithm would not read it (a silently
        ignored setting would mislabel a result). Their ranges are in FLOAT_DOMAINS."""
        if self.server_lr > 0 and self.algo.default_lr is None:
            raise FedmllmError(
                f"config key 'server_lr': algorithm '{self.algorithm}' has no server learning rate "
                "(its new model is not a step along the mean update); leave server_lr = 0"
            )
        for option in algorithms.OPTIONS:
            if getattr(self, option) == DEFAULTS[option] or option in self.algo.reads:
                continue
            if option == "prox_mu" and self.adaptive_regularization:  # the adaptive term's mu
                continue
            readers = [a.name for a in ALGORITHMS.values() if option in a.reads]
            raise FedmllmError(
                f"config key '{option}': {show(getattr(self, option))} is read by {', '.join(readers)}"
                f"{' or adaptive_regularization' if option == 'prox_mu' else ''}, not by '{self.algorithm}'; "
                f"leave it at its default {DEFAULTS[option]!r} (set it per algorithm, e.g. in a bench's "
                "[algorithm_settings])"
            )

    @property
    def sampled_per_round(self) -> int:
        if self.client_fraction > 0:
            return max(1, round(self.client_fraction * self.num_clients))
        return self.clients_per_round

    @property
    def eta(self) -> float:
        """The server learning rate in force: server_lr if set, else the algorithm's default."""
        return self.algo.eta(self)

    @property
    def prompt_form(self) -> str:
        """The prompt variant in force: prompt_variant, with 'auto' resolved by prompt_augmentation."""
        if self.prompt_variant != "auto":
            return self.prompt_variant
        return "augmented" if self.prompt_augmentation else "modality"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> RunConfig:
        return from_dict({**self.to_dict(), **changes}, "override")


TYPES = {f.name: type(f.default) for f in fields(RunConfig)}
DEFAULTS = {f.name: f.default for f in fields(RunConfig)}
CHOICES = {f.name: f.metadata["choices"] for f in fields(RunConfig)}


def _check_kind(key: str, value: Any) -> None:
    """The field's type (an int is accepted for a float, a bool for nothing but a bool) and, for a
    float, finiteness: before any range check, since NaN compares false both ways and slips through."""
    expected = TYPES[key]
    ok = not isinstance(value, bool) or expected is bool
    ok = ok and isinstance(value, (int, float) if expected is float else expected)
    if not ok:
        raise FedmllmError(
            f"config key '{key}' should be {expected.__name__}, got {type(value).__name__} {show(value)}"
        )
    if expected is float and not finite(value):
        raise FedmllmError(f"config key '{key}': must be a finite number {FLOAT_DOMAINS[key]}, got {show(value)}")


def _check_domain(key: str, value: Any) -> None:
    """The field's own domain (value already of the right kind); rules between keys are RunConfig's."""
    if key in FLOAT_DOMAINS and value not in FLOAT_DOMAINS[key]:
        domain = FLOAT_DOMAINS[key]
        what = f"a finite number {domain}" if domain.high == math.inf else str(domain)
        raise FedmllmError(f"config key '{key}': must be {what}, got {show(value)}")
    if key in INT_DOMAINS:
        low, high = INT_DOMAINS[key]
        if value < low:
            raise FedmllmError(f"config key '{key}': must be at least {low}, got {show(value)}")
        if value > high:
            raise FedmllmError(f"config key '{key}': must be at most {high}, got {show(value)}")
    if CHOICES[key] and value not in CHOICES[key]:
        raise FedmllmError(f"config key '{key}': {show(value)} is not one of {list(CHOICES[key])}")
    if key == "ood_dataset" and value and value not in DATASET_NAMES:
        raise FedmllmError(f"config key 'ood_dataset': {show(value)} is not one of {list(DATASET_NAMES)} or ''")
    if key == "device" and not device_ok(value):
        raise FedmllmError(
            f"config key 'device': must be 'auto', 'cpu', 'cuda', 'cuda:N' (N in 0..{MAX_CUDA_INDEX}) or 'mps', "
            f"got {show(value)}"
        )
    if key in TEXT_FIELDS:
        check_text(key, value)
    if key == "data_columns":
        parse_columns(value)
    if key == "plugins" and not all(MODULE.fullmatch(m.strip()) for m in value.split(",") if value.strip()):
        raise FedmllmError(f"config key 'plugins': must be comma-separated module names (a.b, c), got {show(value)}")


def check_value(key: str, value: Any) -> None:
    """One key's type and own domain, alone (RunConfig checks these and the rules between keys)."""
    _check_kind(key, value)
    _check_domain(key, value)


def coerce(key: str, value: Any, source: str) -> Any:
    """Check a value against the field's type and domain (ints are accepted, as floats, where floats
    are), so a bad value fails naming `source` and the key before any config is built."""
    try:
        check_value(key, value)
    except FedmllmError as e:
        raise FedmllmError(f"{source}: {e}") from None
    return float(value) if TYPES[key] is float else value


def from_dict(values: dict[str, Any], source: str) -> RunConfig:
    """Build a RunConfig from a flat mapping; `source` names where it came from, for errors.
    Keys may use hyphens (Flower's convention) or underscores."""
    clean = {}
    for raw_key, value in values.items():
        key = raw_key.replace("-", "_")
        if key not in TYPES:
            raise FedmllmError(f"{source}: unknown config key '{raw_key}'")
        clean[key] = coerce(key, value, source)
    try:
        return RunConfig(**clean)
    except FedmllmError as e:
        raise FedmllmError(f"{source}: {e}") from None
