"""``inhouse certs init``: a private CA and a server certificate for Serve's HTTPS.

For deployments without a PKI of their own. The CA key and the server key are written with
mode 0600; clients trust ``ca.pem`` (``curl --cacert``, ``httpx.Client(verify=...)``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from inhouse.atomic import atomic_write_bytes
from inhouse.errors import ConflictError

CA_DAYS = 3650
SERVER_DAYS = 397  # the browser limit; renew with `inhouse certs init --force`


@dataclass(frozen=True)
class CertificatePaths:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def paths(directory: Path) -> CertificatePaths:
    return CertificatePaths(
        directory / "ca.pem",
        directory / "ca-key.pem",
        directory / "server.pem",
        directory / "server-key.pem",
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "inhouse"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def init_certificates(
    directory: Path, *, hosts: list[str], force: bool = False
) -> CertificatePaths:
    """Create a CA and a server certificate for ``hosts`` (names or IPs) in ``directory``."""
    target = paths(directory)
    if target.server_cert.exists() and not force:
        raise ConflictError(f"{target.server_cert} exists; pass --force to replace it")
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("inhouse private CA"))
        .issuer_name(_name("inhouse private CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_bytes(target.ca_key, _key_pem(ca_key), mode=0o600)
    atomic_write_bytes(target.server_key, _key_pem(server_key), mode=0o600)
    atomic_write_bytes(target.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    atomic_write_bytes(target.server_cert, server_cert.public_bytes(serialization.Encoding.PEM))
    return target
