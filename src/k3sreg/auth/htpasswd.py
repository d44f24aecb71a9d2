"""Distribution's `auth.htpasswd`: users from an htpasswd file of bcrypt entries, re-read when it changes.

The file is read as Distribution reads it: one `user:hash` a line, blank lines and lines starting with `#`
skipped, the user ends at the first colon, a later line for the same user wins. Distribution accepts bcrypt
only (`$2a$`, `$2b$`, `$2y$`); an entry of another kind (MD5 `$apr1$`, `{SHA}`, crypt, plain text) can never
log in, and is reported as a problem naming its line. A line without a colon is reported and skipped.

Passwords are checked with bcrypt, also for unknown users (against a dummy hash of the file's usual cost), so
an answer takes as long whether or not the user exists. A success is remembered (keyed by a keyed BLAKE2b of
the credentials under a per-process random key, for `SUCCESS_TTL` seconds, and only while the user's entry is
unchanged), so a client that sends Basic credentials on every request costs one bcrypt, not one per request.
Requests that arrive with the same credentials while their first check runs wait for its answer: a client
opening 32 connections at once costs one bcrypt, not 32.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from k3sreg.auth.model import Denial, Principal, Reason

BCRYPT_MAX_BYTES = 72
"""bcrypt reads at most this many bytes of a password; Apache's `htpasswd -B` and Distribution 2.8 ignore the rest."""
SUCCESS_TTL = 300.0
RECHECK = 1.0
"""Most seconds a remembered decision may go on after the file changed (see `recent_generation`)."""
CHECK_WAIT = 30.0
"""Longest a check waits for the same credentials' bcrypt running in another thread."""
SUCCESS_CACHE_SIZE = 1024
_BCRYPT = re.compile(rb"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
_OTHER_KINDS = (
    ("$apr1$", "Apache MD5 ($apr1$)"), ("{SHA}", "SHA-1 ({SHA})"), ("$1$", "MD5-crypt ($1$)"),
    ("$5$", "SHA-256-crypt ($5$)"), ("$6$", "SHA-512-crypt ($6$)"), ("$argon2", "Argon2"), ("$2", "malformed bcrypt"),
)
FIX = "re-create it with `k3sreg htpasswd set` or `htpasswd -B`"


def hash_kind(value: bytes) -> str:
    """'bcrypt' for an entry Distribution can check, else a name for the kind of hash it is."""
    if _BCRYPT.match(value) and 4 <= int(value[4:6]) <= 31:
        return "bcrypt"
    text = value.decode("utf-8", "replace")
    for prefix, name in _OTHER_KINDS:
        if text.startswith(prefix):
            return name
    return "crypt(3) DES" if len(text) == 13 else "plain text or unknown"


@dataclass(frozen=True)
class HtpasswdData:
    """One reading of the file: usable bcrypt entries, users whose entry cannot log in, and the problems."""

    entries: dict[str, bytes]
    unusable: frozenset[str]
    problems: tuple[str, ...]


def parse_htpasswd(data: bytes, where: str = "htpasswd") -> HtpasswdData:
    """Read htpasswd content; each problem is one line naming `where` and the line number (never the hash)."""
    entries: dict[str, bytes] = {}
    unusable: set[str] = set()
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(data.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        user_b, colon, value = line.partition(b":")
        user = user_b.decode("utf-8", "replace")
        if not colon:
            problems.append(f"{where}: line {number} has no ':' between user and hash; it is skipped")
            continue
        if user in seen:
            problems.append(f"{where}: line {number}: user {user!r} appears again (line {seen[user]}); "
                            "the later line wins, as in Distribution")
        seen[user] = number
        kind = hash_kind(value)
        if kind == "bcrypt":
            entries[user] = value
            unusable.discard(user)
        else:
            entries.pop(user, None)
            unusable.add(user)
            problems.append(f"{where}: line {number}: user {user!r} has a {kind} hash, but only bcrypt works "
                            f"(as in Distribution); {FIX}")
    return HtpasswdData(entries, frozenset(unusable), tuple(problems))


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


class HtpasswdFile:
    """An htpasswd file, re-read whenever its mtime, size or inode changes (one `stat` per check).

    A file that cannot be read at construction (missing, a directory as in Debian's stock config.yml) lets
    nobody in, as docker-registry does, until it can be read; `problems` says so, with the fix. Later, a file
    that has become unreadable leaves the last good reading in force and its problem in `problems`.
    """

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._where = os.fspath(self.path)
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None
        self.generation = 0  # counts readings, so a caller can report new problems once
        self._read_error = ""
        self._key = secrets.token_bytes(32)
        self._successes: collections.OrderedDict[bytes, tuple[str, bytes, float]] = collections.OrderedDict()
        self._dummies: dict[int, bytes] = {}
        self._running: dict[bytes, threading.Event] = {}
        self._looked = float("-inf")
        self._data = HtpasswdData({}, frozenset(), ())
        try:
            self._data = self._read()
        except OSError as exc:
            self._read_error = self._unreadable(exc)

    def _read(self) -> HtpasswdData:
        st = os.stat(self._where)
        data = parse_htpasswd(self.path.read_bytes(), str(self.path))
        self._stamp = _stamp(st)
        self.generation += 1
        return data

    @property
    def problems(self) -> tuple[str, ...]:
        """The problems of the reading in force, and the read error that kept it in force, if any."""
        return self._data.problems + ((self._read_error,) if self._read_error else ())

    def current(self) -> HtpasswdData:
        """The entries in force, re-reading the file first if it changed since the last reading."""
        try:
            changed = _stamp(os.stat(self._where)) != self._stamp
        except OSError as exc:
            self._read_error = self._unreadable(exc)
            return self._data
        if changed:
            with self._lock:
                try:
                    self._data = self._read()
                    self._read_error = ""
                except OSError as exc:
                    self._read_error = self._unreadable(exc)
        return self._data

    def _unreadable(self, exc: OSError) -> str:
        if self.generation == 0:
            return (f"{self.path}: cannot read it ({exc.strerror}), so nobody can log in; create it with "
                    f"`k3sreg htpasswd set {self.path} USER` (it is read as soon as it exists)")
        return f"{self.path}: cannot read it ({exc.strerror}); the previous users stay in force"

    def recent_generation(self) -> int:
        """`generation` after a look at the file, taken at most once every RECHECK seconds (cheap per request)."""
        now = self._clock()
        if now - self._looked >= RECHECK:
            self._looked = now
            self.current()
        return self.generation

    def verify(self, user: str, password: str) -> Principal | Denial:
        """The principal when `password` is `user`'s, else a denial; as slow for unknown users as for known."""
        data = self.current()
        secret = password.encode("utf-8")[:BCRYPT_MAX_BYTES]
        entry = data.entries.get(user)
        mac = self._mac(user, secret)
        if entry is not None and self._remembered(mac, entry):
            return Principal(user, "basic")
        if not secret:
            bcrypt.checkpw(b"x", self._dummy(data))
            return Denial(Reason.EMPTY_PASSWORD, user=user)
        if entry is None:
            bcrypt.checkpw(secret, self._dummy(data))
            reason = Reason.UNUSABLE_ENTRY if user in data.unusable else Reason.UNKNOWN_USER
            return Denial(reason, user=user)
        with self._lock:
            running = self._running.get(mac)
            first = running is None
            if running is None:
                running = self._running[mac] = threading.Event()
        if not first:
            # The same credentials are being checked: their answer is this one (no second bcrypt).
            running.wait(CHECK_WAIT)
            if self._remembered(mac, entry):
                return Principal(user, "basic")
            return Denial(Reason.WRONG_PASSWORD, user=user)
        try:
            if not bcrypt.checkpw(secret, entry):
                return Denial(Reason.WRONG_PASSWORD, user=user)
            self._remember(mac, user, entry)
            return Principal(user, "basic")
        finally:
            with self._lock:
                del self._running[mac]
            running.set()

    def remembered(self, user: str, password: str) -> bool:
        """True when `verify` would answer from its memory of a recent success, without running bcrypt."""
        entry = self.current().entries.get(user)
        if entry is None:
            return False
        secret = password.encode("utf-8")[:BCRYPT_MAX_BYTES]
        return self._remembered(self._mac(user, secret), entry)

    def _mac(self, user: str, secret: bytes) -> bytes:
        return hashlib.blake2b(user.encode("utf-8") + b"\0" + secret, key=self._key, digest_size=32).digest()

    def _remembered(self, mac: bytes, entry: bytes) -> bool:
        with self._lock:
            hit = self._successes.get(mac)
            if hit is None:
                return False
            _, hashed, until = hit
            if until < self._clock() or not hmac.compare_digest(hashed, entry):
                del self._successes[mac]
                return False
            return True

    def _remember(self, mac: bytes, user: str, entry: bytes) -> None:
        with self._lock:
            self._successes[mac] = (user, entry, self._clock() + SUCCESS_TTL)
            self._successes.move_to_end(mac)
            while len(self._successes) > SUCCESS_CACHE_SIZE:
                self._successes.popitem(last=False)

    def _dummy(self, data: HtpasswdData) -> bytes:
        """A bcrypt hash of a random password with the cost most entries use, made once per cost."""
        costs = collections.Counter(int(h[4:6]) for h in data.entries.values())
        cost = costs.most_common(1)[0][0] if costs else 10
        dummy = self._dummies.get(cost)
        if dummy is None:
            # Made outside the lock: at a high cost this takes a while, and a race only makes two.
            dummy = self._dummies.setdefault(cost, bcrypt.hashpw(secrets.token_hex(16).encode(), bcrypt.gensalt(cost)))
        return dummy
