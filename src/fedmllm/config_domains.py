"""The domain of every config field: the bounds, intervals and text rules RunConfig checks
(config.py holds the fields and the rules between them)."""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from fedmllm.errors import FedmllmError

# The domain of every field, checked by RunConfig.__post_init__ (and key by key by `coerce`);
# tests/test_config_domains.py keeps one predicate per field. Upper bounds on counts make an
# absurd value fail here, cleanly, not later as an OverflowError or MemoryError mid-run.
MAX_CLIENTS = 100_000  # per federation (client counts: num_clients, attackers, krum_byzantine, ...)
MAX_ROUNDS = 1_000_000
MAX_STEPS = 1_000_000  # local optimiser steps per round
MAX_SAMPLES = 1_000_000  # per synthetic split (the published splits hold tens of thousands)
MAX_BATCH = 65_536
MAX_LORA_RANK = 4096  # a rank at a real model's hidden size is no longer low-rank
INT32_MAX = 2**31 - 1  # counts with no tighter meaning still fit a C int
SEED_MAX = 2**32 - 1  # the derived seeds (seed * 1_000_003 + round * 1_009 + ...) stay below torch's 2**64
MAX_CUDA_INDEX = 127  # torch keeps a device index in an int8: 'cuda:128' silently becomes 'cuda:-128'
MAX_TEXT = 4096  # Linux's PATH_MAX
RAY_STEP = 1e-4  # Ray refuses a fractional resource finer than this
# Unicode categories refused in names and paths: control characters (NUL ends a C path, a newline
# breaks the log and the recorded config), lone surrogates (no UTF-8 form to record), line breaks.
BAD_TEXT = ("Cc", "Cs", "Zl", "Zp")
TEXT_FIELDS = ("model", "data_dir", "text_data_dir", "ood_data_dir", "out", "data_columns")  # a hub id, a path, ...
# data_columns: which column of a Hub dataset snapshot holds each field a loader reads (data/hub.py)
COLUMN_ROLES = ("id", "image", "text", "question", "answer", "answer_type", "language", "label", "instruction")
MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")  # a plugin: a dotted module name
DEVICE = re.compile(r"auto|cpu|mps|cuda(:(0|[1-9][0-9]{0,2}))?")  # [0-9]: \d would take any Unicode digit


@dataclass(frozen=True)
class Interval:
    """A float field's domain, low..high with each end open or closed (high = inf: a half-line)."""

    low: float
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, x: float) -> bool:
        above = self.low < x if self.open_low else self.low <= x
        below = x < self.high if self.open_high else x <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.open_low else '>='} {num(self.low)}"
        left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
        return f"in {left}{num(self.low)}, {num(self.high)}{right}"


