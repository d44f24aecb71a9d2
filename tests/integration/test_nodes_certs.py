"""The nodes get the trust (issue 10 part 4): `k3sreg mirrors init` writes the CA, the node certificate and the
credentials (password from the environment), and `k3sreg nodes apply --certs DIR` installs the files it names
on every node (root, 0644, keys 0600) before registries.yaml; an unchanged CA restarts nothing, and a renewed
one alone is written without a restart. Real sshd nodes in network namespaces (tests/peers/netns_nodes.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from k3sreg.cli.main import app
from tests.integration.auth_harness import PASSWORDS, leaks, make_pki
from tests.peers.netns_nodes import NodeCluster, netns_nodes  # noqa: F401  (session fixture)
from tests.peers.registry import K3SREG_BIN

pytestmark = pytest.mark.peers
ETC = "/etc/rancher/k3s"
FILES = {f"{ETC}/ca.crt": 0o644, f"{ETC}/node1.crt": 0o644, f"{ETC}/node1.key": 0o600}


@pytest.fixture
def cluster(netns_nodes: NodeCluster) -> Iterator[NodeCluster]:  # noqa: F811
    """The session's nodes, reset to nodes that never saw k3sreg."""
    for node in netns_nodes.nodes:
        for directory in ("/etc/rancher", "/var/lib/rancher"):
            shutil.rmtree(node.path(directory), ignore_errors=True)
        node.clear_calls()
    yield netns_nodes


def init_registries(cluster: NodeCluster, out: Path) -> Path:
    """registries.yaml from `k3sreg mirrors init` (a subprocess: the password comes from its environment)."""
    env = {**os.environ, "K3SREG_NODES_PASSWORD": PASSWORDS["nodes"]}
    done = subprocess.run([str(K3SREG_BIN), "mirrors", "init", "-e", f"https://{cluster.host_address}:30500",
                           "-m", "docker.io", "--ca-file", f"{ETC}/ca.crt", "--cert-file", f"{ETC}/node1.crt",
                           "--key-file", f"{ETC}/node1.key", "--username", "nodes", "--password-env",
                           "K3SREG_NODES_PASSWORD", "-o", str(out)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert PASSWORDS["nodes"] not in done.stdout + done.stderr
    return out


def nodes_cli(cluster: NodeCluster, *args: str) -> tuple[int, dict[str, Any]]:
    """`k3sreg nodes ARGS --json` in process: exit code and document."""
    command, *rest = args
    result = CliRunner().invoke(app, ["nodes", command, "--known-hosts", str(cluster.known_hosts),
                                      "--connect-timeout", "10", "--json", *rest])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, json.loads(result.stdout)


def test_apply_installs_the_ca_and_node_certificates_before_registries_yaml(cluster: NodeCluster,
                                                                             tmp_path: Path) -> None:
    """Every node gets ca.crt and node1.crt (root 0644) and node1.key (root 0600) as written by `k3sreg
    certs`, then registries.yaml; the run restarts each node once and shows no secret."""
    pki = make_pki(tmp_path / "certs", hosts=(cluster.host_address,))
    src = init_registries(cluster, tmp_path / "registries.yaml")
    code, doc = nodes_cli(cluster, "apply", "-i", str(cluster.inventory()), "-r", str(src), "--certs",
                          str(pki.directory))
    assert code == 0, doc
    assert not leaks(json.dumps(doc))
    for node, result in zip(cluster.nodes, doc["nodes"], strict=True):
        assert result["outcome"] == "changed" and result["restart"] and sorted(result["files"]) == sorted(FILES)
        for path, mode in FILES.items():
            st = node.path(path).stat()
            assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, mode), path
            assert node.path(path).read_bytes() == pki.file(Path(path).name).read_bytes()
            assert st.st_mtime_ns <= node.path(f"{ETC}/registries.yaml").stat().st_mtime_ns
        assert len(node.restarts()) == 1
        assert not node.path(f"{ETC}/ca.key").exists()


def test_an_unchanged_ca_restarts_nothing_and_a_renewed_one_is_written_alone(cluster: NodeCluster,
                                                                            tmp_path: Path) -> None:
    """A second apply touches nothing (same inodes, no systemctl call); a renewed node certificate is written
    on every node with no restart (containerd reads it at each pull)."""
    pki = make_pki(tmp_path / "certs", hosts=(cluster.host_address,))
    src = init_registries(cluster, tmp_path / "registries.yaml")
    args = ("apply", "-i", str(cluster.inventory()), "-r", str(src), "--certs", str(pki.directory))
    assert nodes_cli(cluster, *args)[0] == 0
    inodes = [[n.path(p).stat().st_ino for p in FILES] for n in cluster.nodes]
    for node in cluster.nodes:
        node.clear_calls()
    code, doc = nodes_cli(cluster, *args)
    assert code == 0 and {r["outcome"] for r in doc["nodes"]} == {"unchanged"}
    assert [[n.path(p).stat().st_ino for p in FILES] for n in cluster.nodes] == inodes
    assert [n.systemctl_calls() for n in cluster.nodes] == [[], [], []]
    subprocess.run([str(K3SREG_BIN), "certs", "issue", "--client", "node1", "--force", "--dir", str(pki.directory)],
                   check=True, capture_output=True)
    code, doc = nodes_cli(cluster, *args)
    assert code == 0
    for node, result in zip(cluster.nodes, doc["nodes"], strict=True):
        assert (result["outcome"], result["restart"]) == ("changed", False)
        assert sorted(result["files"]) == [f"{ETC}/node1.crt", f"{ETC}/node1.key"]
        assert node.path(f"{ETC}/node1.crt").read_bytes() == pki.file("node1.crt").read_bytes()
        assert node.systemctl_calls() == []


def test_a_named_file_missing_here_is_refused_before_any_node(cluster: NodeCluster, tmp_path: Path) -> None:
    """--certs pointing at a directory without the files registries.yaml names: exit 2, one line per file,
    nodes untouched; the CA key is never shipped."""
    src = init_registries(cluster, tmp_path / "registries.yaml")
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([str(K3SREG_BIN), "nodes", "apply", "-i", str(cluster.inventory()), "-r", str(src),
                           "--certs", str(empty), "--known-hosts", str(cluster.known_hosts)],
                          capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "ca.crt does not exist" in done.stderr and "node1.key does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    assert all(not n.path("/etc/rancher").exists() for n in cluster.nodes)
    bad = tmp_path / "bad.yaml"
    bad.write_text(src.read_text().replace(f"{ETC}/node1.key", f"{ETC}/ca.key"))
    done = subprocess.run([str(K3SREG_BIN), "nodes", "apply", "-i", str(cluster.inventory()), "-r", str(bad),
                           "--certs", str(tmp_path), "--known-hosts", str(cluster.known_hosts)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "CA's private key" in done.stderr
