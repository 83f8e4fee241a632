import pytest

from fedmllm.cli import build_parser, main
from fedmllm.config import RunConfig
from fedmllm.config_files import load
from fedmllm.errors import FedmllmError
from fedmllm.fl.algorithms import ALGORITHMS, OPTIONS


def test_file_then_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('rounds = 7\nlr = 1\nmodel = "x"\n')
    cfg = load(path, {"rounds": 9})
    assert (cfg.rounds, cfg.lr, cfg.model) == (9, 1.0, "x")


def test_yaml_with_hyphens(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("num-clients: 4\nclients-per-round: 2\n")
    assert (load(path).num_clients, load(path).clients_per_round) == (4, 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("roundz = 3\n", "c.toml: unknown config key 'roundz'"),
        ('rounds = "3"\n', "c.toml: config key 'rounds' should be int, got str"),
        ("rounds = 0\n", "config key 'rounds': must be at least 1"),
        ('algorithm = "fedsgd"\n', "config key 'algorithm': 'fedsgd' is not one of"),
        ("rounds = [\n", "c.toml: invalid TOML"),
    ],
)
def test_bad_files_name_the_key(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(FedmllmError, match=message):
        load(path)


def test_help_documents_every_field_with_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in RunConfig.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in text
    assert "(default: 0.5)" in text and "(default: 'tiny')" in text


def test_cli_error_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("bogus = 1\n")
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"fedmllm: error: {path}: unknown config key 'bogus'"


def test_pyproject_flower_config_lists_every_key_with_its_default():
    from pathlib import Path

    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert pyproject["tool"]["flwr"]["app"]["config"] == RunConfig().to_dict(), "run scripts/sync_pyproject.py"


def test_prompt_variant_resolves_auto_and_refuses_a_contradiction():
    assert RunConfig().prompt_form == "modality"
    assert RunConfig(prompt_augmentation=True).prompt_form == "augmented"
    assert RunConfig(prompt_augmentation=True, prompt_variant="augmented_answer_line").prompt_form == (
        "augmented_answer_line"
    )
    assert RunConfig(prompt_variant="full_modality").prompt_form == "full_modality"
    for augmentation, variant in ((True, "modality"), (True, "full_modality"), (False, "augmented")):
        with pytest.raises(FedmllmError, match="config keys 'prompt_variant' and 'prompt_augmentation'"):
            RunConfig(prompt_augmentation=augmentation, prompt_variant=variant)


@pytest.mark.parametrize("algorithm", ["fedmedian", "fedtrimmedavg", "krum", "local", "centralized"])
def test_server_lr_is_refused_where_no_rule_reads_it(algorithm):
    with pytest.raises(FedmllmError, match=f"config key 'server_lr': algorithm '{algorithm}' has no server"):
        RunConfig(algorithm=algorithm, server_lr=0.5)
    assert RunConfig(algorithm=algorithm).server_lr == 0.0


def test_eta_in_force():
    assert RunConfig().eta == 1.0
    assert RunConfig(algorithm="fedprox", server_lr=0.5).eta == 0.5
    assert RunConfig(algorithm="fedadam").eta == 1e-3
    assert RunConfig(algorithm="fedavgm", server_momentum=0.75).eta == 1.0
    assert RunConfig(algorithm="fedavgm", server_momentum=0.75, server_momentum_damped=True).eta == 0.25
    assert RunConfig(algorithm="fedavgm", server_momentum_damped=True, server_lr=2.0).eta == 2.0  # explicit wins


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"server_lr": -1.0}, "config key 'server_lr': must be a finite number >= 0"),
        ({"server_lr": float("nan")}, "config key 'server_lr': must be a finite number >= 0"),
        ({"tau": 0.0}, "config key 'tau': must be a finite number > 0"),
        ({"tau": float("nan")}, "config key 'tau'"),
        ({"tau": float("inf")}, "config key 'tau'"),
        ({"beta1": 1.0}, r"config key 'beta1': must be in \[0, 1\)"),
        ({"beta2": -0.1}, "config key 'beta2'"),
        ({"server_momentum": 1.0}, "config key 'server_momentum'"),
        ({"server_momentum_damped": True}, "config key 'server_momentum_damped': True is read by fedavgm, not by"),
        ({"adaptive_moment": "momentum"}, "config key 'adaptive_moment': 'momentum' is read by fedadam, fedyogi, not"),
        ({"adaptive_moment": "momentum", "algorithm": "fedadagrad"}, "config key 'adaptive_moment'"),
        ({"adaptive_moment": "m2"}, "config key 'adaptive_moment': 'm2' is not one of"),
    ],
)
def test_server_hyper_parameters_are_validated(changes, message):
    with pytest.raises(FedmllmError, match=message):
        RunConfig(**changes)


