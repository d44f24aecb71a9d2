"""Inventories: our YAML, and k3s-ansible's YAML and INI forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from k3sreg.errors import ConfigError, UsageError
from k3sreg.k3s.rollout.ansible import expand_host_pattern
from k3sreg.k3s.rollout.inventory import load_inventory, parse_inventory, select_nodes
from k3sreg.k3s.rollout.model import Node, certs_d_path, registries_path, service_for, unit_candidates

OURS = """
defaults: {user: root, port: 2222, key_file: keys/id, flavor: k3s}
nodes:
  - {name: cp1, address: 10.0.0.11, role: server}
  - {address: 10.0.0.21, role: agent, user: ubuntu}
  - {name: w2, address: 10.0.0.22, user: ubuntu, sudo: false, port: 22, key_file: /abs/key, flavor: rke2}
"""

K3S_ANSIBLE_YAML = """
---
k3s_cluster:
  children:
    server:
      hosts:
        192.16.35.11:
          ansible_user: admin
    agent:
      hosts:
        192.16.35.12:
        worker-b:
          ansible_host: 192.16.35.13
          ansible_become: false
      vars:
        ansible_port: 2200
  vars:
    ansible_port: 22
    ansible_user: debian
    ansible_become: true
    ansible_ssh_private_key_file: ~/.ssh/k3s
    k3s_version: v1.30.2+k3s1
    api_endpoint: "{{ hostvars[groups['server'][0]]['ansible_host'] | default(groups['server'][0]) }}"
"""

K3S_ANSIBLE_INI = """
# classic k3s-ansible hosts.ini
[master]
192.16.35.11 ansible_user=root

[node]
worker[01:02].lan ansible_port=2201
192.16.35.20

[k3s_cluster:children]
master
node

