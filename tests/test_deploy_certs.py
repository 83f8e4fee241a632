"""Dev certificates and SuperNode keys: what Flower's TLS client and SuperNode auth need, checked without processes."""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_ssh_private_key, load_ssh_public_key
from cryptography.x509.verification import PolicyBuilder, Store

from fedmllm.deploy.certs import write_dev_certs, write_node_keys
from fedmllm.errors import FedmllmError


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return write_dev_certs(tmp_path_factory.mktemp("certs"), ["localhost", "127.0.0.1", "::1", "link.example.org"])


def load_cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_server_cert_has_ip_and_dns_sans(certs):
    san = load_cert(certs["server_cert"]).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "link.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1", "link.example.org"])
def test_chain_verifies_against_the_ca_for_each_host(certs, host):
    ca, server = load_cert(certs["ca_cert"]), load_cert(certs["server_cert"])
    try:
        subject = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        subject = x509.DNSName(host)
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(subject)
    chain = verifier.verify(server, [])
    assert chain[-1] == ca


def test_other_host_is_rejected(certs):
    ca, server = load_cert(certs["ca_cert"]), load_cert(certs["server_cert"])
    verifier = (
        PolicyBuilder().store(Store([ca])).build_server_verifier(x509.IPAddress(ipaddress.ip_address("10.0.0.1")))
    )
    with pytest.raises(x509.verification.VerificationError):
        verifier.verify(server, [])


def handshake(certs, server_hostname: str) -> None:
    """A real TLS handshake in memory, as Flower's client does it (PROTOCOL_TLS_CLIENT checks the hostname)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs["server_cert"], certs["server_key"])
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cafile=certs["ca_cert"])
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not complete")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_python_ssl_handshake_succeeds(certs, host):
    handshake(certs, host)


def test_python_ssl_handshake_rejects_unlisted_host(certs):
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(certs, "10.0.0.1")


def test_cert_keys_are_ec_and_private(certs):
    for name in ("ca_key", "server_key"):
        key = load_pem_private_key(certs[name].read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert stat.S_IMODE(certs[name].stat().st_mode) == 0o600
    ca = load_cert(certs["ca_cert"])
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not load_cert(certs["server_cert"]).extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_node_keys_are_openssh_p384_pairs(tmp_path):
    keys = write_node_keys(tmp_path, ["node0", "node1"])
    assert set(keys) == {"node0", "node1"}
    for private_path, public_path in keys.values():
        assert private_path.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
        assert public_path.read_text().startswith("ecdsa-sha2-nistp384 ")
        private = load_ssh_private_key(private_path.read_bytes(), None)
        public = load_ssh_public_key(public_path.read_bytes())
        assert isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP384R1)
        assert isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP384R1)
        assert private.public_key().public_numbers() == public.public_numbers()
        assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert keys["node0"][1].read_bytes() != keys["node1"][1].read_bytes()


@pytest.fixture
def umask():
    """Run a test under a chosen umask (restored after), so the expected modes do not depend on the caller's shell."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("value", [0o000, 0o022, 0o077])
def test_fresh_generation_modes(tmp_path, umask, value):
    # umask 0 would leave everything world-readable if the code relied on it; 077 would strip the certs' read bits
    umask(value)
    certs = write_dev_certs(tmp_path / "new" / "certs")
    keys = write_node_keys(tmp_path / "new" / "keys", ["site-a"])
    assert mode(tmp_path / "new" / "certs") == 0o700
    assert mode(tmp_path / "new" / "keys") == 0o700
    assert (mode(certs["ca_key"]), mode(certs["server_key"]), mode(keys["site-a"][0])) == (0o600, 0o600, 0o600)
    public = 0o644 & ~value  # certificates are handed out: the caller's umask decides, never wider than 0644
    assert (mode(certs["ca_cert"]), mode(certs["server_cert"]), mode(keys["site-a"][1])) == (public, public, public)


