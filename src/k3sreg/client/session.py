"""The HTTP session registry requests go through, and what each request carries for its registry.

A `RegistryClient` takes any `aiohttp.ClientSession` (tests pass one bound to an in-process server; one session
may serve many registries); `new_session` is the default. Everything that belongs to one registry travels with
each request instead of living in the session (`request_options`): its TLS context, its timeouts, the 1 MiB
read buffer, and no decompression (blob bytes are hashed as sent).
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp

from k3sreg import __version__
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.errors import ConfigError

READ_BUFFER = 1 << 20
"""aiohttp's 64 KiB default pauses and resumes the socket every 128 KiB: a 64 MiB blob cost ~55 ms of event-loop
time in reads, ~11 ms with 1 MiB."""

USER_AGENT = f"k3sreg/{__version__}"


def new_session() -> aiohttp.ClientSession:
    """A pooled session for registry traffic (call it in the running loop): no proxy or netrc from the
    environment (`proxyenv` applies Go's rules per hop), and redirect URLs kept byte for byte (a CDN's signed
    query must not be re-quoted)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300),
        trust_env=False,
        requote_redirect_url=False,
    )


def request_options(settings: UpstreamSettings, context: ssl.SSLContext | bool) -> dict[str, Any]:
    """The per-request keyword arguments of `aiohttp.ClientSession.request` for one registry: `timeout` bounds
    connecting and each wait for data, never a whole blob."""
    timeout = settings.timeout
    return {
        "ssl": context,
        "timeout": aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=timeout, sock_read=timeout),
        "read_bufsize": READ_BUFFER,
        "auto_decompress": False,
    }


def tls_context(settings: UpstreamSettings, where: str = "") -> ssl.SSLContext | bool:
    """The TLS setup of `settings.tls` (True = system defaults); unreadable files are a ConfigError naming
    `where` (default: the `upstreams[...]` key)."""
    tls = settings.tls
    if not (tls.ca or tls.insecureskipverify or tls.certificate):
        return True
    where = where or f"upstreams[{settings.name}].tls"
    try:
        context = ssl.create_default_context(cafile=tls.ca or None)
        if tls.insecureskipverify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if tls.certificate:
            context.load_cert_chain(tls.certificate, tls.key or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            [f"{where}: cannot load the TLS files ({exc}); check the 'ca', 'certificate' and 'key' paths"]
        ) from None
    return context
