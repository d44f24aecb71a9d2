"""Facts as a node's script would report them, built in memory for the checks' unit tests."""

from __future__ import annotations

from k3sreg.doctor.gather import Facts, FileFact, Lookup

CERTS = "/var/lib/rancher/k3s/agent/etc/containerd/certs.d"
CONFIG_TOML = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
REGISTRIES = "/etc/rancher/k3s/registries.yaml"


def facts(files: dict[str, str | bytes] | None = None, dirs: tuple[str, ...] = (), mtimes: dict[str, int] | None = None,
          commands: dict[str, tuple[int, str]] | None = None, names: dict[str, tuple[str, ...] | None] | None = None,
          modes: dict[str, int] | None = None) -> Facts:
    """Facts holding `files` (root-owned, 0600 unless `modes` says), `dirs`, `commands` and name lookups
    (None: not found)."""
    out = Facts(hostname="n1")
    for path, content in (files or {}).items():
        data = content.encode() if isinstance(content, str) else content
        out.files[path] = FileFact(path, "present", 0, (modes or {}).get(path, 0o600), (mtimes or {}).get(path, 1000),
                                   data)
    for d in dirs:
        out.dirs[d] = "present"
    out.commands.update(commands or {})
    for name, addresses in (names or {}).items():
        out.names[name] = Lookup(name, 2 if addresses is None else 0, addresses or ())
    return out


K3S_VERSION = {"k3s --version": (0, "k3s version v1.31.4+k3s1 (a562d090)\ngo version go1.22.9\n"),
               "k3s ctr --version": (0, "ctr github.com/k3s-io/containerd v1.7.23-k3s2\n")}
