"""The Settings model: real registry:2 config files load unchanged, defaults, and every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from k3sreg.config import EMBEDDED_DEFAULTS, Settings, load_settings
from k3sreg.config.http import DEFAULT_DRAIN

GUIDE_CONFIG = """\
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
"""

# /etc/docker/registry/config.yml as Debian's docker-registry 2.8.2 package ships it.
DEBIAN_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/docker/registry
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return load_settings(path, env or {})


def test_users_guide_config_loads_unchanged(tmp_path: Path) -> None:
    """The config.yml from our users' guide (issue 2) loads with every value where the server reads it."""
    s = load(tmp_path, GUIDE_CONFIG)
    assert s.version == "0.1"
    assert s.log.level == "info"
    assert s.log.fields == {"service": "registry"}
    assert s.storage.driver == "filesystem"
    assert s.storage.filesystem is not None
    assert s.storage.filesystem.rootdirectory == Path("/var/lib/registry")
    assert s.storage.delete.enabled is True
    assert s.storage.cache.blobdescriptor == "inmemory"
    assert s.http.addr == ":5000"
    assert s.http.bind() == (None, 5000)
    assert s.http.headers == {"X-Content-Type-Options": ["nosniff"]}
    assert s.http.tls is None


def test_debian_docker_registry_config_loads(tmp_path: Path) -> None:
    """Debian's shipped /etc/docker/registry/config.yml loads, with its htpasswd auth and health check."""
    s = load(tmp_path, DEBIAN_CONFIG)
    assert s.auth is not None and s.auth.kind == "htpasswd"
    assert s.auth.htpasswd is not None
    assert (s.auth.htpasswd.realm, s.auth.htpasswd.path) == ("basic-realm", "/etc/docker/registry")
    assert s.health.storagedriver.enabled is True
    assert s.health.storagedriver.interval == 10.0
    assert s.health.storagedriver.threshold == 3
    assert s.storage.filesystem is not None
    assert s.storage.filesystem.rootdirectory == Path("/var/lib/docker-registry")


def test_installed_debian_config_is_the_one_above() -> None:
    """The file the docker-registry package installed on this machine is the one embedded above."""
    installed = Path("/etc/docker/registry/config.yml")
    assert installed.read_text() == DEBIAN_CONFIG
    assert load_settings(installed, {}).auth is not None


def test_embedded_defaults() -> None:
    """No file: 127.0.0.1:5000, ./data, deletes on, upload purging every 24h of uploads older than 168h."""
    s = load_settings(None, {})
    assert s.http.bind() == ("127.0.0.1", 5000)
    assert s.storage.driver == "filesystem"
    assert s.storage.filesystem is not None
    assert s.storage.filesystem.rootdirectory == Path("data")
    assert s.storage.delete.enabled is True
    purging = s.storage.maintenance.uploadpurging
    assert (purging.enabled, purging.age, purging.interval, purging.dryrun) == (True, 604800.0, 86400.0, False)
    assert s.proxy is None and s.auth is None and s.upstreams == [] and s.names == []
    assert EMBEDDED_DEFAULTS["http"]["addr"] == "127.0.0.1:5000"  # not mutated by loading


def test_distribution_defaults_with_a_file(tmp_path: Path) -> None:
    """A minimal file gets Distribution's defaults: delete off, :5000, /var/lib/registry, info, text logs."""
    s = load(tmp_path, "version: 0.1\nstorage:\n  filesystem:\n")
    assert s.storage.delete.enabled is False
    assert s.storage.redirect.disable is False
    assert s.storage.maintenance.uploadpurging.enabled is True
    assert s.storage.maintenance.readonly.enabled is False
    assert s.storage.filesystem is not None
    assert s.storage.filesystem.rootdirectory == Path("/var/lib/registry")
    assert s.storage.filesystem.maxthreads == 100
    assert s.http.addr == ":5000" and s.http.net == "tcp" and s.http.prefix == ""
    assert s.http.secret is None and s.http.host is None and s.http.draintimeout is None
    assert s.http.drain == DEFAULT_DRAIN
    assert (s.log.level, s.log.formatter, s.log.accesslog.disabled) == ("info", "text", False)
    assert s.limits.manifestsize == 4 * 1024 * 1024 and s.limits.blobsize == 0 and s.limits.bodytimeout == 60.0
    assert s.catalog.maxentries == 1000 and s.tags.maxtags == 1000


def test_storage_driver_as_a_bare_string(tmp_path: Path) -> None:
    """`storage: inmemory` selects a driver with no parameters, as Distribution's parser allows."""
    s = load(tmp_path, "version: 0.1\nstorage: inmemory\n")
    assert s.storage.driver == "inmemory"
    assert s.storage.inmemory is not None


