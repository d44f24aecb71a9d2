"""The checks on a node's files: registries.yaml, what K3s generated from it, the credentials containerd got, the
K3s release and the embedded registry.

    registries.file     present, readable, root-only when it holds credentials
    registries.valid    every `mirrors validate` finding (errors fail, warnings warn)
    hosts.current       certs.d/*/hosts.toml == `mirrors render` of the node's registries.yaml (compared as
                        parsed TOML, since releases differ in blank lines); else K3s was not restarted
    credentials.loaded  each configs.*.auth is in containerd's config.toml (v2 or v3 path), unchanged
    k3s.version         the release, its rules, and what the file asks that this release cannot do
    k3s.embedded        --embedded-registry on or off, and where that was read
"""

from __future__ import annotations

import datetime
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from k3sreg.doctor.gather import Facts, FileFact
from k3sreg.doctor.model import Finding, failed, passed, warned
from k3sreg.doctor.setup import Setup
from k3sreg.doctor.versions import EMBEDDED_GA, HOSTS_TOML, WILDCARD
from k3sreg.k3s.decode import Decoded, decode_text
from k3sreg.k3s.endpoints import is_ipv6_literal
from k3sreg.k3s.model import AuthConfig, RegistriesYaml
from k3sreg.k3s.render import RenderOptions, header_line, render_hosts
from k3sreg.k3s.validate import validate_decoded

_ROLL_OUT = "write it with `k3sreg mirrors init` and roll it out with `k3sreg nodes apply`"
_CRI_V2 = ("plugins", "io.containerd.grpc.v1.cri", "registry", "configs")
_CRI_V3 = ("plugins", "io.containerd.cri.v1.images", "registry", "configs")


@dataclass
class Loaded:
    """registries.yaml as read on the node: None when missing or unusable."""

    fact: FileFact
    decoded: Decoded | None

    @property
    def registries(self) -> RegistriesYaml | None:
        """The model K3s builds; None when the file is missing or K3s would refuse it."""
        if self.decoded is None or self.decoded.fatal:
            return None
        return self.decoded.registries


def render_options(setup: Setup) -> RenderOptions:
    """The render K3s makes on this node."""
    return RenderOptions(no_default_endpoint=setup.no_default, embedded_registry=setup.embedded,
                         program=setup.flavor, data_dir=setup.data_dir)


def check_registries(setup: Setup, facts: Facts) -> tuple[list[Finding], Loaded]:
    """registries.file and registries.valid."""
    path = setup.registries_path
    fact = facts.file(path)
    if fact.state == "absent":
        return [failed("registries.file", path, f"no {path}: K3s uses no mirror on this node, every pull goes "
                       "to the registry the image names", _ROLL_OUT)], Loaded(fact, None)
    if fact.state != "present" or fact.content is None:
        what = "not a file" if fact.state == "notfile" else "not readable by doctor"
        return [failed("registries.file", path, f"{path} is {what}",
                       "run doctor as root (sudo: true in the inventory for other users)" if fact.state ==
                       "unreadable" else f"make {path} a regular file")], Loaded(fact, None)
    try:
        text = fact.content.decode("utf-8")
    except UnicodeDecodeError:
        return [failed("registries.file", path, f"{path} is not UTF-8 text: K3s does not start with it",
                       "save it as UTF-8")], Loaded(fact, None)
    decoded = decode_text(text)
    out = []
    holds_credentials = any(c.auth is not None and not c.auth.is_empty() for c in decoded.registries.configs.values())
    seen = f"{len(fact.content)} bytes, owner uid {fact.uid}, mode {fact.mode or 0:o}"
    if holds_credentials and not (fact.uid == 0 and fact.mode is not None and fact.mode & 0o077 == 0):
        out.append(warned("registries.file", path, f"{seen}: it holds credentials that other users can read",
                          f"chown root:root {path} && chmod 600 {path}"))
    else:
        out.append(passed("registries.file", path, seen))
    findings = validate_decoded(decoded, render_options(setup))
    for f in findings:
        where = f"{path}:{f.location()}: {f.path}" if f.location() else f"{path}: {f.path}"
        make = failed if f.severity == "error" else warned
        out.append(make("registries.valid", where, f.message, f.fix))
    if not findings:
        out.append(passed("registries.valid", path, "no problem found"))
    return out, Loaded(fact, decoded)


