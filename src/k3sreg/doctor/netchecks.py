"""The checks of one endpoint from a node, in the order a pull meets them; a failure stops the chain:

    dns    the name resolves on the node (`*.localhost` to loopback, as K3s's docs expect of registry.localhost)
    tcp    a connection opens; refused: which port answers instead, if any (wrong port, or registry down)
    tls    https: handshake verified with the host's `ca` files; http: the server really speaks plain HTTP
    api    GET <root>/ answers as a registry (200, or 401 with a challenge)
    auth   the node's credentials for the host (containerd's config.toml) are accepted: Basic or the token flow
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from cryptography import x509
from yarl import URL

from k3sreg.client import RegistryClient, RetryPolicy
from k3sreg.config.upstreams import UpstreamSettings, UpstreamTLSSettings
from k3sreg.doctor import tlsprobe
from k3sreg.doctor.gather import Facts
from k3sreg.doctor.hosts import Endpoint
from k3sreg.doctor.model import Finding, failed, passed, warned
from k3sreg.doctor.vantage import Vantage
from k3sreg.errors import Denied, NameUnknown, RegistryError, Unauthorized
from k3sreg.k3s.model import AuthConfig

_REGISTRY_PORTS = (5000, 30500, 443, 80, 5001, 8443)
_ROLL = "roll registries.yaml out again (`k3sreg nodes apply`)"


@dataclass
class NetContext:
    """What every endpoint check of one node needs."""

    vantage: Vantage
    session: aiohttp.ClientSession
    facts: Facts
    credentials: Mapping[str, AuthConfig]
    credentials_from: str
    timeout: float
    scratch: Path
    local: bool  # the node's client keys are readable here (doctor runs on the node)
    hint_ports: Mapping[str, set[int]] = field(default_factory=dict)  # hostname -> where a registry should be


@dataclass
class Reached:
    """What the TLS step established for the later steps."""

    ssl: ssl.SSLContext | bool
    ca_pem: bytes | None
    client: tuple[str, str] | None


def is_ip(name: str) -> bool:
    """Whether `name` is an IP literal."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _loopback(name: str) -> bool:
    return name == "localhost" or name.endswith(".localhost")


def check_dns(ep: Endpoint, facts: Facts) -> Finding:
    """dns: the endpoint's name as the node resolves it (an IP literal passes)."""
    name = ep.hostname
    if is_ip(name):
        return passed("dns", ep.host, f"{name} is an IP address")
    lookup = facts.names.get(name)
    if lookup is None or lookup.status == 127:
        return warned("dns", ep.host, f"{name}: the node has no getent, not checked",
                      "check by hand: `getent ahosts NAME` or `nslookup NAME` on the node")
    if lookup.status != 0 or not lookup.addresses:
        fix = (f"add `127.0.0.1 {name}` to /etc/hosts on the node" if _loopback(name) else
               f"add {name} to DNS, or `<registry IP> {name}` to /etc/hosts on every node")
        return failed("dns", ep.host, f"{name} does not resolve on the node", fix)
    addresses = ", ".join(lookup.addresses)
    if _loopback(name) and not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in lookup.addresses):
        return failed("dns", ep.host, f"{name} resolves to {addresses}, not to loopback: a registry under a "
                      ".localhost name runs on the node itself (the NodePort)",
                      f"map {name} to 127.0.0.1 in /etc/hosts on the node, or use the registry's real name")
    return passed("dns", ep.host, f"{name} -> {addresses}")


async def check_tcp(ep: Endpoint, ctx: NetContext) -> Finding:
    """tcp: the port opens; when refused, the nearby ports that do answer like a registry."""
    why = await ctx.vantage.connect(ep.hostname, ep.port, ctx.timeout)
    if why is None:
        return passed("tcp", ep.host, f"connected to {ep.host}")
    if "refused" not in why.lower():
        if "resolution" in why.lower() or "not known" in why.lower():
            return failed("tcp", ep.host, f"{ep.hostname} does not resolve on the node ({why})",
                          f"add {ep.hostname} to DNS or /etc/hosts on the node")
        return failed("tcp", ep.host, f"cannot connect to {ep.host}: {why}",
                      "open the way from the node to it (firewall, routes), or start the host")
    lookup = ctx.facts.names.get(ep.hostname)
    hinted = {port for name in (ep.hostname, *(lookup.addresses if lookup else ()))
              for port in ctx.hint_ports.get(name, ())}
    candidates = sorted(({*hinted, *_REGISTRY_PORTS}) - {ep.port})
    answers = await asyncio.gather(*(_answers_as_registry(ep, port, ctx) for port in candidates))
    for port, answered in zip(candidates, answers, strict=True):
        if answered:
            return failed("tcp", ep.host, f"nothing listens on {ep.host} (connection refused), but a registry "
                          f"answers on port {port} of the same host: wrong port",
                          f"write port {port} in the endpoint (and the configs key) of registries.yaml, {_ROLL}")
    if ep.port in hinted:
        return failed("tcp", ep.host, f"nothing listens on {ep.host} (connection refused): the registry is down",
                      "start the registry (in the cluster: `kubectl -n registry get pods`)")
    return failed("tcp", ep.host, f"nothing listens on {ep.host} (connection refused): the registry is down, or "
                  "the port is wrong", "start the registry, or write the port it listens on in registries.yaml")