def test_tls_host_secret_accesslog(tmp_path: Path) -> None:
    """http.tls, http.host, http.secret and log.accesslog are read with their values."""
    s = load(
        tmp_path,
        """\
version: 0.1
log:
  accesslog:
    disabled: true
  level: WARNING
  formatter: json
storage:
  filesystem:
    rootdirectory: /srv/registry
http:
  addr: 0.0.0.0:443
  host: https://registry.example.com/
  secret: 0123
  prefix: registry/
  relativeurls: true
  draintimeout: 60s
  tls:
    certificate: /certs/domain.crt
    key: /certs/domain.key
    clientcas:
      - /certs/ca1.pem
    minimumtls: tls1.3
  debug:
    addr: localhost:5001
    prometheus:
      enabled: true
  http2:
    disabled: true
""",
    )
    assert s.log.accesslog.disabled is True
    assert s.log.level == "warn" and s.log.formatter == "json"
    assert s.http.host == "https://registry.example.com"
    assert s.http.secret == "0123"  # the text as written, not the YAML 1.1 octal 83
    assert s.http.prefix == "/registry"
    assert s.http.relativeurls is True and s.http.draintimeout == 60.0
    assert s.http.tls is not None and s.http.tls.enabled
    assert (s.http.tls.certificate, s.http.tls.key) == ("/certs/domain.crt", "/certs/domain.key")
    assert s.http.tls.clientcas == ["/certs/ca1.pem"] and s.http.tls.minimumtls == "tls1.3"
    assert s.http.debug is not None and s.http.debug.addr == "localhost:5001"
    assert s.http.debug.prometheus.enabled and s.http.debug.prometheus.path == "/metrics"
    assert s.http.http2.disabled is True
    assert s.http.bind() == ("0.0.0.0", 443)


