"""How a config.yml problem is raised and told: one line, "key.path: what is wrong; the fix".

Validators raise `problem(message)`; the loader turns pydantic's errors into messages with k3sreg.problems
(shared with the node inventory) and names the `REGISTRY_*` variable that set a key when one did (`line`).
"""

from __future__ import annotations

from pydantic_core import PydanticCustomError

from k3sreg.problems import ERROR_TYPE, Loc, key_path


def problem(message: str) -> PydanticCustomError:
    """A validation error whose message is shown to the user exactly as given."""
    return PydanticCustomError(ERROR_TYPE, message)


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
