"""The POSIX shell run on a node, and the parsing of what it prints.

Every script is sent on stdin to `sh -s` (through `sudo -n` for a non-root user) and wrapped in one function
called on its last line: a script cut short in transit is a syntax error and runs nothing. Content travels
base64-encoded inside the script and is checked against its SHA-256 on the node before it is moved into
place, so a node never keeps a half-written file:

    registries.yaml                  the live file, root:root 0600
    registries.yaml.k3sreg-backup    the version it replaced (root:root 0600)
    registries.yaml.k3sreg-backup-none   marker: there was no file before (rollback removes it)
    .registries.yaml.k3sreg.XXXXXX   temporary, same directory, renamed into place (atomic on one filesystem)
    ca.crt, node.crt, node.key ...   the TLS files registries.yaml names (`nodes apply --certs`): root:root,
                                     0644 for certificates, 0600 for keys, written the same way

Needs on the node: sh, coreutils (base64, sha256sum, stat, mktemp) and systemctl.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

BACKUP_SUFFIX = ".k3sreg-backup"
NO_BACKUP_SUFFIX = ".k3sreg-backup-none"
UNIT_DIRS = ("/etc/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system",
             "/lib/systemd/system")
# Printed before any output we parse: whatever a login shell's rc files print comes before it and is dropped.
MARK = "--k3sreg-output--"
# Exit codes the scripts use for failures they explain on stderr.
EXIT_DAMAGED, EXIT_NOT_ACTIVE, EXIT_NO_BACKUP = 93, 94, 95


def wrap(body: str) -> str:
    """`body` as a function run on the last line, so a truncated script runs nothing."""
    return f"k3sreg_main() {{\nset -eu\n{body}\n}}\nk3sreg_main \"$@\"\n"


def detect_script(services: Sequence[str]) -> str:
    """Print `unit=<service>` for each of `services` whose systemd unit file exists on the node."""
    dirs = " ".join(shlex.quote(d) for d in UNIT_DIRS)
    units = " ".join(shlex.quote(s) for s in services)
    return wrap(f"""echo {MARK}
for u in {units}; do
  for d in {dirs}; do
    if [ -e "$d/$u.service" ]; then echo "unit=$u"; break; fi
  done
done""")


def read_script(path: PurePosixPath) -> str:
    """Print one header line `present|absent UID MODE BACKUP`, then the file's bytes."""
    f = shlex.quote(str(path))
    return wrap(f"""f={f}
echo {MARK}
if [ -f "$f{BACKUP_SUFFIX}" ]; then bk=file; elif [ -e "$f{NO_BACKUP_SUFFIX}" ]; then bk=none; else bk=-; fi
if [ -f "$f" ]; then
  echo "present $(stat -c '%u %a' "$f") $bk"
  cat "$f"
else
  echo "absent - - $bk"
fi""")


@dataclass(frozen=True)
class FileState:
    """What `read_script` found: the file's bytes (None: missing), owner uid, mode, and the kept backup."""

    content: bytes | None
    uid: int | None
    mode: int | None
    backup: str  # "file", "none" (marker: no file before) or "-" (no backup kept)

    @property
    def secure(self) -> bool:
        """Owned by root and readable by nobody else (it holds registry credentials)."""
        return self.uid == 0 and self.mode is not None and self.mode & 0o077 == 0


def parse_read(output: bytes) -> FileState:
    """Parse the output of `read_script`; ValueError if it is not what the script prints."""
    header, sep, rest = _after_mark(output).partition(b"\n")
    words = header.decode("ascii", "replace").split()
    if len(words) != 4 or words[0] not in ("present", "absent"):
        raise ValueError(f"unexpected answer from the node: {header[:80]!r}")
    state, uid, mode, backup = words
    if state == "absent":
        return FileState(None, None, None, backup)
    return FileState(rest if sep else b"", int(uid), int(mode, 8), backup)


def parse_units(output: bytes) -> list[str]:
    """The services `detect_script` found."""
    text = _after_mark(output).decode("ascii", "replace")
    return [line[5:] for line in text.splitlines() if line.startswith("unit=")]


