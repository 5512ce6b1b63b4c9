"""`inhouse certs init`: a CA-signed server certificate for the requested hosts."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from inhouse.errors import ConflictError
from inhouse.tls import init_certificates


def test_server_certificate_is_signed_by_the_ca_for_the_hosts(tmp_path: Path) -> None:
    made = init_certificates(tmp_path, hosts=["inference.corp", "10.0.0.5"])
    ca = x509.load_pem_x509_certificate(made.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(made.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["inference.corp"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    for key in (made.ca_key, made.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_existing_certificates_are_kept_unless_forced(tmp_path: Path) -> None:
    first = init_certificates(tmp_path, hosts=["localhost"])
    before = first.server_cert.read_bytes()
    with pytest.raises(ConflictError, match="--force"):
        init_certificates(tmp_path, hosts=["localhost"])
    assert first.server_cert.read_bytes() == before
    init_certificates(tmp_path, hosts=["localhost"], force=True)
    assert first.server_cert.read_bytes() != before
