"""`k3sreg nodes plan|apply|status|rollback` against real sshd nodes in network namespaces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from k3sreg.cli.main import app
from tests.peers.netns_nodes import NodeCluster, SimNode, netns_nodes  # noqa: F401  (session fixture)

pytestmark = pytest.mark.peers
K3S_FILE = "/etc/rancher/k3s/registries.yaml"
RKE2_FILE = "/etc/rancher/rke2/registries.yaml"


def registries(cluster: NodeCluster, port: int = 5000, password: str = "hunter2") -> bytes:
    """A valid registries.yaml pointing docker.io at a mirror on the host's bridge address."""
    return (f'mirrors:\n  docker.io:\n    endpoint:\n      - "http://{cluster.host_address}:{port}"\n'
            f'configs:\n  "{cluster.host_address}:{port}":\n    auth:\n      username: robot\n'
            f"      password: {password}\n").encode()


def write(cluster: NodeCluster, name: str, content: bytes) -> Path:
    """A registries file in the cluster's work directory."""
    path = cluster.workdir / name
    path.write_bytes(content)
    return path


def nodes_cli(cluster: NodeCluster, *args: str, known_hosts: Path | None = None) -> tuple[int, dict[str, Any]]:
    """Run `k3sreg nodes ARGS --json` in process; return the exit code and the JSON document."""
    kh = known_hosts or cluster.known_hosts
    # Defaults first, so that a test's own `--connect-timeout` (given later) wins.
    command, *rest = args
    result = CliRunner().invoke(app, ["nodes", command, "--known-hosts", str(kh), "--connect-timeout", "10",
                                      "--json", *rest])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, json.loads(result.stdout)


