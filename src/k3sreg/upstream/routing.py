"""Which repository a request means: local, or an upstream's, chosen by containerd's `ns` or a path prefix.

    GET /v2/library/nginx/manifests/1.27?ns=docker.io   -> upstream docker.io, repository library/nginx,
    GET /v2/docker.io/library/nginx/manifests/1.27      -> cached locally as docker.io/library/nginx
    GET /v2/team/app/manifests/1?ns=registry.local       -> local team/app (`ns` names this registry)
    GET /v2/team/app/manifests/1                         -> local team/app (or the `proxy:` upstream, see below)
    GET /v2/x/manifests/1?ns=unknown.example             -> NAME_UNKNOWN at once, so containerd moves on
                                                            (or the `proxy:` upstream, see below)

Distribution's own `proxy:` section keeps registry:2's behaviour: requests without `ns` for names that hold no
local content go to that upstream, and its cache lives under the plain name, as on a registry:2 volume.
registry:2 ignores `ns`, so with `proxy:` every `ns` that no `upstreams` entry claims and that does not name
this registry goes to that upstream too: a `remoteurl` that is a Docker Hub mirror (Nexus, another registry:2)
is not named docker.io, yet containerd asks it with `ns=docker.io`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from k3sreg import errors
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.oci.reference import canonical_repository


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved repository: `upstream` is None for local content."""

    cache_repo: str                 # where the content lives in our store
    upstream: UpstreamSettings | None = None
    upstream_repo: str = ""         # the repository name on the upstream
    default: bool = False           # chosen only because it is the `proxy:` upstream (no ns, no prefix)

    @property
    def is_local(self) -> bool:
        return self.upstream is None


class Router:
    """Resolves (name, ns) to a Target from the configured upstreams and this registry's own names."""

    def __init__(self, upstreams: Sequence[UpstreamSettings], own_names: Sequence[str],
                 proxy_upstream: UpstreamSettings | None):
        self._by_name = {u.name: u for u in upstreams}
        self._own = {n.lower() for n in own_names}
        # Settings build the proxy section's upstream anew on each access: find ours by name.
        self._proxy = self._by_name.get(proxy_upstream.name) if proxy_upstream is not None else None

    @property
    def proxy_name(self) -> str | None:
        return self._proxy.name if self._proxy is not None else None

    def _target(self, upstream: UpstreamSettings, repo: str, default: bool = False) -> Target:
        upstream_repo = canonical_repository(upstream.name, repo)
        # The `proxy:` upstream caches under plain names, as registry:2 does on the same volume.
        cache = upstream_repo if upstream is self._proxy else f"{upstream.name}/{upstream_repo}"
        return Target(cache, upstream, upstream_repo, default)

    def resolve(self, name: str, ns: str | None) -> Target:
        """The target of a request for repository `name` with containerd's `ns` query parameter (or None)."""
        if not self._by_name:
            return Target(name)  # a plain registry ignores `ns`, as registry:2 does
        if ns:
            ns = ns.lower()
            if ns in self._own:
                return Target(name)
            upstream = self._by_name.get(ns)
            if upstream is not None:
                return self._target(upstream, name)
            if self._proxy is not None:
                return self._target(self._proxy, name, default=True)
            raise errors.NameUnknown(f"no upstream is configured for registry {ns!r}", detail={"ns": ns})
        first, _, rest = name.partition("/")
        if rest and first in self._by_name:
            return self._target(self._by_name[first], rest)
        if self._proxy is not None:
            return self._target(self._proxy, name, default=True)
        return Target(name)
