"""Reading config.yml: file (or the embedded defaults), `REGISTRY_*` overrides, validation, every problem at once.

    load_settings(path, env)
      file (or the embedded defaults) ──► YAML (numbers keep their text) ──► REGISTRY_* overrides
      ──► storage driver choice check ──► pydantic models (extra keys forbidden) ──► the TLS files (serve)
      ──► every problem as one line "key.path: what is wrong; the fix" ──► ConfigError(problems)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from k3sreg.config.env import apply_env, type_at
from k3sreg.config.model import Settings
from k3sreg.config.problems import line
from k3sreg.config.storage import OTHER_DRIVERS, storage_problems
from k3sreg.config.tls import tls_file_problems
from k3sreg.config.values import ConfigLoader
from k3sreg.errors import ConfigError
from k3sreg.problems import ERROR_TYPE, Loc, describe, show_value

EMBEDDED_DEFAULTS: dict[str, Any] = {
    "version": "0.1",
    "http": {"addr": "127.0.0.1:5000"},
    "storage": {
        "filesystem": {"rootdirectory": "./data"},
        "delete": {"enabled": True},
        "maintenance": {"uploadpurging": {"enabled": True, "age": "168h", "interval": "24h"}},
    },
}
"""What `k3sreg serve` runs with when no config file is given (environment overrides still apply)."""


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None, *,
                  check_files: bool = False) -> Settings:
    """Read, override from `REGISTRY_*` variables and validate the settings; ConfigError lists every problem.

    `path` None uses EMBEDDED_DEFAULTS; `env` None uses os.environ. `check_files` also checks the files the
    settings name (TLS certificate, key, client CAs), as a server about to use them needs.
    """
    if path is None:
        raw: Any = copy.deepcopy(EMBEDDED_DEFAULTS)
    else:
        raw = _read_file(path)
    return parse_settings(raw, env, source=str(path) if path else "the embedded defaults", check_files=check_files)


def parse_settings(raw: Any, env: Mapping[str, str] | None = None, source: str = "config", *,
                   check_files: bool = False) -> Settings:
    """Validate an already-parsed config document (as `yaml.safe_load` gives it) after applying `env`.

    `raw` is modified by the overrides; `source` names it in messages. ConfigError lists every problem.
    """
    env = os.environ if env is None else env
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            [f"{source}: expected a mapping of sections (version, log, storage, http...), got {show_value(raw)}"]
        )
    applied, problems = apply_env(raw, env, Settings)
    found: list[tuple[Loc, str]] = []
    if "version" not in raw:
        found.append((("version",), "required; add 'version: 0.1' at the top"))
    driver_issues = storage_problems(raw.get("storage", {}))
    found += driver_issues
    if isinstance(raw.get("storage"), dict):
        raw["storage"] = {k: v for k, v in raw["storage"].items() if k not in OTHER_DRIVERS}
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            if loc == ("version",) and err["type"] == "missing":
                continue
            if loc == ("storage",) and (err["type"] == "missing" or (driver_issues and err["type"] == ERROR_TYPE)):
                continue  # already said by storage_problems
            found.append((loc, describe(err, _keys_at)))
    if check_files and settings is not None and settings.http.tls is not None:
        found += tls_file_problems(settings.http.tls)
    problems += [line(loc, msg, applied) for loc, msg in found]
    if problems or settings is None:
        raise ConfigError(problems)
    return settings


def _read_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([f"{path}: cannot read the config file: {reason}"]) from None
    try:
        return yaml.load(text, Loader=ConfigLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError([f"{where}: YAML syntax error: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: YAML syntax error: {exc}"]) from None


def _keys_at(loc: Loc) -> list[str] | None:
    kind, section = type_at(Settings, loc)
    if kind == "model" and isinstance(section, type) and issubclass(section, BaseModel):
        return list(section.model_fields)
    return None
