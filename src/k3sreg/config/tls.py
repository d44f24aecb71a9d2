"""Checks of the files `http.tls` names, made when the settings load, so a bad file is named as such.

OpenSSL's own errors (`[SSL] PEM lib`) name neither the file nor the mistake, and a failure at start-up used to
read as a bind problem. Each check here gives the key path, the file, what is wrong and the fix:

    http.tls.certificate   readable, PEM, holds a certificate (not a key), parses
    http.tls.key           readable, PEM, holds a private key (not a certificate), not passphrase-protected,
                           and is the key of the certificate (same public key)
    http.tls.clientcas[i]  readable, PEM, holds at least one certificate

Messages never quote the files' contents: a key file is only ever described.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from k3sreg.config.http import TLSSettings

Loc = tuple[str | int, ...]

_CERT = b"-----BEGIN CERTIFICATE-----"
_KEY_MARK = b"PRIVATE KEY-----"
_ENCRYPTED = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")


def tls_file_problems(tls: TLSSettings) -> list[tuple[Loc, str]]:
    """Every problem with the certificate, key and client CA files of `tls`, as (key path, message)."""
    # cryptography is imported only here: most registries serve plain HTTP and need not pay for it.
    from cryptography import x509

    problems: list[tuple[Loc, str]] = []
    here: Loc = ("http", "tls")
    cert_pem = _read(tls.certificate, (*here, "certificate"), problems) if tls.certificate else None
    key_pem = _read(tls.key, (*here, "key"), problems) if tls.key else None
    certificate = None
    if cert_pem is not None:
        certificate = _certificate(tls.certificate, cert_pem, (*here, "certificate"), problems)
    key = _private_key(tls.key, key_pem, (*here, "key"), problems) if key_pem is not None else None
    if certificate is not None and key is not None and not _same_public_key(certificate, key):
        problems.append(((*here, "key"), f"{tls.key} is not the private key of {tls.certificate} (their public "
                         "keys differ); use the key the certificate was issued for"))
    for i, ca in enumerate(tls.clientcas):
        pem = _read(ca, (*here, "clientcas", i), problems)
        if pem is None:
            continue
        if _CERT not in pem:
            problems.append(((*here, "clientcas", i), f"{ca} holds no PEM certificate "
                             "('-----BEGIN CERTIFICATE-----'); give the CA certificate(s) clients are signed by"))
            continue
        try:
            x509.load_pem_x509_certificates(pem)
        except ValueError:
            problems.append(((*here, "clientcas", i), f"{ca}: a PEM certificate in it does not parse; "
                             "replace the file with the CA certificate in PEM form"))
    return problems


def _read(path: str, loc: Loc, problems: list[tuple[Loc, str]]) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        problems.append((loc, f"cannot read {path}: {reason}; give the path of a readable PEM file"))
        return None


def _certificate(path: str, pem: bytes, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    from cryptography import x509

    if _CERT not in pem:
        if _KEY_MARK in pem:
            problems.append((loc, f"{path} holds a private key, not a certificate; are http.tls.certificate and "
                             "http.tls.key swapped?"))
        else:
            problems.append((loc, f"{path} holds no PEM certificate ('-----BEGIN CERTIFICATE-----'); give the "
                             "server certificate (and its chain) in PEM form"))
        return None
    try:
        return x509.load_pem_x509_certificates(pem)[0]
    except ValueError:
        problems.append((loc, f"{path}: the PEM certificate does not parse; replace it with the certificate in "
                         "PEM form"))
        return None


def _private_key(path: str, pem: bytes, loc: Loc, problems: list[tuple[Loc, str]]) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if _KEY_MARK not in pem:
        if _CERT in pem:
            problems.append((loc, f"{path} holds a certificate, not a private key; point http.tls.key at the "
                             "PEM private key (are certificate and key swapped?)"))
        else:
            problems.append((loc, f"{path} holds no PEM private key ('-----BEGIN PRIVATE KEY-----'); give the "
                             "certificate's private key in PEM form"))
        return None
    if any(mark in pem for mark in _ENCRYPTED):
        problems.append((loc, f"{path} is protected by a passphrase, which k3sreg cannot ask for; write it "
                         "out unencrypted (openssl pkey -in KEY -out KEY.plain) and keep that file mode 0600"))
        return None
    try:
        return load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        # The library's message can quote the file; say only that it failed.
        problems.append((loc, f"{path}: the PEM private key does not parse; replace it with the key in PEM "
                         "form (PKCS#8, or the traditional RSA/EC form)"))
        return None
    except UnsupportedAlgorithm:
        problems.append((loc, f"{path}: the private key's algorithm is not supported; use an RSA, EC or "
                         "Ed25519 key"))
        return None


def _same_public_key(certificate: Any, key: Any) -> bool:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    def der(public: Any) -> bytes:
        return bytes(public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))

    return der(certificate.public_key()) == der(key.public_key())
