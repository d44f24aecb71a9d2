"""The HTTP client of one upstream registry: manifests by tag or digest, blobs streamed as they arrive.

One `UpstreamClient` per upstream holds one pooled aiohttp session (created on first use, in the running loop).
Every request is idempotent (GET/HEAD), so connection errors and 500/502/503/504 are retried `retries` times with
exponential backoff; `timeout` bounds connecting and each wait for data, never a whole blob. Redirects are followed
by hand so that each host gets only its own `Authorization`: the upstream's credentials and tokens never reach a CDN
or another registry a redirect leads to (that host gets a token of its own only if it challenges; see `auth`).

Errors: 404 → ManifestUnknown / BlobUnknown (with the upstream's message); 401 / 403 after the auth retry →
Unauthorized / Denied; 429 → TooManyRequests, and the upstream is then not asked again for its Retry-After
(10 s when it names none): requests meanwhile fail at once with the time left, so a rate-limited Docker Hub is
not hammered while the cache serves what it holds; anything else that went wrong (refused, timed out, 5xx, cut) →
Unavailable naming the upstream, the request, the number of attempts and the reason. A blob cut mid-body raises
Unavailable from the iterator. Retries are logged at debug only: the request that finally fails reports it once.

Repository names are those clients use; `oci.reference.canonical_repository` maps them to the upstream's (Docker Hub's
one-component names live under `library/`), and every method applies it, so callers pass names unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import aiohttp
from yarl import URL

from k3sreg import __version__
from k3sreg.client.answers import (
    attempts,
    backoff,
    content_range,
    describe_failure,
    retry_after_seconds,
    tag_page,
    upstream_message,
)
from k3sreg.client.auth import (
    Authenticator,
    BearerRealm,
    TokenError,
    parse_challenges,
    parse_token_response,
    tls_context,
    token_query,
)
from k3sreg.client.proxyenv import ProxyEnv
from k3sreg.config.limits import MANIFEST_SIZE
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.errors import (
    BlobUnknown,
    Denied,
    ManifestUnknown,
    NameUnknown,
    RegistryError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from k3sreg.oci.digest import Digest, InvalidDigest, is_digest
from k3sreg.oci.mediatypes import DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, MANIFEST_TYPES
from k3sreg.oci.reference import canonical_repository

DEFAULT_ACCEPT = (*sorted(MANIFEST_TYPES),)
CHUNK_SIZE = 256 * 1024
READ_BUFFER = 1 << 20
MAX_TAGS = 100_000
_TAG_PAGE_BYTES = 16 * 1024 * 1024
MAX_REDIRECTS = 5
_RETRY_STATUSES = frozenset({500, 502, 503, 504})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
USER_AGENT = f"k3sreg/{__version__}"
log = logging.getLogger("k3sreg.upstream")


@dataclass(frozen=True, slots=True)
class ManifestHead:
    """What a HEAD on a manifest tells: its digest, media type and size in bytes."""

    digest: Digest
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    """A manifest as the upstream served it; `digest` is checked against `data` (see UpstreamClient.get_manifest)."""

    data: bytes
    media_type: str
    digest: Digest


class BlobStream:
    """A blob being downloaded from `offset` on: `size` is the whole blob's (None when the upstream does not say);
    iterate for chunks as they come.

    Iterate once. A connection cut or a short body raises Unavailable from the iterator; the bytes are not
    verified here (the caller hashes them against the digest it asked for). An upstream that ignores the Range
    of a resumed download sends the whole blob: the bytes before `offset` are skipped here.
    """

    def __init__(self, response: aiohttp.ClientResponse, where: str, offset: int = 0, timeout: float = 0) -> None:
        self._response = response
        self._where = where
        self._timeout = timeout
        self.offset = offset
        self.size: int | None = response.content_length
        self._skip = 0
        if offset and response.status == 206:
            span = content_range(response.headers.get("Content-Range", ""))
            if span is None or span[0] != offset:
                raise Unavailable(f"{where}: asked for bytes from {offset}, got Content-Range "
                                  f"{response.headers.get('Content-Range')!r}")
            self.size = span[2]
        elif offset:
            self._skip = offset
        self.media_type: str = response.headers.get("Content-Type", "application/octet-stream")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        received, skip = self.offset, self._skip
        try:
            async for chunk in self._response.content.iter_any():  # what arrived, bounded by READ_BUFFER
                if skip:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                    if not chunk:
                        continue
                received += len(chunk)
                yield chunk
        except _NETWORK_ERRORS as exc:
            raise Unavailable(
                f"{self._where}: the blob download broke off after {received} bytes: "
                f"{describe_failure(exc, self._timeout)}"
            ) from exc
        if self.size is not None and received != self.size:
            raise Unavailable(f"{self._where}: the blob download ended after {received} of {self.size} bytes")


class UpstreamClient:
    """The client of one upstream registry (`settings`); reuse it for every request, `close()` it at shutdown."""

    def __init__(self, settings: UpstreamSettings, max_manifest_size: int = MANIFEST_SIZE) -> None:
        self.settings = settings
        self.name: str = settings.name
        url = URL(settings.url + "/")
        # Credentials written into the URL are used like `username`/`password` and never shown in messages.
        username, password = settings.username or url.user or "", settings.password or url.password or ""
        self._base = url.with_user(None)
        self._display = str(self._base).rstrip("/")
        self._origin = self._base.origin()
        self._ssl = tls_context(settings)
        self._max_manifest = max_manifest_size
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.timeout, sock_connect=settings.timeout, sock_read=settings.timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self._quiet_until = 0.0  # monotonic time before which a rate-limited upstream is not asked
        # Read once, as Go's http.ProxyFromEnvironment does: HTTP_PROXY / HTTPS_PROXY / NO_PROXY.
        self._proxies = ProxyEnv.from_env(os.environ)
        self.auth = Authenticator(str(self._origin), username, password, self._fetch_token)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pooled connections; the client may not be used afterwards."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=64, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                trust_env=False,
                # aiohttp's 64 KiB default pauses and resumes the socket every 128 KiB: a 64 MiB blob cost
                # ~55 ms of event-loop time in reads, ~11 ms with 1 MiB.
                read_bufsize=READ_BUFFER,
                auto_decompress=False,
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    def _url(self, repository: str, kind: str, reference: str) -> URL:
        path = f"v2/{canonical_repository(self.name, repository)}/{kind}/{reference}"
        return self._base.join(URL(path, encoded=True))

    async def head_manifest(self, repo: str, reference: str, accept: Sequence[str] = DEFAULT_ACCEPT) -> ManifestHead:
        """Digest, media type and size of a manifest without its body; falls back to GET when no digest is sent."""
        response = await self._request("HEAD", repo, "manifests", reference, accept, ManifestUnknown)
        response.release()
        header = response.headers.get("Docker-Content-Digest")
        size = response.content_length
        if header is None or size is None:
            fetched = await self.get_manifest(repo, reference, accept)
            return ManifestHead(fetched.digest, fetched.media_type, len(fetched.data))
        digest = self._parse_digest(header, repo, reference)
        if is_digest(reference) and str(digest) != reference:
            raise Unavailable(f"{self._where(repo)}: asked for {reference}, the upstream answered {digest}")
        return ManifestHead(digest, _media_type(response), size)

    async def get_manifest(self, repo: str, reference: str, accept: Sequence[str] = DEFAULT_ACCEPT) -> FetchedManifest:
        """The manifest's bytes, media type and digest; the digest always matches the bytes, or Unavailable."""
        attempt = 0
        while True:
            response = await self._request("GET", repo, "manifests", reference, accept, ManifestUnknown)
            try:
                data = await self._read_manifest(response, repo)
                break
            except _NETWORK_ERRORS as exc:
                if attempt >= self.settings.retries:
                    raise Unavailable(f"{self._where(repo)}: the manifest download failed {attempts(attempt + 1)}: "
                                      f"{self._describe(exc)}") from exc
            finally:
                response.release()
            attempt += 1
            await asyncio.sleep(backoff(attempt))
        media_type = _media_type(response)
        header = response.headers.get("Docker-Content-Digest")
        # The bytes must match both the digest asked for and the one the upstream names (when it names one).
        expected = [self._parse_digest(d, repo, reference) for d in (reference, header) if d and is_digest(d)]
        if not expected:
            return FetchedManifest(data, media_type, Digest.of(data))
        for want in expected:
            # Schema 1 digests cover the payload without its signatures, so they cannot be checked on the bytes.
            if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
                break
            if Digest.of(data, want.algorithm) != want:
                raise Unavailable(f"{self._where(repo)}: the manifest for {reference} does not match the digest "
                                  f"{want}")
        return FetchedManifest(data, media_type, expected[0])

    async def head_blob(self, repo: str, digest: Digest) -> int | None:
        """The size of a blob upstream (None when the upstream does not say), or BlobUnknown."""
        response = await self._request("HEAD", repo, "blobs", str(digest), (), BlobUnknown)
        response.release()
        return response.content_length

    async def list_tags(self, repo: str, limit: int = MAX_TAGS) -> list[str]:
        """The upstream's tags of `repo`, following its `Link` pages (at most `limit`); NameUnknown when unknown."""
        tags: list[str] = []
        url: URL | None = None
        while len(tags) < limit:
            response = await self._request("GET", repo, "tags", "list", ("application/json",), NameUnknown, url)
            try:
                body = await _read_limited(response, _TAG_PAGE_BYTES)
            except _NETWORK_ERRORS as exc:
                raise Unavailable(f"{self._where(repo)}: the tag list download failed: {self._describe(exc)}"
                                  ) from exc
            finally:
                response.release()
            page = tag_page(body)
            if page is None:
                raise Unavailable(f"{self._where(repo)}: the tag list is not a JSON object with a list of tags")
            tags.extend(page)
            following = response.links.get("next")
            if not page or following is None:
                break
            url = response.url.join(URL(str(following["url"]), encoded=True))
        return tags[:limit]

    def open_blob(self, repo: str, digest: Digest, offset: int = 0) -> AbstractAsyncContextManager[BlobStream]:
        """`async with client.open_blob(repo, digest) as blob:` streams the blob (from `offset`, with a Range);
        entering raises BlobUnknown etc."""
        return self._open_blob(repo, digest, offset)

    @asynccontextmanager
    async def _open_blob(self, repo: str, digest: Digest, offset: int) -> AsyncIterator[BlobStream]:
        extra = {"Range": f"bytes={offset}-"} if offset else None
        response = await self._request("GET", repo, "blobs", str(digest), (), BlobUnknown, extra=extra)
        try:
            yield BlobStream(response, self._where(repo), offset, self.settings.timeout)
        finally:
            # Closing (not releasing) drops a half-read connection instead of draining it into the pool.
            response.close()

    def _where(self, repo: str) -> str:
        return f"upstream {self.name} ({self._display}), repository {canonical_repository(self.name, repo)}"

    def _describe(self, exc: BaseException) -> str:
        return describe_failure(exc, self.settings.timeout)

    def _parse_digest(self, value: str, repo: str, reference: str) -> Digest:
        try:
            return Digest.parse(value)
        except InvalidDigest as exc:
            raise Unavailable(f"{self._where(repo)}: unusable digest for {reference}: {exc}") from None

    async def _read_manifest(self, response: aiohttp.ClientResponse, repo: str) -> bytes:
        if (response.content_length or 0) > self._max_manifest:
            raise Unavailable(f"{self._where(repo)}: the manifest is larger than {self._max_manifest} bytes")
        parts: list[bytes] = []
        total = 0
        async for chunk in response.content.iter_chunked(CHUNK_SIZE):
            total += len(chunk)
            if total > self._max_manifest:
                raise Unavailable(f"{self._where(repo)}: the manifest is larger than {self._max_manifest} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def _request(
        self,
        method: str,
        repo: str,
        kind: str,
        reference: str,
        accept: Sequence[str],
        missing: type[RegistryError],
        url: URL | None = None,
        extra: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """A 2xx response (body unread) after auth, retries and redirects; every other outcome raises.
        `url` replaces the one built from repo/kind/reference (a `Link` to the next page)."""
        self._check_backoff(repo)
        url = url or self._url(repo, kind, reference)
        headers = {"Accept": ", ".join(accept)} if accept else {}
        headers.update(extra or {})
        upstream_repo = canonical_repository(self.name, repo)
        response, tries = await self._send(method, url, headers, upstream_repo)
        if 200 <= response.status < 300:
            return response
        body = await self._drain(response)
        if response.status == 401:
            # The 401 may come from the end of a redirect chain: answer the host that sent it.
            challenges = parse_challenges(response.headers.getall("WWW-Authenticate", []))
            sent = response.request_info.headers.get("Authorization")
            if await self.auth.answer(challenges, str(response.url.origin()), upstream_repo, sent):
                response, tries = await self._send(method, url, headers, upstream_repo)
                if 200 <= response.status < 300:
                    return response
                body = await self._drain(response)
        if response.status == 429:
            raise self._rate_limited(repo, upstream_message(body), response.headers.get("Retry-After"))
        raise self._error(response.status, body, missing, repo, f"{method} {url.path}", tries)

    def _check_backoff(self, repo: str) -> None:
        """While the upstream's Retry-After runs, refuse at once instead of asking (and being counted) again."""
        left = self._quiet_until - time.monotonic()
        if left > 0:
            wait = math.ceil(left)
            raise TooManyRequests(f"{self._where(repo)}: rate limited by the upstream; not asked again for {wait} s",
                                  headers={"Retry-After": str(wait)})

    def _rate_limited(self, repo: str, said: str | None, retry_after: str | None) -> TooManyRequests:
        wait = retry_after_seconds(retry_after, time.time())
        self._quiet_until = time.monotonic() + wait
        log.warning("upstream %s: rate limited (%s); no requests to it for %d s", self.name,
                    said or "HTTP 429", wait)
        return TooManyRequests(f"{self._where(repo)}: {said or TooManyRequests.default_message}",
                               headers={"Retry-After": str(wait)})

    def _error(self, status: int, body: bytes, missing: type[RegistryError], repo: str, what: str,
               tries: int) -> RegistryError:
        said = upstream_message(body)
        where = self._where(repo)
        if status == 404:
            return missing(f"{where}: {said or missing.default_message}")
        known: dict[int, type[RegistryError]] = {401: Unauthorized, 403: Denied, 429: TooManyRequests}
        if status in known:
            cls = known[status]
            return cls(f"{where}: {said or cls.default_message}")
        return Unavailable(f"upstream {self.name} ({self._display}): {what} answered HTTP {status} "
                           f"{attempts(tries)}" + (f" ({said})" if said else ""))

    async def _drain(self, response: aiohttp.ClientResponse) -> bytes:
        """The start of an answer that is not going to be used further (an error document); releases it."""
        try:
            return await _read_limited(response, 64 * 1024)
        except _NETWORK_ERRORS:
            return b""
        finally:
            response.release()

    async def _send(
        self, method: str, url: URL, headers: dict[str, str], repository: str
    ) -> tuple[aiohttp.ClientResponse, int]:
        """One logical request with retries on network errors and retryable 5xx: the last answer, and how many
        attempts it took. A request that fails outright raises Unavailable saying so, in one message."""
        attempt = 0
        while True:
            try:
                response = await self._follow(method, url, headers, repository)
            except _NETWORK_ERRORS as exc:
                why = self._describe(exc)
                # A certificate that does not verify will not verify on the next attempt either.
                if attempt >= self.settings.retries or isinstance(exc, aiohttp.ClientSSLError):
                    raise Unavailable(f"upstream {self.name} ({self._display}): {method} {url.path} failed "
                                      f"{attempts(attempt + 1)}: {why}") from exc
            else:
                if response.status not in _RETRY_STATUSES or attempt >= self.settings.retries:
                    return response, attempt + 1
                await self._drain(response)
                why = f"HTTP {response.status}"
            attempt += 1
            log.debug("upstream %s: %s %s failed (%s), retry %d of %d", self.name, method, url, why, attempt,
                      self.settings.retries)
            await asyncio.sleep(backoff(attempt))

    async def _follow(self, method: str, url: URL, headers: dict[str, str], repository: str) -> aiohttp.ClientResponse:
        """Send, following redirects by hand so that each host gets only its own `Authorization` (or none)."""
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            authorization = await self.auth.authorization(str(url.origin()), repository)
            if authorization:
                sent["Authorization"] = authorization
            response = await self._http().request(method, url, headers=sent, allow_redirects=False,
                                                  proxy=self._proxies.for_url(url))
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or not location:
                return response
            response.release()
            url = url.join(URL(location, encoded=True))
            if response.status == 303:
                method = "HEAD" if method == "HEAD" else "GET"
        raise aiohttp.TooManyRedirects(response.request_info, response.history)

    async def _fetch_token(self, realm: BearerRealm, scope: str, basic: str | None) -> tuple[str, float]:
        """GET the token service; its refusals become Unauthorized / Denied, its failures Unavailable."""
        where = f"upstream {self.name}: the token service {realm.realm}"
        url = URL(realm.realm).update_query(token_query(realm, scope))
        attempt = 0
        while True:
            headers = {"Authorization": basic} if basic else {}
            try:
                async with self._http().get(url, headers=headers, allow_redirects=True,
                                            proxy=self._proxies.for_url(url)) as response:
                    body = await _read_limited(response, 1024 * 1024)
                    status = response.status
            except _NETWORK_ERRORS as exc:
                if attempt >= self.settings.retries:
                    raise Unavailable(f"{where} failed {attempts(attempt + 1)}: {self._describe(exc)}") from exc
            else:
                if status not in _RETRY_STATUSES or attempt >= self.settings.retries:
                    break
            attempt += 1
            await asyncio.sleep(backoff(attempt))
        said = upstream_message(body) or body[:200].decode(errors="replace").strip()
        if status in (401, 403):
            cls = Unauthorized if status == 401 else Denied
            raise cls(f"{where} refused a token for {scope!r} (HTTP {status}{': ' + said if said else ''})")
        if status != 200:
            raise Unavailable(f"{where} answered HTTP {status} for {scope!r}")
        try:
            return parse_token_response(body)
        except TokenError as exc:
            raise Unavailable(f"{where}: {exc}") from None


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body up to `limit` bytes (what is beyond is left unread)."""
    body = b""
    while len(body) < limit and (chunk := await response.content.read(limit - len(body))):
        body += chunk
    return body


def _media_type(response: aiohttp.ClientResponse) -> str:
    return response.headers.get("Content-Type", "").split(";", 1)[0].strip() or "application/octet-stream"