def _after_mark(output: bytes) -> bytes:
    mark = MARK.encode() + b"\n"
    if output.startswith(mark):
        return output[len(mark):]
    _, found, rest = output.partition(b"\n" + mark)
    if not found:
        raise ValueError(f"unexpected answer from the node (no output marker): {output[:80]!r}")
    return rest


def _embed(var: str, content: bytes) -> str:
    # base64 keeps arbitrary bytes (and a line that looks like a heredoc end) safe inside the script.
    b64 = base64.encodebytes(content).decode("ascii")
    return f"base64 -d > \"${var}\" <<'K3SREG_EOF'\n{b64}K3SREG_EOF\n"


def _check(var: str, content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()
    return (f'[ "$(sha256sum "${var}" | cut -d" " -f1)" = {digest} ] || '
            f'{{ echo "content arrived damaged" >&2; exit {EXIT_DAMAGED}; }}\n')


def write_script(path: PurePosixPath, content: bytes) -> str:
    """Install `content` at `path` atomically as root:root 0600, keeping the replaced version as the backup."""
    f = shlex.quote(str(path))
    name = shlex.quote(path.name)
    return wrap(f"""f={f}; d=$(dirname "$f")
umask 077
mkdir -p "$d"
t=$(mktemp "$d/.{name}.k3sreg.XXXXXX"); bt=""
trap 'rm -f "$t" ${{bt:+"$bt"}}' EXIT
{_embed("t", content)}{_check("t", content)}chown 0:0 "$t"; chmod 600 "$t"
if [ -f "$f" ]; then
  bt=$(mktemp "$d/.{name}.k3sreg.XXXXXX")
  cp "$f" "$bt"; chown 0:0 "$bt"; chmod 600 "$bt"
  mv -f "$bt" "$f{BACKUP_SUFFIX}"; bt=""
  rm -f "$f{NO_BACKUP_SUFFIX}"
else
  rm -f "$f{BACKUP_SUFFIX}"; : > "$f{NO_BACKUP_SUFFIX}"
fi
sync "$t" 2>/dev/null || sync
mv -f "$t" "$f"
trap - EXIT""")


def secure_script(path: PurePosixPath) -> str:
    """Make the file root:root 0600 without touching its content."""
    f = shlex.quote(str(path))
    return wrap(f'chown 0:0 {f}\nchmod 600 {f}')


def rollback_script(path: PurePosixPath) -> str:
    """Swap the live file and its backup (a missing-before marker removes the file); fails with no backup."""
    f = shlex.quote(str(path))
    name = shlex.quote(path.name)
    return wrap(f"""f={f}; d=$(dirname "$f"); b="$f{BACKUP_SUFFIX}"; none="$f{NO_BACKUP_SUFFIX}"
umask 077
t=$(mktemp "$d/.{name}.k3sreg.XXXXXX"); trap 'rm -f "$t"' EXIT
if [ -f "$b" ]; then
  cp "$b" "$t"; chown 0:0 "$t"; chmod 600 "$t"
  if [ -f "$f" ]; then mv -f "$f" "$b"; else rm -f "$b"; : > "$none"; fi
  mv -f "$t" "$f"
elif [ -e "$none" ]; then
  rm -f "$none"
  if [ -f "$f" ]; then mv -f "$f" "$b"; fi
else
  echo "no backup to roll back to on this node" >&2; exit {EXIT_NO_BACKUP}
fi
sync""")


def restart_script(service: str, wait_seconds: int) -> str:
    """Restart `service`, then wait up to `wait_seconds` until systemd reports it active."""
    s = shlex.quote(service)
    return wrap(f"""systemctl restart {s}
i=0
until systemctl is-active --quiet {s}; do
  i=$((i + 1))
  if [ "$i" -gt {wait_seconds} ]; then echo "{service} is not active {wait_seconds}s after the restart" >&2; \
exit {EXIT_NOT_ACTIVE}; fi
  sleep 1
done""")


def hosts_listing_script(certs_d: PurePosixPath) -> str:
    """Print `<sha256> <dir> <first line>` for every `<dir>/hosts.toml` under `certs_d`."""
    d = shlex.quote(str(certs_d))
    return wrap(f"""d={d}
echo {MARK}
[ -d "$d" ] || exit 0
for f in "$d"/*/hosts.toml; do
  [ -f "$f" ] || continue
  sum=$(sha256sum "$f" | cut -d" " -f1)
  rel=${{f#"$d"/}}
  printf '%s %s %s\\n' "$sum" "${{rel%/hosts.toml}}" "$(head -n 1 "$f")"
done""")


@dataclass(frozen=True)
class HostsFile:
    """One `<dir>/hosts.toml` found under certs.d."""

    directory: str
    sha256: str
    first_line: str


def parse_hosts_listing(output: bytes) -> list[HostsFile]:
    """Parse the output of `hosts_listing_script`."""
    found = []
    for line in _after_mark(output).decode("utf-8", "replace").splitlines():
        parts = line.split(" ", 2)
        if len(parts) >= 2:
            found.append(HostsFile(parts[1], parts[0], parts[2] if len(parts) == 3 else ""))
    return found


def hosts_write_script(certs_d: PurePosixPath, files: Mapping[str, bytes], remove_dirs: Sequence[str]) -> str:
    """Write each `<dir>/hosts.toml` of `files` atomically (dirs 0700, files 0600) and remove `remove_dirs`."""
    parts = [f"d={shlex.quote(str(certs_d))}", "umask 077", 'mkdir -p "$d"', "t=''", "trap 'rm -f \"$t\"' EXIT"]
    for directory in remove_dirs:
        parts.append(f'rm -rf "$d"/{shlex.quote(directory)}')
    for rel, content in sorted(files.items()):
        sub = shlex.quote(str(PurePosixPath(rel).parent))
        target = shlex.quote(rel)
        parts.append(f'mkdir -p "$d"/{sub}; chmod 700 "$d"/{sub}')
        parts.append(f't=$(mktemp "$d"/{sub}/.hosts.toml.k3sreg.XXXXXX)')
        parts.append(_embed("t", content) + _check("t", content).rstrip("\n"))
        parts.append(f'chmod 600 "$t"; mv -f "$t" "$d"/{target}; t=""')
    parts.append("trap - EXIT")
    return wrap("\n".join(parts))


def files_state_script(paths: Sequence[PurePosixPath]) -> str:
    """Print `<sha256> <uid> <mode> <path>` for each of `paths` (`- - - <path>` when it is missing)."""
    listed = " ".join(shlex.quote(str(p)) for p in paths)
    return wrap(f"""echo {MARK}
for f in {listed}; do
  if [ -f "$f" ]; then
    printf '%s %s %s\\n' "$(sha256sum "$f" | cut -d" " -f1)" "$(stat -c '%u %a' "$f")" "$f"
  else
    printf -- '- - - %s\\n' "$f"
  fi
done""")


@dataclass(frozen=True)
class NodeFileState:
    """What `files_state_script` found for one file: None fields when it is missing."""

    sha256: str | None
    uid: int | None
    mode: int | None


def parse_files_state(output: bytes) -> dict[str, NodeFileState]:
    """Parse the output of `files_state_script`, by path."""
    found: dict[str, NodeFileState] = {}
    for line in _after_mark(output).decode("utf-8", "replace").splitlines():
        parts = line.split(" ", 3)
        if len(parts) != 4:
            raise ValueError(f"unexpected answer from the node: {line[:80]!r}")
        digest, uid, mode, path = parts
        found[path] = NodeFileState(None, None, None) if digest == "-" else NodeFileState(digest, int(uid),
                                                                                         int(mode, 8))
    return found


def files_write_script(files: Mapping[PurePosixPath, tuple[bytes, int]]) -> str:
    """Install each file (content, mode) atomically as root:root with its mode, its directory created if needed."""
    parts = ["umask 077", "t=''", "trap 'rm -f \"$t\"' EXIT"]
    for path, (content, mode) in sorted(files.items()):
        d, f = shlex.quote(str(path.parent)), shlex.quote(str(path))
        parts.append(f"mkdir -p {d}")
        parts.append(f"t=$(mktemp {d}/.{shlex.quote(path.name)}.k3sreg.XXXXXX)")
        parts.append(_embed("t", content) + _check("t", content).rstrip("\n"))
        parts.append(f'chown 0:0 "$t"; chmod {mode:o} "$t"; mv -f "$t" {f}; t=""')
    parts.append("sync")
    parts.append("trap - EXIT")
    return wrap("\n".join(parts))
