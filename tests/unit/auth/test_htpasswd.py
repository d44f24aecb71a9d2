"""htpasswd as Distribution reads it: bcrypt only, re-read on change, bcrypt work for unknown users too."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import threading
import time
from pathlib import Path

import bcrypt
import pytest

from k3sreg.auth.htpasswd import HtpasswdFile, hash_kind, parse_htpasswd
from k3sreg.auth.model import Denial, Principal, Reason
from tests.unit.auth.conftest import OTHER_PASSWORD, PASSWORD, SECRETS, bcrypt_entry


class CountingBcrypt:
    """Records every bcrypt.checkpw call (password length and hash), passing it on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[bytes] = []
        real = bcrypt.checkpw

        def checkpw(password: bytes, hashed: bytes) -> bool:
            self.calls.append(hashed)
            return real(password, hashed)

        monkeypatch.setattr(bcrypt, "checkpw", checkpw)


def test_right_password_logs_in(htpasswd_path: Path) -> None:
    """$2y$ and $2b$ entries both verify."""
    users = HtpasswdFile(htpasswd_path)
    assert users.verify("alice", PASSWORD) == Principal("alice", "basic")
    assert users.verify("bob", OTHER_PASSWORD) == Principal("bob", "basic")


@pytest.mark.parametrize(("user", "password", "reason"), [
    ("alice", OTHER_PASSWORD, Reason.WRONG_PASSWORD),
    ("alice", PASSWORD + "x", Reason.WRONG_PASSWORD),
    ("alice", "", Reason.EMPTY_PASSWORD),
    ("mallory", PASSWORD, Reason.UNKNOWN_USER),
    ("Alice", PASSWORD, Reason.UNKNOWN_USER),
])
def test_wrong_credentials_are_denied(htpasswd_path: Path, user: str, password: str, reason: Reason) -> None:
    """Wrong password, unknown user, empty password: denied with the precise reason."""
    found = HtpasswdFile(htpasswd_path).verify(user, password)
    assert isinstance(found, Denial) and found.reason is reason and found.user == user


