"""The client's request path against in-process servers: retries and their waits, 401 and tokens, redirects,
429, and the proxy chosen per hop. (tests/integration/test_upstream_client.py runs the same paths against
docker-registry.)"""

from __future__ import annotations

import json
import socket

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from k3sreg.client import RegistryClient, RetryPolicy
from k3sreg.client.auth import basic_authorization
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.errors import ManifestUnknown, TooManyRequests, Unauthorized, Unavailable
from k3sreg.oci.digest import Digest
from k3sreg.oci.mediatypes import OCI_MANIFEST
from tests.unit.client.conftest import Seen, Serve, make_client, recording_app

MANIFEST = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []}'
BLOB = bytes(range(256)) * 64
BLOB_DIGEST = Digest.of(BLOB)


def error(status: int, code: str, message: str, **headers: str) -> web.Response:
    """An OCI error document."""
    body = json.dumps({"errors": [{"code": code, "message": message}]})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


def manifest() -> web.Response:
    return web.Response(body=MANIFEST, content_type=OCI_MANIFEST,
                        headers={"Docker-Content-Digest": str(Digest.of(MANIFEST))})


def flaky(seen: Seen, failures: int, status: int = 503) -> web.Application:
    """A registry whose manifest GETs answer `status` `failures` times, then the manifest."""
    app = recording_app(seen)

    async def get(request: web.Request) -> web.Response:
        if len(seen.requests) <= failures:
            return error(status, "UNAVAILABLE", "try later")
        return manifest()

    app.router.add_get("/v2/org/app/manifests/1", get)
    return app


async def test_5xx_is_retried_with_doubling_waits(serve: Serve) -> None:
    """Two 503s then the manifest: three requests, waits of 0.1 s and 0.2 s between them."""
    seen = Seen()
    async with make_client(await serve(flaky(seen, 2)), retries=2) as client:
        got = await client.get_manifest("org/app", "1", [OCI_MANIFEST])
    assert got.data == MANIFEST
    assert len(seen.requests) == 3
    assert client.waits == [0.1, 0.2]


async def test_persistent_5xx_is_unavailable_after_the_retries(serve: Serve) -> None:
    """503s that persist: `retries` + 1 requests, then Unavailable naming the request, the status and the count."""
    seen = Seen()
    async with make_client(await serve(flaky(seen, 100)), retries=2) as client:
        with pytest.raises(Unavailable, match=r"GET /v2/org/app/manifests/1 answered HTTP 503 after 3 attempts "
                                              r"\(UNAVAILABLE: try later\)"):
            await client.get_manifest("org/app", "1", [OCI_MANIFEST])
    assert len(seen.requests) == 3
    assert client.waits == [0.1, 0.2]


async def test_waits_are_capped_at_two_seconds(serve: Serve) -> None:
    """However many retries are configured, no wait exceeds 2 s."""
    seen = Seen()
    async with make_client(await serve(flaky(seen, 100)), retries=7) as client:
        with pytest.raises(Unavailable, match="after 8 attempts"):
            await client.get_manifest("org/app", "1", [OCI_MANIFEST])
    assert client.waits == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


async def test_answers_the_registry_meant_are_not_retried(serve: Serve) -> None:
    """A 404 is final at once: one request, no wait, ManifestUnknown with the registry's message."""
    seen = Seen()
    async with make_client(await serve(flaky(seen, 100, status=404)), retries=2) as client:
        with pytest.raises(ManifestUnknown, match="try later"):
            await client.get_manifest("org/app", "1", [OCI_MANIFEST])
    assert len(seen.requests) == 1
    assert client.waits == []