async def _answers_as_registry(ep: Endpoint, port: int, ctx: NetContext) -> bool:
    if await ctx.vantage.connect(ep.hostname, port, min(ctx.timeout, 1.0)) is not None:
        return False
    for scheme in ("https", "http"):
        name = f"[{ep.hostname}]" if ":" in ep.hostname else ep.hostname
        url = f"{scheme}://{name}:{port}/v2/"
        try:
            async with ctx.session.get(url, ssl=tlsprobe.context(None, False) if scheme == "https" else False,
                                       timeout=aiohttp.ClientTimeout(total=ctx.timeout),
                                       allow_redirects=False) as response:
                if response.status in (200, 401) and (
                        response.headers.get("Docker-Distribution-API-Version") or response.status == 401):
                    return True
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError):
            continue
    return False


def _material(ep: Endpoint, ctx: NetContext) -> tuple[bytes | None, list[str], tuple[str, str] | None]:
    pem, missing = b"", []
    for path in ep.ca:
        fact = ctx.facts.file(path)
        if fact.content is None:
            missing.append(path)
        else:
            pem += fact.content + b"\n"
    client = ep.client[0] if ep.client and ctx.local else None
    return pem or None, missing, client


async def check_tls(ep: Endpoint, ctx: NetContext) -> tuple[Finding, Reached | None]:
    """tls: the scheme the registry speaks matches the endpoint's, and an https certificate verifies."""
    ca_pem, missing, client = _material(ep, ctx)
    if missing:
        return failed("tls", ep.host, f"the CA file {', '.join(missing)} (tls.ca_file) is missing on the node: "
                      "containerd cannot load this host", "copy the CA certificate there, or correct ca_file in "
                      "registries.yaml"), None
    try:
        verified = tlsprobe.context(ca_pem, not ep.skip_verify, client)
        loose = tlsprobe.context(None, False, client)
    except (ssl.SSLError, OSError, ValueError) as e:
        return failed("tls", ep.host, f"the TLS files for {ep.host} do not load: {e}",
                      "check ca_file, cert_file and key_file in registries.yaml"), None
    if ep.scheme == "http":
        return await _check_plain(ep, ctx, verified, ca_pem, client)
    shake = await tlsprobe.handshake(ctx.vantage, ep.hostname, ep.port, verified, ctx.timeout)
    reached = Reached(verified, ca_pem, client)
    if shake.kind == "ok":
        described = tlsprobe.describe_cert(shake.cert) if shake.cert else "no certificate"
        if ep.skip_verify:
            return warned("tls", ep.host, f"TLS, certificate NOT verified (skip_verify): {described}",
                          "set tls.ca_file instead of insecure_skip_verify"), reached
        if shake.cert is not None and tlsprobe.expiring(shake.cert):
            return warned("tls", ep.host, f"TLS verified, but the certificate expires soon: {described}",
                          f"issue a new one (`k3sreg certs issue -H {ep.hostname}`)"), reached
        return passed("tls", ep.host, f"TLS verified: {described}"), reached
    if shake.kind == "verify":
        peer = await tlsprobe.handshake(ctx.vantage, ep.hostname, ep.port, loose, ctx.timeout)
        if peer.cert is None:
            return failed("tls", ep.host, f"the certificate of {ep.host} is refused: {shake.detail}",
                          "check the registry's certificate and tls.ca_file"), None
        cas = _certificates(ca_pem)
        what, fix = tlsprobe.refusal(peer.cert, ep.hostname, ep.host, cas, ep.ca, shake.detail)
        return failed("tls", ep.host, what, fix), None
    if shake.kind == "timeout":
        return failed("tls", ep.host, f"{ep.host}: {shake.detail}",
                      "check that this port is the registry's, not another service's"), None
    answer = await tlsprobe.plain_answer(ctx.vantage, ep.hostname, ep.port, ep.host, ep.api, ctx.timeout)
    if tlsprobe.speaks_http(answer):
        return failed("tls", ep.host, f"server gave HTTP response to HTTPS client: {ep.host} speaks plain HTTP",
                      f"write http://{ep.host} as the endpoint in registries.yaml (or turn on the registry's TLS), "
                      f"{_ROLL}"), None
    if client is None and ep.client:
        return warned("tls", ep.host, f"TLS handshake failed ({shake.detail}); the registry may want the node's "
                      "client certificate, which doctor does not read over SSH",
                      "run `k3sreg doctor` on the node itself to check with its client certificate"), None
    return failed("tls", ep.host, f"TLS handshake with {ep.host} failed: {shake.detail}",
                  "check that the registry serves TLS on this port"), None


