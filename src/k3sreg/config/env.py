"""`REGISTRY_<SECTION>_<KEY>` environment overrides, applied to the raw config as Distribution does.

Each variable names a key path in upper case, `_` between levels (keys themselves never contain `_`):
`REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/srv/registry` sets `storage.filesystem.rootdirectory`. The value
is read as a YAML document, so `true`, `5m`, `[a, b]` or `{k: v}` all work. List items are addressed by index
(`REGISTRY_UPSTREAMS_0_URL`; the next free index appends). Variables are applied in name order, so
`REGISTRY_STORAGE=s3` comes before `REGISTRY_STORAGE_S3_BUCKET`.

Where k3sreg differs from Distribution, on purpose: an unknown variable is a problem (Distribution logs and
ignores it), except the ones Kubernetes injects for a Service named `registry` (`REGISTRY_PORT*`,
`REGISTRY_SERVICE_*`); and `REGISTRY_STORAGE=<driver>` replaces only the driver, keeping `delete`, `cache`,
`maintenance` and the rest of `storage`.
"""

from __future__ import annotations

import copy
import re
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from k3sreg.config.auth import AuthSettings
from k3sreg.config.storage import DRIVERS, OTHER_DRIVERS, StorageSettings
from k3sreg.config.values import ConfigLoader
from k3sreg.problems import Loc, nearest

PREFIX = "REGISTRY_"
_KUBE_SERVICE_LINKS = re.compile(r"^REGISTRY_(PORT(_.*)?|SERVICE_(HOST|PORT)(_.*)?)$")

Kind = Literal["model", "map", "list", "free", "scalar"]


def unwrap(tp: Any) -> tuple[Kind, Any]:
    """What a field's annotation holds: a model, a map (value type), a list (item type), free data or a scalar."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin is Union or origin is types.UnionType:
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return "scalar", tp
            tp = args[0]
        else:
            break
    if tp is Any:
        return "free", Any
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "model", tp
    if origin is dict:
        return "map", get_args(tp)[1]
    if origin is list:
        return "list", get_args(tp)[0]
    return "scalar", tp


def model_keys(model: type[BaseModel]) -> dict[str, Any]:
    """The YAML keys of a section and their annotations (the attribute names are the keys)."""
    keys: dict[str, Any] = {name: f.annotation for name, f in model.model_fields.items()}
    if model is StorageSettings:
        # Other drivers are real Distribution keys; the validation says they are unsupported, not unknown.
        keys.update(dict.fromkeys(OTHER_DRIVERS, Any))
    return keys


def type_at(root: type[BaseModel], loc: Loc) -> tuple[Kind, Any]:
    """The kind and type found at `loc` below `root` (a scalar of type Any when the path leaves the schema)."""
    kind: Kind = "model"
    tp: Any = root
    for part in loc:
        if kind == "model":
            keys = model_keys(tp)
            if not isinstance(part, str) or part not in keys:
                return "free", Any
            kind, tp = unwrap(keys[part])
        elif kind in ("map", "list"):
            kind, tp = unwrap(tp)
        elif kind == "free":
            continue
        else:
            return "free", Any
    return kind, tp


def apply_env(raw: dict[str, Any], env: Mapping[str, str], root: type[BaseModel]) -> tuple[dict[Loc, str], list[str]]:
    """Apply every `REGISTRY_*` variable of `env` to `raw` in place.

    Returns the key paths that variables set (path -> variable name) and the problems found.
    """
    applied: dict[Loc, str] = {}
    problems: list[str] = []
    for name in sorted(n for n in env if n.startswith(PREFIX)):
        if _KUBE_SERVICE_LINKS.match(name):
            continue
        segments = name[len(PREFIX) :].split("_")
        try:
            value = yaml.load(env[name], Loader=ConfigLoader)
        except yaml.YAMLError as exc:
            problems.append(f"{name}: the value is not valid YAML ({_first_line(exc)})")
            continue
        # Work on a copy so that a variable that fails half-way leaves the config as it was.
        trial = copy.deepcopy(raw)
        error = _set_path(trial, root, name, segments, value, applied)
        if error:
            problems.append(error)
        else:
            raw.clear()
            raw.update(trial)
    return applied, problems


def _set_path(
    raw: dict[str, Any],
    root: type[BaseModel],
    name: str,
    segments: list[str],
    value: Any,
    applied: dict[Loc, str],
) -> str | None:
    node: Any = raw
    kind: Kind = "model"
    tp: Any = root
    loc: list[str | int] = []
    for i, seg in enumerate(segments):
        key: str | int
        if not seg:
            return f"{name}: empty key between underscores"
        if kind == "model":
            keys = model_keys(tp)
            found = next((k for k in keys if k.upper() == seg), None)
            if found is None:
                guess = nearest(seg, list(keys))
                where = ".".join(str(p) for p in [*loc, seg.lower()])
                hint = f"; did you mean {_env_name([*loc, guess])}?" if guess else ""
                return f"{name}: unknown key '{where}'{hint}"
            key = found
            child_kind, child_tp = unwrap(keys[found])
        elif kind in ("map", "free"):
            key = next((k for k in node if isinstance(k, str) and k.upper() == seg), seg.lower())
            child_kind, child_tp = unwrap(tp) if kind == "map" else ("free", Any)
        elif kind == "list":
            if not seg.isdigit() or int(seg) > len(node):
                return f"{name}: '{seg}' is not an index of {'.'.join(map(str, loc))} (0 to {len(node)})"
            key = int(seg)
            child_kind, child_tp = unwrap(tp)
        else:
            here = ".".join(map(str, loc))
            return f"{name}: '{here}' is a single value, it has no key '{seg.lower()}'"
        loc.append(key)
        if i == len(segments) - 1:
            if tuple(loc) == ("storage",) and isinstance(node.get("storage"), dict):
                _replace_driver(node["storage"], value)
            else:
                _put(node, key, value)
            applied[tuple(loc)] = name
            return None
        node = _descend(node, key, child_kind, child_tp)
        kind, tp = child_kind, child_tp
    return None


def _descend(node: Any, key: str | int, kind: Kind, tp: Any) -> Any:
    child = node[key] if isinstance(node, list) and isinstance(key, int) and key < len(node) else None
    if isinstance(node, dict):
        child = node.get(key)
    if isinstance(child, str) and tp in (StorageSettings, AuthSettings):
        child = {child: {}}
    want_list = kind == "list"
    if not isinstance(child, list if want_list else dict):
        child = [] if want_list else {}
    _put(node, key, child)
    return child


def _put(node: Any, key: str | int, value: Any) -> None:
    if isinstance(node, list) and isinstance(key, int):
        if key == len(node):
            node.append(value)
        else:
            node[key] = value
    else:
        node[key] = value


def _replace_driver(storage: dict[str, Any], value: Any) -> None:
    for driver in DRIVERS + OTHER_DRIVERS:
        storage.pop(driver, None)
    if isinstance(value, str):
        storage[value] = {}
    elif isinstance(value, dict):
        storage.update(value)


def _env_name(loc: list[Any]) -> str:
    return PREFIX + "_".join(str(p).upper() for p in loc)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
