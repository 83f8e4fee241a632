"""Every RunConfig field has a domain, and no value outside it gets through: a property test over
all fields (one table of predicates, written here independently of config.py) and hand-picked edges."""

import math
import re
import unicodedata
from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedmllm import config_domains
from fedmllm.config import ALGORITHMS, ATTACKS, DATASET_NAMES, PROMPT_VARIANTS, RunConfig, from_dict
from fedmllm.errors import FedmllmError

NAN, INF = float("nan"), float("inf")
FIELDS = {f.name: f for f in fields(RunConfig)}
FLOAT_FIELDS = [name for name, f in FIELDS.items() if type(f.default) is float]
BASELINES = ("local", "centralized")
MODULE = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*"


def printable(v: str) -> bool:
    return len(v) <= 4096 and all(unicodedata.category(ch) not in ("Cc", "Cs", "Zl", "Zp") for ch in v)


def device(v: str) -> bool:
    if v in ("auto", "cpu", "cuda", "mps"):
        return True
    m = re.fullmatch(r"cuda:(0|[1-9][0-9]*)", v)
    return m is not None and int(m.group(1)) <= 127


def within(low, high, open_low=False, open_high=False):
    def check(v, c):
        return (low < v if open_low else low <= v) and (v < high if open_high else v <= high)

    return check


def one_of(*values):
    return lambda v, c: v in values


def anything(v, c):
    return True


def hub_columns(v: str) -> bool:
    """'' or 'role=column,...': known roles, each once, non-empty columns holding no '='."""
    if not v.strip():
        return True
    pairs = [part.partition("=") for part in v.split(",")]
    roles = [role.strip() for role, _, _ in pairs]
    known = {"id", "image", "text", "question", "answer", "answer_type", "language", "label", "instruction"}
    columns_ok = all(sep and column.strip() and "=" not in column for _, sep, column in pairs)
    return columns_ok and set(roles) <= known and len(set(roles)) == len(roles)


def krum_ok(c) -> bool:
    return c.algorithm != "krum" or c.sampled_per_round >= c.krum_byzantine + 2


def attack_ok(c) -> bool:
    return (c.attack != "none" or c.attackers == 0) and c.attackers < c.num_clients and not (c.attackers and c.secagg)


