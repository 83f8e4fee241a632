import pytest

from fedmllm.cli import build_parser, main
from fedmllm.config import RunConfig, load
from fedmllm.errors import FedmllmError


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