def _parsed(text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return text


def _when(mtime: int | None) -> str:
    if mtime is None:
        return "?"
    return datetime.datetime.fromtimestamp(mtime, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def check_hosts(setup: Setup, facts: Facts, loaded: Loaded) -> list[Finding]:
    """hosts.current: what K3s wrote under certs.d against what it writes from this registries.yaml."""
    certs = setup.certs_d
    runtime = setup.runtime
    if runtime.k3s is not None and not runtime.hosts_toml:
        return [passed("hosts.current", certs, f"{runtime.program} {runtime.k3s} writes mirrors into "
                       "config.toml, not hosts.toml: not compared")]
    registries = loaded.registries
    if registries is None:
        return []
    expected = render_hosts(registries, render_options(setup))
    header = header_line(setup.flavor) + "\n"
    present = facts.under(certs)
    generated = {rel: f for rel, f in present.items() if (f.text() or "").startswith(header)}
    if facts.dirs.get(certs) == "unreadable":
        return [warned("hosts.current", certs, f"{certs} cannot be read by doctor: not compared",
                       "run doctor as root (sudo: true in the inventory for other users)")]
    if facts.dirs.get(certs) != "present":
        if not expected:
            return [passed("hosts.current", certs, "registries.yaml asks for no hosts.toml, and there is none")]
        return [failed("hosts.current", certs, f"no {certs}: no mirror is in effect (K3s has not started since "
                       "registries.yaml was written, or its data dir is elsewhere)",
                       f"restart K3s ({setup.restart_hint()}), or set data-dir in config.yaml")]
    missing = sorted(set(expected) - set(generated))
    extra = sorted(set(generated) - set(expected))
    differ = sorted(rel for rel in set(expected) & set(generated)
                    if _parsed(expected[rel]) != _parsed(generated[rel].text() or ""))
    written = [f.mtime for f in generated.values() if f.mtime is not None]
    newest_source = loaded.fact.mtime
    when = f"registries.yaml changed {_when(newest_source)}, hosts.toml written {_when(min(written, default=None))}"
    if missing or extra or differ:
        parts = [f"{label} {', '.join(d.rsplit('/', 1)[0] for d in dirs)}"
                 for label, dirs in (("missing", missing), ("different", differ), ("left over", extra)) if dirs]
        return [failed("hosts.current", certs, f"K3s has not been restarted since registries.yaml changed: "
                       f"{'; '.join(parts)} ({when})", f"restart K3s: {setup.restart_hint()}")]
    if not expected:
        return [passed("hosts.current", certs, "registries.yaml asks for no hosts.toml, and K3s wrote none")]
    if newest_source is not None and written and newest_source > min(written):
        return [passed("hosts.current", certs, f"{len(expected)} files as K3s writes them; registries.yaml is "
                       f"newer ({when}) but generates the same files")]
    return [passed("hosts.current", certs, f"{len(expected)} files, as K3s writes them from registries.yaml")]


def _dig(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def containerd_credentials(config_toml: str | None) -> dict[str, AuthConfig]:
    """The credentials in containerd's config.toml (either version's path), keyed as K3s wrote them."""
    if config_toml is None:
        return {}
    try:
        doc = tomllib.loads(config_toml)
    except tomllib.TOMLDecodeError:
        return {}
    out = {}
    for path in (_CRI_V2, _CRI_V3):
        configs = _dig(doc, path)
        if not isinstance(configs, dict):
            continue
        for key, entry in configs.items():
            auth = entry.get("auth") if isinstance(entry, dict) else None
            if isinstance(auth, dict):
                out[key] = AuthConfig(username=str(auth.get("username", "")), password=str(auth.get("password", "")),
                                      auth=str(auth.get("auth", "")),
                                      identity_token=str(auth.get("identitytoken", "")))
    return out


def check_credentials(setup: Setup, facts: Facts, loaded: Loaded) -> list[Finding]:
    """credentials.loaded: every configs.*.auth of registries.yaml is what containerd's config.toml carries."""
    registries = loaded.registries
    if registries is None:
        return []
    wanted = {k: c.auth for k, c in registries.configs.items() if c.auth is not None and not c.auth.is_empty()}
    fact = facts.file(setup.config_toml)
    text = fact.text()
    if not wanted:
        return [passed("credentials.loaded", setup.config_toml, "registries.yaml configures no credentials")]
    if fact.state == "unreadable":
        return [warned("credentials.loaded", setup.config_toml, f"{setup.config_toml} cannot be read by doctor: "
                       "not compared", "run doctor as root (sudo: true in the inventory for other users)")]
    if text is None:
        return [failed("credentials.loaded", setup.config_toml, f"no {setup.config_toml}: containerd has none of "
                       f"the credentials for {', '.join(sorted(wanted))}", f"start K3s ({setup.restart_hint()})")]
    have = containerd_credentials(text)
    out = []
    for key, auth in sorted(wanted.items()):
        if key not in have:
            out.append(failed("credentials.loaded", key, "containerd's config.toml has no credentials for it: K3s "
                              "has not been restarted since they were added (or a custom config.toml.tmpl drops "
                              "the registry section)", f"restart K3s ({setup.restart_hint()})"))
        elif have[key] != auth:
            out.append(failed("credentials.loaded", key, "the credentials in containerd's config.toml differ from "
                              "registries.yaml: K3s has not been restarted since they changed",
                              f"restart K3s ({setup.restart_hint()})"))
        else:
            out.append(passed("credentials.loaded", key, "containerd's config.toml carries these credentials"))
    return out


def check_version(setup: Setup, loaded: Loaded) -> list[Finding]:
    """k3s.version: the release and its rules; what registries.yaml or the flags ask that it cannot do."""
    runtime = setup.runtime
    program = runtime.program
    if runtime.k3s is None:
        return [warned("k3s.version", program, f"`{program} --version` did not answer: the release rules were "
                       "not checked", f"install {program.upper()}, or put {program} on root's PATH")]
    seen = f"{program} {runtime.k3s}" + (f", containerd {runtime.containerd}" if runtime.containerd else "")
    seen += ": " + ", ".join(runtime.rules())
    registries = loaded.registries or RegistriesYaml()
    version = runtime.k3s
    out = []
    if ("*" in registries.mirrors or "*" in registries.configs) and not version.at_least(WILDCARD):
        out.append(failed("k3s.version", program, f"{seen}; registries.yaml uses \"*\", which this release "
                          "ignores", f"upgrade {program} (wildcards came with {_gate_text(WILDCARD)}) or name "
                          "each registry"))
    if setup.no_default and not version.at_least(HOSTS_TOML):
        out.append(failed("k3s.version", program, f"{seen}; --disable-default-registry-endpoint (from "
                          f"{setup.no_default_from}) does not exist in this release",
                          f"upgrade {program} to {_gate_text(HOSTS_TOML)} or later, or remove the option"))
    if setup.embedded and not version.at_least(HOSTS_TOML):
        out.append(failed("k3s.version", program, f"{seen}; the embedded registry (from {setup.embedded_from}) "
                          "does not exist in this release",
                          f"upgrade {program} to {_gate_text(HOSTS_TOML)} or later"))
    containerd1 = not runtime.containerd2
    if containerd1 and any(is_ipv6_literal(_host_of(ep)) for m in registries.mirrors.values() for ep in m.endpoint):
        out.append(failed("k3s.version", program, f"{seen}; an endpoint is an IPv6 literal, which containerd 1.7 "
                          "cannot read in hosts.toml (the whole file is ignored)",
                          "use a DNS name for that endpoint, or a release with containerd 2"))
    return out or [passed("k3s.version", program, seen)]


def _host_of(endpoint: str) -> str:
    rest = endpoint.split("://", 1)[-1]
    return rest.split("/", 1)[0]


def _gate_text(gate: Mapping[int, int]) -> str:
    return ", ".join(f"v1.{minor}.{patch}" for minor, patch in sorted(gate.items()))


def check_embedded(setup: Setup, loaded: Loaded) -> list[Finding]:
    """k3s.embedded: on or off, where that was read, and whether it can share anything here."""
    program = setup.flavor
    if not setup.embedded:
        return [passed("k3s.embedded", program, "embedded registry (Spegel) off")]
    seen = f"embedded registry (Spegel) on, from {setup.embedded_from}"
    if setup.role == "agent" and "config.yaml" in setup.embedded_from:
        return [failed("k3s.embedded", program, f"{seen}: it is a server option, an agent with it in its "
                       "config does not start", f"remove embedded-registry from {setup.embedded_from}")]
    registries = loaded.registries or RegistriesYaml()
    if not registries.mirrors:
        return [warned("k3s.embedded", program, f"{seen}, but registries.yaml names no registry to share: the "
                       "mirror does not start on this node", "add a mirrors entry (endpoints optional) per "
                       "registry to share, or \"*\"")]
    version = setup.runtime.k3s
    if version is not None and version.at_least(HOSTS_TOML) and not version.at_least(EMBEDDED_GA):
        return [warned("k3s.embedded", program, f"{seen}; experimental in {program} {version}",
                       f"upgrade to {_gate_text(EMBEDDED_GA)} or later, where it is generally available")]
    return [passed("k3s.embedded", program, f"{seen}; nodes must reach each other on ports 5001 and "
                   f"{setup.mirror_address.rsplit(':', 1)[1]}")]
