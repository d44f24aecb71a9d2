"""`k3sreg mirrors init`: write a minimal, commented registries.yaml from what the user means.

The output only uses keys K3s reads, quotes every string (so `*`, `yes` or `#` cannot change meaning),
gives each endpoint scheme explicitly (an endpoint given without one gets `scheme`, or else the scheme K3s
would pick, and a comment and a note saying which and why: K3s picks https for every host but loopback,
which is wrong for a plain-HTTP k3sreg and shows only as x509/"HTTP response to HTTPS client" errors),
keys TLS and credentials by the endpoint's exact `host:port` (the host containerd actually contacts), and
leaves out settings that would do nothing (TLS on plain-HTTP endpoints, the registry itself as the last
endpoint). It validates with no finding.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from k3sreg.errors import UsageError
from k3sreg.k3s.endpoints import EndpointError, normalize_endpoint, parse_url
from k3sreg.k3s.rewrites import check_rewrites


@dataclass(frozen=True)
class InitSpec:
    """What the user asked for; TLS and credentials apply to every endpoint host."""

    endpoints: Sequence[str]
    mirrors: Sequence[str]
    insecure_skip_verify: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    username: str = ""
    password: str = ""
    rewrites: dict[str, str] = field(default_factory=dict)
    program: str = "k3s"
    # The scheme for endpoints given without one ("" = the one K3s would pick), and where it came from
    # (shown in the notes; "--scheme" when empty). An endpoint written with a scheme keeps it.
    scheme: str = ""
    scheme_reason: str = ""


SCHEMES = ("http", "https")


def endpoint_scheme(address: str, spec: InitSpec) -> tuple[str, str]:
    """(the URL to write for `address`, why its scheme was chosen or "" when the user wrote it).

    Raises EndpointError for an address K3s cannot parse.
    """
    if "://" in address:
        return _explicit(address), ""
    if spec.scheme:
        why = spec.scheme_reason or f"--scheme {spec.scheme}"
        return _explicit(f"{spec.scheme}://{address}"), f"no scheme given: {spec.scheme}, from {why}"
    url = _explicit(address)
    if url.startswith("http://"):
        return url, "no scheme given: http, as K3s uses for a loopback host with a port"
    return url, ("no scheme given: https, as K3s assumes for a host that is not loopback; write http:// or "
                 "pass --scheme http if the registry serves plain HTTP, as k3sreg does without http.tls")


def scheme_notes(spec: InitSpec) -> list[str]:
    """One line per endpoint whose scheme `generate` chose, saying which and why (empty when all were given)."""
    notes = []
    for address in dict.fromkeys(spec.endpoints):
        with contextlib.suppress(EndpointError):
            url, why = endpoint_scheme(address, spec)
            if why:
                notes.append(f"--endpoint {address}: wrote {url} ({why})")
    return notes


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _explicit(address: str) -> str:
    """The endpoint with the scheme K3s would pick written out, and without a trailing `/v2`."""
    ep = normalize_endpoint(address)
    if "://" in address:
        return address.rstrip("/")
    path = parse_url("//" + address).path
    return f"{ep.scheme}://{address.split('/', 1)[0]}{path if path not in ('', '/', '/v2') else ''}"


def _check(spec: InitSpec) -> None:
    if spec.scheme and spec.scheme not in SCHEMES:
        raise UsageError(f"--scheme must be http or https, not {spec.scheme!r}")
    problems = []
    if not spec.endpoints:
        problems.append("give at least one --endpoint (the mirror's address, e.g. http://127.0.0.1:30500)")
    if not spec.mirrors:
        problems.append("give at least one --mirror (a registry name such as docker.io, or \"*\")")
    for address in spec.endpoints:
        try:
            ep = normalize_endpoint(address)
        except EndpointError as e:
            problems.append(f"--endpoint {address!r}: {e}")
            continue
        if ep.scheme not in SCHEMES:
            problems.append(f"--endpoint {address!r}: scheme must be http or https")
    schemes: dict[str, set[str]] = {}
    for address in spec.endpoints:
        with contextlib.suppress(EndpointError):
            ep = normalize_endpoint(endpoint_scheme(address, spec)[0])
            schemes.setdefault(ep.host, set()).add(ep.scheme)
    tls_asked = spec.insecure_skip_verify or spec.ca_file or spec.cert_file or spec.key_file
    for host, used in schemes.items():
        if tls_asked and used >= {"http", "https"}:
            problems.append(f"{host} is listed with both http:// and https://: TLS settings are per host, so "
                            "they would also make containerd try HTTPS on the http:// one; keep one scheme")
    for name in spec.mirrors:
        if name != "*" and ("/" in name or not name or name.startswith(".")):
            problems.append(f"--mirror {name!r}: a registry name is host[:port] (no scheme, no path), or \"*\"")
    for flag, path in (("--ca-file", spec.ca_file), ("--cert-file", spec.cert_file), ("--key-file", spec.key_file)):
        if path and not path.startswith("/"):
            problems.append(f"{flag} {path!r}: give the absolute path of the file on the node")
    if spec.key_file and not spec.cert_file:
        problems.append("--key-file needs --cert-file")
    if spec.password and not spec.username:
        problems.append("a password needs --username")
    problems += [f"--rewrite {p.pattern!r}: {p.message}" for p in check_rewrites(spec.rewrites)
                 if p.severity == "error"]
    if problems:
        raise UsageError("; ".join(problems))


def generate(spec: InitSpec) -> str:
    """The registries.yaml text for `spec`; UsageError when the request cannot make a working file."""
    _check(spec)
    # One entry per normalised URL: `https://h` and `https://h/v2` are the same endpoint to K3s.
    unique: dict[str, str] = {}
    why: dict[str, str] = {}
    for address in spec.endpoints:
        url, reason = endpoint_scheme(address, spec)
        key = normalize_endpoint(url).url
        if key not in unique:
            unique[key] = url
            why[url] = reason
    endpoints = list(unique.values())
    program = spec.program
    lines = [
        f"# registries.yaml written by `k3sreg mirrors init`. Install it as /etc/rancher/{program}/registries.yaml",
        f"# on EVERY node and restart {program} ({program}-agent on agents): it is read only at start.",
        "# Endpoints are tried in order, then the registry itself (unless the node runs with",
        "# --disable-default-registry-endpoint). Check with `k3sreg mirrors validate`.",
        "mirrors:",
    ]
    for name in dict.fromkeys(spec.mirrors):
        own = None if name == "*" else normalize_endpoint(name).url
        listed = list(endpoints)
        if own is not None and listed and normalize_endpoint(listed[-1]).url == own:
            listed.pop()  # the registry itself is already tried last, as `server`
        if not listed:
            raise UsageError(f"--mirror {name!r}: every endpoint is the registry itself; give a mirror endpoint")
        lines.append(f"  {_q(name)}:")
        lines.append("    endpoint:")
        lines += [f"      - {_q(e)}" + (f"  # {why[e].split(';')[0]}" if why[e] else "") for e in listed]
        if spec.rewrites:
            lines.append("    rewrite:  # applied to the endpoints above, never to the registry itself")
            lines += [f"      {_q(p)}: {_q(r)}" for p, r in sorted(spec.rewrites.items())]
    lines += _configs(spec, endpoints)
    return "\n".join(lines) + "\n"


def _configs(spec: InitSpec, endpoints: list[str]) -> list[str]:
    out: list[str] = []
    hosts: dict[str, set[str]] = {}
    for address in endpoints:
        ep = normalize_endpoint(address)
        hosts.setdefault(ep.host, set()).add(ep.scheme)
    for host, schemes in hosts.items():
        tls: list[str] = []
        if schemes == {"https"}:
            if spec.ca_file:
                tls.append(f"      ca_file: {_q(spec.ca_file)}")
            if spec.cert_file:
                tls.append(f"      cert_file: {_q(spec.cert_file)}")
            if spec.key_file:
                tls.append(f"      key_file: {_q(spec.key_file)}")
            if spec.insecure_skip_verify:
                tls.append("      insecure_skip_verify: true  # the certificate is NOT checked")
        auth: list[str] = []
        if spec.username:
            auth.append(f"      username: {_q(spec.username)}")
        if spec.password:
            auth.append(f"      password: {_q(spec.password)}")
        if not tls and not auth:
            continue
        if not out:
            out.append("configs:  # keyed by the exact host:port containerd contacts")
        out.append(f"  {_q(host)}:")
        if auth:
            out += ["    auth:", *auth]
        if tls:
            out += ["    tls:", *tls]
    return out
