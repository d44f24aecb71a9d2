"""Adding, changing and removing users of an htpasswd file, with bcrypt hashes Distribution and Apache accept.

The file is rewritten whole (atomically, other lines kept as they were) and stays owner-only (0600) when new;
an existing file keeps its mode.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import bcrypt

from k3sreg.auth.htpasswd import BCRYPT_MAX_BYTES
from k3sreg.errors import UsageError
from k3sreg.localfiles import write_file

DEFAULT_COST = 10
"""bcrypt cost of new entries: Distribution's default (about 60 ms a check on a small server core)."""
_USER = re.compile(r"^[^:\s#][^:\s]*$")


def check_user(user: str) -> str:
    """`user` when it can be an htpasswd user name (no colon, no whitespace, not starting with '#')."""
    if not _USER.match(user):
        raise UsageError(f"user name {user!r} is not usable in htpasswd: no ':' or spaces, and not starting "
                         "with '#'")
    return user


def hash_password(password: str, cost: int = DEFAULT_COST) -> bytes:
    """A `$2y$` bcrypt hash of `password`, as `htpasswd -B` writes it. Refuses what bcrypt would cut or cannot take."""
    secret = password.encode("utf-8")
    if not secret:
        raise UsageError("the password is empty; give a non-empty password")
    if len(secret) > BCRYPT_MAX_BYTES:
        raise UsageError(f"the password is {len(secret)} bytes; bcrypt uses only the first {BCRYPT_MAX_BYTES}, "
                         "so choose a shorter one")
    if not 4 <= cost <= 31:
        raise UsageError(f"bcrypt cost must be 4 to 31, got {cost}")
    return b"$2y$" + bcrypt.hashpw(secret, bcrypt.gensalt(cost))[4:]


def _lines(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _write(path: Path, lines: list[bytes]) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o600
    try:
        write_file(path, b"".join(line + b"\n" for line in lines), mode, dir_mode=0o700)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def _owner(line: bytes) -> bytes | None:
    text = line.strip()
    if not text or text.startswith(b"#") or b":" not in text:
        return None
    return text.partition(b":")[0]


def set_user(path: Path, user: str, password: str, cost: int = DEFAULT_COST) -> bool:
    """Add `user` with `password`, or replace its entry (every line of it); True when the user was new."""
    name = check_user(user).encode("utf-8")
    entry = name + b":" + hash_password(password, cost)
    lines = _lines(path)
    kept = [line for line in lines if _owner(line) != name]
    new = len(kept) == len(lines)
    if new:
        kept.append(entry)
    else:
        first = next(i for i, line in enumerate(lines) if _owner(line) == name)
        kept.insert(first, entry)
    _write(path, kept)
    return new


def delete_user(path: Path, user: str) -> bool:
    """Remove every line of `user`; False when there was none (the file is then left untouched)."""
    name = user.encode("utf-8")
    lines = _lines(path)
    kept = [line for line in lines if _owner(line) != name]
    if len(kept) == len(lines):
        return False
    _write(path, kept)
    return True


def list_users(path: Path) -> list[str]:
    """The user names in the file, in file order, each once."""
    found: dict[str, None] = {}
    for line in _lines(path):
        owner = _owner(line)
        if owner is not None:
            found[owner.decode("utf-8", "replace")] = None
    return list(found)
