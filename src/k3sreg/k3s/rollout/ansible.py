"""Ansible inventories as k3s-ansible writes them, YAML and INI, reduced to k3sreg nodes.

Only what a rollout needs is read: group membership (`server`/`master` -> server, `agent`/`node` -> agent),
and the connection variables. Group variables are inherited by child groups and hosts; a child's value wins
over its parent's, a host's over every group's. Templated values (`{{ ... }}`) cannot be evaluated here and are
reported, not guessed.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from k3sreg.errors import ConfigError
from k3sreg.k3s.rollout.model import FLAVORS, Node, Role
from k3sreg.problems import Loc, key_path, nearest, position, show_value

SERVER_GROUPS = ("server", "master")
AGENT_GROUPS = ("agent", "node")
_GROUP_KEYS = ["hosts", "children", "vars"]
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass
class _Group:
    vars: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)


def load_ansible_yaml(data: dict[str, Any], source: str,
                      positions: Mapping[Loc, tuple[int, int]] | None = None) -> list[Node]:
    """Nodes of a YAML Ansible inventory (already parsed): groups with `hosts`, `children` and `vars`.

    `positions` (from `problems.yaml_positions`) puts the line and column of the key in each problem.
    """
    groups: dict[str, _Group] = {}
    problems: list[tuple[tuple[int, int], str]] = []

    def report(loc: Loc, message: str) -> None:
        at = position(positions or {}, loc)
        where = f"{source}:{at[0]}:{at[1]}" if at else source
        problems.append((at or (0, 0), f"{where}: {key_path(loc)}: {message}"))

    def mapping(loc: Loc, value: Any, what: str) -> dict[Any, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            report(loc, f"expected a mapping of {what}, got {show_value(value)}")
            return {}
        return value

    def visit(loc: Loc, name: str, body: Any) -> None:
        group = groups.setdefault(name, _Group())
        for key in mapping(loc, body, "hosts, children and vars"):
            if key not in _GROUP_KEYS:
                guess = nearest(str(key), _GROUP_KEYS)
                hint = f"did you mean '{guess}'?" if guess else f"valid keys here: {', '.join(_GROUP_KEYS)}"
                report((*loc, str(key)), f"unknown key in group {name} (Ansible skips it); {hint}")
        if not isinstance(body, dict):
            return
        group.vars.update(mapping((*loc, "vars"), body.get("vars"), "variables"))
        for host, hvars in mapping((*loc, "hosts"), body.get("hosts"), "host names").items():
            variables = mapping((*loc, "hosts", str(host)), hvars, "host variables")
            group.hosts.setdefault(str(host), {}).update(variables)
        for child, child_body in mapping((*loc, "children"), body.get("children"), "groups").items():
            group.children.append(str(child))
            visit((*loc, "children", str(child)), str(child), child_body)

    for name, body in data.items():
        visit((str(name),), str(name), body)
    if problems:
        raise ConfigError([message for _, message in sorted(problems)])
    return _resolve(groups, source)


def load_ansible_ini(text: str, source: str) -> list[Node]:
    """Nodes of an INI Ansible inventory: `[group]` host lines, `[group:vars]`, `[group:children]`."""
    groups: dict[str, _Group] = {"ungrouped": _Group()}
    problems: list[str] = []
    section, kind = "ungrouped", "hosts"
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section, _, kind = line[1:-1].partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                problems.append(f"{source}:{lineno}: unknown section kind :{kind}")
            groups.setdefault(section, _Group())
            continue
        group = groups[section]
        if kind == "children":
            group.children.append(line)
            groups.setdefault(line, _Group())
        elif kind == "vars":
            key, eq, value = line.partition("=")
            if not eq:
                problems.append(f"{source}:{lineno}: expected key=value in [{section}:vars]")
                continue
            group.vars[key.strip()] = _unquote(value.strip())
        else:
            try:
                words = shlex.split(line, comments=True)
            except ValueError as e:
                problems.append(f"{source}:{lineno}: {e}")
                continue
            hvars = {}
            for word in words[1:]:
                key, eq, value = word.partition("=")
                if not eq:
                    problems.append(f"{source}:{lineno}: expected key=value after the host name, got {word!r}")
                    continue
                hvars[key] = value
            for host in expand_host_pattern(words[0]):
                group.hosts.setdefault(host, {}).update(hvars)
    if problems:
        raise ConfigError(problems)
    return _resolve(groups, source)


def expand_host_pattern(pattern: str) -> list[str]:
    """Expand Ansible's `[01:03]` / `[a:c]` host ranges (`web[1:2].lan` -> web1.lan, web2.lan)."""
    m = re.search(r"\[([0-9a-z]+):([0-9a-z]+)(?::(\d+))?\]", pattern)
    if not m:
        return [pattern]
    start, end, step = m.group(1), m.group(2), int(m.group(3) or 1)
    head, tail = pattern[: m.start()], pattern[m.end():]
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") else 0
        items = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
    else:
        items = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    return [h for item in items for h in expand_host_pattern(head + item + tail)]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _resolve(groups: dict[str, _Group], source: str) -> list[Node]:
    depth = _depths(groups)
    membership: dict[str, set[str]] = {}
    order: list[str] = []
    for gname, group in groups.items():
        for host in group.hosts:
            if host not in membership:
                order.append(host)
            membership.setdefault(host, set()).add(gname)
    nodes, problems = [], []
    for host in order:
        direct = membership[host]
        all_groups = set(direct)
        for g in direct:
            all_groups |= _ancestors(groups, g)
        is_server = bool(all_groups & set(SERVER_GROUPS))
        is_agent = bool(all_groups & set(AGENT_GROUPS))
        if not (is_server or is_agent):
            continue
        if is_server and is_agent:
            problems.append(f"{source}: host {host} is in both a server and an agent group")
            continue
        hvars: dict[str, Any] = {}
        for g in sorted(all_groups | {"all"}, key=lambda g: depth.get(g, 0)):
            hvars.update(groups[g].vars if g in groups else {})
        for g in sorted(direct, key=lambda g: depth.get(g, 0)):
            hvars.update(groups[g].hosts[host])
        role: Role = "server" if is_server else "agent"
        node = _node(host, role, hvars, source, problems)
        if node is not None:
            nodes.append(node)
    if problems:
        raise ConfigError(problems)
    if not nodes:
        raise ConfigError([f"{source}: no host in a `server` or `agent` group (k3s-ansible layout)"])
    return nodes