async def test_refused_connections_are_retried_then_reported_in_one_line() -> None:
    """A port that refuses: `retries` + 1 attempts with the same waits, one message with the count and cause."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with make_client(f"http://127.0.0.1:{port}", retries=2) as client:
        with pytest.raises(Unavailable, match=rf"^upstream upstream\.test \(http://127\.0\.0\.1:{port}\): HEAD "
                                              rf"/v2/org/app/manifests/1 failed after 3 attempts: connection "
                                              rf"refused \(127\.0\.0\.1:{port}\)$"):
            await client.head_manifest("org/app", "1", [OCI_MANIFEST])
    assert client.waits == [0.1, 0.2]


def token_service(tokens: Seen) -> web.Application:
    """A token service that hands out `t1`, `t2` ... and records (scope, Authorization) in `tokens`."""
    app = web.Application()

    async def token(request: web.Request) -> web.Response:
        tokens.requests.append(("GET", request.query["scope"], request.headers.get("Authorization")))
        return web.json_response({"token": f"t{len(tokens.requests)}", "expires_in": 300})

    app.router.add_get("/token", token)
    return app


def token_registry(seen: Seen, tokens: Seen, realm: str, accept_tokens: bool = True) -> web.Application:
    """A registry that wants a token for `repository:<repo>:pull` from the service at `realm`."""
    app = recording_app(seen)

    async def get(request: web.Request) -> web.Response:
        repo = request.match_info["repo"]
        wanted = f"repository:{repo}:pull"
        granted = {f"Bearer t{n}": scope for n, (_, scope, _) in enumerate(tokens.requests, 1)}
        if accept_tokens and granted.get(request.headers.get("Authorization", "")) == wanted:
            return manifest()
        return error(401, "UNAUTHORIZED", "authentication required",
                     **{"WWW-Authenticate": f'Bearer realm="{realm}/token",service="svc",scope="{wanted}"'})

    app.router.add_get("/v2/{repo:.+}/manifests/{ref}", get)
    return app


async def test_401_fetches_a_token_retries_once_and_caches_it_per_scope(serve: Serve) -> None:
    """A challenge: one token fetch (with the credentials), the request once more with it; the token is reused
    for that repository, and another repository gets its own token up front, without a 401."""
    seen, tokens = Seen(), Seen()
    registry = await serve(token_registry(seen, tokens, await serve(token_service(tokens))))
    async with make_client(registry, username="bob", password="pw") as client:
        await client.get_manifest("org/app", "1", [OCI_MANIFEST])
        await client.get_manifest("org/app", "1", [OCI_MANIFEST])
        assert seen.authorizations() == [None, "Bearer t1", "Bearer t1"]
        await client.get_manifest("org/other", "1", [OCI_MANIFEST])
    assert seen.authorizations()[3:] == ["Bearer t2"]
    basic = basic_authorization("bob", "pw")
    assert tokens.requests == [("GET", "repository:org/app:pull", basic), ("GET", "repository:org/other:pull", basic)]


async def test_401_with_a_fresh_token_is_unauthorized_without_a_loop(serve: Serve) -> None:
    """A registry that refuses the token it asked for: two requests, one token fetch, then Unauthorized."""
    seen, tokens = Seen(), Seen()
    registry = await serve(token_registry(seen, tokens, await serve(token_service(tokens)), accept_tokens=False))
    async with make_client(registry) as client:
        with pytest.raises(Unauthorized, match="UNAUTHORIZED: authentication required"):
            await client.get_manifest("org/app", "1", [OCI_MANIFEST])
    assert seen.authorizations() == [None, "Bearer t1"]
    assert len(tokens.requests) == 1
    assert client.waits == []


def basic_registry(seen: Seen, blob_location: str) -> web.Application:
    """A registry that wants Basic credentials and answers blob GETs with a 307 to `blob_location` + /data."""
    app = recording_app(seen)
    want = basic_authorization("bob", "pw")

    async def blob(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != want:
            return error(401, "UNAUTHORIZED", "who are you", **{"WWW-Authenticate": 'Basic realm="test"'})
        raise web.HTTPTemporaryRedirect(f"{blob_location or ''}/data/{request.match_info['digest']}")

    async def data(request: web.Request) -> web.Response:
        return web.Response(body=BLOB)

    app.router.add_get("/v2/org/app/blobs/{digest}", blob)
    app.router.add_get("/data/{digest}", data)
    return app


@pytest.mark.parametrize("target", ["another origin", "the same origin"])
async def test_redirects_carry_authorization_only_to_the_same_origin(serve: Serve, target: str) -> None:
    """After a Basic challenge, a blob's redirect to another origin goes without Authorization; to the same
    origin, with it."""
    seen, cdn_seen = Seen(), Seen()
    cdn = await serve(basic_registry(cdn_seen, ""))
    registry = await serve(basic_registry(seen, cdn if target == "another origin" else ""))
    async with make_client(registry, username="bob", password="pw") as client, \
            client.open_blob("org/app", BLOB_DIGEST) as blob:
        data = b"".join([chunk async for chunk in blob])
    assert data == BLOB
    basic = basic_authorization("bob", "pw")
    hops = [(path.split("/")[1], auth) for _, path, auth in seen.requests + cdn_seen.requests]
    if target == "another origin":
        assert hops == [("v2", None), ("v2", basic), ("data", None)] and cdn_seen.paths() == [f"/data/{BLOB_DIGEST}"]
    else:
        assert hops == [("v2", None), ("v2", basic), ("data", basic)]


async def test_redirect_loops_end(serve: Serve) -> None:
    """A registry that redirects for ever: five redirects are followed, then Unavailable (too many redirects)."""
    seen = Seen()
    app = recording_app(seen)

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/v2/org/app/manifests/{len(seen.requests)}")

    app.router.add_get("/v2/org/app/manifests/{ref}", loop)
    async with make_client(await serve(app), retries=0) as client:
        with pytest.raises(Unavailable, match="failed after 1 attempt: too many redirects"):
            await client.get_manifest("org/app", "0", [OCI_MANIFEST])
    assert len(seen.requests) == 6


async def test_429_leaves_the_registry_alone_for_its_retry_after(serve: Serve) -> None:
    """A 429 is not retried; for its Retry-After, requests fail at once with the time left, asking nothing."""
    seen = Seen()
    app = recording_app(seen)

    async def limited(request: web.Request) -> web.Response:
        return error(429, "TOOMANYREQUESTS", "slow down", **{"Retry-After": "30"})

    app.router.add_get("/v2/org/app/manifests/1", limited)
    async with make_client(await serve(app), retries=2) as client:
        with pytest.raises(TooManyRequests, match="TOOMANYREQUESTS: slow down") as first:
            await client.get_manifest("org/app", "1", [OCI_MANIFEST])
        with pytest.raises(TooManyRequests, match=r"not asked again for (29|30) s") as second:
            await client.head_manifest("org/app", "1", [OCI_MANIFEST])
    assert first.value.headers == {"Retry-After": "30"}
    assert second.value.headers["Retry-After"] in ("29", "30")
    assert len(seen.requests) == 1
    assert client.waits == []


class NoDns(AbstractResolver):
    """Resolves nothing: a name that is not reached through the proxy fails here instead of leaving the machine."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        raise OSError(f"no DNS in tests ({host})")

    async def close(self) -> None:
        pass


