"""The access rules: glob semantics over repository names, union of rules, anonymous, and token grants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k3sreg.auth.model import CATALOG, Access
from k3sreg.auth.rules import AccessRules, Rule, compile_glob


def matches(pattern: str, name: str) -> bool:
    return Rule.of(users=["u"], repositories=[pattern], actions=["pull"]).covers(name)


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("team/app", "team/app", True),
    ("team/app", "team/app2", False),
    ("team/app", "team/app/x", False),
    ("team/*", "team/app", True),
    ("team/*", "team", False),
    ("team/*", "team/a/b", False),
    ("*", "nginx", True),
    ("*", "library/nginx", False),
    ("team/**", "team", True),
    ("team/**", "team/a", True),
    ("team/**", "team/a/b/c", True),
    ("team/**", "teamx/a", False),
    ("team/**", "other/team/a", False),
    ("**", "a", True),
    ("**", "docker.io/library/nginx", True),
    ("**/nginx", "nginx", True),
    ("**/nginx", "docker.io/library/nginx", True),
    ("**/nginx", "docker.io/library/nginx-x", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/y/c", False),
    ("team-*/app", "team-blue/app", True),
    ("team-*/app", "team/app", False),
    ("team-*/app", "team-/app", True),
    ("*-app", "web-app", True),
    ("a.b", "axb", False),
    ("docker.io/**", "docker.io/library/nginx", True),
    ("docker.io/**", "library/nginx", False),
    ("docker.io/library/*", "docker.io/library/nginx", True),
    ("library/*", "docker.io/library/nginx", False),
    ("library/*", "library/nginx", True),
    ("*/library/*", "docker.io/library/nginx", True),
    ("*/library/*", "ghcr.io/library/nginx", True),
    ("10.0.0.5:5000/**", "10.0.0.5:5000/app", True),
    ("10.0.0.5:5000/**", "10.0.0.5:5001/app", False),
])
def test_glob_semantics(pattern: str, name: str, expected: bool) -> None:
    """`*` is one component (or a run inside one), `**` any number of whole components, upstream prefixes count."""
    assert matches(pattern, name) is expected


@pytest.mark.parametrize("pattern", ["", "/a", "a/", "a//b", "a**", "**b/c", "Team/**", "a b", "a/?", "a/[x]"])
def test_bad_globs_are_refused(pattern: str) -> None:
    """Empty components, partial `**`, capitals and unknown characters are errors with a reason."""
    with pytest.raises(ValueError):
        compile_glob(pattern)


names = st.lists(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,6}", fullmatch=True), min_size=1, max_size=5).map("/".join)


@given(names)
def test_double_star_matches_every_name_and_a_literal_only_itself(name: str) -> None:
    """`**` covers every name; the name as a pattern covers only that name."""
    assert matches("**", name)
    assert matches(name, name)
    assert not matches(name, name + "x")


@given(names, names)
def test_prefix_double_star(prefix: str, rest: str) -> None:
    """`P/**` covers P and everything below P, nothing beside it."""
    assert matches(prefix + "/**", prefix)
    assert matches(prefix + "/**", f"{prefix}/{rest}")
    assert not matches(prefix + "/**", f"{prefix}x/{rest}")


RULES = AccessRules([
    Rule.of(users=["ci"], repositories=["team/**"], actions=["pull", "push"]),
    Rule.of(users=["nodes"], repositories=["**"], actions=["pull"]),
    Rule.of(users=["admin"], repositories=["**"], actions=["*"]),
    Rule.of(anonymous=True, repositories=["public/**"], actions=["pull"]),
    Rule.of(users=["*"], repositories=["shared/*"], actions=["pull"]),
])


@pytest.mark.parametrize(("user", "name", "actions"), [
    ("ci", "team/app", {"pull", "push"}),
    ("ci", "other/app", set()),
    ("ci", "public/x", {"pull"}),
    ("nodes", "docker.io/library/nginx", {"pull"}),
    ("nodes", "team/app", {"pull"}),
    ("admin", "team/app", {"pull", "push", "delete"}),
    (None, "public/x", {"pull"}),
    (None, "team/app", set()),
    (None, "shared/x", set()),
    ("anyone", "shared/x", {"pull"}),
    ("anyone", "team/app", set()),
])
def test_allowed_is_the_union_of_the_rules(user: str | None, name: str, actions: set[str]) -> None:
    """Each caller may do the union of the rules for them; anonymous rules apply to everyone; "*" is any user."""
    assert RULES.allowed(user, name) == actions


def test_grant_is_the_intersection_and_expands_star() -> None:
    """Asking for more than allowed grants the allowed part; `*` asks for all three actions."""
    wanted = [Access("repository", "team/app", "pull"), Access("repository", "team/app", "delete"),
              Access("repository", "other", "pull"), Access("repository", "team/x", "*")]
    assert RULES.grant("ci", wanted) == (Access("repository", "team/app", "pull"),
                                         Access("repository", "team/x", "pull"), Access("repository", "team/x", "push"))
    assert RULES.grant(None, wanted) == ()


def test_catalog_goes_to_callers_who_may_pull_something() -> None:
    """registry:catalog:* is granted to a caller some rule lets pull, so the filtered catalog can be listed."""
    assert RULES.grant("nodes", [CATALOG]) == (CATALOG,)
    assert RULES.grant(None, [CATALOG]) == (CATALOG,)
    only_push = AccessRules([Rule.of(users=["w"], repositories=["x"], actions=["push"])])
    assert only_push.grant("w", [CATALOG]) == () and only_push.grant(None, [CATALOG]) == ()


def test_unknown_action_in_a_rule_is_refused() -> None:
    """A typo in actions is an error, not a silent no-op."""
    with pytest.raises(ValueError, match="unknown action"):
        Rule.of(users=["u"], repositories=["a"], actions=["pul"])
