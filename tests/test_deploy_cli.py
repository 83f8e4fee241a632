"""`fedmllm deploy certs|keys`: the files a deployment needs, never overwriting one."""

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