async def test_proxy_is_chosen_for_each_hop(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY carries the request to a named registry; its redirect to a loopback address goes direct
    (loopback is never proxied), as Go chooses a proxy per request. Also: the injected session is used and
    left open."""
    direct, proxied = Seen(), Seen()
    cdn = await serve(basic_registry(direct, ""))
    proxy_app = recording_app(proxied)

    async def relay(request: web.Request) -> web.Response:
        assert request.host == "registry.test"
        raise web.HTTPTemporaryRedirect(f"{cdn}/data/{request.match_info['digest']}")

    proxy_app.router.add_get("/v2/org/app/blobs/{digest}", relay)
    monkeypatch.setenv("HTTP_PROXY", await serve(proxy_app))
    settings = UpstreamSettings.model_validate({"name": "registry.test", "url": "http://registry.test"})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=NoDns())) as session:
        async with RegistryClient(settings, session=session, retry=RetryPolicy(0)) as client, \
                client.open_blob("org/app", BLOB_DIGEST) as blob:
            data = b"".join([chunk async for chunk in blob])
        assert not session.closed
    assert data == BLOB
    assert proxied.paths() == [f"/v2/org/app/blobs/{BLOB_DIGEST}"]
    assert direct.paths() == [f"/data/{BLOB_DIGEST}"]
