"""A throwaway PKI for the TLS tests, made at test time with
``cryptography``: a CA, a server certificate for ``localhost``,
``127.0.0.1`` and ``::1``, a client certificate (``client-1``), and a second
CA that issued a certificate of its own (``stranger``) for the refusals.
Keys are ECDSA P-256; certificates are valid for a day."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
CLIENT_NAME = "client-1"


@dataclass(frozen=True)
class Pki:
    """PEM files in one directory."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str
    """A CA that issued none of the certificates above."""
    stranger_cert: str
    """A client certificate issued by ``other_ca``."""
    stranger_key: str


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gatewire tests"),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    cert = (
        _builder(_name(cn), _name(cn), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    cn: str,
    sans: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = _key()
    cert = (
        _builder(_name(cn), ca_cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _write(directory: Path, name: str, cert: x509.Certificate) -> str:
    path = directory / name
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def _write_key(directory: Path, name: str, key: ec.EllipticCurvePrivateKey) -> str:
    path = directory / name
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return str(path)


def make_pki(directory: Path) -> Pki:
    """Writes a fresh PKI into ``directory``."""
    ca = _ca("gatewire test CA")
    other = _ca("some other CA")
    server_sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    server = _leaf("gatewire test server", server_sans, ExtendedKeyUsageOID.SERVER_AUTH, ca)
    client = _leaf(
        CLIENT_NAME,
        [
            x509.DNSName("client-1.example"),
            x509.UniformResourceIdentifier("spiffe://test/client-1"),
        ],
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ca,
    )
    stranger = _leaf(
        "stranger", [x509.DNSName("stranger.example")], ExtendedKeyUsageOID.CLIENT_AUTH, other
    )
    return Pki(
        ca=_write(directory, "ca.pem", ca[0]),
        server_cert=_write(directory, "server.pem", server[0]),
        server_key=_write_key(directory, "server.key", server[1]),
        client_cert=_write(directory, "client.pem", client[0]),
        client_key=_write_key(directory, "client.key", client[1]),
        other_ca=_write(directory, "other-ca.pem", other[0]),
        stranger_cert=_write(directory, "stranger.pem", stranger[0]),
        stranger_key=_write_key(directory, "stranger.key", stranger[1]),
    )
