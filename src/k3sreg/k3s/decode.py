"""Read registries.yaml the way K3s does (gopkg.in/yaml.v2 into wharfie's structs), and say what it ignores.

K3s's decoder is lenient about keys and strict about types: unknown or misspelled keys vanish without a
word, a quoted `"true"` or a scalar `endpoint` stops the agent. We walk PyYAML's node tree (it keeps line
numbers) instead of constructed objects, so we can apply yaml.v2's rules ourselves and report:

- `syntax`        YAML that does not parse: tabs in indentation, an unquoted `*` key, anything else (fatal);
- `duplicate-key` a key given twice in one mapping (the last one silently wins);
- `unknown-key`   a key K3s ignores, with the nearest valid key;
- `wrong-type`    a value yaml.v2 cannot decode into the field (fatal: the agent does not start);
- `comment-cut`   an unquoted value followed by ` #...`, which YAML reads as a comment.

Tabs and unquoted `*` are repaired in a copy of the text so the rest of the file can still be checked.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from k3sreg.errors import ConfigError
from k3sreg.k3s import hints
from k3sreg.k3s.findings import Finding, KeyPath, Severity, format_path
from k3sreg.k3s.model import AUTH_FIELDS, TLS_FIELDS, RegistriesYaml

_TRUE = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE"}
_FALSE = {"n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE"}
_NULL = {"", "~", "null", "Null", "NULL"}
_STAR_KEY = re.compile(r"^(\s*(?:-\s+)?)\*(\s*:(?:\s|$))")
_SECRET_FIELDS = {"username", "password", "auth", "identity_token"}
_MERGE_TAG = "tag:yaml.org,2002:merge"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_BINARY_TAG = "tag:yaml.org,2002:binary"
_EXPLICIT_TAG = re.compile(r"^(?:&\S+\s+)?!")


@dataclass
class Decoded:
    """The outcome of reading a file: the model as K3s would see it, and every parser-level finding.

    `fatal` is True when K3s would refuse to start; `registries` is then what the rest of the file means
    (after repairs), good for further checks but not for rendering.
    """

    registries: RegistriesYaml
    findings: list[Finding]
    positions: dict[KeyPath, tuple[int, int]]
    fatal: bool
    lines: list[str] = field(default_factory=list)


def _short_tag(node: yaml.Node) -> str:
    tag = str(node.tag)
    if isinstance(node, yaml.ScalarNode) and node.style is not None:
        return "!!str"
    return "!!" + tag.rsplit(":", 1)[-1] if tag.startswith("tag:yaml.org,2002:") else tag


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.style is None and node.value in _NULL


def _merged_field(path: KeyPath, name: str) -> bool:
    """Whether yaml.v2 decodes a repeated `name` into the same map/pointer (merging) rather than replacing it."""
    if not path:
        return name in ("mirrors", "configs", "auths")
    return len(path) == 2 and ((path[0] == "mirrors" and name == "rewrite")
                               or (path[0] == "configs" and name in ("auth", "tls")))


class _Decoder:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.findings: list[Finding] = []
        self.positions: dict[KeyPath, tuple[int, int]] = {}
        self.fatal = False

    def add(self, path: KeyPath, node: yaml.Node | None, severity: Severity, code: str, message: str,
            fix: str) -> None:
        line = node.start_mark.line + 1 if node is not None else None
        col = node.start_mark.column + 1 if node is not None else None
        self.findings.append(Finding(format_path(path), severity, code, message, fix, line, col))

    def wrong_type(self, path: KeyPath, node: yaml.Node, into: str, fix: str) -> None:
        self.fatal = True
        shown = f" `{node.value}`" if isinstance(node, yaml.ScalarNode) else ""
        self.add(path, node, "error", "wrong-type",
                 f"line {node.start_mark.line + 1}: cannot unmarshal {_short_tag(node)}{shown} into {into}: "
                 "the K3s agent refuses to start", fix)

    def pairs(self, path: KeyPath, node: yaml.MappingNode) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """Mapping entries with merge keys expanded and duplicates reported (the last one wins)."""
        out: list[tuple[str, yaml.Node, yaml.Node]] = []
        seen: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if key.tag == _MERGE_TAG:
                sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
                for src in sources:
                    if isinstance(src, yaml.MappingNode):
                        out.extend(self.pairs(path, src))
                continue
            if not isinstance(key, yaml.ScalarNode):
                self.wrong_type(path, key, "string (a mapping key)", "write the key as a plain string")
                continue
            name = "" if _is_null(key) else str(key.value)
            if name in seen:
                first = seen[name].start_mark.line + 1
                effect = ("K3s merges the two blocks, a key in both taking the later value"
                          if _merged_field(path, name) else "K3s keeps only the last one and silently drops the other")
                self.add((*path, name), key, "error", "duplicate-key",
                         f"`{name}` is given twice (first on line {first}); {effect}",
                         "merge the two entries into one")
            seen[name] = key
            self.positions[(*path, name)] = (key.start_mark.line + 1, key.start_mark.column + 1)
            out.append((name, key, value))
        return out

    def mapping(self, path: KeyPath, node: yaml.Node, into: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        if _is_null(node):
            return []
        if not isinstance(node, yaml.MappingNode):
            self.wrong_type(path, node, into, "write a mapping (`key: value` lines indented below)")
            return []
        return self.pairs(path, node)

    def explicit_tag(self, node: yaml.Node) -> bool:
        """Whether the value is written with a `!tag` (PyYAML keeps the tag, not whether it was explicit)."""
        line = node.start_mark.line
        return line < len(self.lines) and bool(_EXPLICIT_TAG.match(self.lines[line][node.start_mark.column:]))

    def string(self, path: KeyPath, node: yaml.Node) -> str:
        if not isinstance(node, yaml.ScalarNode):
            self.wrong_type(path, node, "string", "write a single value, quoted if in doubt")
            return ""
        if _is_null(node):
            return ""
        if node.tag == _BINARY_TAG:
            # yaml.v2 stores the decoded bytes of a !!binary value in a string field
            try:
                return base64.b64decode(re.sub(r"[\r\n]", "", str(node.value)), validate=True).decode(
                    errors="replace")
            except ValueError:
                self.wrong_type(path, node, "string (!!binary value contains invalid base64 data)",
                                "write the value as plain text")
                return ""
        if node.style is None and path and path[-1] in _SECRET_FIELDS:
            rest = self.lines[node.end_mark.line][node.end_mark.column:] if node.end_mark.line < len(
                self.lines) else ""
            if rest.lstrip().startswith("#"):
                self.add(path, node, "warning", "comment-cut",
                         f"YAML reads everything from ` #` on as a comment, so the value is only "
                         f"`{node.value}`; authentication will fail",
                         "quote the value: `'...'`")
        return str(node.value)

    def boolean(self, path: KeyPath, node: yaml.Node) -> bool:
        if _is_null(node):
            return False
        # `!!str true` is a string to yaml.v2 (an error for a bool field) whatever the text says
        tagged_other = self.explicit_tag(node) and node.tag != _BOOL_TAG
        if isinstance(node, yaml.ScalarNode) and node.style is None and not tagged_other:
            if node.value in _TRUE:
                return True
            if node.value in _FALSE:
                return False
        fix = "write `true` or `false` without quotes"
        self.wrong_type(path, node, "bool", fix)
        return False

    def unknown(self, path: KeyPath, key: yaml.Node, name: str, level: str) -> None:
        nearest, why = hints.suggest(level, name)
        where = "the top level" if level == "top" else f"`{format_path(path)}`"
        message = f"`{name}` is not a key K3s knows at {where}; it is ignored without a warning"
        if level == "top" and hints.looks_like_registry(name):
            message += " (a registry name at the top level: was the indentation lost?)"
            fix = f"indent `{name}` under `mirrors:` or `configs:`"
        elif level == "top" and hints.level_of(name) not in (None, "top"):
            deeper = str(hints.level_of(name))
            message += f" (a `{deeper}`-level key at the top level: was the indentation lost?)"
            fix = f"indent `{name}` under its registry entry"
            spelled, _ = hints.suggest(deeper, name)
            if spelled and spelled != name:
                fix += f" and rename it to `{spelled}`"
        elif nearest:
            fix = f"rename it to `{nearest}`" + (f": {why}" if why else "")
        elif hints.level_of(name) not in (None, level, "top"):
            where_to = {"tls": "`tls:`", "auth": "`auth:`", "mirror": "a `mirrors` entry",
                        "config": "a `configs` entry"}[str(hints.level_of(name))]
            fix = f"move it under {where_to}"
            spelled, _ = hints.suggest(str(hints.level_of(name)), name)
            if spelled and spelled != name:
                fix += f" and rename it to `{spelled}`"
        else:
            fix = why or f"valid keys here: {', '.join(hints.LEVEL_KEYS[level])}"
        if level == "auth" and name == "token":
            fix = why
        if level == "tls" and name.replace("-", "_").lower() in ("insecureskipverify", "insecure_skip_verify"):
            message += "; TLS verification stays ON, so pulls from a self-signed registry fail with x509 errors"
        self.add((*path, name), key, "error", "unknown-key", message, fix)

    def decode(self, root: yaml.Node | None) -> dict[str, Any]:
        out: dict[str, Any] = {"mirrors": {}, "configs": {}, "auths": {}}
        ignored: list[str] = []
        if root is None:
            return out
        for name, key, value in self.mapping((), root, "registries.Registry"):
            # A repeated map-typed field is decoded into the same Go map (entries merge, later ones win);
            # an explicit null resets it.
            if name == "mirrors":
                found = self.entries(("mirrors",), value, self.mirror, "map[string]Mirror")
            elif name == "configs":
                found = self.entries(("configs",), value, self.config, "map[string]HostSettings")
            elif name == "auths":
                found = self.entries(("auths",), value, self.auth, "map[string]AuthConfig")
            else:
                self.unknown((), key, name, "top")
                ignored.append(name)
                continue
            out[name] = {} if _is_null(value) else {**out[name], **found}
        if ignored and not out["mirrors"] and not out["configs"]:
            self.add((), root, "error", "nothing-configured",
                     "K3s ignores " + ", ".join(f"`{n}`" for n in ignored) + " and sees no mirror and no config: "
                     "every image is pulled straight from its own registry",
                     "nest registry entries under `mirrors:` / `configs:` with consistent space indentation")
        return out

    def entries(self, path: KeyPath, node: yaml.Node, each: Callable[[KeyPath, yaml.Node], Any],
                into: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, _key, value in self.mapping(path, node, into):
            result[name] = each((*path, name), value)  # a Go map: a duplicate replaces the whole entry
        return result

    def mirror(self, path: KeyPath, node: yaml.Node) -> dict[str, Any]:
        out: dict[str, Any] = {"endpoint": [], "rewrite": {}}
        for name, key, value in self.mapping(path, node, "registries.Mirror"):
            if name == "endpoint":
                out["endpoint"] = self.str_list((*path, name), value)
            elif name == "rewrite":
                found = {k: self.string((*path, name, k), v)
                         for k, _kn, v in self.mapping((*path, name), value, "map[string]string")}
                out["rewrite"] = {} if _is_null(value) else {**out["rewrite"], **found}
            else:
                self.unknown(path, key, name, "mirror")
        return out

    def str_list(self, path: KeyPath, node: yaml.Node) -> list[str]:
        if _is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            fix = "write the endpoints as a list: `endpoint:` then `  - \"https://...\"` lines"
            self.wrong_type(path, node, "[]string", fix)
            return []
        items = []
        for i, item in enumerate(node.value):
            self.positions[(*path, i)] = (item.start_mark.line + 1, item.start_mark.column + 1)
            items.append(self.string((*path, i), item))
        return items

    def config(self, path: KeyPath, node: yaml.Node) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, key, value in self.mapping(path, node, "registries.HostSettings"):
            if name == "auth":
                # a struct field: yaml.v2 decodes a repeated key into the same object
                out["auth"] = None if _is_null(value) else {**(out.get("auth") or {}),
                                                            **self.auth((*path, name), value)}
            elif name == "tls":
                out["tls"] = None if _is_null(value) else {**(out.get("tls") or {}),
                                                           **self.tls((*path, name), value)}
            else:
                self.unknown(path, key, name, "config")
        return out

    def auth(self, path: KeyPath, node: yaml.Node) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, key, value in self.mapping(path, node, "registries.AuthConfig"):
            if name in AUTH_FIELDS:
                out[name] = self.string((*path, name), value)
            else:
                self.unknown(path, key, name, "auth")
        return out

    def tls(self, path: KeyPath, node: yaml.Node) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, key, value in self.mapping(path, node, "registries.TLSConfig"):
            if name == "insecure_skip_verify":
                out[name] = self.boolean((*path, name), value)
            elif name in TLS_FIELDS:
                out[name] = self.string((*path, name), value)
            else:
                self.unknown(path, key, name, "tls")
        return out


def _prescan(text: str) -> tuple[str, list[Finding]]:
    """Find tabs in indentation and unquoted `*` keys; return a repaired copy and one finding per line."""
    findings: list[Finding] = []
    out_lines = []
    for n, line in enumerate(text.split("\n"), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent and line.strip() and not line.lstrip().startswith("#"):
            findings.append(Finding(
                "(top level)", "error", "syntax",
                "a tab in the indentation: YAML forbids tabs there, so K3s fails to parse the file and the "
                "agent does not start", "indent with spaces only", n, indent.index("\t") + 1))
            line = indent.replace("\t", "  ") + line[len(indent):]
        m = _STAR_KEY.match(line)
        if m:
            findings.append(Finding(
                "(top level)", "error", "syntax",
                "an unquoted `*` key: YAML reads `*` as an alias, so K3s fails to parse the file and the "
                "agent does not start", 'quote the wildcard: `"*":`', n, len(m.group(1)) + 1))
            line = m.group(1) + '"*"' + m.group(2) + line[m.end():]
        out_lines.append(line)
    return "\n".join(out_lines), findings


def decode_text(text: str) -> Decoded:
    """Decode registries.yaml text as K3s would, collecting every parser-level finding at once."""
    repaired, findings = _prescan(text)
    lines = repaired.split("\n")
    decoder = _Decoder(lines)
    decoder.findings.extend(findings)
    decoder.fatal = bool(findings)
    try:
        documents = list(yaml.compose_all(repaired, Loader=yaml.SafeLoader))
        root = documents[0] if documents else None
        for extra in documents[1:]:
            # yaml.v2's Unmarshal reads the first document only.
            decoder.add((), extra, "warning", "extra-document", "K3s reads only the first YAML document; "
                        "everything after this `---` is ignored", "merge the documents into one")
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = " ".join(p for p in (e.context, e.problem) if p)
        decoder.findings.append(Finding(
            "(top level)", "error", "syntax",
            f"YAML syntax error ({problem}): K3s fails to parse the file and the agent does not start",
            "use single quotes ('...'), where a backslash is literal" if "escape" in problem else
            "fix the YAML at this position (indent with spaces, quote values containing `: ` or `#`)",
            mark.line + 1 if mark else None, mark.column + 1 if mark else None))
        return Decoded(RegistriesYaml(), decoder.findings, {}, True, lines)
    except yaml.YAMLError as e:
        decoder.findings.append(Finding("(top level)", "error", "syntax", f"YAML error: {e}",
                                        "fix the YAML", None, None))
        return Decoded(RegistriesYaml(), decoder.findings, {}, True, lines)
    data = decoder.decode(root)
    registries = RegistriesYaml.from_data(data)
    return Decoded(registries, decoder.findings, decoder.positions, decoder.fatal, lines)


def load_registries(text: str, source: str = "registries.yaml") -> RegistriesYaml:
    """The model K3s would build from `text`; ConfigError (every fatal problem) when K3s would not start."""
    decoded = decode_text(text)
    if decoded.fatal:
        problems = [f"{source}:{f.location()}: {f.path}: {f.message}; fix: {f.fix}"
                    for f in decoded.findings if f.code in ("syntax", "wrong-type")]
        raise ConfigError(problems)
    return decoded.registries


def load_registries_file(path: Path) -> RegistriesYaml:
    """Read a registries.yaml; a missing file is an empty configuration, as on a K3s node."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return RegistriesYaml()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"{path}: cannot read: {e}"]) from e
    return load_registries(text, str(path))