# field -> predicate(value, config): the value's domain; cross-field rules read the other values.
DOMAINS = {
    "model": lambda v, c: v != "" and printable(v),
    "trust_remote_code": anything,
    "device": lambda v, c: device(v),
    "dtype": one_of("auto", "float32", "bfloat16", "float16"),
    "lora_r": within(1, 4096),
    "lora_alpha": within(1, 2**31 - 1),
    "lora_dropout": within(0, 1, open_high=True),
    "dataset": one_of(*DATASET_NAMES),
    "data_dir": lambda v, c: printable(v),
    "data_columns": lambda v, c: printable(v) and hub_columns(v),
    "synthetic_train": within(1, 1_000_000),
    "synthetic_test": within(1, 1_000_000),
    "synthetic_dev": within(1, 1_000_000),
    "synthetic_seed": within(0, 2**32 - 1),
    "num_clients": lambda v, c: 1 <= v <= 100_000 and c.clients_per_round <= v and attack_ok(c),
    "partition": one_of("auto", "dirichlet", "iid"),
    "dirichlet_alpha": within(0, 1e6, open_low=True),
    "scenario": one_of("none", "missing", "cross_modality", "hybrid", "cross_task"),
    "missing_rate": within(0, 1),
    "image_clients": lambda v, c: 0 <= v <= 100_000 and (c.scenario != "cross_modality" or v <= c.num_clients),
    "hybrid_rate": within(0, 1),
    "text_dataset": one_of(*DATASET_NAMES),
    "text_data_dir": lambda v, c: printable(v),
    "ood_dataset": one_of("", *DATASET_NAMES),
    "ood_data_dir": lambda v, c: printable(v),
    "prompt_augmentation": anything,
    "prompt_variant": lambda v, c: (
        v in PROMPT_VARIANTS and (v == "auto" or (v in ("augmented", "augmented_answer_line")) == c.prompt_augmentation)
    ),
    "algorithm": lambda v, c: v in ALGORITHMS and krum_ok(c),
    "plugins": lambda v, c: not v.strip() or all(re.fullmatch(MODULE, m.strip(), re.ASCII) for m in v.split(",")),
    "adaptive_regularization": anything,
    "prox_mu": within(0, INF),
    "adaptive_mu_weight": within(0, INF),
    "adaptive_skip_layers": within(0, 2**31 - 1),
    "server_lr": lambda v, c: 0 <= v < INF and (v == 0 or c.algorithm not in ("fedmedian", "fedtrimmedavg", "krum")),
    "server_momentum": within(0, 1, open_high=True),
    "server_momentum_damped": lambda v, c: not v or c.algorithm == "fedavgm",
    "beta1": within(0, 1, open_high=True),
    "beta2": within(0, 1, open_high=True),
    "tau": within(0, INF, open_low=True, open_high=True),
    "adaptive_moment": lambda v, c: v == "delta" or (v == "momentum" and c.algorithm in ("fedadam", "fedyogi")),
    "trim_fraction": within(0, 0.5, open_high=True),
    "krum_byzantine": lambda v, c: 0 <= v <= 100_000 and krum_ok(c),
    "rounds": within(1, 1_000_000),
    "clients_per_round": lambda v, c: 1 <= v <= c.num_clients and krum_ok(c),
    "client_fraction": lambda v, c: 0 <= v <= 1 and krum_ok(c),
    "local_steps": within(0, 1_000_000),
    "batch_size": within(1, 65_536),
    "group_by_length": anything,
    "lr": within(0, INF, open_low=True, open_high=True),
    "warmup": within(0, 1),
    "reject_norm_factor": within(0, INF, open_high=True),
    "min_clients": lambda v, c: v >= 1 and (c.algorithm in BASELINES or v <= c.sampled_per_round),
    "round_timeout": within(0, INF, open_high=True),
    "client_data": lambda v, c: v == "split" or (v == "node" and c.algorithm != "centralized"),
    "dp": lambda v, c: v == "none" or (v in ("client", "server") and c.algorithm not in BASELINES),
    "dp_noise_multiplier": within(0, INF, open_high=True),
    "dp_clipping_norm": within(0, INF, open_low=True, open_high=True),
    "dp_delta": within(0, 1, open_low=True, open_high=True),
    "dp_target_epsilon": lambda v, c: v == 0 or (0 < v < INF and c.dp != "none" and c.dp_noise_multiplier > 0),
    "secagg": lambda v, c: (
        not v or (c.algorithm in ("fedavg", "fedprox", "fedavgm", "fedadagrad", "fedadam", "fedyogi"))
    ),
    "update_dtype": lambda v, c: v in ("float32", "bfloat16", "float16") and (v == "float32" or not c.secagg),
    "prompt_cache_mb": within(0, 2**31 - 1),
    "client_cpus": within(1e-4, 1024),
    "client_gpus": lambda v, c: v == 0 or 1e-4 <= v <= 128,
    "max_weight_share": within(0, 1, open_low=True),
    "allow_external_paths": anything,
    "attack": lambda v, c: v in ATTACKS and attack_ok(c),
    "attackers": lambda v, c: v >= 0 and attack_ok(c),
    "attack_scale": within(0, INF, open_low=True, open_high=True),
    "eval_split": lambda v, c: v == "test" or (v == "dev" and c.dataset not in ("vqa_rad", "medalpaca")),
    "eval_every": within(1, 1_000_000),
    "eval_batch_size": within(1, 65_536),
    "generate_eval": anything,
    "eval_views": anything,
    "seed": within(0, 2**32 - 1),
    "out": lambda v, c: printable(v),
}

ODD_FLOATS = [NAN, INF, -INF, 1e308, -1e308, 5e-324, -0.0, 0.0, 1e-5, 1e-4, 0.5, 1.0, 1e6, 10**400, -(10**400)]
ODD_INTS = [0, 1, -1, 2, 3, 4, 2**31, 2**32, 2**63, 10**30, -(10**30), 10**5000]
ODD_TEXT = [
    "", " ", "\x00", "a\nb", "a\u2028b", "\ud800", "\x7f", "x" * 5000, "cuda:1", "cuda:127", "cuda:128",
    "cuda:01", "cuda:-1", "cuda:\u0661", "CUDA", " cpu", "mps", "none", "fedavg", "slake", "runs/é",
]  # fmt: skip
WRONG_KIND = st.one_of(st.none(), st.lists(st.integers(), max_size=2), st.just({"a": 1}), st.just(b"x"))


def values(name: str) -> st.SearchStrategy:
    """Values of the field's type (odd ones included), and now and then one of another type."""
    kind = type(FIELDS[name].default)
    if kind is bool:
        own = st.booleans()
    elif kind is int:
        own = st.one_of(st.integers(-3, 12), st.integers(), st.sampled_from(ODD_INTS))
    elif kind is float:
        own = st.one_of(st.floats(), st.sampled_from(ODD_FLOATS), st.integers(-3, 12), st.integers())
    else:
        own = st.one_of(st.text(), st.sampled_from(ODD_TEXT + list(FIELDS[name].metadata["choices"] or ())))
    other = st.sampled_from([True, 3, 2.5, "3"]).filter(lambda v: type(v) is not kind)
    return st.one_of(own, own, own, other, WRONG_KIND)