@pytest.mark.parametrize(
    ("addr", "bound"),
    [
        (":5000", (None, 5000)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:5000", ("::1", 5000)),
        ("localhost:8080", ("localhost", 8080)),
        ("[::]:5000", ("::", 5000)),
    ],
)
def test_bind_addresses(tmp_path: Path, addr: str, bound: tuple[str | None, int]) -> None:
    """http.addr gives (host, port); an empty host means every interface."""
    s = load(tmp_path, f"version: 0.1\nstorage: inmemory\nhttp:\n  addr: '{addr}'\n")
    assert s.http.bind() == bound


def test_unix_socket_addr(tmp_path: Path) -> None:
    """With `net: unix`, addr is a socket path and bind() explains that it does not apply."""
    s = load(tmp_path, "version: 0.1\nstorage: inmemory\nhttp:\n  net: unix\n  addr: /run/registry.sock\n")
    assert s.http.addr == "/run/registry.sock"
    with pytest.raises(ValueError, match="socket path"):
        s.http.bind()


def test_maintenance_health_and_other_sections(tmp_path: Path) -> None:
    """maintenance, health checks, tag limits and the sections k3sreg only carries load with their values."""
    s = load(
        tmp_path,
        """\
version: 0.1
loglevel: debug
storage:
  filesystem:
    rootdirectory: /data
    maxthreads: 10
  maintenance:
    uploadpurging:
      enabled: true
      age: 72h
      interval: 1h30m
      dryrun: true
    readonly:
      enabled: true
  redirect:
    disable: true
  tag:
    concurrencylimit: 8
  cache:
    blobdescriptor: redis
    blobdescriptorsize: 5000
health:
  storagedriver:
    enabled: true
  file:
    - file: /tmp/down
      interval: 5s
  http:
    - uri: http://localhost:5001/health
      headers:
        Authorization: [Basic xyz]
      statuscode: 200
      timeout: 3s
      threshold: 2
  tcp:
    - addr: redis:6379
      timeout: 3s
middleware:
  registry:
    - name: redirect
      options:
        baseurl: https://example.com/
notifications:
  events:
    includereferences: true
  endpoints:
    - name: alistener
      url: https://my.listener.com/event
      timeout: 1s
redis:
  addr: localhost:6379
reporting:
  bugsnag:
    apikey: x
validation:
  manifests:
    urls:
      allow: ['^https?://([^/]+\\.)*example\\.com/']
compatibility:
  schema1:
    enabled: true
catalog:
  maxentries: 50
tags:
  maxtags: 0
""",
    )
    m = s.storage.maintenance
    assert (m.uploadpurging.age, m.uploadpurging.interval, m.uploadpurging.dryrun) == (259200.0, 5400.0, True)
    assert m.readonly.enabled is True
    assert s.storage.filesystem is not None and s.storage.filesystem.maxthreads == 25  # Distribution's floor
    assert s.storage.redirect.disable is True and s.storage.tag.concurrencylimit == 8
    assert s.storage.cache.blobdescriptor == "redis" and s.storage.cache.blobdescriptorsize == 5000
    assert s.log.level == "debug"  # from the deprecated top-level loglevel
    assert s.health.file[0].file == "/tmp/down" and s.health.file[0].interval == 5.0
    assert s.health.http[0].headers == {"Authorization": ["Basic xyz"]} and s.health.http[0].threshold == 2
    assert s.health.tcp[0].addr == "redis:6379" and s.health.tcp[0].timeout == 3.0
    assert s.middleware is not None and s.middleware["registry"][0]["name"] == "redirect"
    assert s.notifications is not None and s.redis is not None and s.reporting is not None
    assert s.validation is not None and s.compatibility is not None
    assert s.catalog.maxentries == 50 and s.tags.maxtags == 1000


def test_s3_storage(tmp_path: Path) -> None:
    """Distribution's S3 keys are read; sizes accept units; secure and v4auth default to true."""
    s = load(
        tmp_path,
        """\
version: 0.1
storage:
  s3:
    accesskey: AKIA
    secretkey: s3cr3t
    region: us-east-1
    regionendpoint: http://127.0.0.1:9000
    forcepathstyle: true
    bucket: registry
    rootdirectory: /k3s
    chunksize: 16MiB
    multipartcopythresholdsize: 33554432
    storageclass: REDUCED_REDUNDANCY
    skipverify: true
  redirect:
    disable: true
""",
    )
    assert s.storage.driver == "s3" and s.storage.s3 is not None
    s3 = s.storage.s3
    assert (s3.bucket, s3.region, s3.regionendpoint, s3.rootdirectory) == (
        "registry",
        "us-east-1",
        "http://127.0.0.1:9000",
        "/k3s",
    )
    assert s3.forcepathstyle and s3.skipverify and s3.secure and s3.v4auth and not s3.encrypt
    assert s3.chunksize == 16 * 1024 * 1024 and s3.multipartcopythresholdsize == 33554432


def test_proxy_and_token_auth(tmp_path: Path) -> None:
    """Distribution's proxy section and token auth load; the proxy becomes the `docker.io` upstream."""
    s = load(
        tmp_path,
        """\
version: 0.1
storage:
  filesystem:
proxy:
  remoteurl: https://registry-1.docker.io
  username: bob
  password: hunter2
  ttl: 72h
auth:
  token:
    realm: https://auth.example.com/token
    service: registry.example.com
    issuer: auth.example.com
    rootcertbundle: /certs/bundle.pem
    autoredirect: false
""",
    )
    assert s.proxy is not None
    assert (s.proxy.remoteurl, s.proxy.username, s.proxy.password, s.proxy.ttl) == (
        "https://registry-1.docker.io",
        "bob",
        "hunter2",
        259200.0,
    )
    assert s.auth is not None and s.auth.kind == "token" and s.auth.token is not None
    assert s.auth.token.issuer == "auth.example.com" and s.auth.token.rootcertbundle == "/certs/bundle.pem"
    [up] = s.effective_upstreams
    assert (up.name, up.url, up.username, up.password, up.ttl) == (
        "docker.io",
        "https://registry-1.docker.io",
        "bob",
        "hunter2",
        259200.0,
    )
    assert s.default_upstream == up


def test_empty_proxy_section_means_no_proxy(tmp_path: Path) -> None:
    """A proxy section without remoteurl leaves proxy mode off, as in Distribution."""
    s = load(tmp_path, "version: 0.1\nstorage: inmemory\nproxy:\n  remoteurl: ''\n")
    assert s.proxy is None and s.effective_upstreams == []


def test_numbers_in_string_fields_keep_their_spelling(tmp_path: Path) -> None:
    """As with Go's decoder, a number or boolean in a string field is its text as written."""
    s = load(
        tmp_path,
        "version: 0.1\nstorage:\n  s3:\n    accesskey: 0123\n    secretkey: 1.10\n    bucket: true\n"
        "    region: 1e3\n    rootdirectory: 2024\n",
    )
    assert s.storage.s3 is not None
    s3 = s.storage.s3
    assert (s3.accesskey, s3.secretkey, s3.bucket, s3.region, s3.rootdirectory) == (
        "0123",
        "1.10",
        "true",
        "1e3",
        "2024",
    )


def test_empty_auth_means_no_access_control(tmp_path: Path) -> None:
    """`auth: {}` and `auth:` both leave the registry open, as Distribution does."""
    assert load(tmp_path, "version: 0.1\nstorage: inmemory\nauth: {}\n").auth is None
    assert load(tmp_path, "version: 0.1\nstorage: inmemory\nauth:\n").auth is None