def _node(host: str, role: Role, hvars: dict[str, Any], source: str, problems: list[str]) -> Node | None:
    def get(*keys: str) -> str | None:
        for key in keys:
            value = hvars.get(key)
            if value is not None:
                text = str(value)
                if "{{" in text:
                    problems.append(f"{source}: host {host}: {key} is a template ({text}); set a literal value")
                    return None
                return text
        return None

    user = get("ansible_user", "ansible_ssh_user") or "root"
    port_text = get("ansible_port", "ansible_ssh_port") or "22"
    become = get("ansible_become", "become")
    flavor = get("k3sreg_flavor")
    if not port_text.isdigit():
        problems.append(f"{source}: host {host}: ansible_port must be a number, got {port_text!r}")
        return None
    if flavor is not None and flavor not in FLAVORS:
        problems.append(f"{source}: host {host}: k3sreg_flavor must be one of {', '.join(FLAVORS)}")
        return None
    if become is not None and become.lower() not in _TRUE | _FALSE:
        problems.append(f"{source}: host {host}: ansible_become must be true or false, got {become!r}")
        return None
    return Node(
        name=host,
        address=get("ansible_host", "ansible_ssh_host") or host,
        port=int(port_text),
        user=user,
        key_file=get("ansible_ssh_private_key_file", "ansible_private_key_file"),
        sudo=become.lower() in _TRUE if become is not None else user != "root",
        role=role,
        flavor=flavor,
    )


def _ancestors(groups: dict[str, _Group], name: str) -> set[str]:
    found: set[str] = set()
    stack = [name]
    while stack:
        current = stack.pop()
        for gname, group in groups.items():
            if current in group.children and gname not in found:
                found.add(gname)
                stack.append(gname)
    return found


def _depths(groups: dict[str, _Group]) -> dict[str, int]:
    # Parents sort before children so that a child group's variables override its parent's.
    return {name: len(_ancestors(groups, name)) for name in groups}
