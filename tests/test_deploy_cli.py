"""`fedmllm deploy certs|keys`: the files a deployment needs, never overwriting one."""

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from fedmllm.cli import main


def test_certs_and_keys_commands(tmp_path, capsys):
    assert main(["deploy", "certs", "--out", str(tmp_path / "certs"), "--host", "superlink.example.org"]) == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "certs" / "server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "superlink.example.org" in names.get_values_for_type(x509.DNSName)
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert main(["deploy", "keys", "--out", str(tmp_path / "keys"), "site-a", "site-b"]) == 0
    key = load_ssh_public_key((tmp_path / "keys" / "site-b.pub").read_bytes())
    assert key.curve.name == "secp384r1"
    assert (tmp_path / "keys" / "site-a").stat().st_mode & 0o077 == 0  # private: owner only
    before = (tmp_path / "keys" / "site-a").read_bytes()
    capsys.readouterr()
    assert main(["deploy", "keys", "--out", str(tmp_path / "keys"), "site-a"]) == 2
    assert "site-a" in capsys.readouterr().err
    assert (tmp_path / "keys" / "site-a").read_bytes() == before


# -- the loopback launcher's command lines (fedmllm.deploy.commands), built without starting any process --


def flower_parse(argv: list[str]):
    """Parse an argv with the installed Flower's own parser, so a flag it no longer knows fails here."""
    from flwr.superlink.cli.flower_superlink import _parse_args_run_superlink
    from flwr.supernode.cli.flower_supernode import _parse_args_run_supernode

    parser = {"flower-superlink": _parse_args_run_superlink, "flower-supernode": _parse_args_run_supernode}[argv[0]]
    return parser().parse_args(argv[1:])


def test_superlink_binds_only_loopback(tmp_path):
    from flwr.common import constant

    from fedmllm.deploy.commands import LEGACY_GRPC_OFF, superlink_argv

    certs = {"ca_cert": tmp_path / "ca.crt", "server_cert": tmp_path / "s.pem", "server_key": tmp_path / "s.key"}
    argv = superlink_argv(certs, tmp_path / "state.db", 43210)
    assert argv == [
        "flower-superlink",
        "--ssl-ca-certfile", f"{tmp_path}/ca.crt",
        "--ssl-certfile", f"{tmp_path}/s.pem",
        "--ssl-keyfile", f"{tmp_path}/s.key",
        "--enable-supernode-auth",
        "--disable-runtime-dependency-installation",
        "--database", f"{tmp_path}/state.db",
        "--host", "127.0.0.1",
        "--port", "43210",
    ]  # fmt: skip
    args = flower_parse(argv)
    assert (args.host, args.port, args.enable_supernode_auth) == ("127.0.0.1", 43210, True)
    # the only other listeners Flower 1.42 can open (gRPC Fleet/Control on 0.0.0.0) are switched off by these
    assert LEGACY_GRPC_OFF == {
        constant.FLWR_INTERNAL_GRPC_FLEET_API: "0",
        constant.FLWR_INTERNAL_GRPC_CONTROL_API: "0",
    }


def node_argv(tmp_path, node_config=None, run_config=None) -> list[str]:
    from fedmllm.deploy.commands import NodeLaunch

    launch = NodeLaunch(43210, tmp_path / "ca.crt", 9101, tmp_path / "site-a", node_config, run_config)
    return launch.argv()


def node_config_of(argv: list[str]) -> dict | None:
    from flwr.common.config import parse_config_args

    if "--node-config" not in argv:
        return None
    return parse_config_args([argv[argv.index("--node-config") + 1]])


def test_supernode_binds_only_loopback(tmp_path):
    argv = node_argv(tmp_path, {"partition-id": 1})
    assert argv == [
        "flower-supernode",
        "--superlink", "127.0.0.1:43210",
        "--root-certificates", f"{tmp_path}/ca.crt",
        "--host", "127.0.0.1",
        "--port", "9101",
        "--max-retries", "5",
        "--max-wait-time", "60.0",
        "--auth-supernode-private-key", f"{tmp_path}/site-a",
        "--node-config", "partition-id=1",
    ]  # fmt: skip
    args = flower_parse(argv)
    assert (args.host, args.port, args.superlink) == ("127.0.0.1", 9101, "127.0.0.1:43210")


def test_a_run_with_remote_code_lets_its_nodes_load_exactly_its_model(tmp_path):
    run = {"rounds": 2, "model": "/models/llava-1.5-7b", "trust_remote_code": True}
    assert node_config_of(node_argv(tmp_path, {"partition-id": 0}, run)) == {
        "trust-remote-code": True,
        "models": "/models/llava-1.5-7b",
        "partition-id": 0,
    }
    # no node config of its own: the trust keys alone; no model key: the run's default model, "tiny"
    assert node_config_of(node_argv(tmp_path, None, {"trust-remote-code": True})) == {
        "trust-remote-code": True,
        "models": "tiny",
    }


def test_a_run_without_remote_code_adds_nothing(tmp_path):
    plain = node_argv(tmp_path, {"partition-id": 0})
    for run in (None, {}, {"rounds": 2, "model": "/models/x"}, {"model": "/models/x", "trust_remote_code": False}):
        assert node_argv(tmp_path, {"partition-id": 0}, run) == plain
        assert node_config_of(node_argv(tmp_path, None, run)) is None  # and no --node-config flag at all


def test_the_callers_node_config_wins(tmp_path):
    # a node told to refuse remote code keeps refusing, whatever the run asks (what a refusal test needs)
    run = {"model": "/models/x", "trust_remote_code": True}
    config = node_config_of(node_argv(tmp_path, {"partition-id": 0, "trust-remote-code": False}, run))
    assert config == {"trust-remote-code": False, "models": "/models/x", "partition-id": 0}


def test_a_badly_typed_trust_flag_names_the_key(tmp_path):
    from fedmllm.errors import FedmllmError

    with pytest.raises(FedmllmError, match="run config: config key 'trust_remote_code' should be bool, got str 'yes'"):
        node_argv(tmp_path, None, {"trust_remote_code": "yes"})
