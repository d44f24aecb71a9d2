"""Settings for a registry the user names on the command line (`k3sreg images ... --to URL`), not in config.yml.

The client takes `UpstreamSettings`; this builds them from a URL, credentials and TLS flags, with the problems
of each reported as one line for the CLI (the registry's name is the URL's host[:port], or `docker.io` for
Docker Hub, so that Docker Hub's `library/` rule applies as it does for the cache's upstreams).
"""

from __future__ import annotations

from pydantic import ValidationError

from k3sreg.config.upstreams import UpstreamSettings, UpstreamTLSSettings
from k3sreg.config.values import registry_name_for_url
from k3sreg.errors import UsageError


def registry_settings(url: str, *, name: str | None = None, username: str = "", password: str = "",
                      ca: str | None = None, insecure: bool = False, certificate: str | None = None,
                      key: str | None = None, timeout: float = 30.0, retries: int = 3) -> UpstreamSettings:
    """Settings to reach the registry at `url` (http:// or https://); UsageError naming the problem otherwise.

    `insecure` skips certificate verification; `certificate`/`key` are a client certificate for mTLS."""
    try:
        tls = UpstreamTLSSettings(ca=ca, insecureskipverify=insecure, certificate=certificate, key=key)
        return UpstreamSettings(name=name or registry_name_for_url(url), url=url, username=username,
                                password=password, tls=tls, timeout=timeout, retries=retries)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UsageError(f"registry {url}: {where + ': ' if where else ''}{first['msg']}") from None
