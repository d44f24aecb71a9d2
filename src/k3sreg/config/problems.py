"""How a config problem reaches the user: one line, "key.path: what is wrong; the fix".

Validators raise `problem(message)`; the loader turns pydantic's errors into such lines (`describe`), names the
`REGISTRY_*` variable that set a key when one did (`line`), and suggests the nearest key for a misspelt one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

from pydantic_core import PydanticCustomError

from k3sreg.config.units import show_value

ERROR_TYPE = "k3sreg"
Loc = tuple[str | int, ...]


def problem(message: str) -> PydanticCustomError:
    """A validation error whose message is shown to the user exactly as given."""
    return PydanticCustomError(ERROR_TYPE, message)


def key_path(loc: Sequence[str | int]) -> str:
    """A key path as users write it: `upstreams[0].tls.ca`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def nearest(key: str, choices: Sequence[str]) -> str | None:
    """The valid key closest to a misspelt one, if any is close enough."""
    lowered = {c.lower(): c for c in choices}
    if key.lower() in lowered:
        return lowered[key.lower()]
    found = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[found[0]] if found else None


def line(loc: Loc, message: str, applied: dict[Loc, str]) -> str:
    """The problem's line, naming the variable that set this key or a key below it (`applied`: path -> name)."""
    source = next(
        (name for where, name in applied.items() if loc and (loc[: len(where)] == where or where[: len(loc)] == loc)),
        None,
    )
    where = key_path(loc)
    if not where:
        return message
    return f"{where} (from {source}): {message}" if source else f"{where}: {message}"


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
