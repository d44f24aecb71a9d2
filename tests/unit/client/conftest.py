"""In-process registries for the client's fast tests: aiohttp web apps on 127.0.0.1, and a client with recorded waits.

``serve(app)`` starts an app and gives its base URL; every request it gets is appended to ``Seen`` as
(method, path_qs, Authorization or None). ``make_client(url, ...)`` builds a RegistryClient whose retry
policy records its waits in ``client.waits`` instead of sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from k3sreg.client import RegistryClient, RetryPolicy
from k3sreg.config.upstreams import UpstreamSettings

Serve = Callable[[web.Application], Awaitable[str]]


@dataclass
class Seen:
    """What one in-process server was asked."""

    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]

    def authorizations(self) -> list[str | None]:
        return [auth for _, _, auth in self.requests]


def recording_app(seen: Seen) -> web.Application:
    """An app whose middleware records every request in `seen` before its handler runs."""

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.requests.append((request.method, request.path_qs, request.headers.get("Authorization")))
        response: web.StreamResponse = await handler(request)
        return response

    return web.Application(middlewares=[record])


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start apps on 127.0.0.1 for one test; each call gives the app's base URL (no trailing slash)."""
    servers: list[TestServer] = []

    async def start(app: web.Application) -> str:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


class RecordingClient(RegistryClient):
    """A RegistryClient whose retry waits are recorded, not slept."""

    waits: list[float]


def make_client(url: str, retries: int = 2, **extra: Any) -> RecordingClient:
    """A client named `upstream.test` for `url` whose waits land in `client.waits`."""
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    settings = UpstreamSettings.model_validate(
        {"name": "upstream.test", "url": url, "timeout": "5s", "retries": retries, **extra})
    client = RecordingClient(settings, retry=RetryPolicy(retries, sleep=record))
    client.waits = waits
    return client