def test_the_domain_table_covers_every_field():
    assert set(DOMAINS) == set(FIELDS), "give every RunConfig field a domain here and in config.py"
    kinds = {kind: {n for n, f in FIELDS.items() if type(f.default) is kind} for kind in (int, float, str)}
    assert set(config_domains.FLOAT_DOMAINS) == kinds[float] and set(config_domains.INT_DOMAINS) == kinds[int]
    choices = {n for n, f in FIELDS.items() if f.metadata["choices"]}
    free = {*config_domains.TEXT_FIELDS, "device", "ood_dataset", "algorithm", "plugins"}
    assert kinds[str] - choices == free  # each free string checked


def test_the_defaults_lie_in_their_domains():
    cfg = RunConfig()
    assert [name for name, ok in DOMAINS.items() if not ok(getattr(cfg, name), cfg)] == []


@pytest.mark.parametrize("name", sorted(FIELDS))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_value_is_refused_naming_its_key_or_lies_in_the_domain(name, data):
    value = data.draw(values(name), label=name)
    try:
        cfg = from_dict({name: value}, "test")
    except FedmllmError as e:
        assert f"'{name}'" in str(e) and str(e).startswith("test: ")
        return
    kind = type(FIELDS[name].default)
    assert type(getattr(cfg, name)) is kind and DOMAINS[name](getattr(cfg, name), cfg)


@pytest.mark.parametrize("value", [NAN, INF, -INF])
@pytest.mark.parametrize("name", FLOAT_FIELDS)
def test_non_finite_floats_are_refused_naming_the_key(name, value):
    message = f"config key '{name}': must be a finite number"
    with pytest.raises(FedmllmError, match=f"^test: {message}"):
        from_dict({name: value}, "test")
    with pytest.raises(FedmllmError, match=f"^{message}"):
        RunConfig(**{name: value})  # built directly, not through from_dict


def test_nan_reject_norm_factor_no_longer_slips_past_min():
    with pytest.raises(FedmllmError, match=r"'reject_norm_factor': must be a finite number >= 0, got nan"):
        RunConfig(reject_norm_factor=NAN)
    assert RunConfig(reject_norm_factor=0.0).reject_norm_factor == 0.0  # 0 = off


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("num_clients", 10**30, "'num_clients': must be at most 100000, got 1000000000000000000000000000000$"),
        ("num_clients", 10**5000, "'num_clients': must be at most 100000, got an integer of 16610 bits"),
        ("rounds", 1_000_001, "'rounds': must be at most 1000000, got 1000001"),
        ("lr", 10**400, "'lr': must be a finite number > 0, got an integer of 1329 bits"),
        ("lr", 0, "'lr': must be a finite number > 0, got 0"),
        ("lora_alpha", -1, "'lora_alpha': must be at least 1, got -1"),
        ("krum_byzantine", -1, "'krum_byzantine': must be at least 0, got -1"),
        ("seed", 2**32, "'seed': must be at most 4294967295, got 4294967296"),
        ("tau", 0.0, "'tau': must be a finite number > 0, got 0.0"),
        ("trim_fraction", 0.5, r"'trim_fraction': must be in \[0, 0.5\), got 0.5"),
        ("lora_dropout", 1.0, r"'lora_dropout': must be in \[0, 1\), got 1.0"),
        ("max_weight_share", 0.0, r"'max_weight_share': must be in \(0, 1\], got 0.0"),
        ("dirichlet_alpha", 1e7, r"'dirichlet_alpha': must be in \(0, 1000000\], got 10000000.0"),
        ("client_cpus", 0.0, r"'client_cpus': must be in \[0.0001, 1024\], got 0.0"),
        ("client_gpus", 1e-5, "'client_gpus': must be 0 or at least 0.0001"),
        ("attack_scale", -2.0, "'attack_scale': must be a finite number > 0, got -2.0"),
        ("device", "cuda:128", r"'device': must be 'auto', 'cpu', 'cuda', 'cuda:N' \(N in 0..127\) or 'mps'"),
        ("device", "cuda:01", "'device': must be"),
        ("device", "gpu", "'device': must be"),
        ("model", "", "'model': must name a model"),
        ("data_dir", "a\x00b", r"'data_dir': must be printable text, got '\\x00' at character 1"),
        ("out", "runs/\nx", "'out': must be printable text"),
        ("model", "\ud800", "'model': must be printable text"),
        ("text_data_dir", "x" * 4097, "'text_data_dir': at most 4096 characters, got 4097"),
        ("rounds", True, "'rounds' should be int, got bool True"),
        ("lr", "1e-3", "'lr' should be float, got str '1e-3'"),
    ],
    ids=lambda v: (
        v if isinstance(v, str) and len(v) < 20 and v.isidentifier() else type(v).__name__
    ),  # no str(10**5000)
)
def test_values_outside_the_domain_are_refused(name, value, message):
    with pytest.raises(FedmllmError, match=f"^test: config key {message}"):
        from_dict({name: value}, "test")