def by_node(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Results keyed by node name."""
    return {r["node"]: r for r in doc["nodes"]}


def outcomes(doc: dict[str, Any]) -> dict[str, str]:
    """Node name -> outcome."""
    return {r["node"]: r["outcome"] for r in doc["nodes"]}


@pytest.fixture
def cluster(netns_nodes: NodeCluster) -> Iterator[NodeCluster]:  # noqa: F811
    """The session's nodes, each reset to a node that never saw k3sreg."""
    for node in netns_nodes.nodes:
        for directory in ("/etc/rancher", "/var/lib/rancher"):
            shutil.rmtree(node.path(directory), ignore_errors=True)
        node.path("/etc/k3sreg-fake/fail-restart").unlink(missing_ok=True)
        node.path("/etc/k3sreg-fake/inactive").unlink(missing_ok=True)
        node.path("/etc/k3sreg-fake/hang").unlink(missing_ok=True)
        node.clear_calls()
    yield netns_nodes


def node_pids(node: SimNode) -> list[int]:
    """The processes running in the node's network namespace."""
    out = subprocess.run(["ip", "netns", "pids", node.netns], capture_output=True, text=True, check=True).stdout
    return [int(pid) for pid in out.split() if Path(f"/proc/{pid}").exists()]


def stat_of(node: SimNode, path: str = K3S_FILE) -> tuple[bytes, int, int, int]:
    """(content, uid, gid, mode) of a file on the node."""
    st = node.path(path).stat()
    return node.path(path).read_bytes(), st.st_uid, st.st_gid, st.st_mode & 0o7777


def test_apply_writes_root_0600_on_every_node_and_restarts_each_roles_service(cluster: NodeCluster) -> None:
    """apply: the file with owner root and mode 0600 on every node; k3s restarted on the server, k3s-agent on agents."""
    desired = registries(cluster)
    src = str(write(cluster, "a.yaml", desired))
    code, doc = nodes_cli(cluster, "apply", "-i", str(cluster.inventory()), "-r", src)
    assert code == 0 and doc["ok"]
    assert outcomes(doc) == {"n1": "changed", "n2": "changed", "n3": "changed"}
    for node in cluster.nodes:
        assert stat_of(node) == (desired, 0, 0, 0o600)
    assert [n.restarts() for n in cluster.nodes] == [["k3s"], ["k3s-agent"], ["k3s-agent"]]
    assert all("is-active --quiet" in " ".join(n.systemctl_calls()) for n in cluster.nodes)


def test_second_apply_writes_nothing_and_restarts_nothing(cluster: NodeCluster) -> None:
    """An up-to-date node is not touched: same inode and mtime, no systemctl call at all."""
    args = ("apply", "-i", str(cluster.inventory()), "-r", str(write(cluster, "a.yaml", registries(cluster))))
    assert nodes_cli(cluster, *args)[0] == 0
    before = [(n.path(K3S_FILE).stat().st_ino, n.path(K3S_FILE).stat().st_mtime_ns) for n in cluster.nodes]
    for node in cluster.nodes:
        node.clear_calls()
    code, doc = nodes_cli(cluster, *args)
    assert code == 0
    assert outcomes(doc) == {"n1": "unchanged", "n2": "unchanged", "n3": "unchanged"}
    assert not any(r["restart"] for r in doc["nodes"])
    assert [(n.path(K3S_FILE).stat().st_ino, n.path(K3S_FILE).stat().st_mtime_ns) for n in cluster.nodes] == before
    assert [n.systemctl_calls() for n in cluster.nodes] == [[], [], []]


def test_a_changed_file_restarts_exactly_the_nodes_that_changed(cluster: NodeCluster) -> None:
    """After drift on one agent, apply rewrites and restarts that agent only."""
    a = write(cluster, "a.yaml", registries(cluster))
    inv = str(cluster.inventory())
    assert nodes_cli(cluster, "apply", "-i", inv, "-r", str(a))[0] == 0
    n2 = cluster.nodes[1]
    n2.path(K3S_FILE).write_bytes(b"mirrors: {}\n")
    for node in cluster.nodes:
        node.clear_calls()
    code, doc = nodes_cli(cluster, "apply", "-i", inv, "-r", str(a))
    assert code == 0
    assert outcomes(doc) == {"n1": "unchanged", "n2": "changed", "n3": "unchanged"}
    assert [n.restarts() for n in cluster.nodes] == [[], ["k3s-agent"], []]
    assert n2.path(K3S_FILE).read_bytes() == a.read_bytes()
    assert n2.path(K3S_FILE + ".k3sreg-backup").read_bytes() == b"mirrors: {}\n"


def test_rke2_flavor_uses_rke2_paths_and_services(cluster: NodeCluster) -> None:
    """flavor rke2: /etc/rancher/rke2/registries.yaml, and rke2-server / rke2-agent are restarted."""
    desired = registries(cluster)
    inv = str(cluster.inventory(flavor="rke2"))
    code, doc = nodes_cli(cluster, "apply", "-i", inv, "-r", str(write(cluster, "a.yaml", desired)))
    assert code == 0
    assert [r["service"] for r in doc["nodes"]] == ["rke2-server", "rke2-agent", "rke2-agent"]
    for node in cluster.nodes:
        assert stat_of(node, RKE2_FILE) == (desired, 0, 0, 0o600)
        assert not node.path(K3S_FILE).exists()
    assert [n.restarts() for n in cluster.nodes] == [["rke2-server"], ["rke2-agent"], ["rke2-agent"]]


def test_role_and_flavor_are_detected_from_the_installed_unit(cluster: NodeCluster) -> None:
    """With no role/flavor in the inventory, the installed k3s.service / k3s-agent.service decide."""
    inv = cluster.workdir / "bare.yaml"
    inv.write_text(yaml.safe_dump({"defaults": {"key_file": str(cluster.key_file)},
                                   "nodes": [{"name": n.name, "address": n.address} for n in cluster.nodes]}))
    code, doc = nodes_cli(cluster, "apply", "-i", str(inv), "-r", str(write(cluster, "a.yaml", registries(cluster))))
    assert code == 0
    assert [(r["role"], r["flavor"], r["service"]) for r in doc["nodes"]] == [
        ("server", "k3s", "k3s"), ("agent", "k3s", "k3s-agent"), ("agent", "k3s", "k3s-agent")]
    assert [n.restarts() for n in cluster.nodes] == [["k3s"], ["k3s-agent"], ["k3s-agent"]]
    inv.write_text(yaml.safe_dump({"defaults": {"key_file": str(cluster.key_file), "flavor": "rke2"},
                                   "nodes": [{"name": n.name, "address": n.address} for n in cluster.nodes]}))
    code, doc = nodes_cli(cluster, "status", "-i", str(inv), "-r", str(cluster.workdir / "a.yaml"))
    assert code == 1 and set(outcomes(doc).values()) == {"failed"}
    assert "no unit of rke2-server, rke2-agent installed" in doc["nodes"][0]["reason"]


def test_one_node_down_the_others_are_done_and_the_report_names_it(cluster: NodeCluster) -> None:
    """An unreachable node fails alone: the others are changed, the exit code is 1, the reason is given."""
    desired = registries(cluster)
    n3 = cluster.nodes[2]
    with n3.unplugged():
        code, doc = nodes_cli(cluster, "apply", "-i", str(cluster.inventory()), "-r",
                              str(write(cluster, "a.yaml", desired)), "--connect-timeout", "3")
    assert code == 1 and not doc["ok"]
    assert outcomes(doc) == {"n1": "changed", "n2": "changed", "n3": "failed"}
    assert "timed out after 3s" in by_node(doc)["n3"]["reason"]
    assert doc["summary"] == {"changed": 2, "failed": 1}
    assert not n3.path(K3S_FILE).exists()
    assert n3.restarts() == []


def test_a_failed_restart_is_reported_and_the_others_carry_on(cluster: NodeCluster) -> None:
    """When k3s-agent fails to restart on one node, that node is failed with the reason; others changed."""
    n2 = cluster.nodes[1]
    n2.path("/etc/k3sreg-fake/fail-restart").write_text("k3s-agent\n")
    desired = registries(cluster)
    src = str(write(cluster, "a.yaml", desired))
    code, doc = nodes_cli(cluster, "apply", "-i", str(cluster.inventory()), "-r", src)
    assert code == 1
    assert outcomes(doc) == {"n1": "changed", "n2": "failed", "n3": "changed"}
    assert "restart of k3s-agent failed" in by_node(doc)["n2"]["reason"]
    # The new file is whole and in place; the failure is the service's, not a half-written file.
    assert stat_of(n2) == (desired, 0, 0, 0o600)


def test_a_service_that_does_not_come_back_active_fails_after_the_restart_timeout(cluster: NodeCluster) -> None:
    """apply waits for `systemctl is-active`; a service still inactive after --restart-timeout fails the node."""
    cluster.nodes[2].path("/etc/k3sreg-fake/inactive").write_text("k3s-agent\n")
    src = str(write(cluster, "a.yaml", registries(cluster)))
    code, doc = nodes_cli(cluster, "apply", "--restart-timeout", "1", "-i", str(cluster.inventory()), "-r", src)
    assert code == 1
    assert outcomes(doc) == {"n1": "changed", "n2": "changed", "n3": "failed"}
    assert "k3s-agent is not active 1s after the restart" in by_node(doc)["n3"]["reason"]
    assert cluster.nodes[2].systemctl_calls().count("is-active --quiet k3s-agent") >= 2


def test_a_hanging_command_hits_the_command_timeout(cluster: NodeCluster) -> None:
    """A restart that never returns fails its node after the timeout; the others are not held up."""
    cluster.nodes[0].path("/etc/k3sreg-fake/hang").write_text("k3s\n")
    src = str(write(cluster, "a.yaml", registries(cluster)))
    started = time.monotonic()
    result = CliRunner().invoke(app, ["nodes", "apply", "--json", "--restart-timeout", "1", "--command-timeout", "3",
                                      "-i", str(cluster.inventory()), "-r", src,
                                      "--known-hosts", str(cluster.known_hosts)])
    doc = json.loads(result.stdout)
    assert result.exit_code == 1
    assert outcomes(doc) == {"n1": "failed", "n2": "changed", "n3": "changed"}
    # The restart may take its own timeout plus the command timeout: 1 + 3 s.
    assert by_node(doc)["n1"]["reason"] == "command timed out after 4s"
    assert time.monotonic() - started < 15
    # The hung command was stopped on the node too, not left to finish (and act) later.
    assert not any(Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\x0020")
                   for pid in node_pids(cluster.nodes[0]))
    assert cluster.nodes[0].systemctl_calls() == ["restart k3s"]


def test_a_file_with_the_right_content_but_loose_mode_is_secured_without_restart(cluster: NodeCluster) -> None:
    """Same bytes but mode 0644: apply makes it 0600 and restarts nothing."""
    src = str(write(cluster, "a.yaml", registries(cluster)))
    inv = str(cluster.inventory())
    assert nodes_cli(cluster, "apply", "-i", inv, "-r", src)[0] == 0
    n1 = cluster.nodes[0]
    n1.path(K3S_FILE).chmod(0o644)
    n1.clear_calls()
    code, doc = nodes_cli(cluster, "apply", "-i", inv, "-r", src)
    assert code == 0
    assert (by_node(doc)["n1"]["outcome"], by_node(doc)["n1"]["action"], by_node(doc)["n1"]["restart"]) == (
        "changed", "secure", False)
    assert stat_of(n1)[1:] == (0, 0, 0o600)
    assert n1.restarts() == []


def test_keys_can_come_from_the_ssh_agent(cluster: NodeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no key file anywhere, the key held by ssh-agent (SSH_AUTH_SOCK) logs in."""
    sock = cluster.workdir / "agent.sock"
    sock.unlink(missing_ok=True)
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(cluster.key_file)], check=True, env=env, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(cluster.workdir / "nohome"))  # no default ~/.ssh keys either
        inv = cluster.workdir / "agent.yaml"
        inv.write_text(yaml.safe_dump({"nodes": [{"name": n.name, "address": n.address, "role": n.role}
                                                 for n in cluster.nodes]}))
        src = str(write(cluster, "a.yaml", registries(cluster)))
        code, doc = nodes_cli(cluster, "apply", "-i", str(inv), "-r", src)
        assert code == 0, doc["nodes"][0]["reason"]
        code, doc = nodes_cli(cluster, "status", "--no-agent", "-i", str(inv), "-r", src)
        assert code == 1 and "authentication failed" in doc["nodes"][0]["reason"]
    finally:
        agent.terminate()
        agent.wait(5)


def test_rolling_stops_at_the_first_failure(cluster: NodeCluster) -> None:
    """--rolling: servers first, one at a time; after a failure the remaining nodes are skipped, untouched."""
    cluster.nodes[0].path("/etc/k3sreg-fake/fail-restart").write_text("k3s\n")
    code, doc = nodes_cli(cluster, "apply", "--rolling", "-i", str(cluster.inventory()), "-r",
                          str(write(cluster, "a.yaml", registries(cluster))))
    assert code == 1
    assert outcomes(doc) == {"n1": "failed", "n2": "skipped", "n3": "skipped"}
    assert "--rolling" in by_node(doc)["n2"]["reason"]
    assert not cluster.nodes[1].path(K3S_FILE).exists() and not cluster.nodes[2].path(K3S_FILE).exists()


def test_a_wrong_host_key_is_refused(cluster: NodeCluster) -> None:
    """A node whose key differs from known_hosts is refused (nothing written); the others proceed."""
    other = cluster.workdir / "other_key"
    if not other.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    fake = other.with_suffix(".pub").read_text().split()[:2]
    lines = cluster.known_hosts.read_text().splitlines()
    n2 = cluster.nodes[1]
    wrong = cluster.workdir / "known_hosts_wrong"
    wrong.write_text("".join(f"{n2.address} {' '.join(fake)}\n" if line.startswith(n2.address + " ") else line + "\n"
                             for line in lines))
    code, doc = nodes_cli(cluster, "apply", "-i", str(cluster.inventory()), "-r",
                          str(write(cluster, "a.yaml", registries(cluster))), known_hosts=wrong)
    assert code == 1
    assert outcomes(doc) == {"n1": "changed", "n2": "failed", "n3": "changed"}
    assert "host key mismatch" in by_node(doc)["n2"]["reason"]
    assert not n2.path(K3S_FILE).exists()


def test_unknown_host_keys_need_the_explicit_option(cluster: NodeCluster) -> None:
    """Hosts missing from known_hosts are refused; --accept-new-host-keys records their keys, which then hold."""
    empty = cluster.workdir / "known_hosts_new"
    empty.unlink(missing_ok=True)
    args = ["status", "-i", str(cluster.inventory()), "-r", str(write(cluster, "a.yaml", registries(cluster)))]
    code, doc = nodes_cli(cluster, *args, known_hosts=empty)
    assert code == 1 and set(outcomes(doc).values()) == {"unreachable"}
    assert "--accept-new-host-keys" in doc["nodes"][0]["reason"]
    code, doc = nodes_cli(cluster, *args, "--accept-new-host-keys", known_hosts=empty)
    assert set(outcomes(doc).values()) == {"missing"}
    recorded = sorted(line.split()[:2][0] for line in empty.read_text().splitlines())
    assert recorded == sorted(n.address for n in cluster.nodes)
    assert sorted(empty.read_text().splitlines()) == sorted(cluster.known_hosts.read_text().splitlines())
    code, doc = nodes_cli(cluster, *args, known_hosts=empty)
    assert set(outcomes(doc).values()) == {"missing"}


def test_rollback_restores_the_previous_file_and_restarts(cluster: NodeCluster) -> None:
    """rollback puts back the version the last apply replaced on the named nodes only, and restarts them."""
    inv = str(cluster.inventory())
    first, second = registries(cluster), registries(cluster, port=5001)
    assert nodes_cli(cluster, "apply", "-i", inv, "-r", str(write(cluster, "a.yaml", first)))[0] == 0
    assert nodes_cli(cluster, "apply", "-i", inv, "-r", str(write(cluster, "b.yaml", second)))[0] == 0
    for node in cluster.nodes:
        node.clear_calls()
    code, doc = nodes_cli(cluster, "rollback", "-i", inv, "n1", "n3")
    assert code == 0
    assert outcomes(doc) == {"n1": "rolled-back", "n3": "rolled-back"}
    assert [stat_of(n)[0] for n in cluster.nodes] == [first, second, first]
    assert [stat_of(n)[1:] for n in cluster.nodes] == [(0, 0, 0o600)] * 3
    assert [n.restarts() for n in cluster.nodes] == [["k3s"], [], ["k3s-agent"]]


def test_rollback_without_backup_fails_for_that_node(cluster: NodeCluster) -> None:
    """A node k3sreg never wrote to has nothing to roll back to: failed with the reason, exit 1."""
    code, doc = nodes_cli(cluster, "rollback", "-i", str(cluster.inventory()), "n2")
    assert code == 1
    assert "no backup" in by_node(doc)["n2"]["reason"]


def test_a_non_root_user_goes_through_sudo(cluster: NodeCluster) -> None:
    """A user with sudo writes a root-owned 0600 file; without sudo the node fails with the permission error."""
    n2 = cluster.nodes[1]
    if not n2.path("/etc/sudoers.d/deploy").exists():
        n2.add_sudo_user("deploy")
    desired = registries(cluster)
    src = str(write(cluster, "a.yaml", desired))
    inv = cluster.workdir / "sudo.yaml"
    entry = {"name": n2.name, "address": n2.address, "role": "agent", "user": "deploy"}
    defaults = {"key_file": str(cluster.key_file)}
    inv.write_text(yaml.safe_dump({"defaults": defaults, "nodes": [{**entry, "sudo": False}]}))
    code, doc = nodes_cli(cluster, "apply", "-i", str(inv), "-r", src)
    reason = doc["nodes"][0]["reason"]
    assert code == 1 and "Permission denied" in reason and "authentication" not in reason, reason
    inv.write_text(yaml.safe_dump({"defaults": {"key_file": str(cluster.key_file)}, "nodes": [entry]}))
    code, doc = nodes_cli(cluster, "apply", "-i", str(inv), "-r", src)
    assert code == 0, doc["nodes"][0]["reason"]
    assert stat_of(n2) == (desired, 0, 0, 0o600)
    assert n2.restarts() == ["k3s-agent"]


def test_plan_and_dry_run_change_nothing_and_mask_credentials(cluster: NodeCluster) -> None:
    """plan / apply --dry-run: would-change with a masked diff and the restart to come; no file, no systemctl."""
    src = str(write(cluster, "a.yaml", registries(cluster)))
    inv = str(cluster.inventory())
    code, doc = nodes_cli(cluster, "plan", "-i", inv, "-r", src)
    assert code == 0
    assert outcomes(doc) == {"n1": "would-change", "n2": "would-change", "n3": "would-change"}
    assert all(r["restart"] and r["action"] == "create" for r in doc["nodes"])
    assert "+      password: ***" in doc["nodes"][0]["diff"] and "hunter2" not in json.dumps(doc)
    code, doc = nodes_cli(cluster, "apply", "--dry-run", "-i", inv, "-r", src)
    assert code == 0 and set(outcomes(doc).values()) == {"would-change"}
    for node in cluster.nodes:
        assert not node.path("/etc/rancher").exists()
        assert node.systemctl_calls() == []


def test_status_reports_in_sync_differs_and_unreachable(cluster: NodeCluster) -> None:
    """status is a drift report: in-sync, differs (with a diff), unreachable; exit 1 when any is not in sync."""
    src = str(write(cluster, "a.yaml", registries(cluster)))
    inv = str(cluster.inventory())
    assert nodes_cli(cluster, "apply", "-i", inv, "-r", src)[0] == 0
    code, doc = nodes_cli(cluster, "status", "-i", inv, "-r", src)
    assert code == 0 and set(outcomes(doc).values()) == {"in-sync"}
    cluster.nodes[1].path(K3S_FILE).write_bytes(b"mirrors: {}\n")
    with cluster.nodes[2].unplugged():
        code, doc = nodes_cli(cluster, "status", "-i", inv, "-r", src, "--connect-timeout", "3")
    assert code == 1
    assert outcomes(doc) == {"n1": "in-sync", "n2": "differs", "n3": "unreachable"}
    assert "-mirrors: {}" in by_node(doc)["n2"]["diff"]


def test_ansible_ini_inventory_drives_a_rollout(cluster: NodeCluster) -> None:
    """A k3s-ansible INI inventory (server/agent groups, group vars) works as it is."""
    ini = cluster.workdir / "hosts.ini"
    n1, n2, n3 = cluster.nodes
    ini.write_text(f"[server]\n{n1.address}\n\n[agent]\n{n2.address}\n{n3.address}\n\n"
                   f"[k3s_cluster:children]\nserver\nagent\n\n[k3s_cluster:vars]\nansible_user=root\n"
                   f"ansible_ssh_private_key_file={cluster.key_file}\n")
    code, doc = nodes_cli(cluster, "apply", "-i", str(ini), "-r", str(write(cluster, "a.yaml", registries(cluster))))
    assert code == 0
    assert [(r["node"], r["service"], r["outcome"]) for r in doc["nodes"]] == [
        (n1.address, "k3s", "changed"), (n2.address, "k3s-agent", "changed"), (n3.address, "k3s-agent", "changed")]


def test_an_invalid_file_is_refused_before_any_node_is_contacted(cluster: NodeCluster) -> None:
    """apply validates first: a file K3s would refuse gives exit 2 and one line per problem, nodes untouched."""
    bad = write(cluster, "bad.yaml", b"mirrors:\n  docker.io:\n    endpoint: \"http://x\"\n")
    cmd = [sys.executable, "-c", "from k3sreg.cli.main import run; run()", "nodes", "apply",
           "-i", str(cluster.inventory()), "-r", str(bad), "--known-hosts", str(cluster.known_hosts)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 2, done.stderr
    assert "error:" in done.stderr and "endpoint" in done.stderr and "Traceback" not in done.stderr
    assert all(not n.path("/etc/rancher").exists() for n in cluster.nodes)
