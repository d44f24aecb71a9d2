"""The built-in service's signing keys: generated once (0600), shared by workers, rotatable without breaking
tokens already given out; or a key and certificate the operator gives."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from k3sreg.auth.certs import Issued, cert_pem, issue_signer, key_pem, make_ca
from k3sreg.auth.signing import LEEWAY, KeyRing, StaticSigner
from k3sreg.errors import ConfigError


def test_keyring_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    """The first start writes an ES256 key 0600; the next start reads the same key."""
    path = tmp_path / "sub" / "keys.json"
    first = KeyRing(path, lifetime=300).signing_key()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.algorithm == "ES256"
    assert KeyRing(path, lifetime=300).signing_key().kid == first.kid


def test_workers_starting_at_once_share_one_key(tmp_path: Path) -> None:
    """Several workers creating the keyring at the same moment end with one key between them."""
    path = tmp_path / "keys.json"
    kids: list[str] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        barrier.wait()
        kids.append(KeyRing(path, lifetime=300).signing_key().kid)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(kids)) == 1


def test_rotation_keeps_the_previous_key_for_one_lifetime(tmp_path: Path) -> None:
    """After rotate, new tokens use a new key; the old one verifies until lifetime + leeway, then goes."""
    now = [1000.0]
    path = tmp_path / "keys.json"
    ring = KeyRing(path, lifetime=300, clock=lambda: now[0])
    other_worker = KeyRing(path, lifetime=300, clock=lambda: now[0])
    old = ring.signing_key().kid
    new = ring.rotate()
    assert new != old and ring.signing_key().kid == new
    assert other_worker.signing_key().kid == new  # the file changed, the other worker re-reads it
    assert set(other_worker.public_keys()) == {old, new}
    now[0] += 300 + LEEWAY + 1
    assert set(ring.public_keys()) == {new}
    ring.rotate()
    assert old not in path.read_text()


def test_damaged_keyring_is_a_config_error(tmp_path: Path) -> None:
    """A keyring that cannot be read is refused with the fix."""
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="remove it"):
        KeyRing(path, lifetime=300)


def test_static_signer_with_its_certificate(tmp_path: Path, ca: Issued) -> None:
    """A given key signs; its certificate (and chain) goes into x5c; a certificate of another key is refused."""
    signer = issue_signer(ca, "s")
    (tmp_path / "k.pem").write_bytes(key_pem(signer.key))
    (tmp_path / "c.pem").write_bytes(cert_pem(signer.cert) + cert_pem(ca.cert))
    static = StaticSigner(tmp_path / "k.pem", tmp_path / "c.pem")
    assert static.signing_key().algorithm == "ES256" and len(static.signing_key().x5c) == 2
    assert list(static.public_keys()) == [static.signing_key().kid]
    (tmp_path / "other.pem").write_bytes(cert_pem(make_ca().cert))
    with pytest.raises(ConfigError, match="not for the key"):
        StaticSigner(tmp_path / "k.pem", tmp_path / "other.pem")
    with pytest.raises(ConfigError, match="cannot read"):
        StaticSigner(tmp_path / "missing.pem")


def test_signing_key_repr_hides_the_key(tmp_path: Path) -> None:
    """A SigningKey's repr names its kid and algorithm only."""
    key = KeyRing(tmp_path / "k.json", lifetime=300).signing_key()
    assert "PRIVATE" not in repr(key) and "EllipticCurve" not in repr(key)


def test_keyring_damaged_after_start_keeps_the_keys(tmp_path: Path) -> None:
    """A keyring file broken while running does not stop signing or verifying with the keys in force."""
    path = tmp_path / "keys.json"
    ring = KeyRing(path, lifetime=300)
    kid = ring.signing_key().kid
    path.write_text("{broken")
    assert ring.signing_key().kid == kid and kid in ring.public_keys()