async def _check_plain(ep: Endpoint, ctx: NetContext, verified: ssl.SSLContext, ca_pem: bytes | None,
                       client: tuple[str, str] | None) -> tuple[Finding, Reached | None]:
    answer = await tlsprobe.plain_answer(ctx.vantage, ep.hostname, ep.port, ep.host, ep.api, ctx.timeout)
    if tlsprobe.speaks_http(answer):
        return passed("tls", ep.host, "plain HTTP, as the endpoint says"), Reached(False, None, None)
    shake = await tlsprobe.handshake(ctx.vantage, ep.hostname, ep.port, tlsprobe.context(None, False),
                                     ctx.timeout)
    if shake.kind != "ok":
        got = "nothing" if not answer else repr(answer[:40])
        return failed("tls", ep.host, f"{ep.host} gives no HTTP answer (got {got}) and no TLS handshake",
                      "check that this port is the registry's"), None
    said = "HTTP request to an HTTPS server" if answer and tlsprobe.GO_HTTPS_ANSWER in answer else \
        "the connection is cut"
    if ep.ca or ep.skip_verify or ep.client:
        # containerd tries HTTPS first on an http:// host that has TLS settings (1.7.8+ when a port other than
        # 80 is written; 2.x always but on 80), so this works, by a detour.
        return warned("tls", ep.host, f"{ep.host} speaks HTTPS; the endpoint says http://, containerd gets there "
                      "only because it tries HTTPS first on a host with TLS settings",
                      f"write https://{ep.host} as the endpoint in registries.yaml"), Reached(verified, ca_pem,
                                                                                              client)
    return failed("tls", ep.host, f"{ep.host} speaks HTTPS, the endpoint says http://: containerd's plain request "
                  f"fails ({said})", f"write https://{ep.host} as the endpoint and set tls.ca_file for it, "
                  f"{_ROLL}"), None


def _certificates(pem: bytes | None) -> list[x509.Certificate]:
    if not pem:
        return []
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        return []


async def check_api(ep: Endpoint, ctx: NetContext, reached: Reached) -> tuple[Finding, list[str] | None]:
    """api: `GET <root>/` answers like a registry; the challenge schemes when it asks for credentials."""
    try:
        async with ctx.session.get(ep.api, ssl=reached.ssl, allow_redirects=False,
                                   timeout=aiohttp.ClientTimeout(total=ctx.timeout),
                                   headers={"User-Agent": "k3sreg-doctor"}) as response:
            status = response.status
            challenge = response.headers.getall("WWW-Authenticate", [])
            version = response.headers.get("Docker-Distribution-API-Version", "")
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        return failed("api", ep.host, f"GET {ep.api} failed: {e or type(e).__name__}",
                      "check the registry's logs"), None
    tag = f" ({version})" if version else ""
    if status == 200:
        return passed("api", ep.host, f"GET {ep.root}/ answers 200{tag}: no credentials asked"), []
    if status == 401:
        schemes = sorted({c.split(" ", 1)[0].lower() for c in challenge if c.strip()})
        if not schemes:
            return failed("api", ep.host, f"GET {ep.root}/ answers 401 without a WWW-Authenticate challenge",
                          "fix the proxy in front of the registry, which drops the header"), None
        return passed("api", ep.host, f"GET {ep.root}/ answers 401{tag}, asking for {' or '.join(schemes)}: "
                      f"{challenge[0][:120]}"), schemes
    if status == 404:
        return failed("api", ep.host, f"GET {ep.api} answers 404: no registry API at this address",
                      "point the endpoint at the registry itself (a path in it is taken as the API root)"), None
    if status in (502, 503, 504):
        return failed("api", ep.host, f"GET {ep.api} answers {status}: the registry is unhealthy, or the proxy in "
                      "front of it has no backend", "check the registry's pod and /debug/health"), None
    return failed("api", ep.host, f"GET {ep.api} answers {status}: not what a registry answers",
                  "point the endpoint at the registry itself"), None


