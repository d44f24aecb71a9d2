"""The shell that reads a node for doctor, and the parsing of what it prints.

Doctor installs nothing on a node: it sends one POSIX shell script (wrapped like the rollout's, so a script cut
short runs nothing) that prints one record per line after the output mark, contents base64, names last:

    F present|unreadable|notfile <uid> <mode> <mtime> <content> <path>   a file that exists (content: 1 MiB at
                                                                           most); a missing file prints nothing
    L present|unreadable <dir>                                             a certs.d directory that exists; its
                                                                           <dir>/*/hosts.toml follow as F records
    C <status> <output> <name>                                             a command found (`k3s --version`)
    D <status> <getent ahosts output> <name>                               a name looked up on the node
    H <hostname>

The same script runs on the local machine (`doctor` without --inventory), so both ways read alike. Needs sh,
base64, stat, cat, head and, for names, getent (glibc or musl).
"""

from __future__ import annotations

import base64
import binascii
import shlex
from dataclasses import dataclass, field
from typing import Literal

from k3sreg.k3s.rollout.remote import MARK, wrap

FileState = Literal["present", "absent", "unreadable", "notfile"]
MAX_FILE = 1 << 20
_STATES: dict[str, FileState] = {"present": "present", "absent": "absent", "unreadable": "unreadable",
                                 "notfile": "notfile"}


@dataclass(frozen=True)
class FileFact:
    """A file as the node has it: `content` None unless present and readable."""

    path: str
    state: FileState
    uid: int | None = None
    mode: int | None = None
    mtime: int | None = None
    content: bytes | None = None

    def text(self) -> str | None:
        """The content as UTF-8 text (undecodable bytes replaced), or None."""
        return None if self.content is None else self.content.decode("utf-8", "replace")


@dataclass(frozen=True)
class Lookup:
    """`getent ahosts NAME` on the node: `status` 0 found, 2 not found, 127 no getent; the addresses in order."""

    name: str
    status: int
    addresses: tuple[str, ...]


@dataclass
class Facts:
    """Everything read from one node, by path / name."""

    hostname: str = ""
    files: dict[str, FileFact] = field(default_factory=dict)
    dirs: dict[str, str] = field(default_factory=dict)  # path -> present | unreadable (absent: left out)
    commands: dict[str, tuple[int, str]] = field(default_factory=dict)
    names: dict[str, Lookup] = field(default_factory=dict)

    def file(self, path: str) -> FileFact:
        """The fact for `path`; absent when it was not read."""
        return self.files.get(path) or FileFact(path, "absent")

    def under(self, directory: str) -> dict[str, FileFact]:
        """`<sub>/hosts.toml` -> fact, for the hosts.toml files found under `directory`."""
        prefix = directory.rstrip("/") + "/"
        return {p[len(prefix):]: f for p, f in self.files.items() if p.startswith(prefix)
                and p.endswith("/hosts.toml") and f.state == "present"}

    def merge(self, other: Facts) -> None:
        """Add what a second script read."""
        self.hostname = self.hostname or other.hostname
        self.files.update(other.files)
        self.dirs.update(other.dirs)
        self.commands.update(other.commands)
        self.names.update(other.names)


# Few processes per record (each fork counts on a busy node): files that do not exist print nothing, paths are
# printed as they are (last on the line), base64 runs once per content.
_PRELUDE = f"""if echo | base64 -w0 >/dev/null 2>&1; then b64() {{ base64 -w0; }}
else b64() {{ base64 | tr -d '\\n'; }}; fi
rec_file() {{
  [ -e "$1" ] || return 0
  if [ ! -f "$1" ]; then echo "F notfile - - - - $1"; return 0; fi
  meta=$(stat -c '%u %a %Y' "$1" 2>/dev/null) || meta='- - -'
  if [ ! -r "$1" ]; then echo "F unreadable $meta - $1"; return 0; fi
  echo "F present $meta $(head -c {MAX_FILE} "$1" | b64) $1"
}}
rec_glob() {{
  for f in "$1"/*"$2"; do [ -f "$f" ] && rec_file "$f"; done
  return 0
}}
rec_dir() {{
  if [ -d "$1" ] && [ -r "$1" ] && [ -x "$1" ]; then
    echo "L present $1"
    for f in "$1"/*/hosts.toml; do [ -f "$f" ] && rec_file "$f"; done
  elif [ -d "$1" ]; then
    echo "L unreadable $1"
  fi
  return 0
}}
lim() {{ if command -v timeout >/dev/null 2>&1; then timeout "$@"; else shift; "$@"; fi; }}
rec_cmd() {{
  n=$1; shift
  if command -v "$1" >/dev/null 2>&1; then
    out=$(lim 5 "$@" 2>&1); st=$?
    echo "C $st $(printf '%s' "$out" | b64) $n"
  fi
}}
rec_name() {{
  if command -v getent >/dev/null 2>&1; then out=$(lim 5 getent ahosts "$1" 2>/dev/null); st=$?
  else out=''; st=127; fi
  echo "D $st $(printf '%s' "$out" | b64) $1"
}}
"""


