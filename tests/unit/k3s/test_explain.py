"""`mirrors explain`: the ordered requests containerd makes for one image."""

from __future__ import annotations

import textwrap
from typing import Any

from k3sreg.k3s.decode import load_registries
from k3sreg.k3s.explain import Plan, explain, host_dirs, is_public
from k3sreg.k3s.render import RenderOptions, render_hosts


def plan_for(image: str, yaml_text: str, runtime: str = "k3s", **options: Any) -> Plan:
    """Render `yaml_text` and explain `image` against it."""
    reg = load_registries(textwrap.dedent(yaml_text))
    return explain(image, render_hosts(reg, RenderOptions(**options)), reg, runtime)


def test_order_ns_and_public_last_hop() -> None:
    """Mirrors in order with ?ns=, the registry itself last without it, and a public-hop warning."""
    plan = plan_for("nginx:1.27", """
        mirrors:
          docker.io:
            endpoint: ["http://127.0.0.1:30500", "https://regional.example.com:5000"]
    """)
    assert [h.url for h in plan.resolve] == [
        "HEAD http://127.0.0.1:30500/v2/library/nginx/manifests/1.27?ns=docker.io",
        "HEAD https://regional.example.com:5000/v2/library/nginx/manifests/1.27?ns=docker.io",
        "HEAD https://registry-1.docker.io/v2/library/nginx/manifests/1.27",
    ]
    assert plan.fetch[0].url == "GET http://127.0.0.1:30500/v2/library/nginx/blobs/<digest>?ns=docker.io"
    assert plan.resolve[0].tls == "plain HTTP" and plan.resolve[-1].public
    assert any("public registry" in w for w in plan.warnings)


def test_no_default_endpoint_has_no_public_hop() -> None:
    """Without the default endpoint the K3s build stops after the mirrors; upstream containerd does not."""
    text = 'mirrors:\n  docker.io:\n    endpoint: ["http://127.0.0.1:30500"]\n'
    plan = plan_for("nginx", text, no_default_endpoint=True)
    assert [h.host for h in plan.resolve] == ["127.0.0.1:30500"] and not plan.warnings
    upstream = plan_for("nginx", text, runtime="containerd", no_default_endpoint=True)
    assert [h.host for h in upstream.resolve] == ["127.0.0.1:30500", "registry-1.docker.io"]


def test_rewrite_override_path_tls_and_auth() -> None:
    """Rewrites change the path on mirrors only; override_path keeps the path; TLS and auth are shown."""
    plan = plan_for("rancher/pause:3.6", """
        mirrors:
          docker.io:
            endpoint: ["https://m.example.com/project/registry"]
            rewrite: {"^rancher/(.*)": "mirrored/$1"}
        configs:
          m.example.com:
            auth: {username: u, password: p}
            tls: {ca_file: /ca.pem, insecure_skip_verify: true}
    """)
    first = plan.resolve[0]
    assert first.url == "HEAD https://m.example.com/project/registry/mirrored/pause/manifests/3.6?ns=docker.io"
    assert first.rewritten_by == "^rancher/(.*)"
    assert "CA /ca.pem" in first.tls and "NOT verified" in first.tls
    assert "configs.\"m.example.com\"" in first.auth
    assert plan.resolve[1].url.endswith("/v2/rancher/pause/manifests/3.6")
    upstream = plan_for("rancher/pause:3.6", "mirrors:\n  docker.io:\n    endpoint: [m.example.com]\n"
                        "    rewrite: {'^rancher/(.*)': 'x/$1'}\n", runtime="containerd")
    assert upstream.resolve[0].rewritten_by is None


def test_wildcard_and_directory_lookup() -> None:
    """An image of an unlisted registry uses _default; `server = ""` falls back to the registry itself."""
    plan = plan_for("ghcr.io/org/app:1", 'mirrors:\n  "*":\n    endpoint: ["http://127.0.0.1:30500"]\n')
    assert plan.hosts_file == "_default/hosts.toml"
    assert [h.url for h in plan.resolve] == [
        "HEAD http://127.0.0.1:30500/v2/org/app/manifests/1?ns=ghcr.io",
        "HEAD https://ghcr.io/v2/org/app/manifests/1"]
    assert host_dirs("reg:5000") == ["reg_5000_", "reg:5000", "_default"]


def test_digest_reference_uses_pull_hosts() -> None:
    """A digest reference is resolved with HEAD manifests/<digest>, ns included for the local registry."""
    digest = "sha256:" + "a" * 64
    plan = plan_for(f"127.0.0.1:5000/app@{digest}", 'mirrors:\n  "127.0.0.1:5000":\n    endpoint: [m.example.com]\n')
    assert [h.url for h in plan.resolve] == [
        f"HEAD https://m.example.com/v2/app/manifests/{digest}?ns=127.0.0.1%3A5000",
        f"HEAD http://127.0.0.1:5000/v2/app/manifests/{digest}"]
    assert not plan.warnings


def test_files_containerd_rejects_fall_back_to_default() -> None:
    """A hosts.toml without [host] or with invalid TOML is ignored: only the built-in default remains."""
    for text in ('server = "http://127.0.0.1:1"\n', "[host\n"):
        plan = explain("nginx", {"docker.io/hosts.toml": text})
        assert [h.host for h in plan.resolve] == ["registry-1.docker.io"]
        assert plan.warnings and "built-in default" in plan.warnings[0]
    assert [h.url for h in explain("localhost:5000/a", {}).resolve] == [
        "HEAD http://localhost:5000/v2/a/manifests/latest"]


def test_public_host_classification() -> None:
    """Loopback, private IPs and internal names are not public; known registries and FQDNs are."""
    assert not any(is_public(h) for h in ("127.0.0.1:5000", "10.0.0.1", "registry.local:5000", "registry",
                                          "reg.svc.cluster.local"))
    assert all(is_public(h) for h in ("registry-1.docker.io", "ghcr.io", "8.8.8.8", "registry.example.org"))


def test_capabilities_filter_hosts() -> None:
    """Tags need pull and resolve; a pull-only host is skipped for the tag but used for blobs."""
    files = {"docker.io/hosts.toml": '[host]\n[host."http://127.0.0.1:1"]\n  capabilities = ["pull"]\n'
                                     '[host."http://127.0.0.1:2"]\n  capabilities = ["resolve"]\n'}
    plan = explain("nginx", files, runtime="containerd")
    assert [h.host for h in plan.resolve] == ["registry-1.docker.io"]
    assert [h.host for h in plan.fetch] == ["127.0.0.1:1", "registry-1.docker.io"]
