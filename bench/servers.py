"""The servers under test, each started with a private config on a free 127.0.0.1 port.

- `k3sreg`: `.venv/bin/k3sreg serve --config CONFIG --workers N`.
- `docker-registry`: Docker Distribution 2.8.2 as Debian ships it, log level error, access log off, with the
  in-memory blob descriptor cache of the users' guide config.
- `nginx`: the limit for serving a file. `sendfile on`, serving blob files straight out of a registry's data
  directory (Distribution's layout) under the same URLs as a registry, plus manifests and tag lists that the
  benchmark writes as static files (`static_dir`), so one client drives all three the same way.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.procs import Proc, StartError, free_port, launch, wait_http

K3SREG = "k3sreg"
DOCKER_REGISTRY = "docker-registry"
NGINX = "nginx"
ALL_SERVERS = (K3SREG, DOCKER_REGISTRY, NGINX)


@dataclass
class Server:
    """A running server: its column name, base URL, process and what it can do."""

    name: str
    url: str
    proc: Proc
    data_dir: Path
    writable: bool = True
    # Files nginx serves for URLs that a registry resolves through its metadata (tags, tag lists).
    static_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The pid of the server's root process (its workers are its descendants)."""
        return self.proc.pid

    @property
    def log(self) -> Path:
        """The server's stdout and stderr (docker-registry writes its access log there when enabled)."""
        return self.proc.log

    def stop(self) -> None:
        """Stop the server and every process it started."""
        self.proc.stop()


def k3sreg_binary() -> Path:
    """The k3sreg console script of the environment running the benchmark (`.venv/bin/k3sreg`)."""
    beside = Path(sys.executable).parent / "k3sreg"
    if beside.exists():
        return beside
    found = shutil.which("k3sreg")
    if found is None:
        raise StartError("k3sreg is not installed in this environment (run `make install`)")
    return Path(found)


def _registry_config(root: Path, port: int, overlay: Mapping[str, object] | None) -> dict[str, object]:
    base: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    return merge(base, overlay or {})


def merge(base: Mapping[str, object], overlay: Mapping[str, object]) -> dict[str, object]:
    """base with overlay on top, mappings merged key by key (how a scenario adds `proxy:` or turns logs on)."""
    merged = dict(base)
    for key, value in overlay.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = merge(current, value)
        else:
            merged[key] = value
    return merged


# The users' guide config.yml has it, so the baseline gets it: it caches blob descriptors for HEADs.
DOCKER_REGISTRY_DEFAULTS: Mapping[str, object] = {"storage": {"cache": {"blobdescriptor": "inmemory"}}}


def start_docker_registry(
    workdir: Path, overlay: Mapping[str, object] | None = None, binary: str = "/usr/bin/docker-registry"
) -> Server:
    """docker-registry serving workdir/data, config overlay on top of the defaults; waits for GET /v2/."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    data = workdir / "data"
    config = _registry_config(data, port, merge(DOCKER_REGISTRY_DEFAULTS, overlay or {}))
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(config))
    proc = launch(DOCKER_REGISTRY, [binary, "serve", str(config_path)], workdir / "server.log")
    server = Server(DOCKER_REGISTRY, f"http://127.0.0.1:{port}", proc, data)
    _wait_or_stop(server)
    return server


def start_k3sreg(
    workdir: Path, workers: int, overlay: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None
) -> Server:
    """k3sreg --workers N serving workdir/data, config overlay on top, env added to ours; waits for GET /v2/."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    data = workdir / "data"
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(_registry_config(data, port, overlay)))
    argv = [str(k3sreg_binary()), "serve", "--config", str(config_path), "--workers", str(workers)]
    proc = launch(K3SREG, argv, workdir / "server.log", {**os.environ, **env} if env else None)
    server = Server(K3SREG, f"http://127.0.0.1:{port}", proc, data)
    _wait_or_stop(server)
    return server


_NGINX_CONF = """\
daemon off;
master_process on;
worker_processes {workers};
user root;
pid {work}/nginx.pid;
error_log {work}/error.log error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    types {{ }}
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /v2/ {{ default_type application/json; return 200 '{{}}'; }}
        location ~ "^/v2/.+/blobs/sha256:([0-9a-f]{{2}})([0-9a-f]{{62}})$" {{
            default_type application/octet-stream;
            alias {blobs}/sha256/$1/$1$2/data;
        }}
        location ~ "^/v2/(.+)/manifests/([A-Za-z0-9_][A-Za-z0-9._-]*)$" {{
            default_type application/vnd.oci.image.manifest.v1+json;
            alias {static}/manifests/$1/$2;
        }}
        location ~ "^/v2/(.+)/tags/list$" {{
            default_type application/json;
            alias {static}/tags/$1/list;
        }}
    }}
}}
"""


def start_nginx(workdir: Path, registry_data: Path, workers: int, binary: str = "nginx") -> Server:
    """nginx serving the blob files under registry_data (a Distribution root directory) with sendfile."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "tmp").mkdir(exist_ok=True)
    static = workdir / "static"
    static.mkdir(exist_ok=True)
    port = free_port()
    conf = _NGINX_CONF.format(
        workers=workers,
        work=workdir,
        port=port,
        blobs=registry_data / "docker" / "registry" / "v2" / "blobs",
        static=static,
    )
    conf_path = workdir / "nginx.conf"
    conf_path.write_text(conf)
    argv = [binary, "-e", str(workdir / "error.log"), "-p", str(workdir), "-c", str(conf_path)]
    proc = launch(NGINX, argv, workdir / "server.log")
    server = Server(NGINX, f"http://127.0.0.1:{port}", proc, registry_data, writable=False, static_dir=static)
    _wait_or_stop(server)
    return server


def _wait_or_stop(server: Server) -> None:
    try:
        wait_http(server.proc, server.url + "/v2/")
    except StartError:
        server.stop()
        raise
