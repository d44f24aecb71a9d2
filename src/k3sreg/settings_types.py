"""Building blocks of the settings models: the YAML loader and the value types config.yml uses.

Distribution reads config.yml with Go's YAML decoder, which puts a scalar into a string field with its text
as written (`version: 0.1` is "0.1", `secret: 0123` is "0123"). PyYAML would turn those into numbers, so the
loader here keeps the source text of every number, and `GoStr` gives it back.
"""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from k3sreg.problems import ERROR_TYPE as ERROR_TYPE
from k3sreg.settings_units import duration_seconds, show_value, size_bytes


class YamlInt(int):
    """An integer that remembers how it was spelled in YAML."""

    text: str


class YamlFloat(float):
    """A float that remembers how it was spelled in YAML."""

    text: str


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader that keeps the source text of numbers (see the module docstring)."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> YamlInt:
    value = YamlInt(yaml.SafeLoader.construct_yaml_int(loader, node))
    value.text = node.value
    return value


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> YamlFloat:
    value = YamlFloat(yaml.SafeLoader.construct_yaml_float(loader, node))
    value.text = node.value
    return value


ConfigLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
ConfigLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def problem(message: str) -> PydanticCustomError:
    """A validation error whose message is shown to the user exactly as given."""
    return PydanticCustomError(ERROR_TYPE, message)


def go_str(value: Any) -> Any:
    """A scalar as Go's decoder puts it into a string field: numbers as written, booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, YamlInt | YamlFloat):
        return value.text
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict | list):
        raise problem(f"expected a string, got {show_value(value)}")
    return value


def _duration(value: Any) -> float:
    # Numbers from YAML follow Go (nanoseconds); numbers given from Python code are seconds.
    if isinstance(value, int | float) and not isinstance(value, bool | YamlInt | YamlFloat):
        return _duration(f"{value}s")
    try:
        return duration_seconds(value)
    except ValueError as exc:
        raise problem(str(exc)) from None


def _size(value: Any) -> int:
    try:
        return size_bytes(value)
    except ValueError as exc:
        raise problem(str(exc)) from None


def _str_list(value: Any) -> Any:
    # Distribution wants a list; a lone string is what people write for one item, so take it as that item.
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return [go_str(value)]
    if isinstance(value, list):
        return [go_str(v) for v in value]
    return value


GoStr = Annotated[str, BeforeValidator(go_str)]
"""A string field: numbers and booleans are taken as the text the user wrote, as Go's decoder does."""
Duration = Annotated[float, BeforeValidator(_duration)]
"""Seconds: in YAML a Go duration ("5m", "1h30m") or integer nanoseconds; from Python code, a number of seconds."""
Size = Annotated[int, BeforeValidator(_size)]
"""Bytes, written as an integer or with a unit ("4MiB", "512M")."""
StrList = Annotated[list[str], BeforeValidator(_str_list)]
"""A list of strings; a single string counts as a one-item list."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, and a key left empty (null) means its default."""

    model_config = ConfigDict(extra="forbid", validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        # Go's decoder leaves a field at its zero value for `key:` with nothing after it; do the same.
        if data is None:
            return {}
        if isinstance(data, dict):
            # Unknown keys stay, whatever their value, so that they are reported.
            return {k: v for k, v in data.items() if v is not None or k not in cls.model_fields}
        return data