@pytest.mark.parametrize("writer", ["certs", "keys"])
def test_existing_key_folder_is_tightened_and_logged(tmp_path, umask, caplog, writer):
    umask(0o022)
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o755)
    with caplog.at_level(logging.WARNING, logger="fedmllm.deploy.certs"):
        if writer == "certs":
            write_dev_certs(folder)
        else:
            write_node_keys(folder, ["site-a"])
    assert mode(folder) == 0o700
    expected = f"{folder} holds private keys: changed its mode from 0755 to 0700"
    assert [r.getMessage() for r in caplog.records] == [expected]


def test_owner_only_folder_is_left_alone_without_a_log_line(tmp_path, caplog):
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o700)
    with caplog.at_level(logging.DEBUG, logger="fedmllm.deploy.certs"):
        write_node_keys(folder, ["site-a"])
    assert mode(folder) == 0o700
    assert caplog.records == []


def test_key_folder_that_is_a_file_is_named_in_the_error(tmp_path):
    (tmp_path / "keys").write_text("not a folder")
    with pytest.raises(FedmllmError, match=r"keys: cannot make it an owner-only \(0700\) folder"):
        write_node_keys(tmp_path / "keys", ["site-a"])


@pytest.mark.parametrize("existing", ["ca.crt", "ca.key", "server.pem", "server.key"])
def test_dev_certs_never_overwrite(tmp_path, existing):
    (tmp_path / existing).write_text("keep me")
    with pytest.raises(FedmllmError, match=existing.replace(".", r"\.")):
        write_dev_certs(tmp_path)
    assert (tmp_path / existing).read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == [existing]  # nothing half-written


@pytest.mark.parametrize("existing", ["node1", "node1.pub"])
def test_node_keys_never_overwrite(tmp_path, existing):
    (tmp_path / existing).write_text("keep me")
    with pytest.raises(FedmllmError, match=existing.replace(".", r"\.")):
        write_node_keys(tmp_path, ["node0", "node1"])
    assert (tmp_path / existing).read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == [existing]


def test_second_call_raises_naming_the_file(tmp_path):
    write_dev_certs(tmp_path)
    with pytest.raises(FedmllmError, match="ca.crt"):
        write_dev_certs(tmp_path)


def test_bad_arguments(tmp_path):
    with pytest.raises(FedmllmError):
        write_dev_certs(tmp_path, [])
    with pytest.raises(FedmllmError):
        write_node_keys(tmp_path, ["../escape"])
    with pytest.raises(FedmllmError):
        write_node_keys(tmp_path, ["a", "a"])


# -- config strings the launcher passes to --node-config / --run-config (fedmllm.deploy.commands, no processes) --


@pytest.mark.parametrize(
    "value",
    [0, -3, True, False, 0.5, 1e20, "plain", "/x/y z", "C:\\data\\x", "it's", 'say "hi"', "a'b\"c", "tab\there", ""],
)
def test_render_config_round_trips_through_flowers_parser(value):
    from flwr.common.config import parse_config_args

    from fedmllm.deploy.commands import render_config

    rendered = render_config({"partition-id": 1, "v": value, "data_dir": "/d"})
    assert parse_config_args([rendered]) == {"partition-id": 1, "v": value, "data_dir": "/d"}


def test_render_config_rejects_bad_keys_and_values():
    from fedmllm.deploy.commands import render_config

    with pytest.raises(FedmllmError):
        render_config({"has space": 1})
    with pytest.raises(FedmllmError):
        render_config({"k": [1, 2]})


def test_command_shell_line_is_copy_pasteable(tmp_path):
    from fedmllm.deploy.commands import Command

    cmd = Command(
        ("flwr", "run", ".", "conn", "--run-config", "out='/a b'"), {"FLWR_HOME": "/h x", "PATH": "/v/bin:$PATH"}
    )
    assert cmd.shell() == "FLWR_HOME='/h x' PATH=/v/bin:$PATH flwr run . conn --run-config 'out='\"'\"'/a b'\"'\"''"
