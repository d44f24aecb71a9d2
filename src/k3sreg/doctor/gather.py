"""The shell that reads a node for doctor, and the parsing of what it prints.

Doctor installs nothing on a node: it sends one POSIX shell script (wrapped like the rollout's, so a script cut
short runs nothing) that prints one record per line after the output mark, every path and content base64:

    F <path> present|absent|unreadable|notfile <uid> <mode> <mtime> <content>   a file (content capped at 1 MiB)
    L <dir> present|absent                                                     a certs.d directory; its
                                                                               <dir>/*/hosts.toml follow as F
    C <name> <status> <output>                                                 a command (`k3s --version`)
    D <name> <status> <getent ahosts output>                                   a name looked up on the node
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
    dirs: dict[str, bool] = field(default_factory=dict)
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


_PRELUDE = f"""b64() {{ base64 | tr -d '\\n'; }}
enc() {{ printf '%s' "$1" | b64; }}
rec_file() {{
  p=$(enc "$1")
  if [ ! -e "$1" ]; then echo "F $p absent - - - -"; return 0; fi
  if [ ! -f "$1" ]; then echo "F $p notfile - - - -"; return 0; fi
  meta=$(stat -c '%u %a %Y' "$1" 2>/dev/null) || meta='- - -'
  if [ ! -r "$1" ]; then echo "F $p unreadable $meta -"; return 0; fi
  echo "F $p present $meta $(head -c {MAX_FILE} "$1" | b64)"
}}
rec_glob() {{
  for f in "$1"/*"$2"; do [ -f "$f" ] && rec_file "$f"; done
  return 0
}}
rec_dir() {{
  if [ -d "$1" ]; then
    echo "L $(enc "$1") present"
    for f in "$1"/*/hosts.toml; do [ -f "$f" ] && rec_file "$f"; done
  else
    echo "L $(enc "$1") absent"
  fi
  return 0
}}
lim() {{ if command -v timeout >/dev/null 2>&1; then timeout "$@"; else shift; "$@"; fi; }}
rec_cmd() {{
  n=$1; shift
  if command -v "$1" >/dev/null 2>&1 || [ -x "$1" ]; then
    out=$(lim 5 "$@" 2>&1); st=$?
  else
    out=''; st=127
  fi
  echo "C $(enc "$n") $st $(printf '%s' "$out" | b64)"
}}
rec_name() {{
  if command -v getent >/dev/null 2>&1; then out=$(lim 5 getent ahosts "$1" 2>/dev/null); st=$?
  else out=''; st=127; fi
  echo "D $(enc "$1") $st $(printf '%s' "$out" | b64)"
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
    lines.append('echo "H $(enc "$(cat /etc/hostname 2>/dev/null || hostname 2>/dev/null)")"')
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
    for raw in body.decode("ascii", "replace").splitlines():
        words = raw.split(" ")
        kind = words[0]
        if kind == "F" and len(words) == 7:
            path = _b64(words[1]).decode("utf-8", "replace")
            state = _STATES.get(words[2])
            if state is None:
                raise ValueError(f"unexpected file state from the node: {words[2]!r}")
            content = _b64(words[6]) if state == "present" else None
            facts.files[path] = FileFact(path, state, _int(words[3]), _int(words[4], 8), _int(words[5]), content)
        elif kind == "L" and len(words) == 3:
            facts.dirs[_b64(words[1]).decode("utf-8", "replace")] = words[2] == "present"
        elif kind == "C" and len(words) == 4:
            facts.commands[_b64(words[1]).decode()] = (int(words[2]), _b64(words[3]).decode("utf-8", "replace"))
        elif kind == "D" and len(words) == 4:
            name = _b64(words[1]).decode("utf-8", "replace")
            text = _b64(words[3]).decode("utf-8", "replace")
            addresses = tuple(dict.fromkeys(line.split()[0] for line in text.splitlines() if line.strip()))
            facts.names[name] = Lookup(name, int(words[2]), addresses)
        elif kind == "H" and len(words) == 2:
            facts.hostname = _b64(words[1]).decode("utf-8", "replace").strip()
        elif raw.strip():
            raise ValueError(f"unexpected answer from the node: {raw[:80]!r}")
    return facts
