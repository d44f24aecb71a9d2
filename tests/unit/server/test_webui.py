"""The web page served in-process on a real filesystem store: content, escaping, deletes, and its cost with
10,000 repositories."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from k3sreg.config import parse_settings
from k3sreg.server.app import create_app
from k3sreg.storage.filesystem import FilesystemDriver
from k3sreg.storage.store import Store
from tests.unit.server.storefill import CountingDriver, fill_many, push_image

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Coroutine[Any, Any, tuple[Client, Store, CountingDriver]]]
EVIL = '"><script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    """Starts k3sreg's application on a filesystem store under tmp_path, with the given config on top."""
    clients: list[Client] = []

    async def make(fill: Callable[[Store], None] | None = None, **config: Any) -> tuple[Client, Store,
                                                                                        CountingDriver]:
        # No upload purging: its walk of every repository at start-up would count among the page's reads.
        storage = {"filesystem": {"rootdirectory": str(tmp_path)}, "delete": {"enabled": True},
                   "maintenance": {"uploadpurging": {"enabled": False}}}
        raw: dict[str, Any] = {"version": "0.1", "storage": storage, **config}
        settings = parse_settings(raw, {})
        driver = CountingDriver(FilesystemDriver(tmp_path))
        store = Store(driver)  # type: ignore[arg-type]
        if fill is not None:
            fill(store)
        client = TestClient(TestServer(create_app(settings, store=store), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client, store, driver

    yield make
    for c in clients:
        await c.close()


async def test_list_shows_repositories_and_tags(make_client: MakeClient) -> None:
    """The page lists each repository with its tags and a pull command naming the request's host."""
    def fill(store: Store) -> None:
        push_image(store, "library/demo", "1")
        push_image(store, "team/app", "v2")

    client, _, _ = await make_client(fill)
    resp = await client.get("/")
    body = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert 'data-repo="library/demo"' in body and 'data-repo="team/app"' in body
    assert f"docker pull {client.host}:{client.port}/team/app:v2" in body
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]


async def test_repository_page_shows_platform_size_and_referrers(make_client: MakeClient) -> None:
    """A tag's row shows its platform with its size and the signature that refers to it."""
    def fill(store: Store) -> None:
        subject = push_image(store, "team/app", "v1", arch="arm64")
        push_image(store, "team/app", "v1-sig", artifact_type="application/vnd.example.signature",
                   subject=subject)

    client, _, _ = await make_client(fill)
    body = await (await client.get("/repositories/team/app")).text()
    row = re.search(r'<tr class="tagrow" data-tag="v1">.*?</tr>', body)
    assert row is not None
    assert "linux/arm64" in row.group(0) and "application/vnd.example.signature" in row.group(0)


async def test_annotations_and_artifact_types_are_escaped(make_client: MakeClient) -> None:
    """Markup in an annotation or an artifactType is shown as text, never as markup."""
    def fill(store: Store) -> None:
        subject = push_image(store, "team/app", "v1", annotations={"org.example.note": EVIL, EVIL: "key"})
        push_image(store, "team/app", "sig", artifact_type=f"application/x{EVIL}", subject=subject,
                   annotations={"org.example.note": EVIL})

    client, _, _ = await make_client(fill)
    body = await (await client.get("/repositories/team/app")).text()
    assert "<script>" not in body and "<img" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body


async def test_delete_needs_the_form_token(make_client: MakeClient) -> None:
    """A delete without the page's form token is refused; with it the tag goes, and the page says so."""
    def fill(store: Store) -> None:
        push_image(store, "team/app", "v1")
        push_image(store, "team/app", "v2")

    client, store, _ = await make_client(fill)
    page = await client.get("/repositories/team/app")
    token = re.search(r'name="form_token" value="([^"]+)"', await page.text())
    assert token is not None and client.session.cookie_jar.filter_cookies(client.make_url("/"))
    forged = await client.post("/_delete", data={"repository": "team/app", "tag": "v1", "form_token": "x" * 43})
    assert forged.status == 403
    assert store.manifests.tags.list("team/app") == ["v1", "v2"]
    done = await client.post("/_delete", data={"repository": "team/app", "tag": "v1", "form_token": token.group(1)})
    assert done.status == 200 and "Tag v1 was deleted" in await done.text()
    assert store.manifests.tags.list("team/app") == ["v2"]


async def test_without_delete_enabled_nothing_can_be_deleted(make_client: MakeClient) -> None:
    """With storage.delete disabled the page offers no delete, and a posted delete is refused as the API's."""
    client, store, _ = await make_client(lambda s: push_image(s, "team/app", "v1"),
                                         storage={"filesystem": {"rootdirectory": "unused"}})
    body = await (await client.get("/repositories/team/app")).text()
    assert "form_token" not in body
    client.session.cookie_jar.update_cookies({"k3sreg_form": "t" * 43})
    resp = await client.post("/_delete", data={"repository": "team/app", "tag": "v1", "form_token": "t" * 43})
    assert resp.status == 405 and store.manifests.tags.list("team/app") == ["v1"]


async def test_page_path_and_switch(make_client: MakeClient) -> None:
    """`web.path` moves the page; `web.enabled: false` removes it."""
    client, _, _ = await make_client(web={"path": "/ui"})
    assert (await client.get("/ui/")).status == 200
    assert (await client.get("/ui/_static/page.js")).status == 200
    off, _, _ = await make_client(web={"enabled": False})
    assert (await off.get("/")).status == 404


async def test_ten_thousand_repositories_cost_one_page(make_client: MakeClient, tmp_path: Path) -> None:
    """With 10,000 repositories a list page reads no manifest and a bounded number of files, and search and
    the last page work; the render times are printed."""
    names: list[str] = []

    def fill(store: Store) -> None:
        names.extend(fill_many(tmp_path, store, 10_000))

    client, _, driver = await make_client(fill)
    driver.calls.clear()
    started = time.perf_counter()
    first = await client.get("/")
    cold = time.perf_counter() - started
    body = await first.text()
    assert "10,000 repositories" in body and body.count('class="repo"') == 50
    assert driver.calls["get_content"] == 0  # no manifest, no link read for a list page
    timings = []
    for page in (2, 200):
        driver.calls.clear()
        started = time.perf_counter()
        resp = await client.get("/", params={"page": str(page)})
        timings.append(time.perf_counter() - started)
        text = await resp.text()
        assert f'data-repo="{names[(page - 1) * 50]}"' in text
        assert sum(driver.calls.values()) <= 10 * 50, driver.calls
    driver.calls.clear()
    started = time.perf_counter()
    found = await (await client.get("/", params={"q": "app0999", "fragment": "repos"})).text()
    search = time.perf_counter() - started
    assert re.findall(r'data-repo="([^"]+)"', found) == [n for n in names if "app0999" in n]
    assert sum(driver.calls.values()) <= 10 * 10
    print(f"\n10,000 repositories: first page {cold * 1000:.0f} ms (catalog walk included), "
          f"next pages {timings[0] * 1000:.0f} / {timings[1] * 1000:.0f} ms, search {search * 1000:.0f} ms")
