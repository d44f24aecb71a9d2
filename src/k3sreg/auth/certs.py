"""A CA for the cluster, and the certificates it issues: the registry's server certificate, node client
certificates (mTLS), and a token-signing certificate. All keys are ECDSA P-256; key files are written 0600.

The server certificate carries the names K3s nodes reach the registry by: DNS names, the node IPs of the
NodePort, `registry.localhost` (the name K3s docs use for a registry on the node), and on request localhost,
127.0.0.1 and ::1. Without SANs Go (containerd) would refuse it, so every name goes into the SAN extension.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from k3sreg.errors import UsageError
from k3sreg.localfiles import write_file

REGISTRY_LOCALHOST = "registry.localhost"
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
LEAF_DAYS = 365
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DNS = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*\.?$")


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def __repr__(self) -> str:
        return f"Issued({self.cert.subject.rfc4514_string()!r})"


def san_for(host: str) -> x509.GeneralName:
    """The SAN entry for a host: an IP address or a DNS name (a leading `*.` wildcard allowed)."""
    text = host.strip().strip("[]")
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not _DNS.match(text) or len(text) > 253:
        raise UsageError(f"{host!r} is neither an IP address nor a DNS name")
    return x509.DNSName(text.rstrip(".").lower())


def server_hosts(hosts: Sequence[str], registry_localhost: bool = True, local: bool = False) -> list[str]:
    """The names a server certificate covers: `hosts`, then registry.localhost and local names as asked; no
    name twice."""
    found = [h.strip() for h in hosts if h.strip()]
    if registry_localhost:
        found.append(REGISTRY_LOCALHOST)
    if local:
        found.extend(LOCAL_NAMES)
    return list(dict.fromkeys(found))


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[:64]))
    return x509.Name(attrs)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def make_ca(common_name: str = "k3sreg CA", days: int = CA_DAYS) -> Issued:
    """A self-signed CA that may issue end-entity certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name, "k3sreg")
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def _leaf(ca: Issued, subject: x509.Name, days: int, usages: Sequence[x509.ObjectIdentifier],
          sans: Sequence[x509.GeneralName] = ()) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    not_after = min(now + datetime.timedelta(days=days), ca.cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca.cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def issue_server(ca: Issued, hosts: Sequence[str], days: int = LEAF_DAYS) -> Issued:
    """A TLS server certificate for `hosts` (DNS names and IPs), the first one also its common name."""
    if not hosts:
        raise UsageError("a server certificate needs at least one host name or IP (--host)")
    sans = list(dict.fromkeys(san_for(h) for h in hosts))
    return _leaf(ca, _name(hosts[0], "k3sreg"), days, [ExtendedKeyUsageOID.SERVER_AUTH], sans)


def issue_client(ca: Issued, name: str, days: int = LEAF_DAYS) -> Issued:
    """A TLS client certificate for a node (mTLS), named `name`."""
    if not name.strip():
        raise UsageError("a client certificate needs a name, such as the node's host name")
    return _leaf(ca, _name(name.strip(), "k3sreg nodes"), days, [ExtendedKeyUsageOID.CLIENT_AUTH])


def issue_signer(ca: Issued, name: str, days: int = LEAF_DAYS) -> Issued:
    """A certificate for a token-signing key: registries that trust the CA accept tokens it signs (x5c)."""
    return _leaf(ca, _name(name.strip() or "k3sreg token signer", "k3sreg"), days, [])


def cert_pem(cert: x509.Certificate) -> bytes:
    """The certificate in PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The private key in unencrypted PKCS#8 PEM."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_pair(issued: Issued, cert_path: Path, key_path: Path, force: bool = False, chain: bytes = b"") -> None:
    """Write the certificate (0644, followed by `chain`) and key (0600); refuse to replace files unless `force`."""
    if not force:
        for path in (cert_path, key_path):
            if path.exists():
                raise UsageError(f"{path} exists; choose another path, or --force to replace it")
    try:
        write_file(key_path, key_pem(issued.key), 0o600, dir_mode=0o700)
        write_file(cert_path, cert_pem(issued.cert) + chain, 0o644, dir_mode=0o700)
    except OSError as exc:
        raise UsageError(f"cannot write {exc.filename or cert_path}: {exc.strerror}") from None


def load_ca(cert_path: Path, key_path: Path) -> Issued:
    """The CA from its certificate and key files; a one-line UsageError when they are missing or do not match."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise UsageError(f"{exc.filename} does not exist; make the CA first with `k3sreg certs init`") from None
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise UsageError(f"{cert_path} / {key_path} are not a PEM certificate and an unencrypted PEM key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise UsageError(f"{key_path} is not the key of {cert_path}")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise UsageError(f"{cert_path} is not a CA certificate")
    return Issued(cert, key)
