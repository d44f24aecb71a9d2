"""K3s / RKE2 node side: registries.yaml model, validation, hosts.toml rendering, pull explanation.

Public API (what `k3sreg mirrors` and the SSH rollout use):

    load_registries(text, source) -> Registries          decode as K3s does; ConfigError when K3s would not start
    load_registries_file(path) -> Registries              a missing file is an empty configuration, as on a node
    validate_text(text, options) -> list[Finding]         every problem at once (decode + semantic rules)
    RenderOptions(no_default_endpoint, embedded_registry, program="k3s"|"rke2", data_dir, mirror_address)
    render_hosts(registries, options) -> dict[str, str]   "<host dir>/hosts.toml" → content, exactly K3s's set
    render(registries, options) -> Render                 the same plus K3s's log notes and the host entries
    apply_hosts(certs_dir, files, program) -> Applied     write a render into a certs.d directory the K3s way:
                                                          remove the directories about to be written and every
                                                          directory whose hosts.toml starts with the generated
                                                          header; leave hand-written ones alone
    containerd_auth_toml(registries, version) -> str      the config.toml stanzas that carry the credentials
    explain(image, files, registries, runtime) -> Plan    the ordered requests containerd makes for one pull
    generate(InitSpec) -> str                             a minimal, commented registries.yaml

Modules: `endpoints` (Go URL parsing and K3s normalisation), `decode` (yaml.v2 semantics on PyYAML nodes),
`model` (pydantic), `validate` + `rewrites` + `hints` (rules), `render` + `apply` (hosts.toml), `explain`,
`generate`. Nothing here imports the server or the storage.
"""

from __future__ import annotations

from k3sreg.k3s.apply import Applied, apply_hosts
from k3sreg.k3s.decode import load_registries, load_registries_file
from k3sreg.k3s.explain import Plan, explain
from k3sreg.k3s.findings import Finding
from k3sreg.k3s.generate import InitSpec, generate
from k3sreg.k3s.model import Registries
from k3sreg.k3s.render import Render, RenderOptions, containerd_auth_toml, render, render_hosts
from k3sreg.k3s.validate import validate_text

__all__ = [
    "Applied", "Finding", "InitSpec", "Plan", "Registries", "Render", "RenderOptions", "apply_hosts",
    "containerd_auth_toml", "explain", "generate", "load_registries", "load_registries_file", "render",
    "render_hosts", "validate_text",
]
