"""http.tls files are checked when `serve` loads its settings: each problem names the key, the file and the fix."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from k3sreg.config import Settings, parse_settings
from k3sreg.errors import ConfigError


def key_and_cert(tmp: Path, name: str) -> tuple[Path, Path]:
    """A fresh EC key and a self-signed certificate for it, as PEM files `<name>.key` and `<name>.crt`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_file, cert_file = tmp / f"{name}.key", tmp / f"{name}.crt"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


def load(tls: dict[str, object], env: dict[str, str] | None = None) -> Settings:
    raw = {"version": "0.1", "storage": {"inmemory": {}}, "http": {"addr": "127.0.0.1:0", "tls": tls}}
    return parse_settings(raw, env=env or {}, check_files=True)


def problems(tls: dict[str, object], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(tls, env)
    return e.value.problems


def test_a_good_pair_and_client_ca_load(tmp_path: Path) -> None:
    """A matching key and certificate, and a CA bundle, load without a problem."""
    key, cert = key_and_cert(tmp_path, "server")
    _, ca = key_and_cert(tmp_path, "ca")
    settings = load({"certificate": str(cert), "key": str(key), "clientcas": [str(ca)]})
    assert settings.http.tls is not None and settings.http.tls.key == str(key)


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    """A key path that does not exist is reported on http.tls.key with the path and the reason."""
    _, cert = key_and_cert(tmp_path, "server")
    found = problems({"certificate": str(cert), "key": str(tmp_path / "nope.key")})
    assert found == [f"http.tls.key: cannot read {tmp_path}/nope.key: No such file or directory; give the path "
                     "of a readable PEM file"]


def test_a_certificate_in_the_keys_place(tmp_path: Path) -> None:
    """The certificate given as the key is said to be a certificate, not a private key."""
    _, cert = key_and_cert(tmp_path, "server")
    found = problems({"certificate": str(cert), "key": str(cert)})
    assert len(found) == 1 and found[0].startswith(f"http.tls.key: {cert} holds a certificate, not a private key")


def test_swapped_certificate_and_key(tmp_path: Path) -> None:
    """Certificate and key swapped: both keys are reported, and the certificate message asks whether they are."""
    key, cert = key_and_cert(tmp_path, "server")
    found = problems({"certificate": str(key), "key": str(cert)})
    assert found[0] == (f"http.tls.certificate: {key} holds a private key, not a certificate; are "
                        "http.tls.certificate and http.tls.key swapped?")
    assert found[1].startswith("http.tls.key:") and len(found) == 2


def test_a_key_of_another_certificate(tmp_path: Path) -> None:
    """A valid key that is not the certificate's is refused, naming both files; no key material is printed."""
    _, cert = key_and_cert(tmp_path, "server")
    other, _ = key_and_cert(tmp_path, "other")
    found = problems({"certificate": str(cert), "key": str(other)})
    assert found == [f"http.tls.key: {other} is not the private key of {cert} (their public keys differ); use the "
                     "key the certificate was issued for"]
    body = other.read_text().splitlines()[1]
    assert body not in " ".join(found)


def test_an_encrypted_key(tmp_path: Path) -> None:
    """A passphrase-protected key is refused with how to write it out unencrypted."""
    key, cert = key_and_cert(tmp_path, "server")
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    key.write_bytes(loaded.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"secret")))
    found = problems({"certificate": str(cert), "key": str(key)})
    assert len(found) == 1 and "passphrase" in found[0] and found[0].startswith("http.tls.key:")


def test_garbage_files_and_client_cas(tmp_path: Path) -> None:
    """Files that are not PEM, and client CA files without a certificate, are each named with their index."""
    key, cert = key_and_cert(tmp_path, "server")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a pem file\n")
    found = problems({"certificate": str(junk), "key": str(key), "clientcas": [str(cert), str(key)]})
    assert found[0].startswith(f"http.tls.certificate: {junk} holds no PEM certificate")
    assert found[1].startswith(f"http.tls.clientcas[1]: {key} holds no PEM certificate")
    assert len(found) == 2


def test_the_variable_that_set_the_path_is_named(tmp_path: Path) -> None:
    """A path set by REGISTRY_HTTP_TLS_KEY is reported with that variable's name."""
    _, cert = key_and_cert(tmp_path, "server")
    found = problems({"certificate": str(cert), "key": "/placeholder"},
                     env={"REGISTRY_HTTP_TLS_KEY": str(cert)})
    assert found[0].startswith(f"http.tls.key (from REGISTRY_HTTP_TLS_KEY): {cert} holds a certificate")


def test_files_are_not_checked_unless_asked(tmp_path: Path) -> None:
    """Reading a config elsewhere (mirrors init --from-config) does not need its TLS files to exist."""
    raw = {"version": "0.1", "storage": {"inmemory": {}},
           "http": {"tls": {"certificate": "/nowhere/c.crt", "key": "/nowhere/c.key"}}}
    assert parse_settings(raw, env={}).http.tls is not None
