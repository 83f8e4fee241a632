"""Development TLS certificates and SuperNode auth keys for a Flower deployment, in pure Python.

Flower 1.42's SuperLink serves every API over one HTTPS port and its clients check the hostname, so the
server certificate needs a SAN for every name or IP that is dialled (always `127.0.0.1`, which the ServerApp's
SuperExec dials whatever address the SuperLink binds). SuperNode authentication needs OpenSSH EC keys
(what `ssh-keygen -t ecdsa -b 384` writes). Both are generated with `cryptography` (a flwr dependency) so no
`openssl` or `ssh-keygen` binary is needed. These are for trying a deployment, not for production PKI.

Every folder that receives a private key is owner-only (0700, an existing one is tightened and the change logged)
and every private key is 0600; certificates and `.pub` files are 0644 (they are meant to be handed out).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedmllm.errors import FedmllmError

DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
CA_NAME = "fedmllm-dev-ca"
KEY_FOLDER_MODE = 0o700
log = logging.getLogger(__name__)


def _check_absent(paths: Iterable[Path]) -> None:
    """Refuse before writing anything, so a second call cannot clobber keys a running deployment uses."""
    for path in paths:
        if path.exists():
            raise FedmllmError(f"{path} already exists; refusing to overwrite it (delete it or use another folder)")


def _private_folder(folder: Path) -> None:
    """Create `folder` owner-only, or tighten an existing one: other users must not even list its key files."""
    try:
        existed = folder.is_dir()
        folder.mkdir(mode=KEY_FOLDER_MODE, parents=True, exist_ok=True)  # parents keep the default mode
        before = stat.S_IMODE(folder.stat().st_mode)
        if before != KEY_FOLDER_MODE:  # existing folder, or a umask that removed owner bits from the new one
            os.chmod(folder, KEY_FOLDER_MODE)
    except OSError as err:
        raise FedmllmError(f"{folder}: cannot make it an owner-only (0700) folder for private keys: {err}") from err
    if existed and before != KEY_FOLDER_MODE:
        log.warning("%s holds private keys: changed its mode from %04o to %04o", folder, before, KEY_FOLDER_MODE)


def _write(path: Path, data: bytes, *, private: bool) -> None:
    """Create `path` exclusively; private keys are created 0600 so they are never world-readable, even briefly."""
    mode = 0o600 if private else 0o644
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as err:  # appeared after _check_absent: same message, same rule
        raise FedmllmError(f"{path} already exists; refusing to overwrite it") from err
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    if private:
        os.chmod(path, 0o600)  # O_CREAT's mode is filtered by the umask; make the intent explicit


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    """IP entries for IP literals and DNS entries for names: TLS clients match an IP only against an IP SAN."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def key_usage(*allowed: str) -> x509.KeyUsage:
    """A KeyUsage extension with only `allowed` set (the constructor wants all nine flags)."""
    flags = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")  # fmt: skip
    return x509.KeyUsage(**{flag: flag in allowed for flag in flags})


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_dev_certs(folder: Path, hosts: Sequence[str] = DEFAULT_HOSTS, days: int = 365) -> dict[str, Path]:
    """Write a self-signed CA and a server certificate it signs, for the SuperLink's `--ssl-*` flags.

    Files: `ca.crt` (give to SuperNodes as `--root-certificates` and to the CLI as `root-certificates`),
    `ca.key`, `server.pem` and `server.key` (SuperLink `--ssl-certfile`/`--ssl-keyfile`). Keys are EC P-256
    (fast, universally supported for TLS). Returns `{"ca_cert", "ca_key", "server_cert", "server_key"}` paths.
    Raises FedmllmError naming the file if any of them already exists.
    """
    hosts = list(hosts)
    if not hosts:
        raise FedmllmError("write_dev_certs needs at least one host for the certificate's subjectAltName")
    if days < 1:
        raise FedmllmError(f"write_dev_certs: days must be at least 1, got {days}")
    folder = Path(folder)
    paths = {
        "ca_cert": folder / "ca.crt",
        "ca_key": folder / "ca.key",
        "server_cert": folder / "server.pem",
        "server_key": folder / "server.key",
    }
    _check_absent(paths.values())

    now = dt.datetime.now(dt.timezone.utc)
    not_before = now - dt.timedelta(minutes=5)  # tolerate small clock differences between machines
    not_after = now + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            key_usage("key_cert_sign", "crl_sign"),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            key_usage("digital_signature"),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    _private_folder(folder)
    _write(paths["ca_key"], _pem_key(ca_key), private=True)
    _write(paths["ca_cert"], ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
    _write(paths["server_key"], _pem_key(server_key), private=True)
    _write(paths["server_cert"], server_cert.public_bytes(serialization.Encoding.PEM), private=False)
    return paths


def write_node_keys(folder: Path, names: Sequence[str]) -> dict[str, tuple[Path, Path]]:
    """Write an OpenSSH EC P-384 key pair per SuperNode for Flower's SuperNode authentication.

    `<name>` is the private key (`flower-supernode --auth-supernode-private-key`), `<name>.pub` the public key
    (`flwr supernode register <name>.pub <connection>`), like `ssh-keygen -t ecdsa -b 384 -N "" -C ""`.
    Returns `{name: (private_path, public_path)}`. Raises FedmllmError naming the file if any already exists.
    """
    folder = Path(folder)
    names = list(names)
    if len(set(names)) != len(names):
        raise FedmllmError(f"write_node_keys: duplicate names in {names}")
    paths: dict[str, tuple[Path, Path]] = {}
    for name in names:
        if not name or Path(name).name != name or name.startswith("."):
            raise FedmllmError(f"write_node_keys: {name!r} is not a plain file name")
        paths[name] = (folder / name, folder / f"{name}.pub")
    _check_absent(p for pair in paths.values() for p in pair)

    _private_folder(folder)
    for private_path, public_path in paths.values():
        key = ec.generate_private_key(ec.SECP384R1())
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        _write(private_path, private, private=True)
        _write(public_path, public + b"\n", private=False)
    return paths