[k3s_cluster:vars]
ansible_user=ubuntu
ansible_become=True
k3sreg_flavor=rke2
"""


def test_our_yaml_applies_defaults_and_per_node_overrides() -> None:
    """Our inventory: defaults fill gaps, node keys win, names default to the address, key paths resolve."""
    nodes = parse_inventory(OURS, base_dir=Path("/inv"))
    assert nodes[0] == Node("cp1", "10.0.0.11", 2222, "root", "/inv/keys/id", False, "server", "k3s")
    assert nodes[1] == Node("10.0.0.21", "10.0.0.21", 2222, "ubuntu", "/inv/keys/id", True, "agent", "k3s")
    assert nodes[2] == Node("w2", "10.0.0.22", 22, "ubuntu", "/abs/key", False, None, "rke2")


def test_our_yaml_accepts_a_mapping_of_nodes() -> None:
    """`nodes` may map names to entries."""
    nodes = parse_inventory("nodes:\n  a: {address: 1.2.3.4}\n  b: {address: 1.2.3.5, role: agent}\n")
    assert [(n.name, n.address, n.role) for n in nodes] == [("a", "1.2.3.4", None), ("b", "1.2.3.5", "agent")]


def test_our_yaml_reports_every_problem_with_its_path() -> None:
    """Unknown keys, bad roles and bad ports are all reported at once, each with its location."""
    text = "defaults: {prot: 22}\nnodes:\n  - {address: a, role: master}\n  - {address: b, port: 0}\n"
    with pytest.raises(ConfigError) as info:
        parse_inventory(text, source="inv.yaml")
    joined = "\n".join(info.value.problems)
    assert "defaults.prot" in joined
    assert "nodes[0].role" in joined
    assert "nodes[1].port" in joined


def test_duplicate_node_names_are_refused() -> None:
    """Two nodes with one name cannot be told apart in reports or on the command line."""
    with pytest.raises(ConfigError, match="listed twice: a"):
        parse_inventory("nodes:\n  - {name: a, address: 1.1.1.1}\n  - {name: a, address: 1.1.1.2}\n")


def test_k3s_ansible_yaml_groups_and_variable_precedence() -> None:
    """k3s-ansible YAML: server/agent groups give roles; child group vars beat parent vars; host vars win."""
    nodes = {n.name: n for n in parse_inventory(K3S_ANSIBLE_YAML)}
    assert set(nodes) == {"192.16.35.11", "192.16.35.12", "worker-b"}
    cp = nodes["192.16.35.11"]
    assert (cp.role, cp.user, cp.port, cp.sudo, cp.key_file) == ("server", "admin", 22, True, "~/.ssh/k3s")
    w1 = nodes["192.16.35.12"]
    assert (w1.role, w1.user, w1.port, w1.sudo, w1.address) == ("agent", "debian", 2200, True, "192.16.35.12")
    wb = nodes["worker-b"]
    assert (wb.address, wb.sudo, wb.flavor) == ("192.16.35.13", False, None)


def test_k3s_ansible_ini_legacy_groups_ranges_and_vars() -> None:
    """k3s-ansible INI: master/node groups, host ranges, inline host vars over [group:vars]."""
    nodes = parse_inventory(K3S_ANSIBLE_INI, ini=True)
    got = [(n.name, n.role, n.user, n.port, n.sudo, n.flavor) for n in nodes]
    assert got == [
        ("192.16.35.11", "server", "root", 22, True, "rke2"),
        ("worker01.lan", "agent", "ubuntu", 2201, True, "rke2"),
        ("worker02.lan", "agent", "ubuntu", 2201, True, "rke2"),
        ("192.16.35.20", "agent", "ubuntu", 22, True, "rke2"),
    ]


def test_templated_connection_values_are_reported_not_guessed() -> None:
    """A Jinja value in a variable the rollout needs cannot be evaluated: the host is named in the error."""
    text = "all:\n  children:\n    server:\n      hosts:\n        a:\n          ansible_host: '{{ x }}'\n"
    with pytest.raises(ConfigError, match="host a: ansible_host is a template"):
        parse_inventory(text)


def test_an_ansible_inventory_without_k3s_groups_is_an_error() -> None:
    """Hosts outside server/agent groups are not nodes; none at all is an error."""
    with pytest.raises(ConfigError, match="no host in a `server` or `agent` group"):
        parse_inventory("[web]\nhost1\n", ini=True)


def test_host_in_both_server_and_agent_groups_is_an_error() -> None:
    """A host cannot run both services."""
    with pytest.raises(ConfigError, match="both a server and an agent"):
        parse_inventory("[server]\nh\n[agent]\nh\n", ini=True)


def test_format_is_detected_from_suffix_and_content(tmp_path: Path) -> None:
    """`.ini` or a leading `[group]` line means INI; otherwise YAML (ours when it has `nodes`)."""
    (tmp_path / "hosts").write_text("# c\n[server]\n10.1.1.1\n")
    (tmp_path / "inv.yml").write_text(K3S_ANSIBLE_YAML)
    (tmp_path / "ours.yaml").write_text(OURS)
    assert [n.address for n in load_inventory(tmp_path / "hosts")] == ["10.1.1.1"]
    assert len(load_inventory(tmp_path / "inv.yml")) == 3
    assert load_inventory(tmp_path / "ours.yaml")[0].key_file == str(tmp_path / "keys/id")
    with pytest.raises(UsageError, match="cannot read inventory"):
        load_inventory(tmp_path / "missing.yaml")


def test_host_patterns_expand_like_ansible() -> None:
    """Numeric ranges keep zero padding; letter ranges and steps work."""
    assert expand_host_pattern("w[08:10].lan") == ["w08.lan", "w09.lan", "w10.lan"]
    assert expand_host_pattern("db-[a:c]") == ["db-a", "db-b", "db-c"]
    assert expand_host_pattern("n[1:5:2]") == ["n1", "n3", "n5"]
    assert expand_host_pattern("plain") == ["plain"]


def test_select_nodes_by_name_or_address() -> None:
    """Selection keeps inventory order and refuses unknown names."""
    nodes = parse_inventory(OURS)
    assert [n.name for n in select_nodes(nodes, ["w2", "10.0.0.11"])] == ["cp1", "w2"]
    assert select_nodes(nodes, []) == nodes
    with pytest.raises(UsageError, match="not in the inventory: nope"):
        select_nodes(nodes, ["nope"])


def test_flavor_paths_and_services() -> None:
    """The role picks the unit, the flavor the paths: k3s/k3s-agent, rke2-server/rke2-agent."""
    assert [service_for("k3s", "server"), service_for("k3s", "agent")] == ["k3s", "k3s-agent"]
    assert [service_for("rke2", "server"), service_for("rke2", "agent")] == ["rke2-server", "rke2-agent"]
    assert str(registries_path("rke2")) == "/etc/rancher/rke2/registries.yaml"
    assert str(certs_d_path("k3s")) == "/var/lib/rancher/k3s/agent/etc/containerd/certs.d"
    assert [s for _, _, s in unit_candidates(None, "agent")] == ["k3s-agent", "rke2-agent"]
    assert [s for _, _, s in unit_candidates("rke2", None)] == ["rke2-server", "rke2-agent"]


def test_our_yaml_problems_have_file_line_column_and_nearest_key() -> None:
    """Each problem reads `file:line:column: key.path: what is wrong`, in file order, with 'did you mean'."""
    text = ("defaults: {usr: root}\nnodes:\n  - {address: 10.0.0.1, role: master}\n"
            "  - address: 10.0.0.2\n    prot: 22\n    port: 0\n")
    with pytest.raises(ConfigError) as info:
        parse_inventory(text, source="inv.yaml")
    assert info.value.problems == [
        "inv.yaml:1:12: defaults.usr: unknown key; did you mean 'user'?",
        "inv.yaml:3:25: nodes[0].role: expected one of 'server' or 'agent', got 'master'",
        "inv.yaml:5:5: nodes[1].prot: unknown key; did you mean 'port'?",
        "inv.yaml:6:5: nodes[1].port: must be greater than or equal to 1, got 0",
    ]


def test_mapping_form_problems_name_the_node_key() -> None:
    """In the `nodes:` mapping form, problems name the node by its key; a missing address points at it."""
    with pytest.raises(ConfigError) as info:
        parse_inventory("nodes:\n  cp1: {adress: 10.0.0.1}\n", source="inv.yaml")
    assert info.value.problems == [
        "inv.yaml:2:3: nodes.cp1.address: required key is missing",
        "inv.yaml:2:9: nodes.cp1.adress: unknown key; did you mean 'address'?",
    ]


def test_yaml_syntax_error_has_its_position() -> None:
    """A YAML syntax error is one line with file, line and column, not a multi-line parser dump."""
    with pytest.raises(ConfigError) as info:
        parse_inventory("nodes:\n  - {address: 10.0.0.1\n", source="inv.yaml")
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("inv.yaml:3:1: YAML syntax error: ")


def test_ansible_yaml_unknown_group_keys_and_wrong_shapes() -> None:
    """A misspelt group key (Ansible skips it) and a host list instead of a mapping are reported with position."""
    text = ("k3s_cluster:\n  children:\n    server:\n      host:\n        10.0.0.1:\n"
            "    agent:\n      hosts: [10.0.0.2]\n")
    with pytest.raises(ConfigError) as info:
        parse_inventory(text, source="hosts.yaml")
    assert info.value.problems == [
        "hosts.yaml:4:7: k3s_cluster.children.server.host: unknown key in group server (Ansible skips it); "
        "did you mean 'hosts'?",
        "hosts.yaml:7:7: k3s_cluster.children.agent.hosts: expected a mapping of host names, got a list",
    ]
