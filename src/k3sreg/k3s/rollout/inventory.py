"""Load the list of nodes: k3sreg's own YAML inventory, or the Ansible inventory of k3s-ansible (YAML or INI).

Our format (every key of a node may also sit under `defaults`):

    defaults: {user: root, port: 22, key_file: ~/.ssh/id_ed25519, sudo: false, flavor: k3s}
    nodes:
      - {name: cp1, address: 10.0.0.11, role: server}
      - {name: w1, address: 10.0.0.21, role: agent, user: ubuntu, sudo: true}

`role` and `flavor` may be left out: they are then detected on the node from its installed units. `sudo`
defaults to true for any user but root. Ansible inventories: hosts of the `server` group (older releases:
`master`) are servers, of `agent` (`node`) agents; `ansible_host`, `ansible_port`, `ansible_user`,
`ansible_ssh_private_key_file` and `ansible_become` are honoured, and `k3sreg_flavor` names the flavor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from k3sreg.errors import ConfigError, UsageError
from k3sreg.k3s.rollout.ansible import load_ansible_ini, load_ansible_yaml
from k3sreg.k3s.rollout.model import Flavor, Node, Role
from k3sreg.problems import Loc, describe, key_path, position, yaml_positions


class _NodeFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    key_file: str | None = None
    sudo: bool | None = None
    role: Role | None = None
    flavor: Flavor | None = None


class _NodeEntry(_NodeFields):
    name: str | None = None
    address: str


class _Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: _NodeFields = _NodeFields()
    nodes: list[_NodeEntry]


# The section model at each key path (list indexes as "*"), for the valid keys of an unknown key's section.
_SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    (): _Inventory, ("defaults",): _NodeFields, ("nodes", "*"): _NodeEntry}


def load_inventory(path: Path) -> list[Node]:
    """Read the inventory at `path` in whichever of the three formats it is; ConfigError lists every problem."""
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"cannot read inventory {path}: {e.strerror}") from e
    return parse_inventory(text, source=str(path), base_dir=path.parent, ini=_looks_like_ini(path, text))


def parse_inventory(text: str, source: str = "inventory", base_dir: Path | None = None,
                    ini: bool = False) -> list[Node]:
    """Parse inventory `text`; `ini` selects the Ansible INI form, otherwise YAML (ours or Ansible's)."""
    if ini:
        nodes = load_ansible_ini(text, source)
    else:
        try:
            positions = yaml_positions(yaml.compose(text, Loader=yaml.SafeLoader))
            data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
            raise ConfigError([f"{where}: YAML syntax error: {e.problem or e.context}"]) from None
        except yaml.YAMLError as e:
            raise ConfigError([f"{source}: YAML syntax error: {e}"]) from None
        if not isinstance(data, dict):
            raise ConfigError([f"{source}: expected a mapping with `nodes` (or Ansible groups) at the top"])
        if "nodes" in data:
            nodes = _load_ours(data, source, base_dir, positions)
        else:
            nodes = load_ansible_yaml(data, source, positions)
    _check_unique(nodes, source)
    return nodes


def select_nodes(nodes: Sequence[Node], names: Sequence[str]) -> list[Node]:
    """The nodes named in `names` (by name or address), in inventory order; all of them when `names` is empty."""
    if not names:
        return list(nodes)
    known = {n.name for n in nodes} | {n.address for n in nodes}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(f"not in the inventory: {', '.join(unknown)}")
    wanted = set(names)
    return [n for n in nodes if n.name in wanted or n.address in wanted]


def _load_ours(data: dict[str, Any], source: str, base_dir: Path | None,
               positions: Mapping[Loc, tuple[int, int]]) -> list[Node]:
    names: list[Any] = []
    if isinstance(data.get("nodes"), dict):
        # The mapping form names each node by its key: the same as a list entry with `name`.
        names = list(data["nodes"])
        data = {**data, "nodes": [{"name": k, **(v if isinstance(v, dict) else {"address": v})}
                                  for k, v in data["nodes"].items()]}
    try:
        inv = _Inventory.model_validate(data)
    except ValidationError as e:
        found = [_problem(source, err, positions, names) for err in e.errors()]
        raise ConfigError([message for _, message in sorted(found)]) from None
    d = inv.defaults
    nodes = []
    for entry in inv.nodes:
        user = entry.user or d.user or "root"
        sudo = entry.sudo if entry.sudo is not None else d.sudo
        nodes.append(Node(
            name=entry.name or entry.address,
            address=entry.address,
            port=entry.port or d.port or 22,
            user=user,
            key_file=_key_path(entry.key_file or d.key_file, base_dir),
            sudo=sudo if sudo is not None else user != "root",
            role=entry.role or d.role,
            flavor=entry.flavor or d.flavor,
        ))
    if not nodes:
        raise ConfigError([f"{source}: `nodes` is empty; list at least one node"])
    return nodes


def _key_path(value: str | None, base_dir: Path | None) -> str | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    # A relative key path means "next to the inventory", so the inventory works from any directory.
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return str(p)


def _problem(source: str, err: Any, positions: Mapping[Loc, tuple[int, int]],
             names: Sequence[Any]) -> tuple[tuple[int, int], str]:
    """(line, column) and `file:line:column: key.path: what is wrong` for one validation error."""
    loc: Loc = tuple(err["loc"])
    if names and len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
        # Back from the list the mapping form was turned into, to the key the user wrote.
        loc = ("nodes", str(names[loc[1]]), *loc[2:])
    at = position(positions, loc)
    where = f"{source}:{at[0]}:{at[1]}" if at else source
    return at or (0, 0), f"{where}: {key_path(loc) or '(top level)'}: {describe(err, _keys_at)}"


def _keys_at(loc: Loc) -> list[str] | None:
    model = _SECTIONS.get(tuple("*" if isinstance(part, int) else str(part) for part in loc))
    return list(model.model_fields) if model else None


def _check_unique(nodes: Sequence[Node], source: str) -> None:
    seen: set[str] = set()
    dupes: set[str] = set()
    for n in nodes:
        (dupes if n.name in seen else seen).add(n.name)
    if dupes:
        raise ConfigError([f"{source}: node listed twice: {name}" for name in sorted(dupes)])


def _looks_like_ini(path: Path, text: str) -> bool:
    if path.suffix in (".ini", ".cfg", ".hosts"):
        return True
    if path.suffix in (".yaml", ".yml", ".json"):
        return False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", ";", "---")):
            return stripped.startswith("[") and stripped.endswith("]")
    return False
