"""Issue 10 §6: what access control costs. The core scenario's manifest GET by tag at c32 (wrk), on k3sreg and
on docker-registry, each without auth, with `auth.htpasswd` (Basic credentials on every request; bcrypt cost 10
entries written by `k3sreg htpasswd`) and with `auth.token` (a Bearer token on every request, from k3sreg's
built-in service, signed with a certificate of `k3sreg certs` that docker-registry trusts as its
rootcertbundle), with the issue's `access` rules.

The three servers of an implementation share one data directory (the manifest is pushed once, without auth).
Each round measures the three modes back to back on each implementation; the share rows are each round's
req/s with auth over req/s without, whose median must stay at or above 85% for k3sreg. The server's CPU time
per request (its whole process tree) is the steadier comparison on a busy machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import urllib.request
from base64 import b64encode
from pathlib import Path

import aiohttp

from bench import client, content
from bench.content import MANIFEST_ACCEPT, SmallBlob
from bench.context import Context
from bench.load import run_wrk
from bench.procs import StartError, cpu_seconds
from bench.report import Figure, Results, Target
from bench.servers import DOCKER_REGISTRY, K3SREG, Server, k3sreg_binary, start_docker_registry, start_k3sreg

APP = "bench/app"
USER, PASSWORD = "bench", "bench-Passw0rd-not-secret"
SERVICE, ISSUER = "k3sreg-bench", "k3sreg-bench-issuer"
MODES = ("none", "htpasswd", "token")
TARGET_SHARE = 85.0
RULES = [{"users": [USER], "repositories": ["bench/**"], "actions": ["pull", "push"]},
         {"users": ["*"], "repositories": ["**"], "actions": ["pull"]}]


def _declare(results: Results, ctx: Context) -> None:
    c = ctx.config.connections
    results.declare(Figure("auth.none.rps", f"manifest GET by tag, c{c}, no auth", "req/s", True))
    results.declare(Figure("auth.htpasswd.rps", f"manifest GET by tag, c{c}, htpasswd (Basic each request)",
                           "req/s", True))
    results.declare(Figure("auth.token.rps", f"manifest GET by tag, c{c}, token (Bearer each request)",
                           "req/s", True))
    for mode in MODES:
        results.declare(Figure(f"auth.{mode}.cpu", f"server CPU per manifest GET, {mode}", "µs", False))
    share = Target("abs_min", TARGET_SHARE, text=f"≥{TARGET_SHARE:g}% of no auth")
    results.declare(Figure("auth.htpasswd.share", "htpasswd: req/s as % of no auth", "%", True, share))
    results.declare(Figure("auth.token.share", "token: req/s as % of no auth", "%", True, share))


def _k3sreg(*args: str, stdin: str | None = None) -> None:
    subprocess.run([str(k3sreg_binary()), *args], input=stdin, text=True, check=True, capture_output=True)


def _material(work: Path) -> tuple[Path, Path]:
    """An htpasswd file with USER (bcrypt cost 10) and a CA with a token signer; (htpasswd, certs dir)."""
    users, certs = work / "htpasswd", work / "certs"
    _k3sreg("htpasswd", "set", str(users), USER, "--password-stdin", stdin=PASSWORD + "\n")
    _k3sreg("certs", "init", "--dir", str(certs))
    _k3sreg("certs", "issue", "--signer", "tokens", "--dir", str(certs))
    return users, certs


def _overlays(users: Path, certs: Path, data: Path, token_url: str | None) -> dict[str, dict[str, object]]:
    """Config overlays per mode for one implementation (k3sreg when `token_url` is None)."""
    storage: dict[str, object] = {"storage": {"filesystem": {"rootdirectory": str(data)}}}
    token: dict[str, object] = {"service": SERVICE, "issuer": ISSUER}
    if token_url is None:
        token["builtin"] = {"htpasswd": str(users), "expiration": "1h", "signingkey": str(certs / "tokens.key"),
                            "signingcert": str(certs / "tokens.crt")}
        rules: dict[str, object] = {"access": RULES}
    else:
        token.update(realm=token_url, rootcertbundle=str(certs / "ca.crt"))
        rules = {}
    return {
        "none": storage,
        "htpasswd": {**storage, "auth": {"htpasswd": {"realm": "bench", "path": str(users)}}, **rules},
        "token": {**storage, "auth": {"token": token}, **rules},
    }


def _token(server: Server) -> str:
    """A pull token for APP from k3sreg's built-in service (valid for an hour)."""
    basic = b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    url = f"{server.url}/auth/token?service={SERVICE}&scope=repository:{APP}:pull"
    req = urllib.request.Request(url, headers={"Authorization": f"Basic {basic}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return str(json.loads(resp.read())["token"])


async def _push(server: Server) -> None:
    config = content.config_blob("app")
    layer = SmallBlob(b"k3sreg auth bench layer\n", content.OCI_LAYER)
    manifest = content.manifest_for(config, [content.layer_descriptor(layer)])
    async with aiohttp.ClientSession() as session:
        for blob in (config, layer):
            await client.push_small(session, server.url, APP, blob)
        await client.put_manifest(session, server.url, APP, "latest", manifest)


async def _start_all(ctx: Context, stack: contextlib.ExitStack, users: Path, certs: Path
                     ) -> dict[str, dict[str, Server]]:
    """Per implementation, a server per mode; the manifest pushed into their shared data directory."""
    found: dict[str, dict[str, Server]] = {}
    token_url: str | None = None
    for name in (K3SREG, DOCKER_REGISTRY):
        if not ctx.wants(name):
            continue
        data = ctx.subdir("auth", name, "data")
        overlays = _overlays(users, certs, data, None if name == K3SREG else token_url)
        servers: dict[str, Server] = {}
        for mode in MODES:
            if mode == "token" and name == DOCKER_REGISTRY and token_url is None:
                continue  # its tokens come from k3sreg's service
            work = ctx.subdir("auth", name, mode)
            if name == K3SREG:
                server = await asyncio.to_thread(start_k3sreg, work, ctx.config.workers, overlays[mode])
            else:
                server = await asyncio.to_thread(start_docker_registry, work, overlays[mode])
            stack.callback(server.stop)
            servers[mode] = server
            if mode == "none":
                await _push(server)
        if name == K3SREG:
            token_url = f"{servers['token'].url}/auth/token"
        found[name] = servers
    return found


async def run(ctx: Context, results: Results) -> None:
    """Measure every mode on every implementation, `runs` rounds; the share rows per round."""
    _declare(results, ctx)
    if not ctx.wants(K3SREG):
        return
    cfg = ctx.config
    users, certs = await asyncio.to_thread(_material, ctx.subdir("auth", "material"))
    with contextlib.ExitStack() as stack:
        try:
            servers = await _start_all(ctx, stack, users, certs)
        except StartError as exc:
            results.notes.append(f"auth: a server did not start: {exc}")
            return
        token = await asyncio.to_thread(_token, servers[K3SREG]["token"])
        basic = b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        headers = {"none": {}, "htpasswd": {"Authorization": f"Basic {basic}"},
                   "token": {"Authorization": f"Bearer {token}"}}
        for round_no in range(cfg.runs):
            ctx.log(f"auth round {round_no + 1}/{cfg.runs}")
            for name, by_mode in servers.items():
                rps: dict[str, float] = {}
                for mode, server in by_mode.items():
                    before = cpu_seconds(server.pid)
                    try:
                        result = await run_wrk(f"{server.url}/v2/{APP}/manifests/latest", ctx.workdir,
                                               accept=MANIFEST_ACCEPT, threads=cfg.wrk_threads,
                                               connections=cfg.connections, seconds=cfg.load_seconds,
                                               headers=headers[mode])
                    except Exception as exc:
                        results[f"auth.{mode}.rps"].fail(name, f"{type(exc).__name__}: {exc}")
                        continue
                    rps[mode] = result.rps
                    results[f"auth.{mode}.rps"].add(name, result.rps)
                    results[f"auth.{mode}.cpu"].add(name, (cpu_seconds(server.pid) - before) / result.requests * 1e6)
                for mode in ("htpasswd", "token"):
                    if mode in rps and rps.get("none"):
                        results[f"auth.{mode}.share"].add(name, 100 * rps[mode] / rps["none"])
