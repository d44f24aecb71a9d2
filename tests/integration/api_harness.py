"""An in-process k3sreg on a loopback port, driven with a real HTTP client (aiohttp), for API behaviour tests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp.test_utils import TestServer

from k3sreg.config import load_settings
from k3sreg.server.app import create_app


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def files_under(root: Path) -> set[str]:
    """Every file below `root` (relative paths): what a failed request must not have added to. The guard's lock
    stripes (`_gc/locks/<3 hex>`, at most 4,096, made once and reused, holding nothing) are not counted."""
    return {name for p in root.rglob("*") if p.is_file()
            and not (name := str(p.relative_to(root))).startswith("docker/registry/v2/_gc/locks/")}


class Api:
    """A client bound to one server: `url(path)` and `req(method, path, ...)` returning (status, headers, body)."""

    def __init__(self, session: aiohttp.ClientSession, base: str, root: Path):
        self.session, self.base, self.root = session, base, root

    async def req(self, method: str, path: str, **kw: Any) -> tuple[int, Any, bytes]:
        url = path if path.startswith("http") else self.base + path
        async with self.session.request(method, url, allow_redirects=False, **kw) as r:
            return r.status, r.headers, await r.read()

    async def push_blob(self, repo: str, data: bytes) -> str:
        d = digest(data)
        status, _, _ = await self.req("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data=data)
        assert status == 201
        return d

    async def push_image(self, repo: str, tag: str, layer: bytes = b"layer", **extra: Any) -> tuple[str, bytes]:
        cfg = await self.push_blob(repo, b"{}")
        lay = await self.push_blob(repo, layer)
        doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": lay,
                           "size": len(layer)}], **extra}
        body = json.dumps(doc).encode()
        status, headers, _ = await self.req("PUT", f"/v2/{repo}/manifests/{tag}", data=body,
                                            headers={"Content-Type": doc["mediaType"]})
        assert status == 201, status
        return headers["Docker-Content-Digest"], body


@asynccontextmanager
async def running(tmp: Path, **config: Any) -> AsyncIterator[Api]:
    """A server on 127.0.0.1 with a Distribution config.yml built from `config` (sections merged over the
    defaults; a list, such as `upstreams`, replaces)."""
    doc: dict[str, Any] = {"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
                           "storage": {"filesystem": {"rootdirectory": str(tmp / "data")},
                                       "delete": {"enabled": True}},
                           "http": {"addr": "127.0.0.1:0"}}
    for section, values in config.items():
        if isinstance(values, dict):
            doc.setdefault(section, {}).update(values)
        else:
            doc[section] = values
    cfg = tmp / "config.yml"
    cfg.write_text(yaml.safe_dump(doc))
    server = TestServer(create_app(load_settings(cfg, env={})), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(session, f"http://127.0.0.1:{server.port}", tmp / "data")
    finally:
        await server.close()
