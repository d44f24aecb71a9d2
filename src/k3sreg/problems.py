"""Problems in a user's file as the user reads them: the key path, where it sits, what is wrong, the nearest key.

Shared by config.yml (settings) and the node inventory, so both report the same way:

    inventory.yaml:3:5: defaults.usr: unknown key; did you mean 'user'?

`describe` turns one pydantic error into the message, given the valid keys at each level (`keys_at`);
`yaml_positions` maps every key path of a composed YAML document to its line and column, and `position`
finds the nearest one for a path (a missing key is reported where its parent is).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

ERROR_TYPE = "k3sreg"
"""The pydantic error type of a problem whose message is shown exactly as written (see config.problems.problem)."""

Loc = tuple[str | int, ...]
_BARE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def show_value(value: object) -> str:
    """A value as the user wrote it in YAML, for messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def nearest(key: str, choices: Sequence[str]) -> str | None:
    """The valid key closest to a misspelt one, if any is close enough."""
    lowered = {c.lower(): c for c in choices}
    if key.lower() in lowered:
        return lowered[key.lower()]
    found = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[found[0]] if found else None


def key_path(loc: Sequence[str | int]) -> str:
    """A key path as users write it: `upstreams[0].tls.ca`, `mirrors."docker.io".endpoint[0]` (a key that is no
    bare word, such as a registry host, is quoted); "" for the top level."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if _BARE_KEY.match(part) else json.dumps(part)
        out += f".{text}" if out else text
    return out


def describe(err: Any, keys_at: Callable[[Loc], list[str] | None]) -> str:
    """One pydantic error as a user-facing message; `keys_at(loc)` lists the valid keys of the section at `loc`."""
    kind: str = err["type"]
    value = err.get("input")
    loc: Loc = tuple(err["loc"])
    if kind == ERROR_TYPE:
        return str(err["msg"])
    if kind == "extra_forbidden":
        choices = keys_at(loc[:-1])
        if choices is None:
            return "unknown key"
        guess = nearest(str(loc[-1]), choices)
        if guess:
            return f"unknown key; did you mean '{guess}'?"
        return f"unknown key; valid keys here: {', '.join(choices)}"
    if kind == "missing":
        return "required key is missing"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false, got {show_value(value)}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number, got {show_value(value)}"
    if kind in ("float_parsing", "float_type"):
        return f"expected a number, got {show_value(value)}"
    if kind == "string_type":
        return f"expected a string, got {show_value(value)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys, got {show_value(value)}"
    if kind == "list_type":
        return f"expected a list, got {show_value(value)}"
    if kind == "literal_error":
        return f"expected one of {err['ctx']['expected']}, got {show_value(value)}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return f"{err['msg'].replace('Input should be', 'must be')}, got {show_value(value)}"
    return f"{err['msg']}, got {show_value(value)}"


def yaml_positions(root: yaml.Node | None) -> dict[Loc, tuple[int, int]]:
    """(line, column), 1-based, of every mapping key and sequence item below `root` (from `yaml.compose`)."""
    found: dict[Loc, tuple[int, int]] = {}

    def walk(node: yaml.Node, loc: Loc) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    here = (*loc, str(key.value))
                    found.setdefault(here, (key.start_mark.line + 1, key.start_mark.column + 1))
                    walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                found.setdefault((*loc, i), (item.start_mark.line + 1, item.start_mark.column + 1))
                walk(item, (*loc, i))

    if root is not None:
        found[()] = (root.start_mark.line + 1, root.start_mark.column + 1)
        walk(root, ())
    return found


def position(positions: Mapping[Loc, tuple[int, int]], loc: Loc) -> tuple[int, int] | None:
    """(line, column) of `loc`, or of its nearest enclosing key that has one; None when none is known."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in positions:
            return positions[loc[:n]]
    return None
