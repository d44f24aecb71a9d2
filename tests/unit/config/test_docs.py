"""docs/configuration.md stays true: every key is documented and every example loads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from k3sreg.config import Settings, parse_settings
from k3sreg.config.env import model_keys, unwrap

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    found = []
    for key, annotation in model_keys(model).items():
        kind, tp = unwrap(annotation)
        found.append(prefix + key)
        if kind == "list":
            kind, tp = unwrap(tp)
        if kind == "model":
            found += _keys(tp, f"{prefix}{key}.")
    return found


def _examples() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_every_key_is_documented() -> None:
    """Each key the model reads appears in the reference, in backticks."""
    named = set()
    prose = re.sub(r"```.*?```", "", DOC.read_text(), flags=re.DOTALL)
    for token in re.findall(r"`([^`\n]+)`", prose):
        named.add(token.replace("[]", ""))
        named.update(part.replace("[]", "") for part in token.split("."))
    named.update(re.findall(r"^#+ (\S+)", prose, flags=re.MULTILINE))
    missing = [k for k in _keys(Settings) if k not in named and k.rsplit(".", 1)[-1] not in named]
    assert missing == []


@pytest.mark.parametrize("example", _examples())
def test_every_example_loads(example: str) -> None:
    """Each YAML example of the reference is a valid config (with version and a driver added if absent)."""
    raw: dict[str, Any] = yaml.safe_load(example)
    raw.setdefault("version", "0.1")
    raw.setdefault("storage", {"filesystem": {"rootdirectory": "/var/lib/registry"}})
    parse_settings(raw, {})


def test_there_are_examples() -> None:
    """The reference has an example for most sections."""
    assert len(_examples()) >= 12
