"""`k3sreg mirrors validate`: every problem of a registries.yaml at once.

Parser-level findings come from `decode` (syntax, duplicate and unknown keys, wrong types). The rules here
look at what the decoded file means on a node: keys that match nothing, endpoints that normalise in a
surprising way, rewrites that can never apply or break hosts.toml, TLS and credentials that do not reach
the host they were meant for, credentials sent in clear text, certificates left unchecked, and certificate
files (when readable here) that are expired or not for their host. Each rule is a function of a `_Context`
yielding findings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from k3sreg.k3s import rewrites as rw
from k3sreg.k3s.certfiles import check_cert_file, readable
from k3sreg.k3s.decode import Decoded, decode_text
from k3sreg.k3s.endpoints import (
    Endpoint,
    EndpointError,
    default_host,
    is_ipv6_literal,
    is_localhost,
    normalize_endpoint,
    parse_url,
    split_host_port,
)
from k3sreg.k3s.findings import Finding, KeyPath, Severity, format_path, sort_findings
from k3sreg.k3s.render import RenderOptions
from k3sreg.oci.reference import DOCKER_HUB, DOCKER_HUB_HOST


@dataclass
class _Context:
    decoded: Decoded
    options: RenderOptions

    def finding(self, path: KeyPath, severity: Severity, code: str, message: str, fix: str) -> Finding:
        line = col = None
        for n in range(len(path), 0, -1):
            if path[:n] in self.decoded.positions:
                line, col = self.decoded.positions[path[:n]]
                break
        return Finding(format_path(path), severity, code, message, fix, line, col)

    def endpoints(self, key: str) -> Iterator[tuple[int, str, Endpoint | None]]:
        for i, address in enumerate(self.decoded.registries.mirrors[key].endpoint):
            try:
                yield i, address, normalize_endpoint(address, self.options.effective_mirror_address())
            except EndpointError:
                yield i, address, None


Rule = Callable[[_Context], Iterator[Finding]]


def _rule_keys(ctx: _Context) -> Iterator[Finding]:
    reg = ctx.decoded.registries
    for section, keys in (("mirrors", reg.mirrors), ("configs", reg.configs)):
        for key in keys:
            path = (section, key)
            if key in ("", ".", "..") or key.startswith("/"):
                yield ctx.finding(path, "error", "bad-key", f"`{key}` is not a registry name; K3s would write "
                                  "its hosts.toml outside the right directory", "use `host` or `host:port`")
                continue
            if "://" in key:
                host = key.split("://", 1)[1].split("/", 1)[0]
                yield ctx.finding(path, "error", "key-scheme", f"a {section} key is a registry name, not a URL: "
                                  f"`{key}` matches no image and no endpoint, so it is silently unused",
                                  f"write the key as `{host}`" + ("; put the URL in `endpoint`"
                                                                  if section == "mirrors" else ""))
                continue
            if "/" in key:
                yield ctx.finding(path, "error", "key-path", f"`{key}` has a path: K3s writes it to a nested "
                                  "directory containerd never reads, so the entry does nothing",
                                  f"write the key as `{key.split('/', 1)[0]}`")
                continue
            if key == "_default":
                yield ctx.finding(path, "error", "bad-key", "`_default` is the directory K3s writes for `\"*\"`; "
                                  "both end up in the same file and one silently replaces the other",
                                  'use the wildcard key `"*"`')
            if key in ("index.docker.io", DOCKER_HUB_HOST) and section == "mirrors":
                yield ctx.finding(path, "error", "dockerhub-key", f"images from Docker Hub are named "
                                  f"`docker.io/...`; containerd looks up `certs.d/docker.io`, never `{key}`, "
                                  "so this mirror is never used", "rename the key to `docker.io`")
            try:
                parse_url("//" + key)
            except EndpointError as e:
                yield ctx.finding(path, "error", "bad-key", f"K3s cannot parse `{key}` ({e}) and skips the entry",
                                  "use `host` or `host:port`")


def _rule_endpoints(ctx: _Context) -> Iterator[Finding]:
    reg = ctx.decoded.registries
    for key, mirror in reg.mirrors.items():
        seen: dict[str, int] = {}
        count = len(mirror.endpoint)
        for i, address, ep in ctx.endpoints(key):
            path = ("mirrors", key, "endpoint", i)
            if not address.strip():
                yield ctx.finding(path, "error", "endpoint-empty", "an empty endpoint: K3s writes a host with "
                                  "no address and containerd fails on it", "remove the item")
                continue
            if ep is None:
                yield ctx.finding(path, "error", "endpoint-invalid", f"K3s cannot parse `{address}` and skips this "
                                  "endpoint (\"Ignoring invalid endpoint URL\")", "write `http(s)://host[:port]`")
                continue
            if ep.scheme not in ("http", "https"):
                yield ctx.finding(path, "error", "endpoint-scheme", f"scheme `{ep.scheme}`: containerd only "
                                  "speaks http and https, every request to this endpoint fails",
                                  "use `http://` or `https://`")
            if "://" not in address:
                _name, port = split_host_port(ep.host)
                if port and port != "443" and not is_localhost(ep.host):
                    yield ctx.finding(path, "warning", "endpoint-https-default", f"`{address}` has no scheme, "
                                      f"so K3s uses https ({ep.url}); a registry serving plain HTTP on port "
                                      f"{port} fails with \"http: server gave HTTP response to HTTPS client\"",
                                      f"write `http://{address}` if it serves plain HTTP, `https://{address}` "
                                      "otherwise")
            u = parse_url(address if "://" in address else "//" + address)
            if u.userinfo:
                yield ctx.finding(path, "warning", "endpoint-userinfo", "credentials in an endpoint URL are not "
                                  "used for registry authentication", f"move them to `configs.\"{ep.host}\".auth`")
            if u.query or u.fragment:
                part = "query string" if u.query else "fragment"
                yield ctx.finding(path, "warning", "endpoint-query", "containerd keeps only the scheme, host "
                                  f"and path of an endpoint: the {part} is dropped",
                                  "remove the `?...` part" if u.query else "remove the `#...` part")
            if ep.override_path:
                yield ctx.finding(path, "warning", "endpoint-path", f"path `{u.path}` is not `/v2`: containerd "
                                  f"uses it verbatim as the API root (override_path), e.g. "
                                  f"`{ep.url.rstrip('/')}/<repo>/manifests/<tag>`, without adding `/v2`",
                                  "fine for registries served under a prefix; otherwise end the URL with `/v2`")
            if is_ipv6_literal(ep.host):
                yield ctx.finding(path, "warning", "endpoint-ipv6", "containerd 1.7 (K3s before 2025) cannot "
                                  "parse hosts.toml keys with IPv6 literals (k3s #9897) and ignores the file",
                                  "use a host name, or check the node runs containerd 2.x")
            if ep.url in seen:
                yield ctx.finding(path, "warning", "endpoint-duplicate", f"same endpoint as item {seen[ep.url]} "
                                  f"after normalisation ({ep.url}); K3s drops it",
                                  "remove the duplicate")
                continue
            seen[ep.url] = i
            if i + 1 == count and key != "*" and not ctx.options.no_default_endpoint:
                try:
                    default = normalize_endpoint(key, ctx.options.effective_mirror_address())
                except EndpointError:
                    continue
                if default.url == ep.url:
                    yield ctx.finding(path, "warning", "endpoint-is-default", f"`{address}` is the registry "
                                      "itself, which containerd already tries last (`server`): this item is a "
                                      "no-op unless --disable-default-registry-endpoint is set",
                                      "remove it, or keep it to allow the upstream when the default is disabled")


def _rule_rewrites(ctx: _Context) -> Iterator[Finding]:
    for key, mirror in ctx.decoded.registries.mirrors.items():
        if not mirror.rewrite:
            continue
        base = ("mirrors", key, "rewrite")
        real = [ep for _, _, ep in ctx.endpoints(key) if ep is not None]
        try:
            default_url = normalize_endpoint(key).url if key != "*" else None
        except EndpointError:
            default_url = None
        usable = [ep for ep in real if ep.url != default_url or real.index(ep) + 1 < len(real)]
        if not usable:
            yield ctx.finding(base, "error", "rewrite-unused", "rewrites apply only to mirror endpoints, never to "
                              "the registry itself (`server`); this mirror has no other endpoint, so they are "
                              "never applied", "add the mirror endpoint the rewritten names live on")
        for problem in rw.check_rewrites(mirror.rewrite):
            yield ctx.finding(base + ((problem.pattern,) if problem.pattern else ()), problem.severity,
                              problem.code, problem.message, problem.fix)


def _endpoint_hosts(ctx: _Context) -> dict[str, list[tuple[str, Endpoint]]]:
    """Config lookup name → [(mirror key, endpoint)] over every endpoint of every mirror."""
    out: dict[str, list[tuple[str, Endpoint]]] = {}
    for key in ctx.decoded.registries.mirrors:
        for _, _, ep in ctx.endpoints(key):
            if ep is not None:
                # configs are found by the endpoint's registry name, and for Docker Hub by its host too
                for name in dict.fromkeys((ep.registry, ep.host)):
                    out.setdefault(name, []).append((key, ep))
    return out


def _rule_configs(ctx: _Context) -> Iterator[Finding]:
    reg = ctx.decoded.registries
    by_host = _endpoint_hosts(ctx)
    for key, config in reg.configs.items():
        path = ("configs", key)
        tls = config.tls
        if tls is not None:
            if tls.key_file and not tls.cert_file:
                yield ctx.finding((*path, "tls", "key_file"), "error", "tls-key-only", "`key_file` without "
                                  "`cert_file`: K3s writes `client = [[\"\", key]]`, containerd cannot load the "
                                  "pair and fails every request to this host", "add `cert_file`")
            if tls.cert_file and not tls.key_file:
                yield ctx.finding((*path, "tls", "cert_file"), "warning", "tls-cert-only", "`cert_file` "
                                  "without `key_file` works only if the file also holds the private key",
                                  "add `key_file`")
            for name in ("ca_file", "cert_file", "key_file"):
                value = getattr(tls, name)
                if value and not value.startswith("/"):
                    yield ctx.finding((*path, "tls", name), "warning", "tls-relative-path", f"`{value}` is "
                                      f"relative: containerd resolves it against certs.d/{key}/, not the "
                                      "directory you ran K3s from", "use an absolute path")
        if config.auth is not None:
            auth = config.auth
            if auth.is_empty():
                yield ctx.finding((*path, "auth"), "warning", "auth-empty", "the auth block sets no "
                                  "credential, so none is sent", "set `username` and `password`")
            elif auth.password and not auth.username and not auth.auth:
                yield ctx.finding((*path, "auth"), "warning", "auth-no-username", "a password without a "
                                  "username is never sent", "add `username`")
            if key == DOCKER_HUB and DOCKER_HUB_HOST not in reg.configs:
                yield ctx.finding((*path, "auth"), "warning", "auth-dockerhub", "containerd looks credentials "
                                  f"up by the host it contacts, `{DOCKER_HUB_HOST}`, not `{DOCKER_HUB}`: these "
                                  "are not sent and pulls stay anonymous (rate-limited)",
                                  f"move the auth block to `configs.\"{DOCKER_HUB_HOST}\"`")
            if key == "*":
                yield ctx.finding((*path, "auth"), "warning", "auth-wildcard", "containerd looks credentials "
                                  "up by exact host, so a `\"*\"` auth entry matches no request",
                                  "give each registry host its own entry")
        if key == "*" and "*" in reg.mirrors:
            yield ctx.finding(path, "warning", "wildcard-config-dropped", "with a `mirrors.\"*\"` entry, K3s "
                              "rebuilds _default/hosts.toml from the mirror and drops this wildcard config",
                              "put the settings under the endpoint hosts' own keys")
        served = {default_host(m) for m in reg.mirrors}  # configs of the registry itself reach `server`
        if key == "*" or key in reg.mirrors or key in by_host or key in served:
            if key in reg.mirrors and ctx.options.no_default_endpoint:
                yield ctx.finding(path, "warning", "config-keeps-default", "with "
                                  "--disable-default-registry-endpoint, a configs entry under the mirror's own "
                                  "name keeps the `server` line (K3s quirk): the upstream is still tried last",
                                  f"move the settings to the endpoint hosts, or drop `configs.\"{key}\"`")
            continue
        yield from _unmatched_config(ctx, key, by_host)


def _unmatched_config(ctx: _Context, key: str, by_host: dict[str, list[tuple[str, Endpoint]]]) -> Iterator[Finding]:
    name, port = split_host_port(key)
    for host, uses in by_host.items():
        hname, hport = split_host_port(host)
        if hname == name and hport != port:
            mirror_key, ep = uses[0]
            yield ctx.finding(("configs", key), "warning", "config-port-mismatch", f"no endpoint host is `{key}`, "
                              f"but `{ep.url}` (mirror `{mirror_key}`) is `{host}`: the port is part of the key, "
                              f"so these settings do not apply to it", f"rename the key to `{host}`")
            return
    if ctx.decoded.registries.mirrors:
        yield ctx.finding(("configs", key), "warning", "config-unmatched", f"`{key}` is no endpoint host of any "
                          f"mirror: these settings apply only to images pulled directly as `{key}/...`",
                          "key configs by the endpoint's exact `host:port`")


def _rule_tls_over_http(ctx: _Context) -> Iterator[Finding]:
    reg = ctx.decoded.registries
    for host, uses in _endpoint_hosts(ctx).items():
        config = reg.configs.get(host)
        if config is None or config.tls is None or config.tls.is_empty():
            continue
        http = [ep for _, ep in uses if ep.scheme == "http"]
        if not http:
            continue
        tls = config.tls
        message = (f"`{http[0].url}` is plain HTTP but `configs.\"{host}\".tls` gives it TLS settings: "
                   "containerd then tries HTTPS first and falls back to HTTP only on a TLS failure")
        if tls.insecure_skip_verify and not (tls.ca_file or tls.cert_file):
            message += ("; `insecure_skip_verify` only skips certificate checks on HTTPS, it never "
                        "makes containerd use HTTP")
        yield ctx.finding(("configs", host, "tls"), "warning", "tls-on-http", message,
                          "drop the tls block for a plain-HTTP registry, or write the endpoint as `https://`")


def _rule_tls_on_default_http(ctx: _Context) -> Iterator[Finding]:
    by_host = _endpoint_hosts(ctx)
    for key, config in ctx.decoded.registries.configs.items():
        if key == "*" or config.tls is None or config.tls.is_empty():
            continue
        if by_host.get(key):
            continue  # an endpoint of that host carries the TLS (its http:// use is reported on its own)
        try:
            ep = normalize_endpoint(key, ctx.options.effective_mirror_address())
        except EndpointError:
            continue
        if ep.scheme == "http":
            yield ctx.finding(("configs", key, "tls"), "warning", "tls-on-default-http", f"K3s writes "
                              f"`server = \"{ep.url}\"` for a loopback registry with a port: containerd 1.7.8+ "
                              "tries HTTPS first because of these TLS settings, containerd 1.6 and earlier speak "
                              "plain HTTP to it", f"if it serves HTTPS, add `mirrors.\"{key}\".endpoint: "
                              f"[\"https://{key}\"]`; if it serves HTTP, drop the tls block")


def _schemes(ctx: _Context, key: str, by_host: dict[str, list[tuple[str, Endpoint]]]) -> set[str]:
    """The schemes containerd speaks to configs key `key`: its endpoints', else the registry's own default."""
    uses = by_host.get(key)
    if uses:
        return {ep.scheme for _, ep in uses}
    try:
        return {normalize_endpoint(key, ctx.options.effective_mirror_address()).scheme}
    except EndpointError:
        return set()


def _rule_trust(ctx: _Context) -> Iterator[Finding]:
    """Credentials in clear text, certificates not checked, and certificate files that cannot work."""
    by_host = _endpoint_hosts(ctx)
    for key, config in ctx.decoded.registries.configs.items():
        if key == "*":
            continue
        schemes = _schemes(ctx, key, by_host)
        if config.auth is not None and not config.auth.is_empty() and "http" in schemes:
            yield ctx.finding(("configs", key, "auth"), "warning", "auth-over-http", f"these credentials go to "
                              f"`{key}` over plain http://: anyone on the network path can read them",
                              "serve the registry over HTTPS (`k3sreg certs init`, `k3sreg certs issue --host "
                              f"...`, http.tls) and write its endpoint as `https://{key}`")
        tls = config.tls
        if tls is None:
            continue
        if tls.insecure_skip_verify and "https" in schemes:
            yield ctx.finding(("configs", key, "tls", "insecure_skip_verify"), "warning", "tls-skip-verify",
                              f"the certificate of `{key}` is not checked: whoever can intercept the connection "
                              "can pose as the registry (and receive the credentials)", "trust a CA instead: "
                              f"`k3sreg certs init`, `k3sreg certs issue --host {key.rsplit(':', 1)[0]}`, then "
                              "`ca_file` here, installed on every node by `k3sreg nodes apply --certs DIR`")
        for kind in ("ca_file", "cert_file"):
            path = getattr(tls, kind)
            if path and readable(path):
                for problem in check_cert_file(path, key, kind):
                    yield ctx.finding(("configs", key, "tls", kind), problem.severity, problem.code,
                                      problem.message, problem.fix)


def _rule_mirrors_without_file(ctx: _Context) -> Iterator[Finding]:
    reg = ctx.decoded.registries
    if ctx.options.embedded_registry:
        return
    for key, mirror in reg.mirrors.items():
        if mirror.endpoint or key in reg.configs or mirror.rewrite:
            continue
        message = (f"`{key}` has no endpoint and no config: K3s writes no file for it and containerd pulls "
                   "from the registry itself")
        if ctx.options.no_default_endpoint:
            message += " (even with --disable-default-registry-endpoint)"
        yield ctx.finding(("mirrors", key), "warning", "mirror-no-file", message,
                          "add an `endpoint` list, or remove the entry (it only matters with the embedded "
                          "registry mirror)")


def _rule_auths(ctx: _Context) -> Iterator[Finding]:
    if ctx.decoded.registries.auths:
        yield ctx.finding(("auths",), "warning", "auths-legacy", "`auths` is decoded but K3s never uses it",
                          "move each entry to `configs.<host>.auth`")


RULES: tuple[Rule, ...] = (
    _rule_keys, _rule_endpoints, _rule_rewrites, _rule_configs, _rule_tls_over_http, _rule_tls_on_default_http,
    _rule_trust, _rule_mirrors_without_file, _rule_auths,
)


def validate_decoded(decoded: Decoded, options: RenderOptions | None = None) -> list[Finding]:
    """Every finding for an already decoded file, in file order."""
    ctx = _Context(decoded, options or RenderOptions())
    findings = list(decoded.findings)
    for rule in RULES:
        findings.extend(rule(ctx))
    return sort_findings(findings)


def validate_text(text: str, options: RenderOptions | None = None) -> list[Finding]:
    """Every finding for registries.yaml `text`: errors (K3s refuses or ignores it) and warnings."""
    return validate_decoded(decode_text(text), options)