def test_unknown_user_costs_one_bcrypt_of_the_usual_cost(htpasswd_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown user is checked against a dummy hash with the entries' cost, so timing tells nothing."""
    users = HtpasswdFile(htpasswd_path)
    counter = CountingBcrypt(monkeypatch)
    users.verify("mallory", PASSWORD)
    users.verify("alice", "")
    assert len(counter.calls) == 2
    assert all(h[4:6] == b"04" for h in counter.calls)
    assert not any(h in htpasswd_path.read_bytes() for h in counter.calls)


def test_success_is_remembered_until_the_entry_changes(htpasswd_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second login with the same credentials costs no bcrypt; a changed password ends that at once."""
    users = HtpasswdFile(htpasswd_path)
    assert isinstance(users.verify("alice", PASSWORD), Principal)
    counter = CountingBcrypt(monkeypatch)
    assert isinstance(users.verify("alice", PASSWORD), Principal)
    assert counter.calls == []
    assert isinstance(users.verify("alice", OTHER_PASSWORD), Denial)  # a different password is not remembered
    htpasswd_path.write_bytes(bcrypt_entry("alice", OTHER_PASSWORD) + b"\n")
    assert isinstance(users.verify("alice", PASSWORD), Denial)
    assert isinstance(users.verify("alice", OTHER_PASSWORD), Principal)


def test_concurrent_checks_of_the_same_credentials_cost_one_bcrypt(htpasswd_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve threads logging in with the same credentials at once (a client opening many connections) run one
    bcrypt and all get in; the same with a wrong password: one bcrypt, all refused."""
    users = HtpasswdFile(htpasswd_path)
    gate = threading.Event()
    real = bcrypt.checkpw
    calls: list[bytes] = []

    def slow(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        gate.wait(5)  # every other thread arrives while this check runs
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", slow)
    for password, kind in ((PASSWORD, Principal), ("wrong-one", Denial)):
        calls.clear()
        gate.clear()
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(users.verify, "alice", password) for _ in range(12)]
            while not calls:
                time.sleep(0.01)
            time.sleep(0.2)
            gate.set()
            found = [f.result() for f in futures]
        assert len(calls) == 1 and all(isinstance(f, kind) for f in found)


def test_remembered_success_expires(htpasswd_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After SUCCESS_TTL the password is checked with bcrypt again."""
    now = [1000.0]
    users = HtpasswdFile(htpasswd_path, clock=lambda: now[0])
    users.verify("alice", PASSWORD)
    now[0] += 301
    counter = CountingBcrypt(monkeypatch)
    assert isinstance(users.verify("alice", PASSWORD), Principal)
    assert len(counter.calls) == 1


def test_file_is_reread_when_it_changes(htpasswd_path: Path) -> None:
    """A user added, removed, or the file replaced (new inode, same size and mtime) takes effect without restart."""
    users = HtpasswdFile(htpasswd_path)
    text = htpasswd_path.read_bytes()
    htpasswd_path.write_bytes(text + bcrypt_entry("carol", "carol-pw") + b"\n")
    assert isinstance(users.verify("carol", "carol-pw"), Principal)
    # Same size and mtime, new inode: only the inode check can notice.
    stat = htpasswd_path.stat()
    replacement = htpasswd_path.with_name("new")
    replacement.write_bytes(bcrypt_entry("carol", "carol-pX") + b"\n" + text)
    replacement.write_bytes(replacement.read_bytes()[: stat.st_size])
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, htpasswd_path)
    assert isinstance(users.verify("carol", "carol-pX"), Principal)
    gen = users.generation
    users.current()
    assert users.generation == gen  # unchanged file: not read again


def test_unreadable_file_keeps_the_last_users(htpasswd_path: Path) -> None:
    """A file that disappears mid-edit leaves the previous users in force and says so."""
    users = HtpasswdFile(htpasswd_path)
    htpasswd_path.unlink()
    assert isinstance(users.verify("alice", PASSWORD), Principal)
    assert any("cannot read" in p for p in users.problems)


def test_a_file_unreadable_at_start_lets_nobody_in_until_it_exists(tmp_path: Path) -> None:
    """A missing file, or a directory (Debian's stock config.yml names /etc/docker/registry), starts with no
    user (no invented one either), says how to fix it, and is read as soon as it exists."""
    for path in (tmp_path / "nope", tmp_path):
        users = HtpasswdFile(path)
        assert isinstance(users.verify("alice", PASSWORD), Denial)
        assert any("nobody can log in" in p and "k3sreg htpasswd set" in p for p in users.problems)
    late = tmp_path / "late"
    users = HtpasswdFile(late)
    late.write_bytes(bcrypt_entry("alice", PASSWORD) + b"\n")
    assert isinstance(users.verify("alice", PASSWORD), Principal) and users.problems == ()


@pytest.mark.parametrize(("value", "kind"), [
    (b"$apr1$abcdefgh$0123456789abcdefghijkl", "Apache MD5 ($apr1$)"),
    (b"{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1 ({SHA})"),
    (b"$6$salt$hash", "SHA-512-crypt ($6$)"),
    (b"abcdefghijklm", "crypt(3) DES"),
    (b"plaintext", "plain text or unknown"),
    (b"$2y$05$short", "malformed bcrypt"),
])
def test_non_bcrypt_entries_are_named_problems(value: bytes, kind: str) -> None:
    """Other hash kinds never log in, and the problem names the line and the kind (never the hash)."""
    data = parse_htpasswd(b"# users\n\n" + bcrypt_entry("ok", "ok-pw") + b"\nbob:" + value + b"\n", "users.txt")
    assert hash_kind(value) == kind
    assert "bob" in data.unusable and "bob" not in data.entries and "ok" in data.entries
    assert len(data.problems) == 1 and "users.txt: line 4" in data.problems[0] and kind in data.problems[0]
    assert value.decode() not in data.problems[0]


def test_unusable_entry_is_denied_after_a_dummy_bcrypt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user with an MD5 entry is refused like an unknown one, with its own reason."""
    path = tmp_path / "h"
    path.write_bytes(b"bob:$apr1$abcdefgh$0123456789abcdefghijkl\n")
    users = HtpasswdFile(path)
    counter = CountingBcrypt(monkeypatch)
    found = users.verify("bob", "whatever")
    assert isinstance(found, Denial) and found.reason is Reason.UNUSABLE_ENTRY and len(counter.calls) == 1


def test_syntax_as_distribution_reads_it() -> None:
    """Comments, blank lines, spaces around a line, a later line winning, a line without colon reported."""
    first, second = bcrypt_entry("a", "first-secret-1"), bcrypt_entry("a", "second-secret-2")
    data = parse_htpasswd(b"  " + first + b"  \n#c:x\nnocolon\n" + second + b"\n")
    assert list(data.entries) == ["a"] and bcrypt.checkpw(b"second-secret-2", data.entries["a"])
    assert any("line 3 has no ':'" in p for p in data.problems)
    assert any("appears again (line 1)" in p for p in data.problems)


def test_passwords_are_cut_at_72_bytes_as_htpasswd_does(tmp_path: Path) -> None:
    """bcrypt reads 72 bytes; a longer password matches its first 72 bytes, as with Apache and Distribution 2.8."""
    long = "p" * 72
    path = tmp_path / "h"
    path.write_bytes(bcrypt_entry("long", long) + b"\n")
    assert isinstance(HtpasswdFile(path).verify("long", long + "tail"), Principal)


def test_files_written_by_apache_htpasswd_verify(tmp_path: Path) -> None:
    """`htpasswd -B` (apache2-utils) output logs in, password given on stdin."""
    path = tmp_path / "apache"
    SECRETS.add("apache-secret-1")
    subprocess.run(["htpasswd", "-B", "-i", "-c", "-C", "5", str(path), "dave"], input=b"apache-secret-1",
                   check=True, capture_output=True)
    users = HtpasswdFile(path)
    assert users.problems == ()
    assert isinstance(users.verify("dave", "apache-secret-1"), Principal)
    assert isinstance(users.verify("dave", "apache-secret-2"), Denial)