@pytest.mark.parametrize("option", OPTIONS)
def test_an_option_is_refused_where_no_rule_reads_it(option):
    """Each server/client option away from its default: accepted by exactly the algorithms whose
    record reads it, refused by every other with a message naming the key and its readers."""
    value = {
        "server_momentum": 0.5, "server_momentum_damped": True, "beta1": 0.5, "beta2": 0.5, "tau": 0.5,
        "adaptive_moment": "momentum", "trim_fraction": 0.3, "krum_byzantine": 0, "prox_mu": 0.5,
    }[option]  # fmt: skip
    readers = [a.name for a in ALGORITHMS.values() if option in a.reads]
    assert readers, f"no algorithm reads {option}"
    for name in ALGORITHMS:
        if name in readers:
            assert getattr(RunConfig(algorithm=name, **{option: value}), option) == value
        else:
            with pytest.raises(FedmllmError, match=f"config key '{option}': .* is read by {readers[0]}"):
                RunConfig(algorithm=name, **{option: value})


def test_prox_mu_is_also_the_adaptive_terms():
    assert RunConfig(algorithm="fedavgm", prox_mu=0.5, adaptive_regularization=True).prox_mu == 0.5


def test_adaptive_moment_reaches_the_rules():
    from fedmllm.fl.server import hyper

    assert hyper(RunConfig(algorithm="fedyogi", adaptive_moment="momentum")).adaptive_moment == "momentum"
    assert hyper(RunConfig(algorithm="fedavgm", server_momentum=0.5, server_momentum_damped=True)).server_lr == 0.5


def test_datasets_without_a_dev_split_match_the_loaders():
    import importlib

    from fedmllm.config import DATASET_NAMES, NO_DEV_SPLIT

    splits = {name: importlib.import_module(f"fedmllm.data.{name}").SPLITS for name in DATASET_NAMES}
    assert tuple(name for name, s in splits.items() if "dev" not in s) == NO_DEV_SPLIT


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": "vqa_rad"}, "config key 'eval_split': dataset 'vqa_rad' has no dev split"),
        ({"dataset": "slake", "ood_dataset": "medalpaca"}, "ood_dataset 'medalpaca' has no dev split"),
    ],
)
def test_eval_split_dev_needs_a_dev_split(changes, message):
    with pytest.raises(FedmllmError, match=message):
        RunConfig(eval_split="dev", **changes)
    assert RunConfig(**changes).eval_split == "test"
    assert RunConfig(eval_split="dev", dataset="crisismmd", ood_dataset="slake").eval_split == "dev"


def test_synthetic_sizes_and_the_scored_split(tmp_path):
    from fedmllm.run import data_sizes, prepare_data

    assert data_sizes(RunConfig()) == {"train": 1000, "dev": 500, "test": 1000}
    small = {"synthetic_train": 30, "synthetic_test": 12, "synthetic_dev": 8, "num_clients": 2, "clients_per_round": 1}
    assert data_sizes(RunConfig(**small)) == {"train": 30, "dev": 8, "test": 12}
    _, tests = prepare_data(RunConfig(eval_split="dev", **small), tmp_path / "dev")
    _, tests_on_test = prepare_data(RunConfig(**small), tmp_path / "test")
    assert len(tests["test"]) == 8 and len(tests_on_test["test"]) == 12  # the role "test", the dev split's items
    assert {s.id for s in tests["test"]}.isdisjoint(s.id for s in tests_on_test["test"])
