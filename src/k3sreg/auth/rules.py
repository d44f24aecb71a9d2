"""The `access:` rules: which users may do what to which repositories, with globs over repository names.

    access:
      - users: [ci]                  # htpasswd users; "*" is every user who logged in
        repositories: ["team/**"]
        actions: [pull, push]        # pull, push, delete, or "*" for all three
      - anonymous: true              # also callers without credentials (and so everyone)
        repositories: ["public/**", "docker.io/**"]
        actions: [pull]

Globs match whole names, component by component (components are split at `/`): `*` stands for one
component or, inside a component, any run of characters (`team-*`); `**` is a whole component and stands for
any number of components, none included (`team/**` matches `team`, `team/a` and `team/a/b`; `**` matches every
name). Pull-through names carry their upstream in front (`docker.io/library/nginx`), so `docker.io/**`
governs the Docker Hub cache and `library/*` does not reach it.

What a caller may do is the union of every rule that applies to them; a rule for anonymous callers applies to
everyone. Asking for more grants the intersection, never an error (the Docker token protocol).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from k3sreg.auth.model import ANY_ACTION, CATALOG, PULL, REPOSITORY_ACTIONS, Access

_COMPONENT = re.compile(r"^[a-z0-9._:*-]+$")
EVERY_USER = "*"
_CACHE_SIZE = 8192


def compile_glob(pattern: str) -> re.Pattern[str]:
    """The regular expression for a repository glob (matched against "/" + name). ValueError says what is wrong."""
    if not pattern:
        raise ValueError("a repository pattern is empty; write a name or a glob such as 'team/**'")
    if pattern != pattern.lower():
        raise ValueError(f"repository pattern {pattern!r} has capitals; repository names are lower case")
    parts = pattern.split("/")
    out = []
    for part in parts:
        if part == "**":
            out.append("(?:/[^/]+)*")
        elif not part:
            raise ValueError(f"repository pattern {pattern!r} has an empty component (a leading, trailing or "
                             "double '/')")
        elif "**" in part:
            raise ValueError(f"repository pattern {pattern!r}: '**' must be a whole component, as in 'team/**'")
        elif not _COMPONENT.match(part):
            raise ValueError(f"repository pattern {pattern!r}: only a-z, 0-9, '.', '_', '-', ':', '*' and '/' "
                             "may appear")
        elif part == "*":
            out.append("/[^/]+")
        else:
            out.append("/" + "".join("[^/]*" if ch == "*" else re.escape(ch) for ch in part))
    return re.compile("".join(out))


@dataclass(frozen=True)
class Rule:
    """One rule: who (`users`, `anonymous`), which names (`repositories` globs), what (`actions`)."""

    users: frozenset[str]
    anonymous: bool
    repositories: tuple[str, ...]
    actions: frozenset[str]
    globs: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "globs", tuple(compile_glob(p) for p in self.repositories))

    @classmethod
    def of(cls, users: Iterable[str] = (), anonymous: bool = False, repositories: Iterable[str] = (),
           actions: Iterable[str] = ()) -> Rule:
        """A rule from plain values; `*` among the actions stands for all three."""
        wanted = set(actions)
        if ANY_ACTION in wanted:
            wanted = set(REPOSITORY_ACTIONS)
        unknown = wanted - set(REPOSITORY_ACTIONS)
        if unknown:
            raise ValueError(f"unknown action {sorted(unknown)[0]!r}; use pull, push, delete or '*'")
        return cls(frozenset(users), anonymous, tuple(repositories), frozenset(wanted))

    def applies_to(self, user: str | None) -> bool:
        """True when the rule is for this caller (None: anonymous)."""
        if self.anonymous:
            return True
        return user is not None and (user in self.users or EVERY_USER in self.users)

    def covers(self, repository: str) -> bool:
        """True when a glob of the rule matches the repository name."""
        target = "/" + repository
        return any(g.fullmatch(target) for g in self.globs)


class AccessRules:
    """Every rule; answers what a caller may do to a repository (remembered per caller and name, bounded)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self._lock = threading.Lock()
        self._memo: dict[tuple[str | None, str], frozenset[str]] = {}

    def allowed(self, user: str | None, repository: str) -> frozenset[str]:
        """The actions `user` (None: anonymous) may take on `repository`."""
        key = (user, repository)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        found: set[str] = set()
        for rule in self.rules:
            if rule.applies_to(user) and rule.covers(repository):
                found |= rule.actions
        result = frozenset(found)
        with self._lock:
            if len(self._memo) >= _CACHE_SIZE:
                self._memo.clear()
            self._memo[key] = result
        return result

    def may_list_catalog(self, user: str | None) -> bool:
        """True when some rule lets `user` pull something: the catalog then shows what they may pull."""
        return any(rule.applies_to(user) and PULL in rule.actions for rule in self.rules)

    def grant(self, user: str | None, wanted: Iterable[Access]) -> tuple[Access, ...]:
        """The part of `wanted` the rules allow `user` (a wanted `*` action stands for pull, push and delete)."""
        granted: dict[Access, None] = {}
        for item in wanted:
            if item.type == "repository":
                actions = REPOSITORY_ACTIONS if item.action == ANY_ACTION else (item.action,)
                allowed = self.allowed(user, item.name)
                granted.update((Access(item.type, item.name, a), None) for a in actions if a in allowed)
            elif item == CATALOG and self.may_list_catalog(user):
                granted[CATALOG] = None
        return tuple(granted)

    def missing(self, user: str | None, need: Iterable[Access]) -> tuple[Access, ...]:
        """What of `need` the rules do not allow `user` (empty: all is allowed)."""
        return tuple(n for n in need if not self._allows(user, n))

    def _allows(self, user: str | None, item: Access) -> bool:
        if item.type == "repository":
            allowed = self.allowed(user, item.name)
            return allowed >= set(REPOSITORY_ACTIONS) if item.action == ANY_ACTION else item.action in allowed
        return item == CATALOG and self.may_list_catalog(user)