def test_edges_inside_the_domain_are_accepted():
    edges = {
        "num_clients": 100_000, "rounds": 1_000_000, "seed": 2**32 - 1, "device": "cuda:127", "lora_r": 4096,
        "lora_dropout": 0.0, "client_gpus": 1e-4, "client_cpus": 1024, "max_weight_share": 1.0,
        "local_steps": 0, "data_dir": "données/ü 1", "out": "x" * 4096, "lr": 1,
    }  # fmt: skip
    cfg = from_dict(edges, "test")
    assert {name: getattr(cfg, name) for name in edges} == {**edges, "lr": 1.0}
    # an algorithm's own options, where its record reads them
    assert from_dict({"algorithm": "fedtrimmedavg", "trim_fraction": 0.0}, "test").trim_fraction == 0.0
    assert from_dict({"algorithm": "krum", "krum_byzantine": 0}, "test").krum_byzantine == 0
    assert type(cfg.lr) is float and type(cfg.client_cpus) is float  # ints become floats where floats go


def test_a_wrong_type_built_directly_is_refused_not_a_type_error():
    with pytest.raises(FedmllmError, match="config key 'rounds' should be int, got str '3'"):
        RunConfig(rounds="3")
    with pytest.raises(FedmllmError, match="config key 'secagg' should be bool, got int 1"):
        RunConfig(secagg=1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"attack": "scale", "attackers": 1, "secagg": True}, "config keys 'attack' and 'secagg'"),
        ({"attackers": 2}, "config keys 'attackers' and 'attack': 2 attackers but attack = 'none'; set attack to"),
        ({"attack": "nan", "attackers": 10}, "config keys 'attackers' and 'num_clients': .* got 10 of 10"),
        ({"clients_per_round": 11}, "config keys 'clients_per_round' and 'num_clients': 11 clients per round > "),
        ({"dp_noise_multiplier": -1.0}, "config keys 'dp_noise_multiplier' >= 0 and 'dp_clipping_norm' > 0"),
        ({"min_clients": 0, "algorithm": "local"}, "config key 'min_clients': must be at least 1"),
        ({"scenario": "cross_modality", "image_clients": 11}, r"'image_clients': must be in \[0, num_clients=10\]"),
    ],
)
def test_cross_field_rules_name_the_keys_involved(changes, message):
    with pytest.raises(FedmllmError, match=message):
        RunConfig(**changes)


def test_attack_needs_a_kind_and_a_count_together():
    cfg = RunConfig(attack="sign_flip", attackers=9)  # 9 of 10 partitions: one honest client left
    assert (cfg.attack, cfg.attackers) == ("sign_flip", 9)
    assert RunConfig(attack="scale").attackers == 0  # a sweep's no-attack column


@pytest.mark.parametrize(
    ("changes", "ok"),
    [
        ({}, True),  # the default: 3 per round, f = 1 (n = f + 2)
        ({"krum_byzantine": 2}, False),  # 3 < 2 + 2
        ({"krum_byzantine": 2, "clients_per_round": 4}, True),
        ({"krum_byzantine": 0, "clients_per_round": 2}, True),
        ({"krum_byzantine": 0, "clients_per_round": 1, "min_clients": 1}, False),  # one update: nothing to choose
        ({"krum_byzantine": 1, "client_fraction": 0.3}, True),  # round(0.3 * 10) = 3 sampled
        ({"krum_byzantine": 1, "client_fraction": 0.2}, False),  # 2 sampled
    ],
)
def test_krum_needs_f_plus_two_clients_per_round(changes, ok):
    if ok:
        assert RunConfig(algorithm="krum", **changes).algorithm == "krum"
        return
    with pytest.raises(FedmllmError, match="config keys 'krum_byzantine' and '(clients_per_round|client_fraction)'"):
        RunConfig(algorithm="krum", **changes)
    if changes.get("krum_byzantine", 1) != 1:  # f is only Krum's: another rule refuses it
        with pytest.raises(FedmllmError, match="config key 'krum_byzantine': .* is read by krum, not by 'fedavg'"):
            RunConfig(**changes)


def test_domain_predicates_agree_with_math():
    # a guard on the table itself: NaN fails every numeric predicate, as it must
    cfg = RunConfig()
    assert not any(DOMAINS[name](NAN, cfg) for name in FLOAT_FIELDS)
    assert math.isfinite(1e308) and DOMAINS["lr"](1e308, cfg) and not DOMAINS["lr"](INF, cfg)
