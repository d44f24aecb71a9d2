"""Reading certificates back: what `k3sreg certs show` prints, whether a certificate expires soon (`serve` warns
30 days ahead), and whether it covers a host (`mirrors validate` checks the endpoints' certificates).
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from k3sreg.errors import UsageError

EXPIRY_WARNING_DAYS = 30


def read_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM file (a key in the same file is skipped, never read out)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        pass
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise UsageError(f"{path} holds no certificate (PEM or DER)") from None


def expires_within(cert: x509.Certificate, days: float, now: datetime.datetime | None = None) -> bool:
    """True when the certificate is expired or expires within `days` days of `now`."""
    moment = now or datetime.datetime.now(datetime.UTC)
    return cert.not_valid_after_utc <= moment + datetime.timedelta(days=days)


def _host_only(host: str) -> str:
    text = host.strip()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text.rstrip(".").lower()


def sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the certificate's SAN extension."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return ext.get_values_for_type(x509.DNSName), [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]


def _dns_match(pattern: str, host: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if pattern.startswith("*."):
        # A wildcard stands for exactly one left-most label (RFC 6125), never for an IP.
        head, dot, rest = host.partition(".")
        return bool(head) and bool(dot) and rest == pattern[2:]
    return pattern == host


def covers_host(cert: x509.Certificate, host: str) -> bool:
    """True when a TLS client checking `host` (a name or IP, a port allowed) would accept this certificate's
    names. Only SANs count, as in Go and every current client; the common name does not."""
    target = _host_only(host)
    dns, ips = sans(cert)
    try:
        ip = ipaddress.ip_address(target)
    except ValueError:
        return any(_dns_match(p, target) for p in dns)
    return any(ipaddress.ip_address(a) == ip for a in ips)


def is_ca(cert: x509.Certificate) -> bool:
    """True when the certificate may sign others (basic constraints CA)."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _key_text(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    return type(key).__name__


def _roles(cert: x509.Certificate) -> list[str]:
    roles = ["ca"] if is_ca(cert) else []
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return roles
    if ExtendedKeyUsageOID.SERVER_AUTH in usages:
        roles.append("server")
    if ExtendedKeyUsageOID.CLIENT_AUTH in usages:
        roles.append("client")
    return roles


def describe(cert: x509.Certificate, now: datetime.datetime | None = None) -> dict[str, Any]:
    """What `certs show` reports about a certificate, as JSON-ready data."""
    moment = now or datetime.datetime.now(datetime.UTC)
    dns, ips = sans(cert)
    left = cert.not_valid_after_utc - moment
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{cert.serial_number:x}",
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "days_left": left.days,
        "expired": left.total_seconds() <= 0,
        "expires_soon": expires_within(cert, EXPIRY_WARNING_DAYS, moment),
        "dns_names": dns,
        "ip_addresses": ips,
        "roles": _roles(cert),
        "key": _key_text(cert),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }
