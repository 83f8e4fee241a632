"""`fedmllm deploy local`: what its arguments resolve to, and the Flower app it writes; no process is started
(tests/test_deploy_e2e.py runs the command end to end)."""

import io
import time
import zipfile
from pathlib import Path

import pytest
import tomllib

from fedmllm.cli import build_parser, main
from fedmllm.config import RunConfig
from fedmllm.deploy.cli import local_trial
from fedmllm.deploy.commands import app_pyproject, run_overrides
from fedmllm.errors import FedmllmError


def trial(*argv):
    return local_trial(build_parser().parse_args(["deploy", "local", *argv]))


def test_nodes_are_the_clients_each_reading_its_own_shard(tmp_path):
    t = trial("--nodes", "2", "--clients-per-round", "2", "--rounds", "4", "--out", str(tmp_path / "dep"))
    assert t.folder == tmp_path / "dep" and t.nodes == 2
    assert (t.cfg.num_clients, t.cfg.clients_per_round, t.cfg.rounds) == (2, 2, 4)
    assert t.cfg.client_data == "node"
    assert t.run_dir == tmp_path / "dep" / "run"  # the run folder sits in the deployment folder
    assert not (tmp_path / "dep").exists()  # nothing written while checking


def test_node_count_comes_from_the_config_when_not_given(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('num-clients = 4\nrounds = 1\nout = "elsewhere"\n')
    t = trial("--config", str(config), "--out", str(tmp_path / "dep"))
    assert (t.nodes, t.cfg.rounds) == (4, 1)
    assert t.cfg.out == str(tmp_path / "dep" / "run")  # the file's `out` gives way to OUT/run
    assert trial("--out", str(tmp_path / "dep")).nodes == 3  # neither: the default config's 3 clients per round
    assert trial("--config", str(config), "--nodes", "4", "--out", str(tmp_path / "d")).nodes == 4  # agreeing


def test_default_folder_is_a_new_one_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t = trial()
    assert t.folder.parent == tmp_path / "runs" and t.folder.name.startswith("deploy-")
    assert len(t.folder.name) == len("deploy-20261202-213645")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nodes", "3", "--num-clients", "5"], "--nodes 3 but config key 'num_clients' is 5"),
        (["--nodes", "0"], "--nodes / num_clients: 0 is not in 1..32"),
        (["--num-clients", "33"], "--nodes / num_clients: 33 is not in 1..32"),
        (["--client-data", "split"], "config key 'client_data': 'split', but every SuperNode"),
        (["--nodes", "2"], "config keys 'clients_per_round' and 'num_clients': 3 clients per round"),
    ],
)
def test_bad_requests_name_the_flag_or_key(tmp_path, argv, message):
    with pytest.raises(FedmllmError, match=message.replace("(", r"\(").replace(".", r"\.")):
        trial(*argv, "--out", str(tmp_path / "dep"))


def test_a_config_files_node_count_is_type_checked(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('num_clients = "4"\n')
    with pytest.raises(FedmllmError, match="run.toml: config key 'num_clients'"):
        trial("--config", str(config), "--out", str(tmp_path / "dep"))


def test_an_occupied_folder_is_refused_and_an_empty_one_used(tmp_path, capsys):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("x")
    assert main(["deploy", "local", "--out", str(tmp_path / "used")]) == 2
    assert f"{tmp_path / 'used'}: deployment folder exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    assert trial("--out", str(tmp_path / "empty")).folder == tmp_path / "empty"


def test_run_config_is_only_what_differs_from_the_defaults():
    cfg = RunConfig().replace(num_clients=2, clients_per_round=2, client_data="node", lr=2e-3)
    assert run_overrides(cfg) == {"num_clients": 2, "clients_per_round": 2, "client_data": "node", "lr": 2e-3}
    assert run_overrides(RunConfig()) == {}


def test_the_app_names_the_installed_apps_with_every_default(tmp_path):
    from flwr.cli.build import build_fab_from_disk
    from flwr.cli.config_utils import load_and_validate

    app = tmp_path / "app"
    app.mkdir()
    (app / "pyproject.toml").write_text(app_pyproject())
    parsed = tomllib.loads(app_pyproject())
    assert parsed["tool"]["flwr"]["app"]["components"] == {
        "serverapp": "fedmllm.engine.server_app:app",
        "clientapp": "fedmllm.engine.client_app:app",
    }
    assert parsed["tool"]["flwr"]["app"]["config"] == RunConfig().to_dict()
    config, warnings = load_and_validate(app / "pyproject.toml")  # what `flwr run` checks, imports included
    assert warnings == [] and config["project"]["name"] == "fedmllm"
    fab = zipfile.ZipFile(io.BytesIO(build_fab_from_disk(app)))
    assert sorted(fab.namelist()) == [".info/CONTENT", "pyproject.toml"]  # no code: the installed fedmllm runs


def test_certs_and_keys_are_still_deploy_subcommands():
    args = build_parser().parse_args(["deploy", "keys", "--out", "k", "a", "b"])
    assert (args.deploy_command, args.names, args.out) == ("keys", ["a", "b"], Path("k"))
    args = build_parser().parse_args(["deploy", "certs", "--out", "c", "--host", "h1", "--host", "h2"])
    assert (args.deploy_command, args.host, args.out) == ("certs", ["h1", "h2"], Path("c"))


def test_a_signal_unwinds_to_the_cleanup_which_a_second_one_cannot_cut_short():
    import os
    import signal

    from fedmllm.deploy.trial import Interrupted, interrupts_ignored, interrupts_unwind

    before = signal.getsignal(signal.SIGINT)
    stopped = []
    with pytest.raises(Interrupted, match="SIGTERM"), interrupts_unwind():
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler before the next bytecode
            time.sleep(5)  # not reached
        finally:
            with interrupts_ignored():
                os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C during cleanup: ignored
                stopped.append("all")
    assert stopped == ["all"]
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
