"""A K3s stand-in on a simulated node (`tests.peers.netns_nodes.SimNode`): what a started K3s leaves on disk.

    stand_in(node, registries_yaml, config=None, version="v1.31.4+k3s1", containerd="v1.7.23-k3s2",
             started=True, hosts={"registry.lan": "10.231.X.1"}, files={"/etc/rancher/k3s/ca.crt": b"..."})

writes, as K3s would have them after its last start:
  * /etc/rancher/k3s/registries.yaml (root 0600), a minute older than what K3s generated from it;
  * /etc/rancher/k3s/config.yaml from `config` (e.g. {"embedded-registry": True}) when given;
  * with `started`: the hosts.toml files K3s writes, made by `k3sreg mirrors render` with the options of
    config.yaml (--disable-default-endpoint, --embedded-registry) into
    /var/lib/rancher/k3s/agent/etc/containerd/certs.d, and containerd's config.toml there with the
    credentials stanzas K3s writes (`containerd_auth_toml`) and `config_path`;
  * /usr/local/sbin/k3s: a fake binary answering `k3s --version` and `k3s ctr --version`;
  * `hosts` appended to the node's /etc/hosts (its private /etc overlay), `files` written as given.

`reset(node)` takes all of it away again (`reset_hosts(node)` restores /etc/hosts alone). `touch(node, path)`
moves a file's mtime to now, as an edit after K3s's last start would; `start(node, no_default, embedded)` is a
restart.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from typing import Any

import yaml
from typer.testing import CliRunner

from k3sreg.cli.main import app
from k3sreg.k3s import containerd_auth_toml, load_registries
from tests.peers.netns_nodes import SimNode

REGISTRIES = "/etc/rancher/k3s/registries.yaml"
CONFIG = "/etc/rancher/k3s/config.yaml"
CONTAINERD = "/var/lib/rancher/k3s/agent/etc/containerd"
CERTS_D = f"{CONTAINERD}/certs.d"
FAKE_K3S = """#!/bin/sh
case "$*" in
  --version|-v|version) printf 'k3s version {version} (0123abcd)\\ngo version go1.22.9\\n' ;;
  "ctr --version"|"ctr -v") echo "ctr github.com/k3s-io/containerd {containerd}" ;;
  *) echo "fake k3s: $*" >&2; exit 1 ;;
esac
"""
_ORIGINAL_HOSTS: dict[int, str] = {}


def _write(node: SimNode, path: str, content: bytes, mode: int = 0o644) -> None:
    target = node.path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    os.chown(target, 0, 0)
    target.chmod(mode)


def reset(node: SimNode) -> None:
    """The node as before any stand-in: no K3s files, no fake binary, its original /etc/hosts."""
    for directory in ("/etc/rancher", "/var/lib/rancher"):
        shutil.rmtree(node.path(directory), ignore_errors=True)
    node.path("/usr/local/sbin/k3s").unlink(missing_ok=True)
    reset_hosts(node)


def reset_hosts(node: SimNode) -> None:
    """The node's /etc/hosts as it was before the first stand-in."""
    hosts = node.path("/etc/hosts")
    hosts.write_text(_ORIGINAL_HOSTS.setdefault(node.pid, hosts.read_text()))


def touch(node: SimNode, path: str, when: float | None = None) -> None:
    """Set `path`'s mtime on the node to `when` (now)."""
    moment = time.time() if when is None else when
    os.utime(node.path(path), (moment, moment))


def stand_in(node: SimNode, registries_yaml: str | None, config: Mapping[str, Any] | None = None,
             version: str = "v1.31.4+k3s1", containerd: str = "v1.7.23-k3s2", started: bool = True,
             hosts: Mapping[str, str] | None = None, files: Mapping[str, bytes] | None = None,
             embedded: bool | None = None) -> None:
    """Make `node` look like a node whose K3s started with `registries_yaml` (None: no file) and `config`;
    `embedded` renders the embedded registry's mirror (default: config.yaml's `embedded-registry`; an agent
    gets it from its server)."""
    reset(node)
    for path, content in (files or {}).items():
        _write(node, path, content)
    if config is not None:
        _write(node, CONFIG, yaml.safe_dump(dict(config)).encode())
    if registries_yaml is not None:
        _write(node, REGISTRIES, registries_yaml.encode(), 0o600)
        touch(node, REGISTRIES, time.time() - 60)
    _write(node, "/usr/local/sbin/k3s", FAKE_K3S.format(version=version, containerd=containerd).encode(), 0o755)
    if hosts:
        with node.path("/etc/hosts").open("a") as f:
            f.writelines(f"{address} {name}\n" for name, address in hosts.items())
    if started and registries_yaml is not None:
        config = config or {}
        start(node, bool(config.get("disable-default-registry-endpoint")),
              bool(config.get("embedded-registry")) if embedded is None else embedded)


def start(node: SimNode, no_default: bool = False, embedded: bool = False) -> None:
    """What K3s does with registries.yaml when it starts: hosts.toml (via `mirrors render`) and config.toml."""
    args = ["mirrors", "render", str(node.path(REGISTRIES)), "--out", str(node.path(CERTS_D))]
    if no_default:
        args.append("--disable-default-endpoint")
    if embedded:
        args.append("--embedded-registry")
    node.path(CERTS_D).mkdir(parents=True, exist_ok=True)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    registries = load_registries(node.path(REGISTRIES).read_text())
    toml = (containerd_auth_toml(registries, version=2)
            + f'\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "{CERTS_D}"\n')
    _write(node, f"{CONTAINERD}/config.toml", toml.encode(), 0o600)