UNIT, UNIT_OPEN = Interval(0.0, 1.0), Interval(0.0, 1.0, open_high=True)
NON_NEGATIVE, POSITIVE = Interval(0.0), Interval(0.0, open_low=True)
FLOAT_DOMAINS = {
    "lora_dropout": UNIT_OPEN,  # p = 1 would zero every LoRA input
    "dirichlet_alpha": Interval(0.0, 1e6, open_low=True),  # 1e6 is IID already; near 1e308 Dir() overflows to 0s
    "missing_rate": UNIT,
    "hybrid_rate": UNIT,
    "prox_mu": NON_NEGATIVE,
    "adaptive_mu_weight": NON_NEGATIVE,
    "server_lr": NON_NEGATIVE,  # 0 = the algorithm's default
    "server_momentum": UNIT_OPEN,
    "beta1": UNIT_OPEN,
    "beta2": UNIT_OPEN,
    "tau": POSITIVE,
    "trim_fraction": Interval(0.0, 0.5, open_high=True),  # half cut at each end leaves nothing to average
    "client_fraction": UNIT,  # 0 = use clients_per_round
    "lr": POSITIVE,
    "warmup": UNIT,
    "reject_norm_factor": NON_NEGATIVE,  # 0 = off
    "round_timeout": NON_NEGATIVE,  # 0 = no timeout
    "dp_noise_multiplier": NON_NEGATIVE,
    "dp_clipping_norm": POSITIVE,
    "dp_delta": Interval(0.0, 1.0, open_low=True, open_high=True),
    "dp_target_epsilon": NON_NEGATIVE,  # 0 = no target
    "client_cpus": Interval(RAY_STEP, 1024.0),  # int(client_cpus) becomes torch's thread count
    "client_gpus": Interval(0.0, MAX_CUDA_INDEX + 1.0),  # and 0 or >= RAY_STEP (_check_resources)
    "max_weight_share": Interval(0.0, 1.0, open_low=True),
    "attack_scale": POSITIVE,
}
INT_DOMAINS = {  # inclusive (low, high); cross-field bounds are in RunConfig._check_counts
    "lora_r": (1, MAX_LORA_RANK),
    "lora_alpha": (1, INT32_MAX),
    "synthetic_train": (1, MAX_SAMPLES),
    "synthetic_test": (1, MAX_SAMPLES),
    "synthetic_dev": (1, MAX_SAMPLES),
    "synthetic_seed": (0, SEED_MAX),
    "num_clients": (1, MAX_CLIENTS),
    "image_clients": (0, MAX_CLIENTS),  # <= num_clients in cross_modality
    "adaptive_skip_layers": (0, INT32_MAX),  # clamped to (L-1)//2 where used
    "krum_byzantine": (0, MAX_CLIENTS),  # krum: f + 2 <= clients per round
    "rounds": (1, MAX_ROUNDS),
    "clients_per_round": (1, MAX_CLIENTS),  # <= num_clients
    "local_steps": (0, MAX_STEPS),  # 0 = one local epoch
    "batch_size": (1, MAX_BATCH),
    "min_clients": (1, MAX_CLIENTS),  # <= clients per round for a federated algorithm
    "prompt_cache_mb": (0, INT32_MAX),  # 0 = off
    "attackers": (0, MAX_CLIENTS),  # < num_clients; 0 when attack = 'none'
    "eval_every": (1, MAX_ROUNDS),
    "eval_batch_size": (1, MAX_BATCH),
    "seed": (0, SEED_MAX),
}


def num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def show(value: Any) -> str:
    """A value for an error message: huge ints by size (str() refuses past 4300 digits), long text cut."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"{'a negative' if value < 0 else 'an'} integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int past the float range
        return False


def device_ok(value: str) -> bool:
    return DEVICE.fullmatch(value) is not None and int(value.partition(":")[2] or 0) <= MAX_CUDA_INDEX


def parse_columns(value: str) -> dict[str, str]:
    """data_columns, "role=column,role=column", as {role: column}; blank is no mapping. A column
    name keeps its inner spaces; it cannot hold ',' or '=' (they separate the pairs)."""
    if not value.strip():
        return {}
    mapping: dict[str, str] = {}
    for part in value.split(","):
        role, sep, column = (text.strip() for text in part.partition("="))
        if not sep or not column or "=" in column:
            raise FedmllmError(
                f"config key 'data_columns': expected ROLE=COLUMN pairs separated by commas "
                f"(e.g. 'image=img,question=q'), got {show(part)} in {show(value)}"
            )
        if role not in COLUMN_ROLES:
            raise FedmllmError(
                f"config key 'data_columns': unknown role {show(role)} (roles: {', '.join(COLUMN_ROLES)})"
            )
        if role in mapping:
            raise FedmllmError(f"config key 'data_columns': role '{role}' is mapped twice in {show(value)}")
        mapping[role] = column
    return mapping


def check_text(key: str, value: str) -> None:
    if key == "model" and not value:
        raise FedmllmError("config key 'model': must name a model ('tiny', a hub id or a local folder), got ''")
    if len(value) > MAX_TEXT:
        raise FedmllmError(f"config key '{key}': at most {MAX_TEXT} characters, got {len(value)}")
    bad = next((i for i, c in enumerate(value) if unicodedata.category(c) in BAD_TEXT), None)
    if bad is not None:
        raise FedmllmError(
            f"config key '{key}': must be printable text, got {value[bad]!r} at character {bad} of {show(value)}"
        )
