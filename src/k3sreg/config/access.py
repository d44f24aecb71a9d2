"""`access` (k3sreg's own): per-repository rules for users from htpasswd and for anonymous callers.

The rule semantics (globs, union, anonymous) live with the code that applies them, k3sreg.auth.rules.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from k3sreg.auth.rules import compile_glob
from k3sreg.config.problems import problem
from k3sreg.config.values import Section, StrList

ACTIONS = ("pull", "push", "delete", "*")


class AccessRuleSettings(Section):
    """`access[]`: `users` (or `anonymous: true`) may take `actions` on the `repositories` globs."""

    users: StrList = Field(default_factory=list)
    anonymous: bool = False
    repositories: StrList
    actions: StrList

    @field_validator("repositories")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        if not value:
            raise problem("list at least one repository name or glob, such as 'team/**'")
        for pattern in value:
            try:
                compile_glob(pattern)
            except ValueError as exc:
                raise problem(str(exc)) from None
        return value

    @field_validator("actions")
    @classmethod
    def _actions(cls, value: list[str]) -> list[str]:
        if not value:
            raise problem("list at least one action: pull, push, delete or '*'")
        for action in value:
            if action not in ACTIONS:
                raise problem(f"unknown action {action!r}; use pull, push, delete or '*'")
        return value

    @model_validator(mode="after")
    def _who(self) -> AccessRuleSettings:
        if not self.users and not self.anonymous:
            raise problem("a rule needs 'users' (names from htpasswd, or '*' for every user) or 'anonymous: true'")
        return self