def username_password(auth: AuthConfig) -> tuple[str, str] | None:
    """The Basic credentials of a containerd auth entry (`auth` is base64 of user:password); None for none."""
    if auth.username or auth.password:
        return auth.username, auth.password
    if auth.auth:
        try:
            user, _, password = base64.b64decode(auth.auth).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user, password
    return None


def registry_client(ctx: NetContext, scheme: str, host: str, reached: Reached | None,
                    auth: AuthConfig | None) -> RegistryClient:
    """A client of scheme://host from the node, with its TLS settings and credentials, asking once."""
    ca_file = None
    if reached is not None and reached.ca_pem:
        ca_file = ctx.scratch / f"ca-{abs(hash(reached.ca_pem))}.pem"
        if not ca_file.exists():
            ca_file.write_bytes(reached.ca_pem)
    creds = username_password(auth) if auth is not None else None
    skip = reached is not None and isinstance(reached.ssl, ssl.SSLContext) and \
        reached.ssl.verify_mode == ssl.CERT_NONE
    client = reached.client if reached is not None else None
    tls = UpstreamTLSSettings(ca=str(ca_file) if ca_file else None, insecureskipverify=skip,
                              certificate=client[0] if client else None, key=client[1] if client else None)
    settings = UpstreamSettings(name="registry", url=f"{scheme}://{host}", username=creds[0] if creds else "",
                                password=creds[1] if creds else "", tls=tls, timeout=ctx.timeout, retries=0)
    return RegistryClient(settings, session=ctx.session, retry=RetryPolicy(0))


async def check_auth(ep: Endpoint, ctx: NetContext, reached: Reached, schemes: Iterable[str]) -> Finding:
    """auth: with the node's credentials for the host, `GET <root>/` gets through the challenge."""
    schemes = list(schemes)
    auth = ctx.credentials.get(ep.host)
    key = f"configs.\"{ep.host}\".auth"
    if not schemes:
        extra = f"; the credentials in {key} are not needed" if auth is not None else ""
        return passed("auth", ep.host, f"the registry asks for no credentials{extra}")
    if auth is not None and auth.identity_token and username_password(auth) is None:
        return warned("auth", ep.host, f"{key} holds an identity_token, which doctor cannot try",
                      "check a pull on the node: `k3s crictl pull IMAGE`")
    client = registry_client(ctx, ep.scheme, ep.host, reached, auth)
    try:
        response = await client.transport.request("GET", URL(ep.api), scope="", where=ep.host, missing=NameUnknown,
                                                  headers={"User-Agent": "k3sreg-doctor"})
        response.release()
    except Unauthorized as e:
        if auth is None:
            return failed("auth", ep.host, f"the registry asks for credentials ({' or '.join(schemes)}) and the "
                          f"node has none for {ep.host}", f"add {key} (username, password) to registries.yaml, "
                          f"{_ROLL} and restart K3s")
        return failed("auth", ep.host, f"the registry refuses the credentials of {key} from "
                      f"{ctx.credentials_from}: {_short(e)}", f"correct the username and password of {key} in "
                      f"registries.yaml, {_ROLL} and restart K3s")
    except Denied as e:
        return failed("auth", ep.host, f"the credentials of {key} are denied: {_short(e)}",
                      "give that user pull rights in the registry's access rules")
    except RegistryError as e:
        return failed("auth", ep.host, f"the credentials could not be tried: {_short(e)}",
                      "check the token service the registry names in its challenge")
    finally:
        await client.close()
    if auth is None:
        return passed("auth", ep.host, f"anonymous access granted ({' or '.join(schemes)})")
    return passed("auth", ep.host, f"the credentials of {key} ({ctx.credentials_from}) are accepted "
                  f"({' or '.join(schemes)})")


def _short(e: BaseException) -> str:
    return str(e).removeprefix("upstream ")


async def check_endpoint(ep: Endpoint, ctx: NetContext) -> list[Finding]:
    """Every check of one endpoint, up to the first that fails."""
    out: list[Finding] = []
    dns = check_dns(ep, ctx.facts)
    out.append(dns)
    if dns.status == "fail":
        return out
    tcp = await check_tcp(ep, ctx)
    out.append(tcp)
    if tcp.status == "fail":
        return out
    tls, reached = await check_tls(ep, ctx)
    out.append(tls)
    if reached is None:
        return out
    api, schemes = await check_api(ep, ctx, reached)
    out.append(api)
    if schemes is None:
        return out
    out.append(await check_auth(ep, ctx, reached, schemes))
    return out