@dataclass
class Reading:
    """What one script reads: `files`, the files of each `globs` entry (directory, name suffix), `dirs` (with
    their */hosts.toml), `commands` (name, argv; run with a 5 s limit) and `names` (looked up with getent)."""

    files: list[str] = field(default_factory=list)
    globs: list[tuple[str, str]] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    commands: list[tuple[str, list[str]]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        """Whether there is nothing to read."""
        return not (self.files or self.globs or self.dirs or self.commands or self.names)


def script(reading: Reading) -> str:
    """The script printing a record for everything `reading` names, then the host name."""
    lines = [_PRELUDE, f"echo {MARK}"]
    lines += [f"rec_file {shlex.quote(f)}" for f in reading.files]
    lines += [f"rec_glob {shlex.quote(d)} {shlex.quote(suffix)}" for d, suffix in reading.globs]
    lines += [f"rec_dir {shlex.quote(d)}" for d in reading.dirs]
    lines += [f"rec_cmd {shlex.quote(n)} {' '.join(shlex.quote(a) for a in argv)}" for n, argv in reading.commands]
    lines += [f"rec_name {shlex.quote(n)}" for n in reading.names]
    lines.append('echo "H $(cat /etc/hostname 2>/dev/null || hostname 2>/dev/null)"')
    # Every record is reported, whatever failed before it: errexit off.
    return wrap("set +e\n" + "\n".join(lines))


def _b64(word: str) -> bytes:
    if word == "-":
        return b""
    try:
        return base64.b64decode(word, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"unexpected answer from the node (bad base64: {e})") from None


def _int(word: str, base: int = 10) -> int | None:
    return int(word, base) if word not in ("-", "") else None


def parse(output: bytes) -> Facts:
    """The facts in the output of `script`; ValueError when it is not what the script prints."""
    mark = MARK.encode() + b"\n"
    if output.startswith(mark):
        body = output[len(mark):]
    else:
        _, found, body = output.partition(b"\n" + mark)
        if not found:
            raise ValueError(f"unexpected answer from the node (no output marker): {output[:80]!r}")
    facts = Facts()
    for raw in body.decode("utf-8", "surrogateescape").splitlines():
        kind, _, rest = raw.partition(" ")
        if kind == "F":
            words = rest.split(" ", 5)
            state = _STATES.get(words[0])
            if state is None or len(words) != 6:
                raise ValueError(f"unexpected file record from the node: {raw[:80]!r}")
            content = _b64(words[4]) if state == "present" else None
            facts.files[words[5]] = FileFact(words[5], state, _int(words[1]), _int(words[2], 8), _int(words[3]),
                                             content)
        elif kind == "L":
            listed, _, path = rest.partition(" ")
            facts.dirs[path] = listed
        elif kind in ("C", "D"):
            words = rest.split(" ", 2)
            if len(words) != 3:
                raise ValueError(f"unexpected record from the node: {raw[:80]!r}")
            text = _b64(words[1]).decode("utf-8", "replace")
            if kind == "C":
                facts.commands[words[2]] = (int(words[0]), text)
            else:
                addresses = tuple(dict.fromkeys(line.split()[0] for line in text.splitlines() if line.strip()))
                facts.names[words[2]] = Lookup(words[2], int(words[0]), addresses)
        elif kind == "H":
            facts.hostname = rest.strip()
        elif raw.strip():
            raise ValueError(f"unexpected answer from the node: {raw[:80]!r}")
    return facts
