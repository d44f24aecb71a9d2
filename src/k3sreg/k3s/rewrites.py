"""Repository rewrites (`mirrors.<r>.rewrite`): check them, and apply them as K3s's containerd does.

The K3s containerd build tries each pattern (Go RE2) on the repository path (`library/nginx`) before a
request to a mirror endpoint; the first pattern whose ReplaceAllString changes the path wins. Map order is
undefined in Go, so overlapping patterns are a coin toss. Replacements use Go's `$1`, `${1}`, `$name`
expansion, where `$1_x` means the group named `1_x` (empty), not group 1 followed by `_x`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

from k3sreg.k3s.findings import Severity

_NOT_RE2 = (
    ("(?=", "look-ahead"), ("(?!", "negative look-ahead"), ("(?<=", "look-behind"),
    ("(?<!", "negative look-behind"), ("(?>", "atomic group"), ("(?(", "conditional"),
    ("*+", "possessive quantifier"), ("++", "possessive quantifier"), ("?+", "possessive quantifier"),
)
_EXPAND = re.compile(r"\$(\$|\{([A-Za-z0-9_]*)\}|([A-Za-z0-9_]+))")
_META = set(".[]()*+?{}|\\^$")


@dataclass(frozen=True)
class RewriteProblem:
    """One problem with a rewrite map; `pattern` is "" when it concerns the whole map."""

    pattern: str
    severity: Severity
    code: str
    message: str
    fix: str


def as_containerd_reads(text: str) -> str | None:
    """What containerd reads back from K3s's unescaped `"<text>"` in hosts.toml; None when that is invalid TOML."""
    if '"' in text.replace("\\\\", "").replace('\\"', ""):
        return None
    try:
        value = tomllib.loads(f'k = "{text}"')["k"]
    except tomllib.TOMLDecodeError:
        return None
    return value if isinstance(value, str) else None


def to_python(pattern: str) -> re.Pattern[str]:
    """Compile a Go RE2 pattern with Python's engine (named groups translated); raises re.error."""
    return re.compile(re.sub(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", r"(?P<\1>", pattern))


def expand(template: str, match: re.Match[str]) -> str:
    """Go's Regexp.Expand of `template` for `match`."""
    out = []
    pos = 0
    for m in _EXPAND.finditer(template):
        out.append(template[pos:m.start()])
        pos = m.end()
        if m.group(1) == "$":
            out.append("$")
            continue
        name = m.group(2) if m.group(2) is not None else m.group(3)
        if m.group(2) is not None and not name:
            out.append(m.group(0))  # `${}` is malformed: Go copies the `$` and moves on
            pos = m.start() + 1
            continue
        out.append(_group(match, name))
    out.append(template[pos:])
    return "".join(out)


def _group(match: re.Match[str], name: str) -> str:
    if name.isdigit():
        index = int(name)
        return (match.group(index) or "") if index <= (match.re.groups) else ""
    return (match.group(name) or "") if name in match.re.groupindex else ""


def apply_rewrites(rewrites: Mapping[str, str], repository: str) -> tuple[str, str | None]:
    """(new repository path, the pattern that changed it or None); patterns tried in sorted order."""
    for pattern in sorted(rewrites):
        try:
            compiled = to_python(pattern)
        except re.error:
            continue
        replaced = compiled.sub(partial(expand, rewrites[pattern]), repository)
        if replaced != repository:
            return replaced, pattern
    return repository, None


def _literal_prefix(pattern: str) -> str | None:
    if not pattern.startswith("^"):
        return None
    prefix = ""
    for i, ch in enumerate(pattern[1:], start=1):
        if ch in _META:
            if ch in "*?{" and prefix:
                prefix = prefix[:-1]
            return prefix
        if i + 1 < len(pattern) and pattern[i + 1] in "*?{":
            return prefix
        prefix += ch
    return prefix


def check_rewrites(rewrites: Mapping[str, str]) -> list[RewriteProblem]:
    """Problems with a mirror's rewrite map: invalid RE2, hosts.toml breakage, bad group references."""
    problems: list[RewriteProblem] = []
    compiled: dict[str, re.Pattern[str]] = {}
    for pattern, replacement in rewrites.items():
        for text, what in ((pattern, "pattern"), (replacement, "replacement")):
            if "\\" in text or '"' in text:
                read = as_containerd_reads(text)
                effect = ("the file becomes invalid TOML and containerd ignores it entirely (no mirror at all)"
                          if read is None else f"containerd reads it as `{read}`, not as written")
                problems.append(RewriteProblem(
                    pattern, "error", "rewrite-breaks-toml",
                    f"the {what} contains `\\` or `\"`: K3s writes rewrites into hosts.toml unescaped, so "
                    + effect, "avoid `\\` and `\"`: use `[.]` for a literal dot and `[0-9]` for `\\d`"))
        unsupported = [what for token, what in _NOT_RE2 if token in pattern]
        if unsupported:
            problems.append(RewriteProblem(
                pattern, "error", "rewrite-not-re2",
                f"Go's RE2 has no {unsupported[0]}: containerd logs the bad pattern and skips it",
                "rewrite the pattern without look-around, atomic groups or back-references"))
            continue
        try:
            compiled[pattern] = to_python(pattern)
        except re.error as e:
            problems.append(RewriteProblem(pattern, "error", "rewrite-invalid",
                                           f"not a valid regular expression ({e}): containerd skips it",
                                           "fix the pattern"))
            continue
        problems.extend(_check_groups(pattern, replacement, compiled[pattern]))
    problems.extend(_check_overlap(list(compiled)))
    return problems


def _check_groups(pattern: str, replacement: str, compiled: re.Pattern[str]) -> list[RewriteProblem]:
    out = []
    for m in _EXPAND.finditer(replacement):
        if m.group(1) == "$":
            continue
        name = m.group(2) if m.group(2) is not None else m.group(3)
        if not name:
            continue
        known = int(name) <= compiled.groups if name.isdigit() else name in compiled.groupindex
        if not known:
            hint = ""
            digits = re.match(r"\d+", name)
            if digits and not name.isdigit():
                hint = f"; Go reads `${name}` as the group named `{name}`, write `${{{digits.group(0)}}}`"
            out.append(RewriteProblem(
                pattern, "warning", "rewrite-group",
                f"`{m.group(0)}` refers to no capture group of `{pattern}`, so it expands to nothing{hint}",
                "refer to an existing group, with braces when text follows: `${1}`"))
    return out


def _check_overlap(patterns: list[str]) -> list[RewriteProblem]:
    out = []
    for i, a in enumerate(patterns):
        for b in patterns[i + 1:]:
            pa, pb = _literal_prefix(a), _literal_prefix(b)
            if pa is not None and pb is not None and not (pa.startswith(pb) or pb.startswith(pa)):
                continue
            out.append(RewriteProblem(
                "", "warning", "rewrite-overlap",
                f"`{a}` and `{b}` may both match the same repository; containerd tries them in undefined "
                "order, so which one applies can change from pull to pull",
                "anchor each pattern with `^` and a distinct literal prefix"))
    return out
